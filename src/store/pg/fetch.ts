// Fetches on PostgreSQL. Each fetch is judged and counted inside a transaction
// that holds the key's row FOR UPDATE, so every node sees the count the last
// one committed (threat 9 across nodes), and the transaction commits before
// the reply (threat 10). Concurrent fetches of one key on this node share one
// transaction: while one batch is in the database, the next ones queue and
// go together, as LevelDB's group commit does. A hot key then costs one row
// lock and one commit per batch rather than per fetch.
import type pg from 'pg';
import { KmgrError } from '../../protocol/errors.js';
import { applyUse, newNotice, noKey, snapshotOf, useOutcome } from '../apply-use.js';
import type { FetchOutcome, HistoryRecord, KeyRecord, StorageEvents, UseAttempt } from '../types.js';
import { keyReplaced, replay, stale } from './common.js';
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

/*
 * The person's current management key is read after the row lock is held: a rekey holds
 * that lock until it commits, so a fetch signed by the key it replaced is refused here.
 * Nonces at or below the pruning horizon are not inserted (refused as stale).
 */
function lockAndClaim(c: Tx, personId: string, partnerId: string, batch: Waiting[]): string {
  const q = (v: string): string => c.escapeLiteral(v);
  const nonces = batch.map((w) => `(${q(w.attempt.nonce.keyId)}, ${q(w.attempt.nonce.nonce)}, ${int(w.attempt.nonce.expiresAt)}::bigint)`).join(', ');
  return (
    `BEGIN; SELECT rec, uses, last_used_at, history_seq, blob FROM keys WHERE person_id = ${q(personId)} AND partner_id = ${q(partnerId)} FOR UPDATE; ` +
    `SELECT key_id FROM persons WHERE person_id = ${q(personId)}; SELECT until FROM nonce_horizon; ` +
    `INSERT INTO nonces (key_id, nonce, expires_at) SELECT * FROM (VALUES ${nonces}) AS v (key_id, nonce, expires_at) ` +
    `WHERE v.expires_at > (SELECT until FROM nonce_horizon) ON CONFLICT DO NOTHING RETURNING key_id, nonce`
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
    private readonly events?: StorageEvents,
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
        const results = await transaction(this.pool, (c) => runBatch(c, personId, partnerId, batch, this.tz, this.events), { inline: true });
        this.events?.commitBatch?.(batch.length);
        results.forEach((r, i) => (r instanceof KmgrError ? batch[i]!.reject(r) : batch[i]!.resolve(r)));
      } catch (e) {
        const err = storageError(e);
        for (const w of batch) w.reject(err);
      }
    }
  }
}

async function runBatch(c: Tx, personId: string, partnerId: string, batch: Waiting[], tz: string, events?: StorageEvents): Promise<Array<FetchOutcome | KmgrError>> {
  // Nonces are claimed in the transaction that counts the use: a nonce another node holds,
  // committed or not, makes this insert wait and then do nothing (threat 8 across nodes).
  const [, locked, person, horizon, claimed] = (await c.query(lockAndClaim(c, personId, partnerId, batch))) as unknown as [
    pg.QueryResult,
    pg.QueryResult<KeyRow & { blob: Buffer }>,
    pg.QueryResult<{ key_id: string }>,
    pg.QueryResult<{ until: number }>,
    pg.QueryResult<{ key_id: string; nonce: string }>,
  ];
  const row = locked.rows[0];
  const found = row ? keyFromRow(row) : undefined;
  // A retired key is refused: its sealed blob is gone, and the answer says when it went.
  if (!found || found.retiredAt) {
    await c.query('ROLLBACK');
    return batch.map(() => noKey(partnerId, found));
  }
  const current = person.rows[0]?.key_id;
  const until = horizon.rows[0]?.until ?? 0;
  const fresh = new Set(claimed.rows.map((r) => `${r.key_id}!${r.nonce}`));
  const rec = found;
  const blob = toBytes(row!.blob);
  const hist: HistoryRecord[] = [];
  const notices: NoticeToRecord[] = [];
  const out: Array<FetchOutcome | KmgrError> = [];
  for (const w of batch) {
    const n = `${w.attempt.nonce.keyId}!${w.attempt.nonce.nonce}`;
    if (!fresh.delete(n)) {
      out.push(w.attempt.nonce.expiresAt <= until ? stale() : replay());
      continue;
    }
    if (current !== undefined && current !== w.attempt.nonce.keyId) {
      out.push(keyReplaced());
      continue;
    }
    const used = applyUse(rec, w.attempt, tz);
    hist.push(used.hist);
    for (const d of used.drafts) notices.push({ dedupe: d.dedupe, notice: newNotice(rec, d, w.attempt.at) });
    out.push(useOutcome(used.verdict, snapshotOf(rec), blob));
  }
  const results = (await c.query(hist.length === 0 ? 'COMMIT' : writeAndCommit(c, rec, hist, notices))) as unknown as pg.QueryResult[] | pg.QueryResult;
  if (notices.length > 0 && events?.notice && Array.isArray(results)) {
    // The notices statement returns the IDs it recorded (a fact another node noticed first is not among them).
    const ids = new Set((results[1]?.rows ?? []).map((r: { notice_id?: string }) => r.notice_id));
    for (const x of notices) if (ids.has(x.notice.id)) events.notice(x.notice.kind);
  }
  return out;
}
