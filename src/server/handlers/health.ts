import type { Handler } from '../context.js';

export const VERSION = '0.1.0';

/** GET /v1/health: unauthenticated liveness, for load balancers and scripts. */
export const health: Handler = async () => ({ status: 200, body: { ok: true, version: VERSION } });
