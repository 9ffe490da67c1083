// This client's own record of its fetches (paragraph 35): what `kmgr audit`
// compares with the server's history. One JSON line per use.
import { stat } from 'node:fs/promises';
import { appendLine, appendLineDurable } from '../io/atomic-file.js';
import type { HomePaths } from './home.js';
import { checkNotWritableByOthers } from './files.js';
import { ConfigError } from '../protocol/errors.js';

/**
 * The logs get the checks the other state files get (threat 12): another user
 * who can write them could hide uses from the audit or invent some, and a FIFO
 * in their place would block every fetch.
 */
export async function checkLogFiles(paths: HomePaths): Promise<void> {
  for (const f of [paths.sentLog, paths.fetchLog]) {
    let st;
    try {
      st = await stat(f);
    } catch {
      continue; // not written yet
    }
    // A FIFO or device would block or swallow the append; a directory only makes the write
    // fail at once, which fetch survives once the key is served (it warns and delivers).
    if (st.isFIFO() || st.isCharacterDevice() || st.isBlockDevice() || st.isSocket()) {
      throw new ConfigError(`${f} is not a regular file (a FIFO or device stands in its place); move it away`);
    }
    if (st.isFile()) await checkNotWritableByOthers(f);
  }
}

export interface FetchLogEntry {
  at: string;
  partner: string;
  partnerId: string;
  keyId: string;
  keyVersion: number;
  /** The request's nonce: names the exact use in the server's history. */
  nonce: string;
  server: string;
}

/**
 * Not fsync'd: the nonce is already durable in the sent log, so a line lost to
 * a crash only turns "ours" into "ours, reply unconfirmed" in the audit. One
 * fsync fewer on every fetch.
 */
export function appendFetchLog(paths: HomePaths, e: FetchLogEntry): Promise<void> {
  return appendLine(paths.fetchLog, JSON.stringify(e));
}

/**
 * A line of the sent log. Without an outcome: the request is about to go out.
 * A second line with the same nonce says how it ended when no key came of it:
 * refused (the server answered with an error of any kind), unanswered (sent,
 * no answer: a timeout or a dropped connection), rejected (a reply that failed
 * this client's checks). served (with keyVersion) records a use that was
 * delivered but could not be written to the fetch log.
 */
export interface SentLogEntry {
  at: string;
  partner: string;
  partnerId: string;
  nonce: string;
  outcome?: 'refused' | 'unanswered' | 'rejected' | 'served';
  keyVersion?: number;
}

/**
 * The nonce of every fetch request, written before it is sent: a use the
 * server counted but whose reply never arrived (a dropped connection, a killed
 * process, a reply that failed its checks) is then still known as ours.
 */
export function appendSentLog(paths: HomePaths, e: SentLogEntry): Promise<void> {
  return appendLineDurable(paths.sentLog, JSON.stringify(e));
}
