// Runs an operator operation (kmgrd partner, check-terms, check-db, backup):
// through the running daemon's admin socket, or, when no daemon runs, directly
// on the database. The command line only parses and prints; opening a store is
// the server's business, so src/cli never imports src/store.
import { connect } from 'node:net';
import { resolve } from 'node:path';
import { adminSocketPath } from '../admin.js';
import { runAdmin, type AdminRequest } from '../admin-ops.js';
import { openStorage } from '../../store/open.js';
import { ensurePrivateDir } from '../../io/atomic-file.js';
import { checkNewDataDir } from '../../store/marker.js';
import type { PartnerRecord, Storage } from '../../store/types.js';

export type { PartnerRecord };
import { UnavailableError } from '../../protocol/errors.js';
import { decodeError, type ReceivedError } from '../../protocol/wire-error.js';

export function askDaemon(socket: string, req: AdminRequest, timeoutMs = 120_000): Promise<{ reply: unknown } | undefined> {
  return new Promise((done, fail) => {
    const sock = connect(socket);
    let buf = '';
    sock.setEncoding('utf8');
    sock.setTimeout(timeoutMs, () => sock.destroy(new Error('the daemon did not answer on its admin socket')));
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (c: string) => (buf += c));
    sock.on('end', () => {
      let reply: { ok?: unknown; error?: ReceivedError };
      try {
        reply = JSON.parse(buf) as typeof reply;
      } catch {
        return fail(new UnavailableError('the daemon sent an unreadable answer on its admin socket'));
      }
      if (reply.error) fail(decodeError(reply.error, { unknown: (f) => new UnavailableError(f.message) }));
      else done({ reply: reply.ok });
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      // No daemon listening: the caller opens the database itself.
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') done(undefined);
      else fail(new UnavailableError(`cannot use the admin socket ${socket}: ${e.message}`).because(e));
    });
  });
}

/**
 * `direct` runs after the operation when no daemon runs, with the database
 * still open (check-terms uses it to deliver the notices it just recorded).
 */
export async function admin<T>(
  dataDir: string,
  req: AdminRequest,
  tz: string,
  direct?: (storage: Storage) => Promise<void>,
  databaseUrl?: string,
): Promise<{ result: T; via: 'daemon' | 'database' }> {
  const dir = resolve(dataDir);
  const viaDaemon = await askDaemon(adminSocketPath(dir), req);
  if (viaDaemon) return { result: viaDaemon.reply as T, via: 'daemon' };
  // Adding a shared partner may come before the daemon's first start (the operator
  // pre-registers them); reading or checking a database that does not exist is a mistyped --data.
  // On PostgreSQL the database is shared by every node: no daemon is needed to reach it.
  const creates = req.op === 'partner-add';
  if (creates && !databaseUrl) {
    checkNewDataDir(dir);
    await ensurePrivateDir(dir);
  }
  const storage = await openStorage({ dataDir: dir, databaseUrl, tz, clock: Date.now, createIfMissing: creates });
  try {
    const result = (await runAdmin(storage, req, Date.now())) as T;
    if (direct) await direct(storage);
    return { result, via: 'database' };
  } finally {
    await storage.close();
  }
}
