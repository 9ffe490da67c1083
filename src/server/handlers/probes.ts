// Probes for orchestrators and load balancers, unauthenticated like /v1/health.
// /livez: the process answers (restart it if not). /readyz: it can serve now
// (send it traffic if so): storage is open and takes a synced write, and the
// daemon is not draining for shutdown.
import { KmgrError } from '../../protocol/errors.js';
import type { Handler } from '../context.js';
import { version } from '../../io/version.js';
import { statusForCode } from '../http-status.js';

/** Not ready is answered as unavailable is: a balancer retries elsewhere. */
const NOT_READY = statusForCode('unavailable');

export const livez: Handler = async () => ({ status: 200, body: { ok: true, version: version() } });

export const readyz: Handler = async (ctx) => {
  if (ctx.deps.draining?.()) return { status: NOT_READY, body: { ok: false, version: version(), reason: 'draining: kmgrd is shutting down' } };
  try {
    await ctx.deps.storage.ready();
  } catch (e) {
    const reason = e instanceof KmgrError ? e.message : 'storage check failed';
    return { status: NOT_READY, body: { ok: false, version: version(), reason } };
  }
  return { status: 200, body: { ok: true, version: version() } };
};
