// Writes a whole deployment read from another backend into an empty
// PostgreSQL database, in one transaction: the move is all or nothing, and a
// second run against the same database is refused rather than doubling data.
// Then reads the counts back and compares them with the source.
import type pg from 'pg';
import { ConfigError, IntegrityError } from '../../protocol/errors.js';
import type { StoreDump } from '../level-dump.js';
import { transaction, type Tx } from './db.js';
import { dueAt, recJson } from './rows.js';
import { pendingKey } from '../keys.js';

export interface ImportReport {
  persons: number;
  keys: number;
  uses: number;
  history: number;
  notices: number;
  partners: number;
  pending: number;
}

const CHUNK = 1000;

async function insertJson(c: Tx, sql: string, rows: unknown[]): Promise<void> {
  for (let i = 0; i < rows.length; i += CHUNK) await c.query(sql, [JSON.stringify(rows.slice(i, i + CHUNK))]);
}

export function reportOf(d: StoreDump): ImportReport {
  return {
    persons: d.persons.length,
    keys: d.keys.length,
    uses: d.keys.reduce((n, k) => n + k.record.uses.total, 0),
    history: d.keys.reduce((n, k) => n + k.history.length, 0),
    notices: d.notices.length,
    partners: d.partners.length,
    pending: d.pending.length,
  };
}

export async function importDump(pool: pg.Pool, d: StoreDump): Promise<ImportReport> {
  return transaction(pool, async (c) => {
    const used = await c.query<{ n: string }>(`SELECT (SELECT count(*) FROM persons) + (SELECT count(*) FROM keys) + (SELECT count(*) FROM partners) AS n`);
    if (Number(used.rows[0]?.n ?? 0) > 0) throw new ConfigError('the PostgreSQL database already holds kmgr data; migrate into an empty database');
    await insertJson(c, `INSERT INTO persons (person_id, key_id, rec) SELECT e->>'personId', e->>'keyId', e FROM jsonb_array_elements($1::jsonb) e`, d.persons);
    for (const k of d.keys) {
      const r = k.record;
      await c.query('INSERT INTO keys (person_id, partner_id, rec, uses, last_used_at, history_seq, blob) VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, $6, $7)', [
        r.personId, r.partnerId, recJson(r), JSON.stringify(r.uses), r.lastUsedAt, r.historySeq, Buffer.from(k.blob),
      ]);
      for (let i = 0; i < k.history.length; i += CHUNK) {
        await c.query(
          `INSERT INTO history (person_id, partner_id, seq, at, rec) SELECT $1, $2, (e->>'seq')::bigint, (e->>'at')::bigint, e FROM jsonb_array_elements($3::jsonb) e`,
          [r.personId, r.partnerId, JSON.stringify(k.history.slice(i, i + CHUNK))],
        );
      }
      if (k.dedupe.length > 0) {
        await c.query(
          `INSERT INTO notice_dedupe (person_id, partner_id, dedupe, notice_id) SELECT $1, $2, e->>'dedupe', e->>'noticeId' FROM jsonb_array_elements($3::jsonb) e`,
          [r.personId, r.partnerId, JSON.stringify(k.dedupe)],
        );
      }
    }
    await insertJson(c, `INSERT INTO nonces (key_id, nonce, expires_at) SELECT e->>'keyId', e->>'nonce', (e->>'expiresAt')::bigint FROM jsonb_array_elements($1::jsonb) e ON CONFLICT DO NOTHING`, d.nonces);
    await insertJson(c, `INSERT INTO notices (person_id, id, rec, read) SELECT e->>'personId', e->>'id', e, (e->>'read')::boolean FROM jsonb_array_elements($1::jsonb) e`, d.notices);
    await insertJson(c, `INSERT INTO partners (partner_id, rec) SELECT e->>'partnerId', e FROM jsonb_array_elements($1::jsonb) e`, d.partners);
    await insertJson(c, `INSERT INTO shared_names (name, partner_id) SELECT e->>'name', e->>'partnerId' FROM jsonb_array_elements($1::jsonb) e`, d.sharedNames);
    await insertJson(c, `INSERT INTO person_partners (person_id, name, partner_id) SELECT e->>'personId', e->>'name', e->>'partnerId' FROM jsonb_array_elements($1::jsonb) e`, d.personPartners);
    await insertJson(c, `INSERT INTO notify (person_id, settings) SELECT e->>'personId', e->'settings' FROM jsonb_array_elements($1::jsonb) e`, d.notify);
    await insertJson(
      c,
      `INSERT INTO pending (key, person_id, due_at, rec) SELECT e->>'key', e->>'personId', (e->>'dueAt')::bigint, e->'rec' FROM jsonb_array_elements($1::jsonb) e`,
      d.pending.map((p) => {
        // Re-keyed in this backend's order (creation time); the same layout today.
        const key = pendingKey(p.notice.id, p.personId);
        return { key, personId: p.personId, dueAt: dueAt(p), rec: { ...p, key } };
      }),
    );
    await insertJson(c, `INSERT INTO delivery_log (person_id, at, entry) SELECT e->>'personId', (e->'entry'->>'at')::bigint, e->'entry' FROM jsonb_array_elements($1::jsonb) e`, d.deliveryLog);
    // Read back inside the transaction: a mismatch rolls the whole move back.
    const got = await c.query(`SELECT
        (SELECT count(*) FROM persons)::int AS persons,
        (SELECT count(*) FROM keys)::int AS keys,
        (SELECT coalesce(sum((uses->>'total')::bigint), 0) FROM keys)::bigint AS uses,
        (SELECT count(*) FROM history)::int AS history,
        (SELECT count(*) FROM notices)::int AS notices,
        (SELECT count(*) FROM partners)::int AS partners,
        (SELECT count(*) FROM pending)::int AS pending`);
    const row = got.rows[0] as Record<string, number>;
    const want = reportOf(d);
    const stored: ImportReport = { persons: row.persons!, keys: row.keys!, uses: Number(row.uses), history: row.history!, notices: row.notices!, partners: row.partners!, pending: row.pending! };
    for (const f of Object.keys(want) as Array<keyof ImportReport>) {
      if (stored[f] !== want[f]) throw new IntegrityError(`the copy does not match: ${f} is ${stored[f]} in PostgreSQL but ${want[f]} in LevelDB; nothing was written`);
    }
    // Per key too: a sum can hide two errors that cancel out.
    const perKey = await c.query<{ person_id: string; partner_id: string; total: number; seq: number; n: number }>(
      `SELECT k.person_id, k.partner_id, (k.uses->>'total')::int AS total, k.history_seq AS seq,
              (SELECT count(*) FROM history h WHERE h.person_id = k.person_id AND h.partner_id = k.partner_id)::int AS n
       FROM keys k`,
    );
    const byKey = new Map(perKey.rows.map((x) => [`${x.person_id}!${x.partner_id}`, x]));
    for (const k of d.keys) {
      const x = byKey.get(`${k.record.personId}!${k.record.partnerId}`);
      if (!x || x.total !== k.record.uses.total || x.seq !== k.record.historySeq || x.n !== k.history.length) {
        throw new IntegrityError(`the copy of the key for partner ${k.record.partnerId} does not match its source; nothing was written`);
      }
    }
    return stored;
  });
}
