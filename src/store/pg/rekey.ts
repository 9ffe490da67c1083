// kmgr rekey on PostgreSQL: every blob of a person handed out for re-wrapping,
// then the switch to the new management key with every new blob in one
// transaction. The person's row is locked for update throughout each step, so
// a registration (which locks it for share) cannot slip between the set of
// keys a rekey re-wrapped and the switch, on this node or any other.
import { AuthError, UsageError } from '../../protocol/errors.js';
import { eventEntry, matchRekey } from '../apply-use.js';
import type { HistoryRecord, KeyRecord, RekeyChange, UseAttempt } from '../types.js';
import type { Tx } from './db.js';
import { claimIn, insertHistory, keyReplaced } from './common.js';
import { KEY_COLUMNS, keyFromRow, recJson, toBytes, type KeyRow } from './rows.js';

async function lockPerson(c: Tx, personId: string): Promise<string | undefined> {
  const r = await c.query<{ key_id: string }>('SELECT key_id FROM persons WHERE person_id = $1 FOR UPDATE', [personId]);
  return r.rows[0]?.key_id;
}

/** The person's keys that still have a sealed blob (a retired one has none to re-wrap), locked. */
async function lockLiveKeys(c: Tx, personId: string): Promise<Array<{ record: KeyRecord; blob: Uint8Array }>> {
  const r = await c.query<KeyRow & { blob: Buffer }>(
    `SELECT ${KEY_COLUMNS}, blob FROM keys WHERE person_id = $1 AND rec->>'retiredAt' IS NULL ORDER BY partner_id FOR UPDATE`,
    [personId],
  );
  return r.rows.map((row) => ({ record: keyFromRow(row), blob: toBytes(row.blob) }));
}

async function writeSeqs(c: Tx, keys: KeyRecord[], entries: Map<string, HistoryRecord>, blobs?: Map<string, Uint8Array>): Promise<void> {
  for (const k of keys) {
    if (blobs) {
      await c.query('UPDATE keys SET rec = $3::jsonb, history_seq = $4, blob = $5 WHERE person_id = $1 AND partner_id = $2', [
        k.personId,
        k.partnerId,
        recJson(k),
        k.historySeq,
        Buffer.from(blobs.get(k.partnerId)!),
      ]);
    } else {
      await c.query('UPDATE keys SET history_seq = $3 WHERE person_id = $1 AND partner_id = $2', [k.personId, k.partnerId, k.historySeq]);
    }
    await insertHistory(c, k.personId, k.partnerId, [entries.get(k.partnerId)!]);
  }
}

export async function rekeyExport(c: Tx, personId: string, attempt: UseAttempt): Promise<Array<{ record: KeyRecord; blob: Uint8Array }>> {
  const cur = await lockPerson(c, personId);
  if (cur !== undefined && cur !== attempt.nonce.keyId) throw keyReplaced();
  await claimIn(c, attempt.nonce);
  const keys = await lockLiveKeys(c, personId);
  // Handing out every blob is not a use (nothing is counted), but the owner sees it in each key's history.
  const entries = new Map<string, HistoryRecord>();
  for (const { record } of keys) {
    entries.set(record.partnerId, eventEntry(record, { at: attempt.at, result: 'rekey', code: 'exported', remoteAddress: attempt.remoteAddress, request: attempt.request }));
  }
  await writeSeqs(c, keys.map((k) => k.record), entries);
  return keys.map((k) => ({ record: { ...k.record, uses: { ...k.record.uses } }, blob: k.blob }));
}

export async function rekey(c: Tx, personId: string, ch: RekeyChange, nonce: { keyId: string; nonce: string; expiresAt: number }): Promise<void> {
  const cur = await lockPerson(c, personId);
  if (cur !== ch.oldKeyId) throw new AuthError('key_replaced', 'this management key was replaced by an earlier rekey');
  const held = new Map((await lockLiveKeys(c, personId)).map((k) => [k.record.partnerId, k.record]));
  const given = matchRekey(held, ch.keys);
  await claimIn(c, nonce);
  // The old key ID keeps pointing at the person, so its requests are told "replaced", not "unknown".
  const m = await c.query('INSERT INTO mgmt_keys (key_id, person_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [ch.person.keyId, personId]);
  if (m.rowCount === 0) throw new UsageError('the new management key is already enrolled', 'bad_request');
  await c.query('UPDATE persons SET key_id = $2, rec = $3::jsonb WHERE person_id = $1', [personId, ch.person.keyId, JSON.stringify(ch.person)]);
  const entries = new Map<string, HistoryRecord>();
  const blobs = new Map<string, Uint8Array>();
  for (const rec of held.values()) {
    const g = given.get(rec.partnerId)!;
    rec.binding = g.binding;
    blobs.set(rec.partnerId, g.blob);
    entries.set(rec.partnerId, eventEntry(rec, { at: ch.at, result: 'rekey', code: 'rewrapped', remoteAddress: ch.remoteAddress, request: ch.request }));
  }
  await writeSeqs(c, [...held.values()], entries, blobs);
  if (ch.revokeDevices.length > 0) {
    await c.query('UPDATE devices SET revoked_at = $3 WHERE person_id = $1 AND label = ANY($2::text[]) AND revoked_at IS NULL', [personId, ch.revokeDevices, ch.at]);
  }
}
