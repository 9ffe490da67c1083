// LevelDB key layout. IDs are validated against [A-Za-z0-9_-] before they get
// here, so '!' can separate fields and '~' (after every ID character) ends a range.
const pad = (n: number, w: number): string => String(n).padStart(w, '0');

export const personKey = (personId: string): string => `person!${personId}`;
export const mgmtKey = (keyId: string): string => `mk!${keyId}`;
export const keyRecordKey = (personId: string, partnerId: string): string => `key!${personId}!${partnerId}`;
export const keyRecordRange = (personId: string): { gt: string; lt: string } => ({ gt: `key!${personId}!`, lt: `key!${personId}!~` });
export const blobKey = (personId: string, partnerId: string, version: number): string => `blob!${personId}!${partnerId}!${pad(version, 10)}`;
export const historyKey = (personId: string, partnerId: string, seq: number): string => `hist!${personId}!${partnerId}!${pad(seq, 12)}`;
export const historyRange = (personId: string, partnerId: string): { gt: string; lt: string } => ({
  gt: `hist!${personId}!${partnerId}!`,
  lt: `hist!${personId}!${partnerId}!~`,
});
/** Nonces sort by expiry, so expired ones are one range delete. */
export const nonceKey = (expiresAt: number, keyId: string, nonce: string): string => `nonce!${pad(expiresAt, 15)}!${keyId}!${nonce}`;
export const nonceExpiredRange = (now: number): { gt: string; lt: string } => ({ gt: 'nonce!', lt: `nonce!${pad(now, 15)}` });
export const nonceRange = { gt: 'nonce!', lt: 'nonce!~' };
export const noticeKey = (personId: string, id: string): string => `notice!${personId}!${id}`;
export const noticeRange = (personId: string): { gt: string; lt: string } => ({ gt: `notice!${personId}!`, lt: `notice!${personId}!~` });
export const noticeId = (at: number, suffix: string): string => `${pad(at, 15)}-${suffix}`;
/** Marks a notice's fact as recorded, so the same fact is never recorded twice. */
export const noticeDedupeKey = (personId: string, partnerId: string, dedupe: string): string => `noticekey!${personId}!${partnerId}!${dedupe}`;
export const noticeDedupeRange = (personId: string, partnerId: string): { gt: string; lt: string } => ({
  gt: `noticekey!${personId}!${partnerId}!`,
  lt: `noticekey!${personId}!${partnerId}!~`,
});
export const allKeyRecordsRange = { gt: 'key!', lt: 'key!~' };
export const partnerKey = (partnerId: string): string => `partner!${partnerId}`;
/** Shared (operator) partners by name: the directory. */
export const sharedNameKey = (name: string): string => `pname!${name}`;
export const sharedNameRange = { gt: 'pname!', lt: 'pname!~' };
/** A person's partner list, by the person's name for each partner. */
export const personPartnerKey = (personId: string, name: string): string => `ppartner!${personId}!${name}`;
export const personPartnerRange = (personId: string): { gt: string; lt: string } => ({ gt: `ppartner!${personId}!`, lt: `ppartner!${personId}!~` });
export const notifyKey = (personId: string): string => `notify!${personId}`;
/** Pending deliveries, in order of creation. */
export const pendingKey = (noticeId: string, personId: string): string => `pending!${noticeId}!${personId}`;
export const pendingRange = { gt: 'pending!', lt: 'pending!~' };
export const deliveryLogKey = (personId: string, at: number, suffix: string): string => `dlog!${personId}!${pad(at, 15)}-${suffix}`;
export const deliveryLogRange = (personId: string): { gt: string; lt: string } => ({ gt: `dlog!${personId}!`, lt: `dlog!${personId}!~` });
/** A key's counters and history sequence: the only part of its record a fetch rewrites. */
export const countersKey = (personId: string, partnerId: string): string => `ctr!${personId}!${partnerId}`;
/** A person's devices by label, and the device exports waiting for their one import. */
export const deviceKey = (personId: string, label: string): string => `dev!${personId}!${label}`;
export const deviceRange = (personId: string): { gt: string; lt: string } => ({ gt: `dev!${personId}!`, lt: `dev!${personId}!~` });
export const deviceExportKey = (personId: string, exportId: string): string => `devexp!${personId}!${exportId}`;
/** Written by the readiness probe: proves a synced write goes through. */
export const readyProbeKey = 'probe!ready';
/**
 * The expiry index: one empty value per key with an expiry, sorted by it, so
 * check-terms reads the keys expiring before a time and nothing else.
 */
export const expiryKey = (expiresAt: number, personId: string, partnerId: string): string => `exp!${pad(expiresAt, 15)}!${personId}!${partnerId}`;
/** Index entries of keys expiring at or before `t`. */
export const expiryUntilRange = (t: number): { gt: string; lt: string } => ({ gt: 'exp!', lt: `exp!${pad(t + 1, 15)}` });
/** Present once the expiry index covers every key (written by the one-time build at open). */
export const expiryIndexMarker = 'meta!expiry-index-v1';
