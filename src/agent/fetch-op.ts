// The agent's fetch operation: a whole `kmgr fetch` made inside the agent with
// the keys it holds, so that the CLI process loads no TLS, crypto or client
// code and a fetch in a pipeline starts about as fast as Node can.
// It is the same code the CLI runs (src/client/fetch.ts) with the same checks,
// files and logs; only the session is made from the agent's keys.
import { homePaths, type HomePaths } from '../client/home.js';
import type { ClientConfig } from '../client/config.js';
import { endpointFor, sessionWithKeys, withPartner, type Session } from '../client/session.js';
import { preconnect, type Endpoint } from '../client/http.js';
import { FRESH_MS, type Preconnect } from '../client/tls-connect.js';
import { fetchChecks, fetchWith, type FetchResult } from '../client/fetch.js';
import { sameDirectory } from './socket.js';
import type { Signer } from '../crypto/sign.js';
import type { OutputFormat } from '../crypto/formats.js';
import { IntegrityError } from '../protocol/errors.js';

export interface AgentKeys {
  home: string;
  fingerprint: string;
  /** The live keys; they throw once the agent has wiped them. */
  signer(): Signer;
  wrapKey(): Uint8Array;
}

/**
 * After each fetch the agent opens a connection for the next one, by server and
 * trust: fetches come in bursts (a pipeline, a loop), and the next then skips
 * the handshake. It is closed once it is no longer fresh (FRESH_MS), so at most
 * one idle connection per server, for a few seconds.
 */
const warm = new Map<string, Preconnect>();
const warmKey = (ep: Endpoint): string => `${ep.server}\n${ep.ca ?? ''}`;

function warmUp(ep: Endpoint): void {
  const key = warmKey(ep);
  const next: Endpoint = { server: ep.server, ca: ep.ca };
  preconnect(next);
  const pc = next.preconnect!;
  warm.get(key)?.discard();
  warm.set(key, pc);
  setTimeout(() => {
    if (warm.get(key) !== pc) return;
    warm.delete(key);
    pc.discard();
  }, FRESH_MS).unref();
}

export async function sessionFromAgent(paths: HomePaths, config: ClientConfig, k: AgentKeys): Promise<Session> {
  // The home must still name the identity this agent holds: a swapped config
  // would otherwise send our signatures to its server under its name.
  if (config.fingerprint !== k.fingerprint) {
    throw new IntegrityError(`${paths.config} names a different management key than this kmgr agent holds; kmgr agent stop ends it`);
  }
  const endpoint = await endpointFor(paths, config);
  const ready = warm.get(warmKey(endpoint));
  warm.delete(warmKey(endpoint));
  // Else the handshake runs while the sent log is made durable and the request signed.
  if (ready) endpoint.preconnect = ready;
  else preconnect(endpoint);
  return sessionWithKeys(paths, config, endpoint, k.signer(), () => k.wrapKey());
}

export async function fetchInAgent(k: AgentKeys, req: { home: string; name: string; format?: OutputFormat }): Promise<FetchResult> {
  const paths = homePaths(k.home);
  if (!sameDirectory(req.home, paths.dir)) throw new IntegrityError(`this kmgr agent serves ${paths.dir}, not ${req.home}`);
  const { session, partner } = await withPartner(paths, req.name, (config) => sessionFromAgent(paths, config, k), fetchChecks(req.name, req.format));
  try {
    return await fetchWith(paths, session, partner, req.name, req.format);
  } finally {
    warmUp(session.endpoint);
  }
}
