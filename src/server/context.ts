import type { IncomingMessage } from 'node:http';
import type { Storage, PersonRecord } from '../store/types.js';
import type { Logger } from './logger.js';
import type { Authenticated, VerifyKey } from './auth.js';

export interface ServerDeps {
  storage: Storage;
  log: Logger;
  clock: () => number;
  tz: string;
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
}

export interface Reply {
  status: number;
  body: unknown;
}

export type Handler = (ctx: RequestContext) => Promise<Reply>;
