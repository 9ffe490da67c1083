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
