// `kmgr fetch` without commander: fetch runs in pipelines, often, and parsing
// its few options by hand saves loading commander and every other command's
// definitions (~25 ms of a ~140 ms run here). Anything this parser does not
// recognise exactly, including --help and every malformed value, is handed to
// the full command line, which gives the usual errors.
import type { GlobalOptions } from './options.js';

const FORMATS = new Set(['pem', 'jwk', 'raw', 'hex', 'base64']);
const WITH_VALUE = new Set(['--format', '--passphrase-file', '--passphrase-fd', '--home']);

interface Parsed {
  g: GlobalOptions;
  name: string;
  o: { format?: 'pem' | 'jwk' | 'raw' | 'hex' | 'base64'; force?: boolean; passphraseFile?: string; passphraseFd?: string };
}

/** argv after the program name, starting with "fetch"; undefined when the full parser should decide. */
export function parseFetch(argv: string[]): Parsed | undefined {
  if (argv[0] !== 'fetch') return undefined;
  const g: GlobalOptions = {};
  const o: Parsed['o'] = {};
  let name: string | undefined;
  for (let i = 1; i < argv.length; i++) {
    let arg = argv[i]!;
    let value: string | undefined;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    if (WITH_VALUE.has(arg)) {
      if (value === undefined) value = argv[++i];
      if (value === undefined || value === '' || value.startsWith('-')) return undefined;
      if (arg === '--format') {
        if (!FORMATS.has(value)) return undefined;
        o.format = value as Parsed['o']['format'];
      } else if (arg === '--passphrase-file') o.passphraseFile = value;
      else if (arg === '--passphrase-fd') o.passphraseFd = value;
      else g.home = value;
    } else if (value !== undefined) return undefined;
    else if (arg === '--force') o.force = true;
    else if (arg === '--json') g.json = true;
    else if (arg.startsWith('-') || name !== undefined) return undefined;
    else name = arg;
  }
  return name === undefined ? undefined : { g, name, o };
}

export async function fastFetch(p: Parsed): Promise<number> {
  try {
    const { run } = await import('./commands/fetch.js');
    return await run(p.g, p.name, p.o);
  } catch (e) {
    // Loaded only on failure: a fetch that works needs none of it.
    const { reportError } = await import('./errors.js');
    return reportError(e, 'kmgr', Boolean(p.g.json));
  }
}
