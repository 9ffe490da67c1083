// Fetches on PostgreSQL. Each fetch is judged and counted inside a transaction
// that holds the key's row FOR UPDATE, so every node sees the count the last
// one committed (threat 9 across nodes), and the transaction commits before
// the reply (threat 10). Concurrent fetches share transactions, as LevelDB's
// group commit shares writes: while batches are in the database the next
// fetches queue, and go together, of one key (a hot key costs one row lock
// and one commit per batch) or of many (spread keys cost one transaction per
// batch rather than per fetch).
import type pg from 'pg';
import { KmgrError } from '../../protocol/errors.js';
import { applyUse, newNotice, noKey, snapshotOf, useOutcome } from '../apply-use.js';
import type { FetchOutcome, HistoryRecord, KeyRecord, StorageEvents, UseAttempt } from '../types.js';
import { refusedByDatabase, storageError, transaction, type Tx } from './db.js';
import { keyReplaced, replay, stale } from './common.js';
import { noticesJson, RECORD_NOTICES, type NoticeToRecord } from './notices.js';
import { keyFromRow, toBytes, type KeyRow } from './rows.js';

/** A batch is bounded so that one transaction's statements stay small and quick. */
export const MAX_BATCH = 200;
/** Batches in the database at once: fetches of different keys need not wait for each other's commit. */
export const MAX_IN_FLIGHT = 4;

interface Waiting {
  personId: string;
  partnerId: string;
  attempt: UseAttempt;
  resolve: (o: FetchOutcome) => void;
  reject: (e: unknown) => void;
}

const keyOf = (personId: string, partnerId: string): string => `${personId}!${partnerId}`;

/*
 * A batch is two round trips: BEGIN, lock the rows and claim the nonces in one
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
 * Rows are locked in one order, (person, partner), by every batch on every node, so two
 * batches sharing keys wait for each other and never deadlock. The persons' current
 * management keys are read after the locks are held: a rekey holds its keys' locks until it
 * commits, so a fetch signed by the key it replaced is refused here. Nonces at or below the
 * pruning horizon are not inserted (refused as stale).
 */
function lockAndClaim(c: Tx, keys: Array<[string, string]>, batch: Waiting[]): string {
  const q = (v: string): string => c.escapeLiteral(v);
  const pairs = keys.map(([p, k]) => `(${q(p)}, ${q(k)})`).join(', ');
  const persons = [...new Set(keys.map(([p]) => p))].map(q).join(', ');
  // In one order too: two batches inserting the same nonces (a request replayed to two nodes) wait, never deadlock.
  const claims = batch.map((w) => w.attempt.nonce).sort((a, b) => (a.keyId < b.keyId ? -1 : a.keyId > b.keyId ? 1 : a.nonce < b.nonce ? -1 : a.nonce > b.nonce ? 1 : 0));
  const nonces = claims.map((n) => `(${q(n.keyId)}, ${q(n.nonce)}, ${int(n.expiresAt)}::bigint)`).join(', ');
  return (
    `BEGIN; SELECT person_id, partner_id, rec, uses, last_used_at, history_seq, blob FROM keys ` +
    `WHERE (person_id, partner_id) IN (VALUES ${pairs}) ORDER BY person_id, partner_id FOR UPDATE; ` +
    `SELECT person_id, key_id FROM persons WHERE person_id IN (${persons}); SELECT until FROM nonce_horizon; ` +
    `INSERT INTO nonces (key_id, nonce, expires_at) SELECT * FROM (VALUES ${nonces}) AS v (key_id, nonce, expires_at) ` +
    `WHERE v.expires_at > (SELECT until FROM nonce_horizon) ON CONFLICT DO NOTHING RETURNING key_id, nonce`
  );
}

function writeAndCommit(c: Tx, recs: KeyRecord[], hist: Array<HistoryRecord & { personId: string; partnerId: string }>, notices: NoticeToRecord[]): string {
  const q = (v: string): string => c.escapeLiteral(v);
  const counters = recs.map((r) => ({ p: r.personId, k: r.partnerId, uses: r.uses, lu: r.lastUsedAt, hs: r.historySeq }));
  const entries = hist.map(({ personId, partnerId, ...h }) => ({ p: personId, k: partnerId, h }));
  const parts = [
    `WITH u AS (UPDATE keys SET uses = v.uses, last_used_at = v.lu, history_seq = v.hs ` +
      `FROM jsonb_to_recordset(${q(JSON.stringify(counters))}::jsonb) AS v (p text, k text, uses jsonb, lu bigint, hs bigint) ` +
      `WHERE keys.person_id = v.p AND keys.partner_id = v.k) ` +
      `INSERT INTO history (person_id, partner_id, seq, at, rec) ` +
      `SELECT e->>'p', e->>'k', (e->'h'->>'seq')::bigint, (e->'h'->>'at')::bigint, e->'h' FROM jsonb_array_elements(${q(JSON.stringify(entries))}::jsonb) AS e`,
  ];
  // A function, not a string: a replacement string would read $' and $& in the notices' text.
  if (notices.length > 0) parts.push(RECORD_NOTICES.replace('$1::jsonb', () => `${q(noticesJson(notices))}::jsonb`));
  parts.push('COMMIT');
  return parts.join('; ');
}

export class FetchBatcher {
  private queue: Waiting[] = [];
  /** Keys with a batch in the database: their next fetches wait for it and go in one batch after it. */
  private readonly busy = new Set<string>();
  private inFlight = 0;

  constructor(
    private readonly pool: pg.Pool,
    private readonly tz: string,
    private readonly events?: StorageEvents,
  ) {}

  fetch(personId: string, partnerId: string, attempt: UseAttempt): Promise<FetchOutcome> {
    return new Promise((resolve, reject) => {
      this.queue.push({ personId, partnerId, attempt, resolve, reject });
      this.pump();
    });
  }

  /** Starts batches while there is room: each takes the waiting fetches of keys no batch holds. */
  private pump(): void {
    while (this.inFlight < MAX_IN_FLIGHT && this.queue.length > 0) {
      const batch: Waiting[] = [];
      const keys = new Set<string>();
      const rest: Waiting[] = [];
      for (const w of this.queue) {
        const k = keyOf(w.personId, w.partnerId);
        if (this.busy.has(k) || batch.length >= MAX_BATCH) rest.push(w);
        else {
          batch.push(w);
          keys.add(k);
        }
      }
      if (batch.length === 0) return; // everything waiting is for keys in flight
      this.queue = rest;
      for (const k of keys) this.busy.add(k);
      this.inFlight++;
      void this.run(batch).finally(() => {
        for (const k of keys) this.busy.delete(k);
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async run(batch: Waiting[]): Promise<void> {
    try {
      await this.once(batch);
    } catch (e) {
      // One key's failure (a damaged row, say) must not fail the fetches of other keys that
      // happened to share its transaction: each key goes again on its own.
      const byKey = new Map<string, Waiting[]>();
      for (const w of batch) byKey.set(keyOf(w.personId, w.partnerId), [...(byKey.get(keyOf(w.personId, w.partnerId)) ?? []), w]);
      // Only when the database refused the transaction: after a lost connection the COMMIT may have
      // happened, and the answer must stay "may have been counted" (503), not become a replay.
      if (byKey.size === 1 || !refusedByDatabase(e)) {
        const err = storageError(e);
        for (const w of batch) w.reject(err);
        return;
      }
      for (const group of byKey.values()) {
        await this.once(group).catch((err: unknown) => {
          for (const w of group) w.reject(storageError(err));
        });
      }
    }
  }

  private async once(batch: Waiting[]): Promise<void> {
    const results = await transaction(this.pool, (c) => runBatch(c, batch, this.tz, this.events), { inline: true });
    this.events?.commitBatch?.(batch.length);
    results.forEach((r, i) => (r instanceof KmgrError ? batch[i]!.reject(r) : batch[i]!.resolve(r)));
  }
}

async function runBatch(c: Tx, batch: Waiting[], tz: string, events?: StorageEvents): Promise<Array<FetchOutcome | KmgrError>> {
  const keys = [...new Map(batch.map((w) => [keyOf(w.personId, w.partnerId), [w.personId, w.partnerId] as [string, string]])).values()];
  // Nonces are claimed in the transaction that counts the use: a nonce another node holds,
  // committed or not, makes this insert wait and then do nothing (threat 8 across nodes).
  const [, locked, persons, horizon, claimed] = (await c.query(lockAndClaim(c, keys, batch))) as unknown as [
    pg.QueryResult,
    pg.QueryResult<KeyRow & { person_id: string; partner_id: string; blob: Buffer }>,
    pg.QueryResult<{ person_id: string; key_id: string }>,
    pg.QueryResult<{ until: number }>,
    pg.QueryResult<{ key_id: string; nonce: string }>,
  ];
  const rows = new Map(locked.rows.map((r) => [keyOf(r.person_id, r.partner_id), { rec: keyFromRow(r), blob: toBytes(r.blob) }]));
  const current = new Map(persons.rows.map((r) => [r.person_id, r.key_id]));
  const until = horizon.rows[0]?.until ?? 0;
  const fresh = new Set(claimed.rows.map((r) => `${r.key_id}!${r.nonce}`));
  const touched = new Map<string, KeyRecord>();
  const hist: Array<HistoryRecord & { personId: string; partnerId: string }> = [];
  const notices: NoticeToRecord[] = [];
  const out: Array<FetchOutcome | KmgrError> = [];
  // In arrival order: the uses of one key are judged one after another against its row.
  for (const w of batch) {
    const row = rows.get(keyOf(w.personId, w.partnerId));
    // A retired key is refused: its sealed blob is gone, and the answer says when it went.
    if (!row || row.rec.retiredAt) {
      out.push(noKey(w.partnerId, row?.rec));
      continue;
    }
    if (!fresh.delete(`${w.attempt.nonce.keyId}!${w.attempt.nonce.nonce}`)) {
      out.push(w.attempt.nonce.expiresAt <= until ? stale() : replay());
      continue;
    }
    const cur = current.get(w.personId);
    if (cur !== undefined && cur !== w.attempt.nonce.keyId) {
      out.push(keyReplaced());
      continue;
    }
    const used = applyUse(row.rec, w.attempt, tz);
    touched.set(keyOf(w.personId, w.partnerId), row.rec);
    hist.push({ ...used.hist, personId: w.personId, partnerId: w.partnerId });
    for (const d of used.drafts) notices.push({ dedupe: d.dedupe, notice: newNotice(row.rec, d, w.attempt.at) });
    out.push(useOutcome(used.verdict, snapshotOf(row.rec), row.blob));
  }
  const results = (await c.query(hist.length === 0 ? 'COMMIT' : writeAndCommit(c, [...touched.values()], hist, notices))) as unknown as pg.QueryResult[] | pg.QueryResult;
  if (notices.length > 0 && events?.notice && Array.isArray(results)) {
    // The notices statement returns the IDs it recorded (a fact another node noticed first is not among them).
    const ids = new Set((results[1]?.rows ?? []).map((r: { notice_id?: string }) => r.notice_id));
    for (const x of notices) if (ids.has(x.notice.id)) events.notice(x.notice.kind);
  }
  return out;
}
