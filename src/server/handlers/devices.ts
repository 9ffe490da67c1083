// A person's devices (kmgr device list/export/import, recover). Labels are
// chosen by each device; the server keeps which exist, when each was added and
// last used, and which were revoked (by kmgr device revoke, within a rekey).
import { parseJson } from '../../protocol/schema.js';
import { AddDeviceRequest, DeviceExportRequest, type DeviceView } from '../../protocol/messages.js';
import type { DeviceRecord } from '../../store/types.js';
import type { Handler } from '../context.js';

/** An export is accepted for one import within a day: long enough to carry it to the other device. */
const DEVICE_EXPORT_TTL_MS = 24 * 3_600_000;

const iso = (ms: number): string => new Date(ms).toISOString();
const text = (ctx: { body: Uint8Array }): string => new TextDecoder().decode(ctx.body);

function deviceView(d: DeviceRecord, currentKeyId: string): DeviceView {
  return {
    label: d.label,
    addedAt: iso(d.addedAt),
    lastUsedAt: d.lastUsedAt === null ? null : iso(d.lastUsedAt),
    via: d.via,
    current: d.revokedAt === null && (d.lastKeyId === null || d.lastKeyId === currentKeyId),
    revokedAt: d.revokedAt === null ? null : iso(d.revokedAt),
  };
}

/** GET /v1/devices */
export const listDevices: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  await ctx.deps.storage.persistNonce(auth.claim);
  const devices = await ctx.deps.storage.listDevices(person.personId);
  return { status: 200, body: { devices: devices.map((d) => deviceView(d, person.keyId)) } };
};

/** POST /v1/devices/exports: the export's ID, so that the server accepts one import of it: a copied export file cannot make a second device (export_used). */
export const addDeviceExport: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  const body = parseJson(text(ctx), DeviceExportRequest);
  const expiresAt = ctx.now + DEVICE_EXPORT_TTL_MS;
  await ctx.deps.storage.addDeviceExport(person.personId, body.exportId, expiresAt, auth.claim);
  return { status: 201, body: { exportId: body.exportId, expiresAt: iso(expiresAt) } };
};

/** POST /v1/devices: a device joins, consuming its export (or, for kmgr recover, none). */
export const addDevice: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  const body = parseJson(text(ctx), AddDeviceRequest);
  const rec: DeviceRecord = {
    label: body.label,
    addedAt: ctx.now,
    lastUsedAt: ctx.now,
    lastKeyId: person.keyId,
    via: body.exportId === null ? 'recovery' : 'import',
    revokedAt: null,
  };
  const d = await ctx.deps.storage.addDevice(person.personId, rec, body.exportId, ctx.now, auth.claim);
  ctx.deps.log.info({ personId: person.personId, device: d.label, via: d.via }, 'device added');
  return { status: 201, body: deviceView(d, person.keyId) };
};
