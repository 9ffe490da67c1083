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
import type { FetchOutcome, HistoryRecord, UseAttempt } from '../types.js';
import { storageError, transaction, type Tx } from './db.js';
import { recordNotices, type NoticeToRecord } from './notices.js';
import { keyFromRow, toBytes, type KeyRow } from './rows.js';

/** A batch is bounded so that one transaction's statements stay small and quick. */
export const MAX_BATCH = 200;

interface Waiting {
  attempt: UseAttempt;
  resolve: (o: FetchOutcome) => void;
  reject: (e: unknown) => void;
}

const LOCK_KEY = `SELECT rec, uses, last_used_at, history_seq, blob FROM keys WHERE person_id = $1 AND partner_id = $2 FOR UPDATE`;
const CLAIM_NONCES = `INSERT INTO nonces (key_id, nonce, expires_at)
  SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) ON CONFLICT DO NOTHING RETURNING key_id, nonce`;
const WRITE_USES = `
WITH u AS (
  UPDATE keys SET uses = $3::jsonb, last_used_at = $4, history_seq = $5 WHERE person_id = $1 AND partner_id = $2
)
INSERT INTO history (person_id, partner_id, seq, at, rec)
SELECT $1, $2, (h->>'seq')::bigint, (h->>'at')::bigint, h FROM jsonb_array_elements($6::jsonb) AS h`;

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
        const results = await transaction(this.pool, (c) => runBatch(c, personId, partnerId, batch, this.tz));
        results.forEach((r, i) => (r instanceof KmgrError ? batch[i]!.reject(r) : batch[i]!.resolve(r)));
      } catch (e) {
        const err = storageError(e);
        for (const w of batch) w.reject(err);
      }
    }
  }
}

async function runBatch(c: Tx, personId: string, partnerId: string, batch: Waiting[], tz: string): Promise<Array<FetchOutcome | KmgrError>> {
  const locked = await c.query<KeyRow & { blob: Buffer }>({ name: 'kmgr_fetch_lock', text: LOCK_KEY, values: [personId, partnerId] });
  const row = locked.rows[0];
  if (!row) return batch.map(() => new NotFoundError('unknown_key', `no key is registered for partner ${partnerId}`));
  // Nonces are claimed in the transaction that counts the use: a nonce another node holds,
  // committed or not, makes this insert wait and then do nothing (threat 8 across nodes).
  const claimed = await c.query<{ key_id: string; nonce: string }>({
    name: 'kmgr_fetch_nonces',
    text: CLAIM_NONCES,
    values: [batch.map((w) => w.attempt.nonce.keyId), batch.map((w) => w.attempt.nonce.nonce), batch.map((w) => w.attempt.nonce.expiresAt)],
  });
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
  if (hist.length === 0) return out;
  await c.query({
    name: 'kmgr_fetch_write',
    text: WRITE_USES,
    values: [personId, partnerId, JSON.stringify(rec.uses), rec.lastUsedAt, rec.historySeq, JSON.stringify(hist)],
  });
  await recordNotices(c, notices);
  return out;
}
