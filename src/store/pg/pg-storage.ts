// The PostgreSQL backend: the same Storage as LevelDB, for deployments that
// run several kmgrd nodes on one database. Nothing that decides a request is
// cached in the process (another node may have changed it a moment ago):
// every fetch, terms change, rotation and rekey reads its rows under lock in
// the transaction that writes them. The terms rules are the shared ones
// (src/terms, src/store/apply-use.ts); the files beside this one, one per
// area, only make them atomic and durable.
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { ConfigError, KmgrError, UnavailableError } from '../../protocol/errors.js';
import { recordVerifyIn } from '../../terms/verify-flood.js';
import type {
  BackupRecord, DeliveryLogEntry, DeviceRecord, FetchOutcome, HistoryRecord, IntegrityReport, KeyPage, KeyPatch, KeyRecord, NextKey, NonceClaim, Notice,
  NotifySettings, PartnerMeta, PartnerRecord, PendingDelivery, PersonRecord, RekeyChange, RestoreRecord, Storage, StorageEvents, TermsFinding, UseAttempt,
} from '../types.js';
import { noKey } from '../apply-use.js';
import { makePool, query, redactUrl, storageError, transaction, type PgOptions } from './db.js';
import { claimIn, CLAIM_NONCE, refusal, replay } from './common.js';
import * as backup from './backup.js';
import * as delivery from './delivery.js';
import * as devices from './devices.js';
import * as keys from './key-writes.js';
import * as partners from './partners.js';
import * as rekeying from './rekey.js';
import { checkTerms } from './terms.js';
import { FetchBatcher } from './fetch.js';
import { KEY_COLUMNS, keyFromRow, noticeFromRow, type KeyRow } from './rows.js';
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
  /** Told of commits and notices, for metrics. */
  events?: StorageEvents;
  /** False for operator tools: a mistyped URL must not become a new, empty kmgr database. */
  createIfMissing?: boolean;
}

export { DELIVERY_LEASE_MS } from './delivery.js';

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
    private readonly id: string,
    private readonly restored: RestoreRecord | undefined,
  ) {
    this.batcher = new FetchBatcher(pool, opts.tz, opts.events);
  }

  static async open(opts: PgStorageOptions): Promise<PgStorage> {
    const pool = makePool(opts, opts.onPoolError ?? (() => undefined));
    let id: string;
    let restored: RestoreRecord | undefined;
    try {
      const c = await pool.connect().catch((e: unknown) => {
        throw storageError(e);
      });
      try {
        if (opts.createIfMissing === false && !(await hasSchema(c))) {
          throw new ConfigError(`there is no kmgr database at ${redactUrl(opts.url)} (check --database-url)`);
        }
        await migrate(c);
        if (opts.pinTimeZone) await pinTimeZone(c, opts.tz);
        id = await databaseId(c);
        restored = (await c.query<{ rec: RestoreRecord }>('SELECT rec FROM restores ORDER BY restored_at DESC LIMIT 1')).rows[0]?.rec;
      } finally {
        c.release();
      }
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw storageError(e);
    }
    const s = new PgStorage(pool, opts, id, restored);
    // As LevelDB does at open: a node started with its clock ahead forgets (and raises the horizon) at once.
    await s.pruneNonces().catch(async (e: unknown) => {
      await pool.end().catch(() => undefined);
      throw storageError(e);
    });
    s.pruneTimer = setInterval(() => void s.pruneNonces().catch(() => undefined), 30_000);
    s.pruneTimer.unref();
    return s;
  }

  private closed = false;

  async close(): Promise<void> {
    this.closed = true;
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    await this.pool.end();
  }

  restoredFrom(): { snapshotId: string; takenAt: string; sourceId: string } | undefined {
    const r = this.restored;
    return r ? { snapshotId: r.snapshotId, takenAt: r.takenAt, sourceId: r.sourceId } : undefined;
  }

  identity(): { id: string; store: string } {
    return { id: this.id, store: 'postgresql' };
  }

  /**
   * Ready when the database answers and takes writes: a standby still in recovery (after a
   * failover, before promotion, or a mistyped URL) answers reads but would refuse every use.
   */
  async ready(): Promise<void> {
    if (this.closed) throw new UnavailableError('the database is closed');
    const r = await query<{ standby: boolean }>(this.pool, 'SELECT pg_is_in_recovery() AS standby');
    if (r.rows[0]?.standby) throw new UnavailableError('the database is a read-only standby (in recovery); point kmgrd at the primary');
  }

  // ---- nonces (threat 8) ----

  /**
   * Forgets expired nonces and raises the horizon to the latest expiry forgotten, in one
   * statement: a request whose window ends at or below it is refused as stale from then on.
   */
  private async pruneNonces(): Promise<void> {
    const now = this.opts.clock();
    for (const [k, exp] of this.nonces) if (exp < now) this.nonces.delete(k);
    await this.pool.query(
      `WITH d AS (DELETE FROM nonces WHERE expires_at < $1 RETURNING expires_at)
       UPDATE nonce_horizon SET until = GREATEST(until, (SELECT max(expires_at) FROM d)) WHERE EXISTS (SELECT 1 FROM d)`,
      [now],
    );
  }

  claimNonce(c: NonceClaim): void {
    const k = `${c.keyId}!${c.nonce}`;
    if (this.nonces.has(k)) throw replay();
    this.nonces.set(k, c.expiresAt);
  }

  async persistNonce(c: NonceClaim): Promise<void> {
    const r = await query(this.pool, { name: 'kmgr_claim_nonce', text: CLAIM_NONCE, values: [c.keyId, c.nonce, c.expiresAt] });
    if (r.rowCount === 0) throw await refusal(this.pool, c.expiresAt).catch((e: unknown) => storageError(e));
  }

  // ---- persons (Fig. 17) ----

  async personByKeyId(keyId: string): Promise<PersonRecord | undefined> {
    const r = await query<{ rec: PersonRecord }>(this.pool, {
      name: 'kmgr_person_by_key',
      text: 'SELECT p.rec FROM mgmt_keys m JOIN persons p USING (person_id) WHERE m.key_id = $1',
      values: [keyId],
    });
    return r.rows[0]?.rec;
  }

  async personByPersonId(personId: string): Promise<PersonRecord | undefined> {
    const r = await query<{ rec: PersonRecord }>(this.pool, 'SELECT rec FROM persons WHERE person_id = $1', [personId]);
    return r.rows[0]?.rec;
  }

  enrol(p: PersonRecord, nonce: NonceClaim): Promise<void> {
    return transaction(this.pool, async (c) => {
      await claimIn(c, nonce);
      const r = await c.query('INSERT INTO mgmt_keys (key_id, person_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [p.keyId, p.personId]);
      if (r.rowCount === 0) throw new KmgrError('person_exists', 'this management key is already enrolled');
      await c.query('INSERT INTO persons (person_id, key_id, rec) VALUES ($1, $2, $3::jsonb)', [p.personId, p.keyId, JSON.stringify(p)]);
    });
  }

  // ---- keys (Fig. 15) ----

  registerKey(record: KeyRecord, blob: Uint8Array, nonce: NonceClaim): Promise<void> {
    return transaction(this.pool, (c) => keys.registerKey(c, record, blob, nonce));
  }

  retireKey(personId: string, partnerId: string, attempt: UseAttempt): Promise<KeyRecord> {
    return transaction(this.pool, (c) => keys.retireKey(c, personId, partnerId, attempt));
  }

  async getKey(personId: string, partnerId: string): Promise<KeyRecord | undefined> {
    const r = await query<KeyRow>(this.pool, {
      name: 'kmgr_get_key',
      text: `SELECT ${KEY_COLUMNS} FROM keys WHERE person_id = $1 AND partner_id = $2`,
      values: [personId, partnerId],
    });
    return r.rows[0] ? keyFromRow(r.rows[0]) : undefined;
  }

  async listKeys(personId: string, page?: KeyPage): Promise<KeyRecord[]> {
    const r = await query<KeyRow>(
      this.pool,
      `SELECT ${KEY_COLUMNS} FROM keys WHERE person_id = $1 AND ($2::text IS NULL OR partner_id > $2) ORDER BY partner_id ${page ? 'LIMIT $3' : ''}`,
      [personId, page?.after ?? null, ...(page ? [page.limit] : [])],
    );
    return r.rows.map(keyFromRow);
  }

  fetchKey(personId: string, partnerId: string, attempt: UseAttempt): Promise<FetchOutcome> {
    return this.batcher.fetch(personId, partnerId, attempt);
  }

  updateKey(personId: string, partnerId: string, patch: KeyPatch, nonce: NonceClaim): Promise<KeyRecord> {
    return transaction(this.pool, (c) => keys.updateKey(c, personId, partnerId, patch, nonce));
  }

  rotateKey(personId: string, partnerId: string, next: NextKey, nonce: NonceClaim): Promise<KeyRecord> {
    return transaction(this.pool, (c) => keys.rotateKey(c, personId, partnerId, next, nonce, this.opts.tz));
  }

  async history(personId: string, partnerId: string, opts: { since?: number; before?: number; limit: number }): Promise<HistoryRecord[]> {
    // A retired key's history is kept, and shown.
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
    if (r.rows.length === 0) throw noKey(partnerId, undefined);
    return r.rows.flatMap((x) => (x.rec ? [x.rec] : []));
  }

  async listNotices(personId: string, opts: { unreadOnly: boolean; before?: string; limit?: number }): Promise<Notice[]> {
    const r = await query<{ rec: Notice; read: boolean }>(
      this.pool,
      `SELECT rec, read FROM notices WHERE person_id = $1 ${opts.unreadOnly ? 'AND NOT read' : ''} AND ($2::text IS NULL OR id < $2)
       ORDER BY id DESC ${opts.limit !== undefined ? 'LIMIT $3' : ''}`,
      [personId, opts.before ?? null, ...(opts.limit !== undefined ? [opts.limit] : [])],
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

  async checkTerms(nowMs: number, warnMs: number, record = true): Promise<TermsFinding[]> {
    const { findings, recorded } = await transaction(this.pool, (c) => checkTerms(c, nowMs, warnMs, record));
    for (const x of recorded) this.opts.events?.notice?.(x.notice.kind);
    return findings;
  }

  recordVerify(personId: string, partnerId: string, v: { at: number; result: string; requester: string; remoteAddress: string }): Promise<void> {
    // The window is counted in the row, so across all nodes (src/terms/verify-flood.ts).
    return transaction(this.pool, async (c) => {
      const r = await c.query<KeyRow & { verify_minute: number; verify_count: number }>(
        `SELECT ${KEY_COLUMNS}, verify_minute, verify_count FROM keys WHERE person_id = $1 AND partner_id = $2 FOR UPDATE`,
        [personId, partnerId],
      );
      const row = r.rows[0];
      const rec = row ? keyFromRow(row) : undefined;
      if (!row || !rec || rec.retiredAt) throw noKey(partnerId, rec);
      const { record, window } = recordVerifyIn({ minute: row.verify_minute, count: row.verify_count }, v.at);
      if (!record) return;
      rec.historySeq += 1;
      const hist: HistoryRecord = { seq: rec.historySeq, at: v.at, keyVersion: rec.keyVersion, result: 'verify', code: v.result, remoteAddress: v.remoteAddress, requester: v.requester };
      await c.query('UPDATE keys SET history_seq = $3, verify_minute = $4, verify_count = $5 WHERE person_id = $1 AND partner_id = $2', [
        personId,
        partnerId,
        rec.historySeq,
        window.minute,
        window.count,
      ]);
      await c.query('INSERT INTO history (person_id, partner_id, seq, at, rec) VALUES ($1, $2, $3, $4, $5::jsonb)', [personId, partnerId, hist.seq, hist.at, JSON.stringify(hist)]);
    });
  }

  // ---- partners on the server (second embodiment, Figs. 2, 10, 16) ----

  addSharedPartner(name: string, meta: PartnerMeta, at: number): Promise<PartnerRecord> {
    return partners.addSharedPartner(this.pool, name, meta, at);
  }
  listSharedPartners(): Promise<PartnerRecord[]> {
    return partners.listSharedPartners(this.pool);
  }
  sharedPartner(name: string): Promise<PartnerRecord | undefined> {
    return partners.sharedPartner(this.pool, name);
  }
  addPersonPartner(personId: string, name: string, meta: PartnerMeta, at: number, keepId?: string): Promise<PartnerRecord> {
    return partners.addPersonPartner(this.pool, personId, name, meta, at, keepId);
  }
  listPersonPartners(personId: string): Promise<PartnerRecord[]> {
    return partners.listPersonPartners(this.pool, personId);
  }
  removePersonPartner(personId: string, name: string): Promise<boolean> {
    return partners.removePersonPartner(this.pool, personId, name);
  }

  // ---- delivery of notices (webhook, e-mail) ----

  getNotifySettings(personId: string): Promise<NotifySettings> {
    return delivery.getNotifySettings(this.pool, personId);
  }
  setNotifySettings(personId: string, s: NotifySettings, nonce: NonceClaim): Promise<void> {
    return delivery.setNotifySettings(this.pool, personId, s, nonce);
  }
  dueDeliveries(now: number, limit: number): Promise<PendingDelivery[]> {
    return delivery.dueDeliveries(this.pool, now, limit);
  }
  saveDelivery(d: PendingDelivery, finished: boolean, log: DeliveryLogEntry[]): Promise<void> {
    return delivery.saveDelivery(this.pool, d, finished, log);
  }
  deliveryLog(personId: string, limit: number): Promise<DeliveryLogEntry[]> {
    return delivery.deliveryLog(this.pool, personId, limit);
  }

  // ---- management-key rotation (kmgr rekey) and devices ----

  rekeyExport(personId: string, attempt: UseAttempt): Promise<Array<{ record: KeyRecord; blob: Uint8Array }>> {
    return transaction(this.pool, (c) => rekeying.rekeyExport(c, personId, attempt));
  }
  rekey(personId: string, change: RekeyChange, nonce: NonceClaim): Promise<void> {
    return transaction(this.pool, (c) => rekeying.rekey(c, personId, change, nonce));
  }
  addDeviceExport(personId: string, exportId: string, expiresAt: number, nonce: NonceClaim): Promise<void> {
    return transaction(this.pool, (c) => devices.addDeviceExport(c, personId, exportId, expiresAt, nonce));
  }
  addDevice(personId: string, device: DeviceRecord, exportId: string | null, at: number, nonce: NonceClaim | null): Promise<DeviceRecord> {
    return transaction(this.pool, (c) => devices.addDevice(c, personId, device, exportId, at, nonce));
  }
  async listDevices(personId: string): Promise<DeviceRecord[]> {
    try {
      return await devices.listDevices(this.pool, personId);
    } catch (e) {
      throw storageError(e);
    }
  }
  async touchDevice(personId: string, label: string, keyId: string, at: number): Promise<DeviceRecord | undefined> {
    const r = await query<Parameters<typeof devices.deviceFromRow>[0]>(this.pool, { name: 'kmgr_touch_device', text: devices.TOUCH_DEVICE, values: [personId, label, keyId, at] });
    return r.rows[0] ? devices.deviceFromRow(r.rows[0]) : undefined;
  }

  // ---- backup, restore, check-db ----

  exportRecords(): AsyncIterable<BackupRecord> {
    return backup.exportRecords(this.pool);
  }
  importRecords(records: AsyncIterable<BackupRecord>): Promise<number> {
    return backup.importRecords(this.pool, records);
  }
  checkIntegrity(): Promise<IntegrityReport> {
    return backup.checkIntegrity(this.pool);
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

async function hasSchema(c: pg.PoolClient): Promise<boolean> {
  const r = await c.query<{ t: string | null }>(`SELECT to_regclass('kmgr_schema')::text AS t`);
  return r.rows[0]?.t != null;
}

/** The database's identity (named in backups), made by whichever node opens it first. */
async function databaseId(c: pg.PoolClient): Promise<string> {
  await c.query(`INSERT INTO kmgr_meta (name, value) VALUES ('id', $1) ON CONFLICT DO NOTHING`, [randomBytes(16).toString('hex')]);
  const r = await c.query<{ value: string }>(`SELECT value FROM kmgr_meta WHERE name = 'id'`);
  return r.rows[0]!.value;
}

