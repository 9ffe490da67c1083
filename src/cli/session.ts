// Sessions as the command line opens them: a running agent for this home is
// asked first and spares the passphrase (and the KDF). The agent is bound to
// config.fingerprint (an IntegrityError otherwise); no socket or a dead agent's
// stale socket means no agent; a hung one is an AgentError (69) within
// seconds, never a hang. KMGR_NO_AGENT=1 skips it. The client modules take the
// opener as an argument, so that the client never imports the agent.
import type { ClientConfig } from '../client/config.js';
import type { HomePaths } from '../client/home.js';
import type { PassphraseSource } from '../client/passphrase.js';
import * as client from '../client/session.js';
import type { HeldKeys, PartnerCheck, Session } from '../client/session.js';

async function agentKeys(paths: HomePaths, config: ClientConfig): Promise<HeldKeys | undefined> {
  if (process.env.KMGR_NO_AGENT) return undefined;
  // Loaded only here, so a command that needs no session never starts agent code.
  const { agentSession } = await import('../agent/client.js');
  return agentSession(paths, config);
}

export function openSession(paths: HomePaths, src: PassphraseSource, loaded?: ClientConfig): Promise<Session> {
  return client.openSession(paths, src, agentKeys, loaded);
}

export function openForPartner(paths: HomePaths, name: string, src: PassphraseSource, check?: PartnerCheck) {
  return client.openForPartner(paths, name, src, agentKeys, check);
}
