// partners.json: the business partner index (Fig. 16), plus what this client
// knows of each partner's key, including the newest key version it has seen
// (the rollback high-water mark, threat 5).
import { array, int, nullable, obj, oneOf, str, type Infer } from '../protocol/schema.js';
import { KEY_ID, KEY_TYPES, PARTNER_ID, PARTNER_NAME } from '../protocol/messages.js';
export { PARTNER_NAME };
import { KmgrError, NotFoundError, UnavailableError, UsageError } from '../protocol/errors.js';
import { open, stat, unlink } from 'node:fs/promises';
import { writeFileAtomic } from '../io/atomic-file.js';
import { randomBytes } from '../crypto/random.js';
import { toB64url } from '../crypto/bytes.js';
import { loadJsonFile } from './files.js';
import type { HomePaths } from './home.js';


const text = (max: number) => str({ max });
const PartnerKey = obj({
  keyId: str({ max: 24, pattern: KEY_ID, name: 'key ID' }),
  alg: oneOf(KEY_TYPES),
  version: int({ min: 1, max: 1_000_000_000 }),
  publicKey: nullable(text(4096)),
  registeredAt: text(30),
});
export const PartnerEntry = obj({
  id: str({ max: 64, pattern: PARTNER_ID, name: 'partner ID' }), // 1601
  name: str({ max: 64, pattern: PARTNER_NAME, name: 'partner name' }),
  displayName: nullable(text(200)), // 1602
  appServer: nullable(text(200)), // 1603
  business: nullable(text(200)), // 1604
  key: nullable(PartnerKey),
  /** Highest key version ever seen for this partner; never decreases. */
  highWater: int({ min: 0, max: 1_000_000_000 }),
});
export type PartnerEntry = Infer<typeof PartnerEntry>;
type PartnerKey = Infer<typeof PartnerKey>;
const PartnerIndex = obj({ v: int({ min: 1, max: 1 }), partners: array(PartnerEntry, 100_000) });
export type PartnerIndex = Infer<typeof PartnerIndex>;

export async function loadPartners(paths: HomePaths): Promise<PartnerIndex> {
  return (await loadJsonFile(paths.partners, PartnerIndex, 'partners')) ?? { v: 1, partners: [] };
}

export function savePartners(paths: HomePaths, idx: PartnerIndex): Promise<void> {
  return writeFileAtomic(paths.partners, JSON.stringify(idx, null, 2) + '\n');
}

const LOCK_WAIT_MS = 10_000;
const LOCK_STALE_MS = 30_000;

/**
 * Read-modify-write of partners.json under a lock file (O_EXCL), so that two
 * kmgr processes cannot lose each other's changes: a lost entry would strand
 * an escrowed key, a lost update could lower a rollback high-water mark.
 * A lock older than 30 s is taken to be left by a killed process.
 */
export async function updatePartners<T>(paths: HomePaths, change: (idx: PartnerIndex) => T | Promise<T>): Promise<T> {
  const lock = `${paths.partners}.lock`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (let wait = 5; ; wait = Math.min(wait * 2, 200)) {
    try {
      const fh = await open(lock, 'wx', 0o600);
      await fh.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const st = await stat(lock).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > LOCK_STALE_MS) await unlink(lock).catch(() => undefined);
      else if (Date.now() > deadline) throw new UnavailableError(`${paths.partners} stays locked by another kmgr (remove ${lock} if none runs)`);
      else await new Promise((r) => setTimeout(r, wait));
    }
  }
  try {
    const idx = await loadPartners(paths);
    const result = await change(idx);
    await savePartners(paths, idx);
    return result;
  } finally {
    await unlink(lock).catch(() => undefined);
  }
}

/** Records what this process learnt of one partner, merged into the file as it is now. */
export function savePartnerEntry(paths: HomePaths, entry: PartnerEntry): Promise<void> {
  return updatePartners(paths, (idx) => {
    const same = idx.partners.find((p) => p.id === entry.id);
    const clash = idx.partners.find((p) => p.name === entry.name && p.id !== entry.id);
    if (clash) throw new KmgrError('key_exists', `partner ${entry.name} was added by another kmgr meanwhile (ID ${clash.id})`);
    if (!same) {
      idx.partners.push(entry);
      return;
    }
    // The high-water mark never goes down, whoever wrote last.
    const newer = !same.key || (entry.key !== null && entry.key.version >= same.key.version);
    Object.assign(same, { ...entry, key: newer ? entry.key : same.key, highWater: Math.max(same.highWater, entry.highWater) });
  });
}

export function checkPartnerName(name: string): void {
  if (!PARTNER_NAME.test(name)) {
    throw new UsageError(`invalid partner name ${JSON.stringify(name)}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
}

export function findPartner(idx: PartnerIndex, name: string): PartnerEntry | undefined {
  return idx.partners.find((p) => p.name === name);
}

export function requirePartner(idx: PartnerIndex, name: string): PartnerEntry {
  checkPartnerName(name);
  const p = findPartner(idx, name);
  if (!p) throw new NotFoundError('unknown_partner', `unknown partner ${name} (see kmgr partner list)`);
  return p;
}

/** Partner IDs are random, so the server learns nothing from them about who the partner is. */
export function newPartner(name: string, meta: { displayName?: string; appServer?: string; business?: string }): PartnerEntry {
  checkPartnerName(name);
  return {
    id: toB64url(randomBytes(16)),
    name,
    displayName: meta.displayName ?? null,
    appServer: meta.appServer ?? null,
    business: meta.business ?? null,
    key: null,
    highWater: 0,
  };
}
