import type { IncomingMessage } from 'node:http';
import type { Storage, PersonRecord } from '../store/types.js';
import type { Logger } from './logger.js';
import type { Authenticated, VerifyKey } from './auth.js';
import type { Metrics } from './metrics.js';
import type { AuditLog } from './audit-log.js';

export interface ServerDeps {
  storage: Storage;
  log: Logger;
  clock: () => number;
  tz: string;
  /** Prometheus metrics, when --metrics-listen is given. */
  metrics?: Metrics;
  /** The audit log, when --audit-log is given. */
  audit?: AuditLog;
  /** True once shutdown has begun: /readyz answers 503. */
  draining?: () => boolean;
}

export interface RequestContext {
  deps: ServerDeps;
  req: IncomingMessage;
  path: string;
  query: string;
  params: Record<string, string>;
  body: Uint8Array;
  now: number;
  remoteAddress: string;
  /** Authenticates the request as an enrolled person and claims its nonce. */
  person(): Promise<{ person: PersonRecord; auth: Authenticated }>;
  /** Authenticates against a key the caller supplies (enrolment proves possession this way). */
  withKey(keyId: string, key: VerifyKey): Promise<Authenticated>;
  /** What a handler tells the audit log and metrics about the outcome (never secrets). */
  note: { fetchResult?: 'served' | 'served_over_limit' | 'refused'; refusal?: string; personId?: string; partnerId?: string };
}

interface Reply {
  status: number;
  body: unknown;
}

export type Handler = (ctx: RequestContext) => Promise<Reply>;
