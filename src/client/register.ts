// Registering a transaction key (Figs. 5 and 6): the partner found or added, the key
// sealed with the management key for its context, registered with its use terms,
// then recorded in the partner index. `kmgr register` parses what the user typed,
// makes or imports the key and prints the result; this does the rest.
import { publicKeyPem, type TransactionKey } from '../crypto/txkey.js';
import { randomBytes } from '../crypto/random.js';
import { toB64, toB64url, wipe } from '../crypto/bytes.js';
import { KmgrError } from '../protocol/errors.js';
import type { KeyStatus, Terms } from '../protocol/messages.js';
import type { HomePaths } from './home.js';
import { findPartner, loadPartners, newPartner, savePartnerEntry, updatePartners, type PartnerEntry } from './partners.js';
import type { Session } from './session.js';
import { api } from './api.js';
import { ensureServerPartner } from './server-partners.js';
import { signedBinding } from './binding.js';

export interface KeyRegistration {
  terms: Terms;
  /** The partner's details, used when the partner is new. */
  meta: { displayName?: string; appServer?: string; business?: string };
  /** Offer the key through the SSH agent (Ed25519 and P-256 only; checked by the caller). */
  ssh?: boolean | undefined;
}

export interface Registered {
  status: KeyStatus;
  partner: PartnerEntry;
  /** The key's public half, PEM; null for a symmetric key. */
  publicKey: string | null;
}

/**
 * The partner a new key would go to, checked before anything is asked for: a partner
 * that has a key already is refused (key_exists) before the passphrase is read.
 */
export async function partnerForNewKey(paths: HomePaths, name: string): Promise<PartnerEntry | undefined> {
  const partner = findPartner(await loadPartners(paths), name);
  if (partner?.key) throw new KmgrError('key_exists', `partner ${name} already has a registered key (v${partner.key.version})`);
  return partner;
}

/** Registers `key` (wiped here) for partner `name` under `session`. */
export async function registerKey(session: Session, name: string, key: TransactionKey, o: KeyRegistration): Promise<Registered> {
  const paths = session.paths;
  let partner = await partnerForNewKey(paths, name);
  // Fig. 6, steps 603-605 (Fig. 10, 1003 with the index on the server): an unknown partner is added.
  if (!partner && session.config.partners === 'server') partner = (await ensureServerPartner(session, await loadPartners(paths), name, o.meta)).entry;
  if (!partner) {
    // Two registers of one name at once: the first to put the name in the index gives both the
    // same partner ID, so the server refuses the second (key_exists), rather than each keeping a
    // key under its own ID and the index naming only one of them (the other then unreachable).
    const fresh = newPartner(name, o.meta);
    partner = await updatePartners(paths, (i) => {
      const there = findPartner(i, name);
      if (there) return there;
      i.partners.push(fresh);
      return fresh;
    });
    if (partner.key) throw new KmgrError('key_exists', `partner ${name} already has a registered key (v${partner.key.version}), registered meanwhile by another kmgr`);
  }
  const keyId = 'k_' + toB64url(randomBytes(16));
  const keyVersion = Math.max(1, partner.highWater + 1);
  const blob = await session.keys.sealBlob(
    { personId: session.config.personId, partnerId: partner.id, keyId, alg: key.type, keyVersion, partnerName: name },
    key.secret,
    name,
  );
  const publicKey = publicKeyPem(key) ?? null;
  wipe(key.secret);
  const terms = o.terms;
  const binding = publicKey
    ? await signedBinding(session, { partnerId: partner.id, keyId, alg: key.type, publicKey, keyVersion, expiresAt: terms.expiresAt })
    : null;
  // Intent first: the entry reserved above is in partners.json before the server holds a key for it,
  // so a failure after the server accepted the key cannot strand it under an ID no command knows.
  let status;
  try {
    status = await api.register(session, partner.id, { keyId, alg: key.type, keyVersion, blob: toB64(blob), terms, binding, ...(o.ssh ? { ssh: true } : {}) });
  } catch (e) {
    if (e instanceof KmgrError && e.code === 'key_exists' && !partner.key) return adopt(paths, session, partner, name);
    throw e;
  }
  // Saved only once the server holds the key: a failure above leaves the index as it was.
  partner.key = { keyId, alg: key.type, version: keyVersion, publicKey, registeredAt: status.registeredAt };
  partner.highWater = keyVersion;
  try {
    await savePartnerEntry(paths, partner);
  } catch (e) {
    // The server holds the key already: say what is needed to reach it again.
    throw new KmgrError(
      e instanceof KmgrError ? e.code : 'internal',
      `the key is registered (partner ID ${partner.id}, key ${keyId}, v${keyVersion}) but ${paths.partners} could not be updated: ${(e as Error).message}`,
    );
  }
  return { status, partner, publicKey };
}

/**
 * The server holds a key for a partner this device knows without one: an
 * earlier register whose local save failed (or was killed) after the server
 * accepted. It is adopted rather than stranded. Safe against a lying server:
 * fetch opens the blob only if our management key sealed it for this context.
 */
async function adopt(paths: HomePaths, session: Session, partner: PartnerEntry, name: string): Promise<never> {
  const held = await api.status(session, partner.id);
  partner.key = { keyId: held.keyId, alg: held.alg, version: held.keyVersion, publicKey: held.publicKey, registeredAt: held.registeredAt };
  partner.highWater = Math.max(partner.highWater, held.keyVersion);
  await savePartnerEntry(paths, partner);
  throw new KmgrError(
    'key_exists',
    `the server already holds key ${held.keyId} (v${held.keyVersion}) for ${name}, registered at ${held.registeredAt} by an earlier kmgr register whose local record was lost; it is adopted now (kmgr fetch ${name} uses it, kmgr rotate ${name} replaces it)`,
  );
}
