// kmgr register: generate or import a transaction key, seal it with the
// management key and register it with its use terms (Figs. 5 and 6).
import { readInputFile } from '../input-file.js';
import { generateTransactionKey, importTransactionKey, publicKeyPem, type KeyType, type TransactionKey } from '../../crypto/txkey.js';
import { randomBytes } from '../../crypto/random.js';
import { toB64, toB64url, wipe } from '../../crypto/bytes.js';
import { KmgrError, UsageError } from '../../protocol/errors.js';
import type { Terms } from '../../protocol/messages.js';
import { homePaths, type HomePaths } from '../../client/home.js';
import { findPartner, loadPartners, newPartner, savePartnerEntry, checkPartnerName, updatePartners, type PartnerEntry } from '../../client/partners.js';
import { openSession } from '../session.js';
import type { Session } from '../../client/session.js';
import { api } from '../../client/api.js';
import { ensureServerPartner } from '../../client/server-partners.js';
import { signedBinding } from '../../client/binding.js';
import { parseDuration, parseExpiry } from '../parse.js';
import { info, print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { checkOutFile, writeOutFile } from '../out-file.js';
import { statusJson, withLocalPublicKey } from './status.js';
import type { GlobalOptions } from '../options.js';

interface RegisterOptions {
  type?: KeyType;
  import?: string;
  expires?: string;
  validFor?: string;
  maxUses?: number;
  maxPerDay?: number;
  maxPerWeek?: number;
  maxPerMonth?: number;
  onLimit: 'deny' | 'notify';
  name?: string;
  appServer?: string;
  business?: string;
  out?: string;
  force?: boolean;
  passphraseFile?: string;
  passphraseFd?: string;
  ssh?: boolean;
}

function termsFrom(o: RegisterOptions, now: number): Terms {
  if (o.expires !== undefined && o.validFor !== undefined) throw new UsageError('give --expires or --valid-for, not both');
  const expiresAt = o.expires !== undefined ? parseExpiry(o.expires) : o.validFor !== undefined ? now + parseDuration('--valid-for', o.validFor) : null;
  if (expiresAt !== null && expiresAt <= now) throw new UsageError('--expires is in the past');
  return {
    expiresAt: expiresAt === null ? null : new Date(expiresAt).toISOString(),
    maxUses: o.maxUses ?? null,
    maxPerDay: o.maxPerDay ?? null,
    maxPerWeek: o.maxPerWeek ?? null,
    maxPerMonth: o.maxPerMonth ?? null,
    onLimit: o.onLimit,
  };
}

export async function run(g: GlobalOptions, name: string, o: RegisterOptions): Promise<number> {
  const paths = homePaths(g.home);
  checkPartnerName(name);
  // Everything the user typed is checked before the passphrase is asked for.
  const terms = termsFrom(o, Date.now());
  if (o.ssh && o.type !== undefined && o.type !== 'ed25519' && o.type !== 'p256') throw new UsageError(`--ssh takes ed25519 or p256 keys, not ${o.type}`);
  let importText: string | undefined;
  if (o.import !== undefined) {
    importText = await readInputFile(o.import, 'the key file');
  }
  if (o.out !== undefined) await checkOutFile(paths, o.out, o.force);
  const idx = await loadPartners(paths);
  let partner = findPartner(idx, name);
  if (partner?.key) throw new KmgrError('key_exists', `partner ${name} already has a registered key (v${partner.key.version})`);
  const key: TransactionKey =
    importText !== undefined ? importTransactionKey(importText, o.type) : generateTransactionKey(o.type ?? 'ed25519');
  if (o.ssh && key.type !== 'ed25519' && key.type !== 'p256') throw new UsageError(`--ssh takes ed25519 or p256 keys; the imported key is ${key.type}`);

  const session = await openSession(paths, o);
  const meta = {
    ...(o.name !== undefined ? { displayName: o.name } : {}),
    ...(o.appServer !== undefined ? { appServer: o.appServer } : {}),
    ...(o.business !== undefined ? { business: o.business } : {}),
  };
  // Fig. 6, steps 603-605 (Fig. 10, 1003 with the index on the server): an unknown partner is added.
  if (!partner && session.config.partners === 'server') partner = (await ensureServerPartner(session, idx, name, meta)).entry;
  if (!partner) {
    // Two registers of one name at once: the first to put the name in the index gives both the
    // same partner ID, so the server refuses the second (key_exists), rather than each keeping a
    // key under its own ID and the index naming only one of them (the other then unreachable).
    const fresh = newPartner(name, meta);
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

  if (o.out !== undefined && publicKey) await writeOutFile(paths, o.out, publicKey, 'the public key');
  if (g.json) {
    printJson(statusJson(name, withLocalPublicKey(status, partner)));
  } else if (publicKey && o.out === undefined) {
    print(publicKey);
  } else if (publicKey) {
    info(`Registered ${key.type} key ${keyId} for ${name}; its public key is in ${o.out}.`);
  } else {
    info(`Registered ${key.type} key ${keyId} for ${name}; symmetric keys have no public key.`);
  }
  return EXIT.OK;
}

/**
 * The server holds a key for a partner this device knows without one: an
 * earlier register whose local save failed (or was killed) after the server
 * accepted. It is adopted rather than stranded. Safe against a lying server:
 * fetch opens the blob only if our management key sealed it for this context.
 */
async function adopt(paths: HomePaths, session: Session, partner: PartnerEntry, name: string): Promise<number> {
  const held = await api.status(session, partner.id);
  partner.key = { keyId: held.keyId, alg: held.alg, version: held.keyVersion, publicKey: held.publicKey, registeredAt: held.registeredAt };
  partner.highWater = Math.max(partner.highWater, held.keyVersion);
  await savePartnerEntry(paths, partner);
  throw new KmgrError(
    'key_exists',
    `the server already holds key ${held.keyId} (v${held.keyVersion}) for ${name}, registered at ${held.registeredAt} by an earlier kmgr register whose local record was lost; it is adopted now (kmgr fetch ${name} uses it, kmgr rotate ${name} replaces it)`,
  );
}
