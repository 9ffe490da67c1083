// The PostgreSQL backend: the same Storage as LevelDB, for deployments that
// run several kmgrd nodes on one database. Nothing that decides a request is
// cached in the process (another node may have changed it a moment ago):
// every fetch, terms change and rotation reads its key row under FOR UPDATE
// in the transaction that writes it. The terms rules are the shared ones
// (src/terms, src/store/apply-use.ts); this file only makes them atomic and durable.
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { AuthError, ConfigError, KmgrError, NotFoundError } from '../../protocol/errors.js';
import { periodsAt } from '../../terms/periods.js';
import { noticesForTerm } from '../../terms/notices.js';
import { newNotice, snapshotOf, VERIFY_RECORDS_PER_MINUTE } from '../apply-use.js';
import type {
  DeliveryLogEntry, FetchOutcome, HistoryRecord, KeyPatch, KeyRecord, NextKey, NonceClaim, Notice, NotifySettings, PartnerMeta, PartnerRecord,
  PendingDelivery, PersonRecord, Storage, TermsFinding, UseAttempt,
} from '../types.js';
import { makePool, query, storageError, transaction, type PgOptions, type Tx } from './db.js';
import { FetchBatcher } from './fetch.js';
import { recordNotices, type NoticeToRecord } from './notices.js';
import { dueAt, KEY_COLUMNS, keyFromRow, noticeFromRow, recJson, type KeyRow } from './rows.js';
import { migrate } from './schema.js';

export interface PgStorageOptions extends PgOptions {
  tz: string;
  clock: () => number;
  /** Called for errors on idle connections (a database restart); they cost no request. */
  onPoolError?: (e: Error) => void;
  /**
   * For `kmgrd serve`: the first node records its --tz in the database and every later node
   * must use the same, or one key's per-day limit would be counted in two calendars.
   */
  pinTimeZone?: boolean;
}

/**
 * How long a node holds the notices it is delivering. Another node takes them over
 * only after this, so a node that dies mid-pass delays its notices, never doubles them.
 */
export const DELIVERY_LEASE_MS = 10 * 60_000;

const replay = (): AuthError => new AuthError('auth_replay', 'this request was already used (replayed nonce)');
const unknownKey = (partnerId: string): NotFoundError => new NotFoundError('unknown_key', `no key is registered for partner ${partnerId}`);

function partnerRecord(partnerId: string, name: string, meta: PartnerMeta, owner: string | null, at: number): PartnerRecord {
  return { partnerId, name, displayName: meta.displayName ?? null, appServer: meta.appServer ?? null, business: meta.business ?? null, owner, createdAt: at };
}

async function claimIn(c: Tx, n: NonceClaim): Promise<void> {
  const r = await c.query({
    name: 'kmgr_claim_nonce',
    text: 'INSERT INTO nonces (key_id, nonce, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
    values: [n.keyId, n.nonce, n.expiresAt],
  });
  if (r.rowCount === 0) throw replay();
}

async function lockKey(c: Tx, personId: string, partnerId: string): Promise<KeyRecord> {
  const r = await c.query<KeyRow>(`SELECT ${KEY_COLUMNS} FROM keys WHERE person_id = $1 AND partner_id = $2 FOR UPDATE`, [personId, partnerId]);
  if (!r.rows[0]) throw unknownKey(partnerId);
  return keyFromRow(r.rows[0]);
}

async function writeKey(c: Tx, r: KeyRecord, blob?: Uint8Array): Promise<void> {
  await c.query(
    `UPDATE keys SET rec = $3::jsonb, uses = $4::jsonb, last_used_at = $5, history_seq = $6${blob ? ', blob = $7' : ''} WHERE person_id = $1 AND partner_id = $2`,
    [r.personId, r.partnerId, recJson(r), JSON.stringify(r.uses), r.lastUsedAt, r.historySeq, ...(blob ? [Buffer.from(blob)] : [])],
  );
}

export class PgStorage implements Storage {
  /**
   * Nonces this node has seen, so a replay to the same node is refused before it costs a
   * query and two copies of one request never share a batch. Only ever refuses: the
   * database's primary key is what decides across nodes.
   */
  private readonly nonces = new Map<string, number>();
  private readonly batcher: FetchBatcher;
  private pruneTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly opts: PgStorageOptions,
  ) {
    this.batcher = new FetchBatcher(pool, opts.tz);
  }

  static async open(opts: PgStorageOptions): Promise<PgStorage> {
    const pool = makePool(opts, opts.onPoolError ?? (() => undefined));
    try {
      const c = await pool.connect().catch((e: unknown) => {
        throw storageError(e);
      });
      try {
        await migrate(c);
        if (opts.pinTimeZone) await pinTimeZone(c, opts.tz);
      } finally {
        c.release();
      }
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw storageError(e);
    }
    const s = new PgStorage(pool, opts);
    s.pruneTimer = setInterval(() => void s.pruneNonces().catch(() => undefined), 30_000);
    s.pruneTimer.unref();
    return s;
  }

  async close(): Promise<void> {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    await this.pool.end();
  }

  /** True when the database answers (for readiness checks). */
  async ping(): Promise<boolean> {
    try {
      await this.pool.query('SELECT 1');
      return true;
    } catch {
      return false;
    }
  }

  // ---- nonces (threat 8) ----

  private async pruneNonces(): Promise<void> {
    const now = this.opts.clock();
    for (const [k, exp] of this.nonces) if (exp < now) this.nonces.delete(k);
    await this.pool.query('DELETE FROM nonces WHERE expires_at < $1', [now]);
  }

  claimNonce(c: NonceClaim): void {
    const k = `${c.keyId}!${c.nonce}`;
    if (this.nonces.has(k)) throw replay();
    this.nonces.set(k, c.expiresAt);
  }

  async persistNonce(c: NonceClaim): Promise<void> {
    const r = await query(this.pool, {
      name: 'kmgr_claim_nonce',
      text: 'INSERT INTO nonces (key_id, nonce, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
      values: [c.keyId, c.nonce, c.expiresAt],
    });
    if (r.rowCount === 0) throw replay();
  }

  // ---- persons (Fig. 17) ----

  async personByKeyId(keyId: string): Promise<PersonRecord | undefined> {
    const r = await query<{ rec: PersonRecord }>(this.pool, { name: 'kmgr_person_by_key', text: 'SELECT rec FROM persons WHERE key_id = $1', values: [keyId] });
    return r.rows[0]?.rec;
  }

  async personByPersonId(personId: string): Promise<PersonRecord | undefined> {
    const r = await query<{ rec: PersonRecord }>(this.pool, 'SELECT rec FROM persons WHERE person_id = $1', [personId]);
    return r.rows[0]?.rec;
  }

  enrol(p: PersonRecord, nonce: NonceClaim): Promise<void> {
    return transaction(this.pool, async (c) => {
      await claimIn(c, nonce);
      const r = await c.query('INSERT INTO persons (person_id, key_id, rec) VALUES ($1, $2, $3::jsonb) ON CONFLICT DO NOTHING', [p.personId, p.keyId, JSON.stringify(p)]);
      if (r.rowCount === 0) throw new KmgrError('person_exists', 'this management key is already enrolled');
    });
  }

  // ---- keys (Fig. 15) ----

  registerKey(record: KeyRecord, blob: Uint8Array, nonce: NonceClaim): Promise<void> {
    return transaction(this.pool, async (c) => {
      await claimIn(c, nonce);
      const r = await c.query(
        `INSERT INTO keys (person_id, partner_id, rec, uses, last_used_at, history_seq, blob) VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, $6, $7)
         ON CONFLICT DO NOTHING`,
        [record.personId, record.partnerId, recJson(record), JSON.stringify(record.uses), record.lastUsedAt, record.historySeq, Buffer.from(blob)],
      );
      if (r.rowCount === 0) throw new KmgrError('key_exists', `partner ${record.partnerId} already has a registered key`);
    });
  }

  async getKey(personId: string, partnerId: string): Promise<KeyRecord | undefined> {
    const r = await query<KeyRow>(this.pool, {
      name: 'kmgr_get_key',
      text: `SELECT ${KEY_COLUMNS} FROM keys WHERE person_id = $1 AND partner_id = $2`,
      values: [personId, partnerId],
    });
    return r.rows[0] ? keyFromRow(r.rows[0]) : undefined;
  }

  async listKeys(personId: string): Promise<KeyRecord[]> {
    const r = await query<KeyRow>(this.pool, `SELECT ${KEY_COLUMNS} FROM keys WHERE person_id = $1 ORDER BY partner_id`, [personId]);
    return r.rows.map(keyFromRow);
  }

  fetchKey(personId: string, partnerId: string, attempt: UseAttempt): Promise<FetchOutcome> {
    return this.batcher.fetch(personId, partnerId, attempt);
  }

  updateKey(personId: string, partnerId: string, patch: KeyPatch, nonce: NonceClaim): Promise<KeyRecord> {
    return transaction(this.pool, async (c) => {
      const rec = await lockKey(c, personId, partnerId);
      await claimIn(c, nonce);
      for (const [f, v] of Object.entries(patch)) if (v !== undefined) (rec as unknown as Record<string, unknown>)[f] = v;
      await writeKey(c, rec);
      return snapshotOf(rec);
    });
  }

  rotateKey(personId: string, partnerId: string, next: NextKey, nonce: NonceClaim): Promise<KeyRecord> {
    return transaction(this.pool, async (c) => {
      const rec = await lockKey(c, personId, partnerId);
      if (next.keyVersion !== rec.keyVersion + 1) {
        throw new KmgrError('version_conflict', `the key of ${partnerId} is at version ${rec.keyVersion}; a rotation must register version ${rec.keyVersion + 1}`);
      }
      await claimIn(c, nonce);
      const previous = [...(rec.previousPublicKeys ?? []), ...(rec.publicKey ? [rec.publicKey] : [])];
      // A new key starts its counts afresh under the same terms; its history continues.
      Object.assign(rec, {
        publicKey: next.publicKey ?? null,
        binding: next.binding ?? null,
        previousPublicKeys: previous,
        keyId: next.keyId,
        alg: next.alg,
        keyVersion: next.keyVersion,
        registeredAt: next.at,
        uses: { total: 0, day: 0, week: 0, month: 0, periods: periodsAt(next.at, this.opts.tz) },
        lastUsedAt: null,
      });
      // The old sealed key is overwritten: keeping it would only invite a rollback.
      await writeKey(c, rec, next.blob);
      return snapshotOf(rec);
    });
  }

  async history(personId: string, partnerId: string, opts: { since?: number; before?: number; limit: number }): Promise<HistoryRecord[]> {
    const r = await query<{ rec: HistoryRecord | null; found: boolean }>(
      this.pool,
      `SELECT h.rec, true AS found FROM keys k
         LEFT JOIN LATERAL (
           SELECT rec FROM history
           WHERE person_id = k.person_id AND partner_id = k.partner_id AND ($3::bigint IS NULL OR seq < $3) AND ($4::bigint IS NULL OR at >= $4)
           ORDER BY seq DESC LIMIT $5
         ) h ON true
       WHERE k.person_id = $1 AND k.partner_id = $2`,
      [personId, partnerId, opts.before ?? null, opts.since ?? null, opts.limit],
    );
    if (r.rows.length === 0) throw unknownKey(partnerId);
    return r.rows.flatMap((x) => (x.rec ? [x.rec] : []));
  }

  async listNotices(personId: string, opts: { unreadOnly: boolean }): Promise<Notice[]> {
    const r = await query<{ rec: Notice; read: boolean }>(
      this.pool,
      `SELECT rec, read FROM notices WHERE person_id = $1 ${opts.unreadOnly ? 'AND NOT read' : ''} ORDER BY id DESC`,
      [personId],
    );
    return r.rows.map(noticeFromRow);
  }

  ackNotices(personId: string, ids: string[], nonce: NonceClaim): Promise<number> {
    return transaction(this.pool, async (c) => {
      await claimIn(c, nonce);
      const r = await c.query('UPDATE notices SET read = true WHERE person_id = $1 AND id = ANY($2::text[]) AND NOT read', [personId, ids]);
      return r.rowCount ?? 0;
    });
  }

  checkTerms(nowMs: number, warnMs: number): Promise<TermsFinding[]> {
    return transaction(this.pool, async (c) => {
      const r = await c.query<{ rec: KeyRecord }>('SELECT rec FROM keys ORDER BY person_id, partner_id');
      const findings: Array<TermsFinding & { id: string }> = [];
      const toRecord: NoticeToRecord[] = [];
      for (const { rec } of r.rows) {
        for (const d of noticesForTerm(rec.partnerId, rec.keyVersion, rec, nowMs, warnMs)) {
          const notice = newNotice(rec, d, nowMs);
          toRecord.push({ dedupe: d.dedupe, notice });
          findings.push({
            id: notice.id,
            personId: rec.personId,
            partnerId: rec.partnerId,
            keyVersion: rec.keyVersion,
            kind: d.kind as 'expired' | 'expiring',
            expiresAt: rec.expiresAt!,
            message: d.message,
            isNew: false,
          });
        }
      }
      // The dedupe rows decide what is new, also against a concurrent run on another node.
      const recorded = await recordNotices(c, toRecord);
      return findings.map(({ id, ...f }) => ({ ...f, isNew: recorded.has(id) }));
    });
  }

  recordVerify(personId: string, partnerId: string, v: { at: number; result: string; requester: string; remoteAddress: string }): Promise<void> {
    // Anyone may ask: at most VERIFY_RECORDS_PER_MINUTE questions a minute are recorded
    // per key (counted in the row, so across all nodes), so a flood cannot bury the history.
    const minute = Math.floor(v.at / 60_000);
    return transaction(this.pool, async (c) => {
      const r = await c.query<{ history_seq: number; key_version: number; counted: boolean }>(
        `UPDATE keys SET
           verify_count = CASE WHEN verify_minute = $3 THEN verify_count + 1 ELSE 1 END,
           verify_minute = $3,
           history_seq = history_seq + 1
         WHERE person_id = $1 AND partner_id = $2 AND (verify_minute <> $3 OR verify_count < $4)
         RETURNING history_seq, (rec->>'keyVersion')::int AS key_version`,
        [personId, partnerId, minute, VERIFY_RECORDS_PER_MINUTE],
      );
      const row = r.rows[0];
      if (!row) {
        const exists = await c.query('SELECT 1 FROM keys WHERE person_id = $1 AND partner_id = $2', [personId, partnerId]);
        if (exists.rowCount === 0) throw unknownKey(partnerId);
        return;
      }
      const hist: HistoryRecord = {
        seq: row.history_seq,
        at: v.at,
        keyVersion: row.key_version,
        result: 'verify',
        code: v.result,
        remoteAddress: v.remoteAddress,
        requester: v.requester,
      };
      await c.query('INSERT INTO history (person_id, partner_id, seq, at, rec) VALUES ($1, $2, $3, $4, $5::jsonb)', [personId, partnerId, hist.seq, hist.at, JSON.stringify(hist)]);
    });
  }

  // ---- partners on the server (second embodiment, Figs. 2, 10, 16) ----

  addSharedPartner(name: string, meta: PartnerMeta, at: number): Promise<PartnerRecord> {
    return transaction(this.pool, async (c) => {
      const rec = partnerRecord(randomBytes(16).toString('base64url'), name, meta, null, at);
      const r = await c.query('INSERT INTO shared_names (name, partner_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [name, rec.partnerId]);
      if (r.rowCount === 0) throw new KmgrError('key_exists', `a shared partner named ${name} already exists`);
      await c.query('INSERT INTO partners (partner_id, rec) VALUES ($1, $2::jsonb)', [rec.partnerId, JSON.stringify(rec)]);
      return rec;
    });
  }

  async listSharedPartners(): Promise<PartnerRecord[]> {
    const r = await query<{ rec: PartnerRecord }>(this.pool, 'SELECT p.rec FROM shared_names s JOIN partners p USING (partner_id) ORDER BY s.name');
    return r.rows.map((x) => x.rec);
  }

  async sharedPartner(name: string): Promise<PartnerRecord | undefined> {
    const r = await query<{ rec: PartnerRecord }>(this.pool, 'SELECT p.rec FROM shared_names s JOIN partners p USING (partner_id) WHERE s.name = $1', [name]);
    return r.rows[0]?.rec;
  }

  addPersonPartner(personId: string, name: string, meta: PartnerMeta, at: number, keepId?: string): Promise<PartnerRecord> {
    return transaction(this.pool, async (c) => {
      const taken = await c.query('SELECT 1 FROM person_partners WHERE person_id = $1 AND name = $2', [personId, name]);
      if (taken.rowCount) throw new KmgrError('key_exists', `partner ${name} is already in your list`);
      let rec: PartnerRecord | undefined;
      if (keepId === undefined) {
        const shared = await c.query<{ rec: PartnerRecord }>('SELECT p.rec FROM shared_names s JOIN partners p USING (partner_id) WHERE s.name = $1', [name]);
        rec = shared.rows[0]?.rec;
      }
      if (!rec) {
        rec = partnerRecord(keepId ?? randomBytes(16).toString('base64url'), name, meta, personId, at);
        const r = await c.query('INSERT INTO partners (partner_id, rec) VALUES ($1, $2::jsonb) ON CONFLICT DO NOTHING', [rec.partnerId, JSON.stringify(rec)]);
        if (r.rowCount === 0) throw new KmgrError('key_exists', `partner ID ${rec.partnerId} is already taken on this server`);
      }
      const r = await c.query('INSERT INTO person_partners (person_id, name, partner_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [personId, name, rec.partnerId]);
      // A concurrent add of the same name on another node won the race.
      if (r.rowCount === 0) throw new KmgrError('key_exists', `partner ${name} is already in your list`);
      return rec;
    });
  }

  async listPersonPartners(personId: string): Promise<PartnerRecord[]> {
    const r = await query<{ rec: PartnerRecord; name: string }>(
      this.pool,
      'SELECT p.rec, pp.name FROM person_partners pp JOIN partners p USING (partner_id) WHERE pp.person_id = $1 ORDER BY pp.name',
      [personId],
    );
    // The person's own name for the partner wins over the record's.
    return r.rows.map((x) => ({ ...x.rec, name: x.name }));
  }

  removePersonPartner(personId: string, name: string): Promise<boolean> {
    return transaction(this.pool, async (c) => {
      const r = await c.query<{ partner_id: string }>('DELETE FROM person_partners WHERE person_id = $1 AND name = $2 RETURNING partner_id', [personId, name]);
      const id = r.rows[0]?.partner_id;
      if (id === undefined) return false;
      // A private partner goes with its only list entry; a shared one stays in the directory.
      await c.query(`DELETE FROM partners WHERE partner_id = $1 AND rec->>'owner' = $2`, [id, personId]);
      return true;
    });
  }

  // ---- delivery of notices (webhook, e-mail) ----

  async getNotifySettings(personId: string): Promise<NotifySettings> {
    const r = await query<{ settings: NotifySettings }>(this.pool, 'SELECT settings FROM notify WHERE person_id = $1', [personId]);
    return r.rows[0]?.settings ?? { webhook: null, email: null };
  }

  setNotifySettings(personId: string, s: NotifySettings, nonce: NonceClaim): Promise<void> {
    return transaction(this.pool, async (c) => {
      await claimIn(c, nonce);
      await c.query('INSERT INTO notify (person_id, settings) VALUES ($1, $2::jsonb) ON CONFLICT (person_id) DO UPDATE SET settings = EXCLUDED.settings', [
        personId,
        JSON.stringify(s),
      ]);
    });
  }

  /**
   * Takes a lease on what is due, skipping rows another node is leasing or has locked,
   * so several nodes running deliveries never send one notice together.
   */
  async dueDeliveries(now: number, limit: number): Promise<PendingDelivery[]> {
    const r = await query<{ rec: PendingDelivery }>(
      this.pool,
      `UPDATE pending SET lease_until = $2
       WHERE key IN (
         SELECT key FROM pending WHERE due_at <= $1 AND lease_until <= $1 ORDER BY key LIMIT $3 FOR UPDATE SKIP LOCKED
       )
       RETURNING rec`,
      [now, now + DELIVERY_LEASE_MS, limit],
    );
    return r.rows.map((x) => x.rec).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  saveDelivery(d: PendingDelivery, finished: boolean, log: DeliveryLogEntry[]): Promise<void> {
    return transaction(this.pool, async (c) => {
      if (finished) await c.query('DELETE FROM pending WHERE key = $1', [d.key]);
      else await c.query('UPDATE pending SET rec = $2::jsonb, due_at = $3, lease_until = 0 WHERE key = $1', [d.key, JSON.stringify(d), dueAt(d)]);
      if (log.length > 0) {
        await c.query(
          `INSERT INTO delivery_log (person_id, at, entry) SELECT $1, (e->>'at')::bigint, e FROM jsonb_array_elements($2::jsonb) AS e`,
          [d.personId, JSON.stringify(log)],
        );
      }
    });
  }

  async deliveryLog(personId: string, limit: number): Promise<DeliveryLogEntry[]> {
    const r = await query<{ entry: DeliveryLogEntry }>(this.pool, 'SELECT entry FROM delivery_log WHERE person_id = $1 ORDER BY at DESC, id DESC LIMIT $2', [
      personId,
      limit,
    ]);
    return r.rows.map((x) => x.entry);
  }
}

async function pinTimeZone(c: pg.PoolClient, tz: string): Promise<void> {
  await c.query(`INSERT INTO kmgr_meta (name, value) VALUES ('tz', $1) ON CONFLICT DO NOTHING`, [tz]);
  const r = await c.query<{ value: string }>(`SELECT value FROM kmgr_meta WHERE name = 'tz'`);
  const pinned = r.rows[0]?.value;
  if (pinned !== undefined && pinned !== tz) {
    throw new ConfigError(`this database counts per-day, per-week and per-month limits in time zone ${pinned}; start every node with --tz ${pinned}`);
  }
}
