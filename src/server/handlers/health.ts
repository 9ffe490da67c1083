import { UnavailableError } from '../../protocol/errors.js';
import type { Handler } from '../context.js';
import { version } from '../../io/version.js';

/** GET /v1/health: unauthenticated liveness, for load balancers and scripts. */
export const health: Handler = async () => ({ status: 200, body: { ok: true, version: version() } });

/**
 * GET /v1/ready: unauthenticated readiness, for load balancers in front of several
 * nodes: 503 while this node cannot reach its database, so traffic goes elsewhere.
 */
export const ready: Handler = async (ctx) => {
  const ok = ctx.deps.storage.ping ? await ctx.deps.storage.ping() : true;
  if (!ok) throw new UnavailableError('the database is unavailable');
  return { status: 200, body: { ready: true, version: version() } };
};
