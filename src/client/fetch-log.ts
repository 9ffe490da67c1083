// This client's own record of its fetches (paragraph 35): what `kmgr audit`
// compares with the server's history. One JSON line per use.
import { appendLine, appendLineDurable } from '../io/atomic-file.js';
import type { HomePaths } from './home.js';

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
 * The nonce of every fetch request, written before it is sent: a use the
 * server counted but whose reply never arrived (a dropped connection, a killed
 * process, a reply that failed its checks) is then still known as ours.
 */
export function appendSentLog(paths: HomePaths, e: { at: string; partner: string; partnerId: string; nonce: string; outcome?: 'refused' }): Promise<void> {
  return appendLineDurable(paths.sentLog, JSON.stringify(e));
}
