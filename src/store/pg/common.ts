// Statements every PostgreSQL write shares: claiming a nonce in the writing
// transaction, locking a key's row, writing it back, and checking that the
// request's management key is still the person's. Nothing here is cached: the
// row read under lock is what another node committed a moment ago.
import { AuthError, KmgrError } from '../../protocol/errors.js';
import { noKey } from '../apply-use.js';
import type { KeyRecord, NonceClaim } from '../types.js';
import type { Tx } from './db.js';
import { KEY_COLUMNS, keyFromRow, recJson, termAt, type KeyRow } from './rows.js';

export const replay = (): AuthError => new AuthError('auth_replay', 'this request was already used (replayed nonce)');
export const stale = (): AuthError =>
  new AuthError('auth_stale', "the request signature's time window ended before the latest time this server has seen (was its clock ahead?)");
export const keyReplaced = (): AuthError => new AuthError('key_replaced', 'this management key was replaced by kmgr rekey; it is no longer accepted');

/**
 * The nonce's row is inserted in the transaction that acts on the request: the
 * primary key refuses it on every node (threat 8), and a nonce whose window ends
 * at or before the pruning horizon is refused as stale (it may have been forgotten).
 */
export const CLAIM_NONCE = `INSERT INTO nonces (key_id, nonce, expires_at)
  SELECT $1, $2, $3 WHERE $3 > (SELECT until FROM nonce_horizon)
  ON CONFLICT DO NOTHING`;

export async function claimIn(c: Tx, n: NonceClaim): Promise<void> {
  const r = await c.query({ name: 'kmgr_claim_nonce', text: CLAIM_NONCE, values: [n.keyId, n.nonce, n.expiresAt] });
  if (r.rowCount === 0) throw await refusal(c, n.expiresAt);
}

/** Why a claim inserted nothing: stale (below the horizon) or a replay. */
export async function refusal(c: Pick<Tx, 'query'>, expiresAt: number): Promise<AuthError> {
  const h = await c.query<{ until: number }>('SELECT until FROM nonce_horizon');
  return expiresAt <= (h.rows[0]?.until ?? 0) ? stale() : replay();
}

/**
 * A request authenticated just before a rekey committed must not change anything
 * after it (a blob registered under the old wrapping key would open for a revoked
 * device). Run after the key row is locked: a rekey holds that lock until it
 * commits, so this read sees the switch if there was one.
 */
export async function checkCurrentKey(c: Tx, personId: string, keyId: string, lock: '' | 'FOR SHARE' = ''): Promise<void> {
  const r = await c.query<{ key_id: string }>(`SELECT key_id FROM persons WHERE person_id = $1 ${lock}`, [personId]);
  const cur = r.rows[0]?.key_id;
  if (cur !== undefined && cur !== keyId) throw keyReplaced();
}

/** The key's row, locked until the transaction ends; unknown_key if none (or, unless `retired`, if retired). */
export async function lockKey(c: Tx, personId: string, partnerId: string, opts: { retired?: boolean } = {}): Promise<KeyRecord> {
  const r = await c.query<KeyRow>(`SELECT ${KEY_COLUMNS} FROM keys WHERE person_id = $1 AND partner_id = $2 FOR UPDATE`, [personId, partnerId]);
  const row = r.rows[0];
  if (!row) throw noKey(partnerId, undefined);
  const rec = keyFromRow(row);
  // A retired key takes no further change (update, rotate, verify); only its history is still read.
  if (rec.retiredAt && !opts.retired) throw noKey(partnerId, rec);
  return rec;
}

/** Writes the whole record back (and the blob, when given), keeping the check-terms index in step. */
export async function writeKey(c: Tx, r: KeyRecord, blob?: Uint8Array): Promise<void> {
  await c.query(
    `UPDATE keys SET rec = $3::jsonb, uses = $4::jsonb, last_used_at = $5, history_seq = $6, term_at = $7${blob ? ', blob = $8' : ''}
     WHERE person_id = $1 AND partner_id = $2`,
    [r.personId, r.partnerId, recJson(r), JSON.stringify(r.uses), r.lastUsedAt, r.historySeq, termAt(r), ...(blob ? [Buffer.from(blob)] : [])],
  );
}

export async function insertHistory(c: Tx, personId: string, partnerId: string, entries: Array<{ seq: number; at: number }>): Promise<void> {
  if (entries.length === 0) return;
  await c.query(
    `INSERT INTO history (person_id, partner_id, seq, at, rec)
     SELECT $1, $2, (h->>'seq')::bigint, (h->>'at')::bigint, h FROM jsonb_array_elements($3::jsonb) AS h`,
    [personId, partnerId, JSON.stringify(entries)],
  );
}

export const keyExists = (partnerId: string): KmgrError => new KmgrError('key_exists', `partner ${partnerId} already has a registered key`);
