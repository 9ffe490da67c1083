// Delivery of notices on PostgreSQL (webhook, e-mail). A node takes a lease on
// what it delivers, skipping rows another node leases or has locked, so
// several nodes running deliveries never send one notice twice.
import type pg from 'pg';
import type { DeliveryLogEntry, NonceClaim, NotifySettings, PendingDelivery } from '../types.js';
import { query, transaction } from './db.js';
import { claimIn } from './common.js';
import { dueAt } from './rows.js';

/**
 * How long a node holds the notices it is delivering. Another node takes them over
 * only after this, so a node that dies mid-pass delays its notices, never doubles them.
 */
export const DELIVERY_LEASE_MS = 10 * 60_000;

export async function getNotifySettings(pool: pg.Pool, personId: string): Promise<NotifySettings> {
  const r = await query<{ settings: NotifySettings }>(pool, 'SELECT settings FROM notify WHERE person_id = $1', [personId]);
  return r.rows[0]?.settings ?? { webhook: null, email: null };
}

export function setNotifySettings(pool: pg.Pool, personId: string, s: NotifySettings, nonce: NonceClaim): Promise<void> {
  return transaction(pool, async (c) => {
    await claimIn(c, nonce);
    await c.query('INSERT INTO notify (person_id, settings) VALUES ($1, $2::jsonb) ON CONFLICT (person_id) DO UPDATE SET settings = EXCLUDED.settings', [
      personId,
      JSON.stringify(s),
    ]);
  });
}

export async function dueDeliveries(pool: pg.Pool, now: number, limit: number): Promise<PendingDelivery[]> {
  const r = await query<{ rec: PendingDelivery }>(
    pool,
    `UPDATE pending SET lease_until = $2
     WHERE key IN (
       SELECT key FROM pending WHERE due_at <= $1 AND lease_until <= $1 ORDER BY key LIMIT $3 FOR UPDATE SKIP LOCKED
     )
     RETURNING rec`,
    [now, now + DELIVERY_LEASE_MS, limit],
  );
  return r.rows.map((x) => x.rec).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

export function saveDelivery(pool: pg.Pool, d: PendingDelivery, finished: boolean, log: DeliveryLogEntry[]): Promise<void> {
  return transaction(pool, async (c) => {
    if (finished) await c.query('DELETE FROM pending WHERE key = $1', [d.key]);
    else await c.query('UPDATE pending SET rec = $2::jsonb, due_at = $3, lease_until = 0 WHERE key = $1', [d.key, JSON.stringify(d), dueAt(d)]);
    if (log.length > 0) {
      await c.query(`INSERT INTO delivery_log (person_id, at, entry) SELECT $1, (e->>'at')::bigint, e FROM jsonb_array_elements($2::jsonb) AS e`, [
        d.personId,
        JSON.stringify(log),
      ]);
    }
  });
}

export async function deliveryLog(pool: pg.Pool, personId: string, limit: number): Promise<DeliveryLogEntry[]> {
  const r = await query<{ entry: DeliveryLogEntry }>(pool, 'SELECT entry FROM delivery_log WHERE person_id = $1 ORDER BY at DESC, id DESC LIMIT $2', [personId, limit]);
  return r.rows.map((x) => x.entry);
}
