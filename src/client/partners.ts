// partners.json: the business partner index (Fig. 16), plus what this client
// knows of each partner's key, including the newest key version it has seen
// (the rollback high-water mark, threat 5).
import { array, int, nullable, obj, oneOf, str, type Infer } from '../protocol/schema.js';
import { KEY_ID, KEY_TYPES, PARTNER_ID, PARTNER_NAME } from '../protocol/messages.js';
export { PARTNER_NAME };
import { NotFoundError, UsageError } from '../protocol/errors.js';
import { writeFileAtomic } from '../io/atomic-file.js';
import { randomBytes } from '../crypto/random.js';
import { toB64url } from '../crypto/bytes.js';
import { loadJsonFile } from './files.js';
import type { HomePaths } from './home.js';


const text = (max: number) => str({ max });
export const PartnerKey = obj({
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
export type PartnerKey = Infer<typeof PartnerKey>;
const PartnerIndex = obj({ v: int({ min: 1, max: 1 }), partners: array(PartnerEntry, 100_000) });
export type PartnerIndex = Infer<typeof PartnerIndex>;

export async function loadPartners(paths: HomePaths): Promise<PartnerIndex> {
  return (await loadJsonFile(paths.partners, PartnerIndex, 'partners')) ?? { v: 1, partners: [] };
}

export function savePartners(paths: HomePaths, idx: PartnerIndex): Promise<void> {
  return writeFileAtomic(paths.partners, JSON.stringify(idx, null, 2) + '\n');
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
