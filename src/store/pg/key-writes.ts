// Changes to one key on PostgreSQL: registration, terms, rotation, retirement.
// Each is one transaction that locks the key's row, checks that the request's
// management key is still current, claims the nonce and writes, so what one
// node changes every other node sees on its next request.
import { KmgrError } from '../../protocol/errors.js';
import { eventEntry, noKey, rotated, snapshotOf } from '../apply-use.js';
import type { KeyPatch, KeyRecord, NextKey, NonceClaim, UseAttempt } from '../types.js';
import { type Tx } from './db.js';
import { checkCurrentKey, claimIn, insertHistory, keyExists, lockKey, writeKey } from './common.js';
import { recJson, termAt } from './rows.js';

/**
 * A new key; or, where the partner's key was retired, its successor one version up (never a
 * rollback, which would let an old sealed blob be replayed), whose history continues.
 */
export async function registerKey(c: Tx, record: KeyRecord, blob: Uint8Array, nonce: NonceClaim): Promise<void> {
  // FOR SHARE: a rekey of this person (which locks the row for update) finishes first, and then
  // this request, signed by the replaced key, is refused; or this registration commits first
  // and the rekey, seeing one key more than it re-wrapped, is refused (rekey_mismatch).
  await checkCurrentKey(c, record.personId, nonce.keyId, 'FOR SHARE');
  await claimIn(c, nonce);
  const r = await c.query(
    `INSERT INTO keys (person_id, partner_id, rec, uses, last_used_at, history_seq, blob, term_at) VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, $6, $7, $8)
     ON CONFLICT DO NOTHING`,
    [record.personId, record.partnerId, recJson(record), JSON.stringify(record.uses), record.lastUsedAt, record.historySeq, Buffer.from(blob), termAt(record)],
  );
  if (r.rowCount === 1) return;
  const old = await lockKey(c, record.personId, record.partnerId, { retired: true });
  if (!old.retiredAt) throw keyExists(record.partnerId);
  if (record.keyVersion <= old.keyVersion) {
    throw new KmgrError('version_conflict', `partner ${record.partnerId} had version ${old.keyVersion} (retired); a new key must be version ${old.keyVersion + 1} or later`);
  }
  record.historySeq = old.historySeq;
  record.previousPublicKeys = [...(old.previousPublicKeys ?? []), ...(old.publicKey ? [old.publicKey] : [])];
  await writeKey(c, record, blob);
}

export async function updateKey(c: Tx, personId: string, partnerId: string, patch: KeyPatch, nonce: NonceClaim): Promise<KeyRecord> {
  const rec = await lockKey(c, personId, partnerId);
  await checkCurrentKey(c, personId, nonce.keyId);
  await claimIn(c, nonce);
  for (const [f, v] of Object.entries(patch)) if (v !== undefined) (rec as unknown as Record<string, unknown>)[f] = v;
  await writeKey(c, rec);
  return snapshotOf(rec);
}

export async function rotateKey(c: Tx, personId: string, partnerId: string, next: NextKey, nonce: NonceClaim, tz: string): Promise<KeyRecord> {
  const rec = await lockKey(c, personId, partnerId);
  await checkCurrentKey(c, personId, nonce.keyId);
  if (next.keyVersion !== rec.keyVersion + 1) {
    throw new KmgrError('version_conflict', `the key of ${partnerId} is at version ${rec.keyVersion}; a rotation must register version ${rec.keyVersion + 1}`);
  }
  await claimIn(c, nonce);
  rotated(rec, next, tz);
  // The old sealed key is overwritten: keeping it would only invite a rollback.
  await writeKey(c, rec, next.blob);
  return snapshotOf(rec);
}

/** Destroys the sealed blob; the record (retiredAt set) and its history stay, with a 'retired' entry. */
export async function retireKey(c: Tx, personId: string, partnerId: string, attempt: UseAttempt): Promise<KeyRecord> {
  const rec = await lockKey(c, personId, partnerId);
  await checkCurrentKey(c, personId, attempt.nonce.keyId);
  await claimIn(c, attempt.nonce);
  rec.retiredAt = attempt.at;
  const hist = eventEntry(rec, { at: attempt.at, result: 'retired', remoteAddress: attempt.remoteAddress, request: attempt.request });
  // The sealed key itself is destroyed: nobody, the owner included, can fetch it again.
  await writeKey(c, rec, new Uint8Array(0));
  await insertHistory(c, personId, partnerId, [hist]);
  return snapshotOf(rec);
}

export { noKey };
