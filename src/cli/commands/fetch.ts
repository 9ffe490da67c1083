// kmgr fetch: prints a partner's transaction key (the transaction judgement
// unit, Fig. 7; the work is in src/client/fetch.ts). A running agent for this
// home makes the whole fetch itself, so this process then loads no TLS, crypto
// or client code (fetch runs in pipelines and should start fast).
// Nothing reaches stdout unless every check passed.
import { KmgrError } from '../../protocol/errors.js';
import type { OutputFormat } from '../../crypto/formats.js';
import { homePaths } from '../../client/home.js';
import { printJson, warn } from '../output.js';
import { finishStdout, requireOpenStdout, writeStdout } from '../stdout.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';

interface FetchOptions {
  format?: OutputFormat | 'pem-chain' | 'p12';
  force?: boolean;
  out?: string;
  passphraseFile?: string;
  passphraseFd?: string;
}

/** The format fetch chose when none was asked for: PEM for key pairs, base64 for aes256. */
const formatOf = (bytes: Uint8Array, requested: OutputFormat | undefined): OutputFormat => requested ?? (bytes[0] === 0x2d ? 'pem' : 'base64');

export async function run(g: GlobalOptions, name: string, o: FetchOptions): Promise<number> {
  if (o.format === 'pem-chain' || o.format === 'p12') return (await import('./fetch-cert.js')).run(g, name, o as never);
  const paths = homePaths(g.home);
  // Before anything is counted: key material never goes to a terminal unless forced (threat 13),
  // and never to a stdout that is closed or a file kmgr may not replace.
  if (o.out !== undefined) await (await import('../out-file.js')).checkOutFile(paths, o.out, o.force);
  else {
    if (process.stdout.isTTY && !o.force) {
      throw new KmgrError('terminal_refused', 'refusing to print a private key to a terminal; pipe it to a program, use --out FILE, or --force');
    }
    requireOpenStdout('the key');
  }
  if (g.json && o.format === 'raw') throw new KmgrError('usage', '--json carries the key as text; use --format base64 or hex rather than raw');
  let result;
  try {
    result = process.env.KMGR_NO_AGENT ? undefined : await (await import('../../agent/connection.js')).agentFetch(paths, name, o.format);
    if (!result) {
      const [{ openForPartner }, { fetchChecks, fetchWith }] = await Promise.all([import('../session.js'), import('../../client/fetch.js')]);
      const { session, partner } = await openForPartner(paths, name, o, fetchChecks(name, o.format));
      result = await fetchWith(paths, session, partner, name, o.format);
    }
  } catch (e) {
    throw await withStatusShape(e, name);
  }
  for (const w of result.warnings) warn(w);
  const lost = 'the key (its use is counted)';
  try {
    const format = formatOf(result.bytes, o.format);
    if (o.out !== undefined) {
      await (await import('../out-file.js')).writeOutFile(paths, o.out, result.bytes, lost);
      if (g.json) printJson({ partner: name, format, file: o.out });
    } else if (g.json) {
      printJson({ partner: name, format, key: Buffer.from(result.bytes).toString('utf8') });
    } else {
      writeStdout(result.bytes);
    }
    await finishStdout(g.json && o.out !== undefined ? 'the result' : lost);
  } finally {
    result.bytes.fill(0);
  }
  return EXIT.OK;
}

/**
 * A refusal carries the key's status in its details: shown in the same shape
 * as kmgr status --json (one shape for a key's status everywhere). Loaded only
 * on failure, so a fetch that works loads none of it.
 */
async function withStatusShape(e: unknown, name: string): Promise<unknown> {
  if (!(e instanceof KmgrError) || !e.details || typeof e.details.status !== 'object') return e;
  const [{ KeyStatus }, { statusJson }] = await Promise.all([import('../../protocol/messages.js'), import('./status.js')]);
  let status;
  try {
    // Server text in error details is flattened to single lines (src/client/http.ts), which breaks a
    // PEM: the refusal's status carries no public key (kmgr pubkey prints it), the rest as sent.
    status = KeyStatus({ ...(e.details.status as Record<string, unknown>), publicKey: null }, 'status');
  } catch {
    return e; // a malformed status from the server is passed on as it came
  }
  return new KmgrError(e.code, e.message, { ...e.details, status: statusJson(name, status) });
}
