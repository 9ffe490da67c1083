// Fetches on PostgreSQL. Each fetch is judged and counted inside a transaction
// that holds the key's row FOR UPDATE, so every node sees the count the last
// one committed (threat 9 across nodes), and the transaction commits before
// the reply (threat 10). Concurrent fetches of one key on this node share one
// transaction: while one batch is in the database, the next ones queue and
// go together, as LevelDB's group commit does. A hot key then costs one row
// lock and one commit per batch rather than per fetch.
import type pg from 'pg';
import { AuthError, KmgrError, NotFoundError } from '../../protocol/errors.js';
import { applyUse, newNotice, snapshotOf, useOutcome } from '../apply-use.js';
import type { FetchOutcome, HistoryRecord, KeyRecord, UseAttempt } from '../types.js';
import { storageError, transaction, type Tx } from './db.js';
import { noticesJson, RECORD_NOTICES, type NoticeToRecord } from './notices.js';
import { keyFromRow, toBytes, type KeyRow } from './rows.js';

/** A batch is bounded so that one transaction's statements stay small and quick. */
export const MAX_BATCH = 200;

interface Waiting {
  attempt: UseAttempt;
  resolve: (o: FetchOutcome) => void;
  reject: (e: unknown) => void;
}

/*
 * A batch is two round trips: BEGIN, lock the row and claim the nonces in one
 * simple query; then write the counters, the history and any notices, and
 * COMMIT, in another. The simple-query protocol takes no parameters, so values
 * are quoted with the driver's escapeLiteral (IDs are also validated to
 * [A-Za-z0-9_-] at the boundary, and numbers are checked to be integers).
 */
const int = (n: number): string => {
  if (!Number.isSafeInteger(n)) throw new Error(`not an integer: ${n}`);
  return String(n);
};

function lockAndClaim(c: Tx, personId: string, partnerId: string, batch: Waiting[]): string {
  const q = (v: string): string => c.escapeLiteral(v);
  const nonces = batch.map((w) => `(${q(w.attempt.nonce.keyId)}, ${q(w.attempt.nonce.nonce)}, ${int(w.attempt.nonce.expiresAt)})`).join(', ');
  return (
    `BEGIN; SELECT rec, uses, last_used_at, history_seq, blob FROM keys WHERE person_id = ${q(personId)} AND partner_id = ${q(partnerId)} FOR UPDATE; ` +
    `INSERT INTO nonces (key_id, nonce, expires_at) VALUES ${nonces} ON CONFLICT DO NOTHING RETURNING key_id, nonce`
  );
}

function writeAndCommit(c: Tx, rec: KeyRecord, hist: HistoryRecord[], notices: NoticeToRecord[]): string {
  const q = (v: string): string => c.escapeLiteral(v);
  const where = `person_id = ${q(rec.personId)} AND partner_id = ${q(rec.partnerId)}`;
  const parts = [
    `WITH u AS (UPDATE keys SET uses = ${q(JSON.stringify(rec.uses))}::jsonb, last_used_at = ${rec.lastUsedAt === null ? 'NULL' : int(rec.lastUsedAt)}, ` +
      `history_seq = ${int(rec.historySeq)} WHERE ${where}) ` +
      `INSERT INTO history (person_id, partner_id, seq, at, rec) ` +
      `SELECT ${q(rec.personId)}, ${q(rec.partnerId)}, (h->>'seq')::bigint, (h->>'at')::bigint, h FROM jsonb_array_elements(${q(JSON.stringify(hist))}::jsonb) AS h`,
  ];
  if (notices.length > 0) parts.push(RECORD_NOTICES.replace('$1::jsonb', `${q(noticesJson(notices))}::jsonb`));
  parts.push('COMMIT');
  return parts.join('; ');
}

export class FetchBatcher {
  private readonly queues = new Map<string, Waiting[]>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly tz: string,
  ) {}

  fetch(personId: string, partnerId: string, attempt: UseAttempt): Promise<FetchOutcome> {
    const k = `${personId}!${partnerId}`;
    return new Promise((resolve, reject) => {
      const q = this.queues.get(k);
      if (q) return void q.push({ attempt, resolve, reject });
      this.queues.set(k, [{ attempt, resolve, reject }]);
      void this.drain(k, personId, partnerId);
    });
  }

  /** Runs batches for one key until its queue is empty; the queue entry exists while a batch is in flight. */
  private async drain(k: string, personId: string, partnerId: string): Promise<void> {
    for (;;) {
      const q = this.queues.get(k)!;
      if (q.length === 0) {
        this.queues.delete(k);
        return;
      }
      const batch = q.splice(0, MAX_BATCH);
      try {
        const results = await transaction(this.pool, (c) => runBatch(c, personId, partnerId, batch, this.tz), { inline: true });
        results.forEach((r, i) => (r instanceof KmgrError ? batch[i]!.reject(r) : batch[i]!.resolve(r)));
      } catch (e) {
        const err = storageError(e);
        for (const w of batch) w.reject(err);
      }
    }
  }
}

async function runBatch(c: Tx, personId: string, partnerId: string, batch: Waiting[], tz: string): Promise<Array<FetchOutcome | KmgrError>> {
  // Nonces are claimed in the transaction that counts the use: a nonce another node holds,
  // committed or not, makes this insert wait and then do nothing (threat 8 across nodes).
  const [, locked, claimed] = (await c.query(lockAndClaim(c, personId, partnerId, batch))) as unknown as [
    pg.QueryResult,
    pg.QueryResult<KeyRow & { blob: Buffer }>,
    pg.QueryResult<{ key_id: string; nonce: string }>,
  ];
  const row = locked.rows[0];
  if (!row) {
    await c.query('ROLLBACK');
    return batch.map(() => new NotFoundError('unknown_key', `no key is registered for partner ${partnerId}`));
  }
  const fresh = new Set(claimed.rows.map((r) => `${r.key_id}!${r.nonce}`));
  const rec = keyFromRow(row);
  const blob = toBytes(row.blob);
  const hist: HistoryRecord[] = [];
  const notices: NoticeToRecord[] = [];
  const out: Array<FetchOutcome | KmgrError> = [];
  for (const w of batch) {
    const n = `${w.attempt.nonce.keyId}!${w.attempt.nonce.nonce}`;
    if (!fresh.delete(n)) {
      out.push(new AuthError('auth_replay', 'this request was already used (replayed nonce)'));
      continue;
    }
    const used = applyUse(rec, w.attempt, tz);
    hist.push(used.hist);
    for (const d of used.drafts) notices.push({ dedupe: d.dedupe, notice: newNotice(rec, d, w.attempt.at) });
    out.push(useOutcome(used.verdict, snapshotOf(rec), blob));
  }
  await c.query(hist.length === 0 ? 'COMMIT' : writeAndCommit(c, rec, hist, notices));
  return out;
}
