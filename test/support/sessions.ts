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
 * What a session depends on: the keystore, config and CA files, bytes and modes, and the
 * passphrase file that unlocks it (a CA named by an absolute path is not followed). A
 * session is made again (the keystore unlocked again) only when one of them changed,
 * so a test's in-process reads cost one KDF run per home, not one each.
 */
async function stampOf(home: string, pp = ''): Promise<string> {
  const paths = homePaths(home);
  const parts: string[] = [];
  for (const f of [paths.dir, paths.keystore, paths.config, paths.ca, pp]) {
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
  const stamp = await stampOf(h.home, h.pp);
  let held = sessions.get(h.home);
  if (held?.stamp !== stamp) {
    const entry = { stamp, session: openSession(homePaths(h.home), { passphraseFile: h.pp }, null) };
    sessions.set(h.home, entry);
    // A failed unlock is not kept (a newer entry, made meanwhile, stays).
    entry.session.catch(() => sessions.get(h.home) === entry && sessions.delete(h.home));
    held = entry;
  }
  // Each caller gets its own copy: a test may point its session elsewhere (endpoint) without moving anyone else's.
  return { ...(await held.session) };
}

/**
 * Remembers the secrets a home was just made with (newHome), as the session the
 * keystore would give, so its first in-process read needs no KDF run either.
 */
export async function rememberSecrets(home: string, pp: string, secrets: ManagementSecrets): Promise<void> {
  const paths = homePaths(home);
  const config = await loadConfig(paths);
  const s = sessionWithKeys(paths, config, await endpointFor(paths, config), signerFromSeed(secrets.signingSeed), () => secrets.wrapKey, secrets);
  sessions.set(home, { stamp: await stampOf(home, pp), session: s });
}
