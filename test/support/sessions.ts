// Unlocked sessions for test homes, kept while the home's files stay as they were, so a
// test's in-process reads (owner.ts) cost one KDF run per home rather than one each.
import { readFile, stat } from 'node:fs/promises';
import { openSession, sessionWithKeys, endpointFor, type Session } from '../../src/client/session.js';
import { homePaths } from '../../src/client/home.js';
import { loadConfig } from '../../src/client/config.js';
import type { ManagementSecrets } from '../../src/crypto/keystore.js';
import { signerFromSeed } from '../../src/crypto/sign.js';

type Owner = { home: string; pp: string };

/**
 * What a session depends on: the keystore, config and CA files, bytes and modes. A
 * session is made again (the keystore unlocked again) only when one of them changed,
 * so a test's in-process reads cost one KDF run per home, not one each.
 */
async function stampOf(home: string): Promise<string> {
  const paths = homePaths(home);
  const parts: string[] = [];
  for (const f of [paths.dir, paths.keystore, paths.config, paths.ca]) {
    try {
      const st = await stat(f);
      parts.push(`${st.mode}:${st.isFile() ? (await readFile(f)).toString('base64') : ''}`);
    } catch {
      parts.push('-');
    }
  }
  return parts.join('|');
}

const sessions = new Map<string, { stamp: string; session: Promise<Session> }>();

/** The home's session, unlocked with its passphrase file when its files changed since the last one. */
export async function session(h: Owner): Promise<Session> {
  const stamp = await stampOf(h.home);
  const held = sessions.get(h.home);
  if (held?.stamp === stamp) return held.session;
  const made = openSession(homePaths(h.home), { passphraseFile: h.pp }, null);
  sessions.set(h.home, { stamp, session: made });
  made.catch(() => sessions.delete(h.home));
  return made;
}

/**
 * Remembers the secrets a home was just made with (newHome), as the session the
 * keystore would give, so its first in-process read needs no KDF run either.
 */
export async function rememberSecrets(home: string, secrets: ManagementSecrets): Promise<void> {
  const paths = homePaths(home);
  const config = await loadConfig(paths);
  const s = sessionWithKeys(paths, config, await endpointFor(paths, config), signerFromSeed(secrets.signingSeed), () => secrets.wrapKey, secrets);
  sessions.set(home, { stamp: await stampOf(home), session: s });
}
