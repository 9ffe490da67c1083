// The admin socket: LevelDB admits one process, so while `kmgrd serve` holds
// the database, operator commands (`kmgrd check-terms` from cron, `kmgrd
// partner ...`) ask the daemon to do the work. A Unix socket inside the 0700
// data directory, itself mode 0600: only the daemon's user can reach it.
// One JSON line in, one JSON line out.
import { createServer, type Server } from 'node:net';
import { chmod, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Storage } from '../store/types.js';
import type { Logger } from './logger.js';
import { runAdmin, type AdminRequest } from './admin-ops.js';
import { InternalError, KmgrError, UnavailableError } from '../protocol/errors.js';
import { encodeError } from '../protocol/wire-error.js';

export const adminSocketPath = (dataDir: string): string => join(dataDir, 'admin.sock');

/**
 * What a failed operation answers. Ours as it is; an error with a code of its
 * own (a system or database error) as unavailable, which is what the operator's
 * command made of such a code before it had a stable one; one without a code is
 * a bug, logged here.
 */
function adminError(e: unknown, log: Logger): KmgrError {
  if (e instanceof KmgrError) return e;
  const err = e as { code?: unknown; message?: string } | null;
  const message = err?.message ?? String(e);
  if (typeof err?.code === 'string' && err.code !== '') return new UnavailableError(message).because(e);
  log.error({ err: err?.message }, 'admin request failed');
  return new InternalError(message).because(e);
}

export async function startAdminSocket(dataDir: string, storage: Storage, clock: () => number, log: Logger): Promise<Server> {
  const path = adminSocketPath(dataDir);
  // A socket file left by a killed daemon: we hold the database lock, so it is stale.
  await unlink(path).catch(() => undefined);
  const server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.setTimeout(60_000, () => sock.destroy());
    sock.on('error', () => undefined);
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > 16_384) return void sock.destroy();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      void answer(buf.slice(0, nl)).then((reply) => sock.end(JSON.stringify(reply) + '\n'));
    });
  });
  async function answer(line: string): Promise<unknown> {
    try {
      return { ok: await runAdmin(storage, JSON.parse(line) as AdminRequest, clock()) };
    } catch (e) {
      return { error: encodeError(adminError(e, log)) };
    }
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  return server;
}
