// Partner lists on PostgreSQL (second embodiment, Figs. 2, 10, 16): the
// operator's shared directory and each person's own list. Names are unique by
// primary key, so two nodes adding one name at once add it once.
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { KmgrError } from '../../protocol/errors.js';
import type { PartnerMeta, PartnerRecord } from '../types.js';
import { query, transaction } from './db.js';

function partnerRecord(partnerId: string, name: string, meta: PartnerMeta, owner: string | null, at: number): PartnerRecord {
  return { partnerId, name, displayName: meta.displayName ?? null, appServer: meta.appServer ?? null, business: meta.business ?? null, owner, createdAt: at };
}

const SHARED = 'SELECT p.rec FROM shared_names s JOIN partners p USING (partner_id)';

export function addSharedPartner(pool: pg.Pool, name: string, meta: PartnerMeta, at: number): Promise<PartnerRecord> {
  return transaction(pool, async (c) => {
    const rec = partnerRecord(randomBytes(16).toString('base64url'), name, meta, null, at);
    const r = await c.query('INSERT INTO shared_names (name, partner_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [name, rec.partnerId]);
    if (r.rowCount === 0) throw new KmgrError('key_exists', `a shared partner named ${name} already exists`);
    await c.query('INSERT INTO partners (partner_id, rec) VALUES ($1, $2::jsonb)', [rec.partnerId, JSON.stringify(rec)]);
    return rec;
  });
}

export async function listSharedPartners(pool: pg.Pool): Promise<PartnerRecord[]> {
  const r = await query<{ rec: PartnerRecord }>(pool, `${SHARED} ORDER BY s.name`);
  return r.rows.map((x) => x.rec);
}

export async function sharedPartner(pool: pg.Pool, name: string): Promise<PartnerRecord | undefined> {
  const r = await query<{ rec: PartnerRecord }>(pool, `${SHARED} WHERE s.name = $1`, [name]);
  return r.rows[0]?.rec;
}

export function addPersonPartner(pool: pg.Pool, personId: string, name: string, meta: PartnerMeta, at: number, keepId?: string): Promise<PartnerRecord> {
  return transaction(pool, async (c) => {
    const taken = await c.query('SELECT 1 FROM person_partners WHERE person_id = $1 AND name = $2', [personId, name]);
    if (taken.rowCount) throw new KmgrError('key_exists', `partner ${name} is already in your list`);
    let rec: PartnerRecord | undefined;
    if (keepId === undefined) rec = (await c.query<{ rec: PartnerRecord }>(`${SHARED} WHERE s.name = $1`, [name])).rows[0]?.rec;
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

export async function listPersonPartners(pool: pg.Pool, personId: string): Promise<PartnerRecord[]> {
  const r = await query<{ rec: PartnerRecord; name: string }>(
    pool,
    'SELECT p.rec, pp.name FROM person_partners pp JOIN partners p USING (partner_id) WHERE pp.person_id = $1 ORDER BY pp.name',
    [personId],
  );
  // The person's own name for the partner wins over the record's.
  return r.rows.map((x) => ({ ...x.rec, name: x.name }));
}

export function removePersonPartner(pool: pg.Pool, personId: string, name: string): Promise<boolean> {
  return transaction(pool, async (c) => {
    const r = await c.query<{ partner_id: string }>('DELETE FROM person_partners WHERE person_id = $1 AND name = $2 RETURNING partner_id', [personId, name]);
    const id = r.rows[0]?.partner_id;
    if (id === undefined) return false;
    // A private partner goes with its only list entry; a shared one stays in the directory.
    await c.query(`DELETE FROM partners WHERE partner_id = $1 AND rec->>'owner' = $2`, [id, personId]);
    return true;
  });
}
