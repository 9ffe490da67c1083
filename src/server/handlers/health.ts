import type { Handler } from '../context.js';
import { version } from '../../io/version.js';
import { statusForCode } from '../http-status.js';


/**
 * GET /v1/health: unauthenticated liveness, for load balancers and scripts.
 * 503 while the store is damaged or its writes fail: a balancer must not send
 * uses to a server that cannot count them.
 */
export const health: Handler = async (ctx) => {
  const state = ctx.deps.storage.state?.() ?? { ok: true };
  if (state.ok) return { status: 200, body: { ok: true, version: version() } };
  return { status: statusForCode('unavailable'), body: { ok: false, version: version(), storage: state.problem, message: state.message } };
};
