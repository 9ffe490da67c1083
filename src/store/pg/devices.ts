// A person's devices on PostgreSQL (kmgr device, kmgr rekey --revoke). A
// device export is consumed in the transaction that adds the device, with its
// row locked, so two imports of one export cannot both pass on any two nodes.
import { KmgrError, NotFoundError } from '../../protocol/errors.js';
import type { DeviceRecord, NonceClaim } from '../types.js';
import type { Tx } from './db.js';
import { checkCurrentKey, claimIn } from './common.js';

interface DeviceRow {
  label: string;
  added_at: number;
  last_used_at: number | null;
  last_key_id: string | null;
  via: DeviceRecord['via'];
  revoked_at: number | null;
}

export const DEVICE_COLUMNS = 'label, added_at, last_used_at, last_key_id, via, revoked_at';

export const deviceFromRow = (r: DeviceRow): DeviceRecord => ({
  label: r.label,
  addedAt: r.added_at,
  lastUsedAt: r.last_used_at,
  lastKeyId: r.last_key_id,
  via: r.via,
  revokedAt: r.revoked_at,
});

/** False when the label is taken (the primary key decides, also against another node's concurrent add). */
export async function insertDevice(c: Pick<Tx, 'query'>, personId: string, d: DeviceRecord): Promise<boolean> {
  const r = await c.query('INSERT INTO devices (person_id, label, added_at, last_used_at, last_key_id, via, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING', [
    personId,
    d.label,
    d.addedAt,
    d.lastUsedAt,
    d.lastKeyId,
    d.via,
    d.revokedAt,
  ]);
  return r.rowCount === 1;
}

export async function addDeviceExport(c: Tx, personId: string, exportId: string, expiresAt: number, nonce: NonceClaim): Promise<void> {
  await checkCurrentKey(c, personId, nonce.keyId, 'FOR SHARE');
  await claimIn(c, nonce);
  await c.query('INSERT INTO device_exports (person_id, export_id, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [personId, exportId, expiresAt]);
}

export async function addDevice(c: Tx, personId: string, device: DeviceRecord, exportId: string | null, at: number, nonce: NonceClaim | null): Promise<DeviceRecord> {
  if (nonce) await checkCurrentKey(c, personId, nonce.keyId, 'FOR SHARE');
  const existing = await c.query<{ revoked_at: number | null }>('SELECT revoked_at FROM devices WHERE person_id = $1 AND label = $2 FOR UPDATE', [personId, device.label]);
  const ex = existing.rows[0];
  if (ex && ex.revoked_at === null) throw new KmgrError('device_exists', `this person already has a device labelled ${device.label}; choose another --label`);
  if (ex) throw new KmgrError('device_exists', `the label ${device.label} belonged to a revoked device; choose another --label`);
  if (exportId !== null) {
    const r = await c.query<{ expires_at: number; used_at: number | null }>(
      'SELECT expires_at, used_at FROM device_exports WHERE person_id = $1 AND export_id = $2 FOR UPDATE',
      [personId, exportId],
    );
    const e = r.rows[0];
    if (!e) throw new NotFoundError('unknown_export', 'the server knows no such device export (made by an older kmgr, or for another person)');
    if (e.used_at !== null) throw new KmgrError('export_used', 'this device export was already imported once; make a new one with kmgr device export');
    if (at >= e.expires_at) throw new KmgrError('export_expired', 'this device export has expired; make a new one with kmgr device export');
    // Kept (used) rather than deleted, so a second import is told "already imported", not "unknown".
    await c.query('UPDATE device_exports SET used_at = $3 WHERE person_id = $1 AND export_id = $2', [personId, exportId, at]);
  }
  if (nonce) await claimIn(c, nonce);
  if (!(await insertDevice(c, personId, device))) throw new KmgrError('device_exists', `this person already has a device labelled ${device.label}; choose another --label`);
  return { ...device };
}

export async function listDevices(c: Pick<Tx, 'query'>, personId: string): Promise<DeviceRecord[]> {
  const r = await c.query<DeviceRow>(`SELECT ${DEVICE_COLUMNS} FROM devices WHERE person_id = $1 ORDER BY added_at, label`, [personId]);
  return r.rows.map(deviceFromRow);
}

/**
 * Notes a request from a device and returns its record. The last use is kept at minute
 * precision: a write per request would cost a commit per request. Read on every request,
 * never cached: a revocation through any node is refused by every node at once.
 */
export const TOUCH_DEVICE = `WITH u AS (
    UPDATE devices SET last_used_at = $4, last_key_id = $3
    WHERE person_id = $1 AND label = $2 AND revoked_at IS NULL
      AND (last_used_at IS NULL OR $4 - last_used_at >= 60000 OR last_key_id IS DISTINCT FROM $3)
    RETURNING ${DEVICE_COLUMNS}
  )
  SELECT ${DEVICE_COLUMNS} FROM u
  UNION ALL
  SELECT ${DEVICE_COLUMNS} FROM devices WHERE person_id = $1 AND label = $2 AND NOT EXISTS (SELECT 1 FROM u)`;
