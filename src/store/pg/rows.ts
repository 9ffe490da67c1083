// Rows to records and back. A key's terms, binding and identity are one jsonb
// value (new fields of KeyRecord need no migration); what every use changes
// (uses, lastUsedAt, historySeq) has its own columns.
import type pg from 'pg';
import { termInstants } from '../../terms/notices.js';
import type { KeyRecord, Notice, PendingDelivery } from '../types.js';

export interface KeyRow {
  rec: Omit<KeyRecord, 'uses' | 'lastUsedAt' | 'historySeq'>;
  uses: KeyRecord['uses'];
  last_used_at: number | null;
  history_seq: number;
}

export const KEY_COLUMNS = 'rec, uses, last_used_at, history_seq';

export function keyFromRow(r: KeyRow): KeyRecord {
  return { ...r.rec, uses: r.uses, lastUsedAt: r.last_used_at, historySeq: r.history_seq };
}

/** The jsonb part of a key record: everything but the counters. */
export function recJson(r: KeyRecord): string {
  const { uses: _u, lastUsedAt: _l, historySeq: _h, ...rest } = r;
  return JSON.stringify(rest);
}

export function noticeFromRow(r: { rec: Notice; read: boolean }): Notice {
  return { ...r.rec, read: r.read };
}

export const toBytes = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

/**
 * When a delivery is next due: now for a notice no pass has reached yet, else the
 * earliest retry of a channel still being tried; never when every channel is done.
 */
export const NEVER = 8.64e15;
export function dueAt(d: PendingDelivery): number {
  const states = Object.values(d.channels);
  if (states.length === 0) return 0;
  let at = NEVER;
  for (const c of states) if (!c.done && c.nextAt < at) at = c.nextAt;
  return at;
}

/** bigint (int8) columns as numbers: every value kmgr stores is an epoch ms or a count, far below 2^53. */
export function pgTypes(types: typeof pg.types): pg.CustomTypesConfig {
  const base = types.getTypeParser.bind(types) as (oid: number, format?: string) => unknown;
  return { getTypeParser: ((oid: number, format?: string): unknown => (oid === 20 ? (v: string) => Number(v) : base(oid, format))) as pg.CustomTypesConfig['getTypeParser'] };
}

/** The earliest instant check-terms must look at the key (null: none, or retired). */
export function termAt(r: KeyRecord): number | null {
  if (r.retiredAt) return null;
  const at = termInstants(r.keyVersion, r);
  return at.length === 0 ? null : Math.min(...at);
}
