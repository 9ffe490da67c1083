// kmgr fetch: prints a partner's transaction key (the transaction judgement
// unit, Fig. 7; the work is in src/client/fetch.ts). A running agent for this
// home makes the whole fetch itself, so this process then loads no TLS, crypto
// or client code (fetch runs in pipelines and should start fast).
// Nothing reaches stdout unless every check passed.
import { KmgrError } from '../../protocol/errors.js';
import type { OutputFormat } from '../../crypto/formats.js';
import { homePaths } from '../../client/home.js';
import { flushStdout, warn } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';

interface FetchOptions {
  format?: OutputFormat | 'pem-chain' | 'p12';
  force?: boolean;
  passphraseFile?: string;
  passphraseFd?: string;
}

export async function run(g: GlobalOptions, name: string, o: FetchOptions): Promise<number> {
  if (o.format === 'pem-chain' || o.format === 'p12') return (await import('./fetch-cert.js')).run(g, name, o as never);
  const paths = homePaths(g.home);
  // Before anything is counted: key material never goes to a terminal unless forced (threat 13).
  if (process.stdout.isTTY && !o.force) {
    throw new KmgrError('terminal_refused', 'refusing to print a private key to a terminal; pipe it to a program or use --force');
  }
  let result = process.env.KMGR_NO_AGENT ? undefined : await (await import('../../agent/connection.js')).agentFetch(paths, name, o.format);
  if (!result) {
    const [{ openForPartner }, { fetchChecks, fetchWith }] = await Promise.all([import('../session.js'), import('../../client/fetch.js')]);
    const { session, partner } = await openForPartner(paths, name, o, fetchChecks(name, o.format));
    result = await fetchWith(paths, session, partner, name, o.format);
  }
  for (const w of result.warnings) warn(w);
  process.stdout.write(result.bytes);
  await flushStdout();
  result.bytes.fill(0);
  return EXIT.OK;
}
