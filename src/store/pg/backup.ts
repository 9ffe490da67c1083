// kmgrd backup, restore and check-db on PostgreSQL, in the store-independent
// records of backup-format.ts: a LevelDB backup restores into PostgreSQL and
// the other way round (kmgrd migrate is one of each). Export reads one
// REPEATABLE READ snapshot, so a backup taken while nodes serve is consistent:
// each use is in it with its count and its history, or not at all.
import type pg from 'pg';
import { ConfigError } from '../../protocol/errors.js';
import { pendingKey } from '../keys.js';
import type { BackupRecord, DeliveryLogEntry, HistoryRecord, IntegrityFinding, IntegrityReport, KeyRecord, Notice, NotifySettings, PartnerRecord, PendingDelivery, PersonRecord, RestoreRecord } from '../types.js';
import { storageError, transaction, type Tx } from './db.js';
import { deviceFromRow, DEVICE_COLUMNS } from './devices.js';
import { dueAt, KEY_COLUMNS, keyFromRow, noticeFromRow, recJson, termAt, type KeyRow } from './rows.js';

const PAGE = 500;

/** Rows of one query through a server-side cursor, PAGE at a time (a large table is never held whole). */
async function* rows<R extends pg.QueryResultRow>(c: pg.PoolClient, sql: string): AsyncGenerator<R> {
  await c.query(`DECLARE kmgr_export NO SCROLL CURSOR FOR ${sql}`);
  try {
    for (;;) {
      const r = await c.query<R>(`FETCH ${PAGE} FROM kmgr_export`);
      for (const row of r.rows) yield row;
      if (r.rows.length < PAGE) return;
    }
  } finally {
    // In an aborted transaction CLOSE fails too: the first error is the one to report, and the
    // rollback below ends the cursor with the transaction.
    await c.query('CLOSE kmgr_export').catch(() => undefined);
  }
}

export async function* exportRecords(pool: pg.Pool): AsyncGenerator<BackupRecord> {
  const c = await pool.connect().catch((e: unknown) => {
    throw storageError(e);
  });
  // The connection may drop mid-export (a database restart): without a listener pg's 'error'
  // event would end the process.
  let lost: Error | undefined;
  const onError = (e: Error): void => void (lost = e);
  c.on('error', onError);
  let committed = false;
  try {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    for await (const r of rows<{ rec: PersonRecord }>(c, 'SELECT rec FROM persons ORDER BY person_id')) yield { t: 'person', person: r.rec };
    for await (const r of rows<KeyRow & { blob: Buffer }>(c, `SELECT ${KEY_COLUMNS}, blob FROM keys ORDER BY person_id, partner_id`)) {
      const key = keyFromRow(r);
      yield { t: 'key', key };
      // A retired key's blob is gone (empty): there is nothing to carry.
      if (r.blob.length > 0) yield { t: 'blob', personId: key.personId, partnerId: key.partnerId, keyVersion: key.keyVersion, blob: r.blob.toString('base64') };
    }
    for await (const r of rows<{ person_id: string; partner_id: string; rec: HistoryRecord }>(c, 'SELECT person_id, partner_id, rec FROM history ORDER BY person_id, partner_id, seq')) {
      yield { t: 'history', personId: r.person_id, partnerId: r.partner_id, entry: r.rec };
    }
    for await (const r of rows<{ rec: Notice; read: boolean }>(c, 'SELECT rec, read FROM notices ORDER BY person_id, id')) yield { t: 'notice', notice: noticeFromRow(r) };
    for await (const r of rows<{ person_id: string; partner_id: string; dedupe: string; notice_id: string }>(c, 'SELECT * FROM notice_dedupe ORDER BY person_id, partner_id, dedupe')) {
      yield { t: 'notice-mark', personId: r.person_id, partnerId: r.partner_id, dedupe: r.dedupe, noticeId: r.notice_id };
    }
    for await (const r of rows<{ rec: PartnerRecord }>(c, 'SELECT rec FROM partners ORDER BY partner_id')) yield { t: 'partner', partner: r.rec };
    for await (const r of rows<{ name: string; partner_id: string }>(c, 'SELECT name, partner_id FROM shared_names ORDER BY name')) yield { t: 'shared-name', name: r.name, partnerId: r.partner_id };
    for await (const r of rows<{ person_id: string; name: string; partner_id: string }>(c, 'SELECT person_id, name, partner_id FROM person_partners ORDER BY person_id, name')) {
      yield { t: 'person-partner', personId: r.person_id, name: r.name, partnerId: r.partner_id };
    }
    for await (const r of rows<{ person_id: string; settings: NotifySettings }>(c, 'SELECT person_id, settings FROM notify ORDER BY person_id')) yield { t: 'notify', personId: r.person_id, settings: r.settings };
    for await (const r of rows<{ rec: PendingDelivery }>(c, 'SELECT rec FROM pending ORDER BY key')) yield { t: 'pending', delivery: r.rec };
    for await (const r of rows<{ person_id: string; entry: DeliveryLogEntry }>(c, 'SELECT person_id, entry FROM delivery_log ORDER BY person_id, at, id')) {
      yield { t: 'delivery-log', personId: r.person_id, entry: r.entry };
    }
    for await (const r of rows<{ key_id: string; nonce: string; expires_at: number }>(c, 'SELECT key_id, nonce, expires_at FROM nonces ORDER BY expires_at, key_id, nonce')) {
      yield { t: 'nonce', claim: { keyId: r.key_id, nonce: r.nonce, expiresAt: r.expires_at } };
    }
    for await (const r of rows<{ rec: RestoreRecord }>(c, 'SELECT rec FROM restores ORDER BY restored_at')) yield { t: 'restored', restore: r.rec };
    for await (const r of rows<Parameters<typeof deviceFromRow>[0] & { person_id: string }>(c, `SELECT person_id, ${DEVICE_COLUMNS} FROM devices ORDER BY person_id, label`)) {
      yield { t: 'device', personId: r.person_id, device: deviceFromRow(r) };
    }
    for await (const r of rows<{ person_id: string; export_id: string; expires_at: number; used_at: number | null }>(c, 'SELECT * FROM device_exports ORDER BY person_id, export_id')) {
      yield { t: 'device-export', personId: r.person_id, exportId: r.export_id, expiresAt: r.expires_at, usedAt: r.used_at };
    }
    await c.query('COMMIT');
    committed = true;
  } catch (e) {
    throw storageError(e);
  } finally {
    // Also when the reader stopped early (a backup file that could not be written): a client
    // handed back inside a read-only snapshot would fail every write and serve stale reads.
    let broken = lost;
    if (!committed) await c.query('ROLLBACK').catch((e: unknown) => void (broken ??= e as Error));
    c.off('error', onError);
    c.release(broken);
  }
}

/** One bulk INSERT ... SELECT FROM jsonb_array_elements per table, PAGE rows at a time. */
class Bulk {
  private readonly pending = new Map<string, unknown[]>();
  constructor(private readonly c: Tx) {}
  async add(sql: string, row: unknown): Promise<void> {
    let list = this.pending.get(sql);
    if (!list) this.pending.set(sql, (list = []));
    list.push(row);
    if (list.length >= PAGE) await this.flushOne(sql);
  }
  private async flushOne(sql: string): Promise<void> {
    const list = this.pending.get(sql);
    if (!list || list.length === 0) return;
    this.pending.set(sql, []);
    await this.c.query(sql, [JSON.stringify(list)]);
  }
  async flush(): Promise<void> {
    for (const sql of this.pending.keys()) await this.flushOne(sql);
  }
}

const FROM = 'FROM jsonb_array_elements($1::jsonb) AS x';
const SQL = {
  person: `INSERT INTO persons (person_id, key_id, rec) SELECT x->>'personId', x->>'keyId', x ${FROM}`,
  mgmt: `INSERT INTO mgmt_keys (key_id, person_id) SELECT x->>0, x->>1 ${FROM} ON CONFLICT DO NOTHING`,
  key: `INSERT INTO keys (person_id, partner_id, rec, uses, last_used_at, history_seq, blob, term_at)
        SELECT x->>0, x->>1, x->2, x->3, (x->>4)::bigint, (x->>5)::bigint, '\\x', (x->>6)::bigint ${FROM}`,
  blob: `INSERT INTO kmgr_restore_blobs (person_id, partner_id, key_version, blob) SELECT x->>0, x->>1, (x->>2)::int, decode(x->>3, 'base64') ${FROM}`,
  history: `INSERT INTO history (person_id, partner_id, seq, at, rec) SELECT x->>0, x->>1, (x->2->>'seq')::bigint, (x->2->>'at')::bigint, x->2 ${FROM}`,
  notice: `INSERT INTO notices (person_id, id, rec, read) SELECT x->>'personId', x->>'id', x - 'read', coalesce((x->>'read')::boolean, false) ${FROM}`,
  mark: `INSERT INTO notice_dedupe (person_id, partner_id, dedupe, notice_id) SELECT x->>0, x->>1, x->>2, x->>3 ${FROM}`,
  partner: `INSERT INTO partners (partner_id, rec) SELECT x->>'partnerId', x ${FROM}`,
  sharedName: `INSERT INTO shared_names (name, partner_id) SELECT x->>0, x->>1 ${FROM}`,
  personPartner: `INSERT INTO person_partners (person_id, name, partner_id) SELECT x->>0, x->>1, x->>2 ${FROM}`,
  notify: `INSERT INTO notify (person_id, settings) SELECT x->>0, x->1 ${FROM}`,
  pending: `INSERT INTO pending (key, person_id, due_at, rec) SELECT x->>'key', x->>'personId', (x->>'dueAt')::bigint, x->'rec' ${FROM}`,
  deliveryLog: `INSERT INTO delivery_log (person_id, at, entry) SELECT x->>0, (x->1->>'at')::bigint, x->1 ${FROM}`,
  nonce: `INSERT INTO nonces (key_id, nonce, expires_at) SELECT x->>'keyId', x->>'nonce', (x->>'expiresAt')::bigint ${FROM} ON CONFLICT DO NOTHING`,
  restored: `INSERT INTO restores (restored_at, rec) SELECT x->>'restoredAt', x ${FROM}`,
  device: `INSERT INTO devices (person_id, label, added_at, last_used_at, last_key_id, via, revoked_at)
           SELECT x->>0, x->1->>'label', (x->1->>'addedAt')::bigint, (x->1->>'lastUsedAt')::bigint, x->1->>'lastKeyId', x->1->>'via', (x->1->>'revokedAt')::bigint ${FROM}`,
  deviceExport: `INSERT INTO device_exports (person_id, export_id, expires_at, used_at) SELECT x->>0, x->>1, (x->>2)::bigint, (x->>3)::bigint ${FROM}`,
};

/**
 * A LevelDB backup carries its expiry index and probe entries as extra records:
 * derived or scratch data, which this backend keeps its own way (keys.term_at).
 */
const DERIVED_EXTRA = /^(exp|probe|meta)!/;

/** Writes a backup's records into an empty database, in one transaction: all of it or nothing. */
export function importRecords(pool: pg.Pool, records: AsyncIterable<BackupRecord>): Promise<number> {
  // Never retried: the records can be read once, and a second attempt would commit an empty database.
  return transaction(pool, async (c) => {
    const used = await c.query<{ used: boolean }>('SELECT EXISTS (SELECT 1 FROM persons) OR EXISTS (SELECT 1 FROM keys) OR EXISTS (SELECT 1 FROM partners) AS used');
    if (used.rows[0]?.used) throw new ConfigError('this PostgreSQL database already holds kmgr data; restore into an empty database');
    await c.query('CREATE TEMP TABLE kmgr_restore_blobs (person_id text, partner_id text, key_version int, blob bytea) ON COMMIT DROP');
    const b = new Bulk(c);
    let n = 0;
    for await (const r of records) {
      n++;
      await addRecord(b, r);
    }
    await b.flush();
    // Blobs come before or after their key (LevelDB's order is by key name): joined at the end.
    await c.query(`UPDATE keys k SET blob = t.blob FROM kmgr_restore_blobs t
                   WHERE k.person_id = t.person_id AND k.partner_id = t.partner_id AND (k.rec->>'keyVersion')::int = t.key_version`);
    return n;
  }, { attempts: 1 });
}

async function addRecord(b: Bulk, r: BackupRecord): Promise<void> {
  switch (r.t) {
    case 'person':
      await b.add(SQL.person, r.person);
      await b.add(SQL.mgmt, [r.person.keyId, r.person.personId]);
      // The key a rekey replaced keeps naming the person, so its requests are told "replaced" after a restore too.
      if (r.person.succession) await b.add(SQL.mgmt, [r.person.succession.statement.oldKeyId, r.person.personId]);
      return;
    case 'key': {
      const k: KeyRecord = r.key;
      return b.add(SQL.key, [k.personId, k.partnerId, JSON.parse(recJson(k)), k.uses, k.lastUsedAt, k.historySeq, termAt(k)]);
    }
    case 'blob':
      return b.add(SQL.blob, [r.personId, r.partnerId, r.keyVersion, r.blob]);
    case 'history':
      return b.add(SQL.history, [r.personId, r.partnerId, r.entry]);
    case 'notice':
      return b.add(SQL.notice, r.notice);
    case 'notice-mark':
      return b.add(SQL.mark, [r.personId, r.partnerId, r.dedupe, r.noticeId]);
    case 'partner':
      return b.add(SQL.partner, r.partner);
    case 'shared-name':
      return b.add(SQL.sharedName, [r.name, r.partnerId]);
    case 'person-partner':
      return b.add(SQL.personPartner, [r.personId, r.name, r.partnerId]);
    case 'notify':
      return b.add(SQL.notify, [r.personId, r.settings]);
    case 'pending': {
      // The key is this backend's own: made afresh, whatever store the backup came from.
      const d: PendingDelivery = { ...r.delivery, key: pendingKey(r.delivery.notice.id, r.delivery.personId) };
      return b.add(SQL.pending, { key: d.key, personId: d.personId, dueAt: dueAt(d), rec: d });
    }
    case 'delivery-log':
      return b.add(SQL.deliveryLog, [r.personId, r.entry]);
    case 'nonce':
      return b.add(SQL.nonce, r.claim);
    case 'restored':
      return b.add(SQL.restored, r.restore);
    case 'device':
      return b.add(SQL.device, [r.personId, r.device]);
    case 'device-export':
      return b.add(SQL.deviceExport, [r.personId, r.exportId, r.expiresAt, r.usedAt]);
    case 'extra':
      if (DERIVED_EXTRA.test(r.key)) return;
      throw new ConfigError(`the backup holds a record this kmgrd cannot place in PostgreSQL (${r.key.split('!')[0]}!...); restore it onto LevelDB with a kmgrd that knows it`);
  }
}

/** kmgrd check-db: every inconsistency between the tables, each named (none: clean). */
export async function checkIntegrity(pool: pg.Pool): Promise<IntegrityReport> {
  return transaction(pool, async (c) => {
    await c.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const findings: IntegrityFinding[] = [];
    const keyWhere = (r: { person_id: string; partner_id: string }): string => `key ${r.person_id}/${r.partner_id}`;
    const q = async <R extends pg.QueryResultRow>(sql: string): Promise<R[]> => (await c.query<R>(sql)).rows;
    for (const r of await q<{ person_id: string; partner_id: string }>(`SELECT person_id, partner_id FROM keys WHERE rec->>'retiredAt' IS NULL AND length(blob) = 0`)) {
      findings.push({ where: keyWhere(r), problem: 'its sealed key is missing', personId: r.person_id });
    }
    for (const r of await q<{ person_id: string; partner_id: string; history_seq: number; top: number }>(
      `SELECT k.person_id, k.partner_id, k.history_seq, max(h.seq) AS top FROM keys k JOIN history h USING (person_id, partner_id)
       GROUP BY k.person_id, k.partner_id, k.history_seq HAVING max(h.seq) > k.history_seq`,
    )) {
      findings.push({ where: keyWhere(r), problem: `its history has entry ${r.top} beyond its counter (${r.history_seq})`, personId: r.person_id });
    }
    for (const r of await q<{ person_id: string; partner_id: string }>('SELECT DISTINCT h.person_id, h.partner_id FROM history h LEFT JOIN keys k USING (person_id, partner_id) WHERE k.person_id IS NULL')) {
      findings.push({ where: keyWhere(r), problem: 'history is stored for a key that does not exist', personId: r.person_id });
    }
    for (const r of await q<{ person_id: string; partner_id: string }>('SELECT k.person_id, k.partner_id FROM keys k LEFT JOIN persons p USING (person_id) WHERE p.person_id IS NULL')) {
      findings.push({ where: keyWhere(r), problem: 'its owner is not enrolled', personId: r.person_id });
    }
    for (const r of await q<{ person_id: string }>('SELECT p.person_id FROM persons p LEFT JOIN mgmt_keys m ON m.key_id = p.key_id AND m.person_id = p.person_id WHERE m.key_id IS NULL')) {
      findings.push({ where: `person ${r.person_id}`, problem: 'its management key is not mapped to it (its requests would be refused as unknown)', personId: r.person_id });
    }
    const counted = await q<{ n: number }>(
      `SELECT (SELECT count(*) FROM persons) + (SELECT count(*) FROM keys) + (SELECT count(*) FROM history) + (SELECT count(*) FROM notices)
            + (SELECT count(*) FROM partners) + (SELECT count(*) FROM pending) + (SELECT count(*) FROM devices) AS n`,
    );
    return { findings, records: Number(counted[0]?.n ?? 0) };
  });
}

