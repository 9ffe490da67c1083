// This client's own record of its fetches (paragraph 35): what `kmgr audit`
// compares with the server's history. One JSON line per use, fsync'd.
import { appendLineDurable } from '../io/atomic-file.js';
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

export function appendFetchLog(paths: HomePaths, e: FetchLogEntry): Promise<void> {
  return appendLineDurable(paths.fetchLog, JSON.stringify(e));
}
