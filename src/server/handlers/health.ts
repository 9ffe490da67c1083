import type { Handler } from '../context.js';
import { version } from '../../io/version.js';


/** GET /v1/health: unauthenticated liveness, for load balancers and scripts. */
export const health: Handler = async () => ({ status: 200, body: { ok: true, version: version() } });
