import { UnavailableError } from '../../protocol/errors.js';
import type { Handler } from '../context.js';
import { version } from '../../io/version.js';

/**
 * GET /v1/health: unauthenticated liveness, for load balancers and scripts.
 * 503 while the store is damaged or its writes fail: a balancer must not send
 * uses to a server that cannot count them.
 */
export const health: Handler = async (ctx) => {
  const state = ctx.deps.storage.state?.() ?? { ok: true };
  if (state.ok) return { status: 200, body: { ok: true, version: version() } };
  return { status: 503, body: { ok: false, version: version(), storage: state.problem, message: state.message } };
};

/**
 * GET /v1/ready: unauthenticated readiness, for load balancers in front of several
 * nodes: 503 while this node cannot reach its database, so traffic goes elsewhere.
 */
export const ready: Handler = async (ctx) => {
  const state = ctx.deps.storage.state?.() ?? { ok: true };
  const ok = state.ok && (ctx.deps.storage.ping ? await ctx.deps.storage.ping() : true);
  if (!ok) throw new UnavailableError(state.ok ? 'the database is unavailable' : state.message);
  return { status: 200, body: { ready: true, version: version() } };
};
