// Picks the storage backend: PostgreSQL when a database URL is given, else
// LevelDB in the data directory (the embedded default). Each backend is loaded
// only when chosen, so a LevelDB deployment never loads pg and vice versa.
import { join } from 'node:path';
import { UsageError } from '../protocol/errors.js';
import type { DataMarker } from './marker.js';
import type { Storage, StorageEvents } from './types.js';

export interface StorageChoice {
  /** The data directory; LevelDB lives in DIR/db when no database URL is given. */
  dataDir: string;
  /** postgres://... : store everything in PostgreSQL instead. */
  databaseUrl?: string | undefined;
  tz: string;
  clock: () => number;
  /** False for operator tools: a mistyped --data must not create an empty database. */
  createIfMissing?: boolean;
  /** PostgreSQL: connections this process keeps at most (default 10). */
  poolSize?: number | undefined;
  /** PostgreSQL: longest one statement may run (ms, default 5000). */
  statementTimeoutMs?: number | undefined;
  /** PostgreSQL, for `kmgrd serve`: refuse a node whose --tz differs from the database's. */
  pinTimeZone?: boolean;
  onPoolError?: (e: Error) => void;
  /** Told of commits and notices, for metrics. */
  events?: StorageEvents;
  /** LevelDB: key records (and persons) kept in memory at most. PostgreSQL caches nothing that decides a request. */
  cacheKeys?: number;
  /** LevelDB, for kmgrd restore: recorded in the new database's marker. */
  restoredFrom?: DataMarker['restoredFrom'];
}

/** Operator work over a whole database (backup, restore, check-db, migrate) is not held to a request's statement timeout. */
export const OPERATOR_STATEMENT_TIMEOUT_MS = 3_600_000;

export function isDatabaseUrl(s: string): boolean {
  return /^postgres(ql)?:\/\//i.test(s);
}

export async function openStorage(o: StorageChoice): Promise<Storage> {
  if (o.databaseUrl !== undefined && o.databaseUrl !== '') {
    if (!isDatabaseUrl(o.databaseUrl)) throw new UsageError('--database-url must be a postgres:// or postgresql:// URL');
    const { PgStorage } = await import('./pg/pg-storage.js');
    return PgStorage.open({
      url: o.databaseUrl,
      tz: o.tz,
      clock: o.clock,
      ...(o.poolSize !== undefined ? { poolSize: o.poolSize } : {}),
      ...(o.statementTimeoutMs !== undefined ? { statementTimeoutMs: o.statementTimeoutMs } : {}),
      ...(o.pinTimeZone ? { pinTimeZone: true } : {}),
      ...(o.onPoolError ? { onPoolError: o.onPoolError } : {}),
      ...(o.events ? { events: o.events } : {}),
      ...(o.createIfMissing === false ? { createIfMissing: false } : {}),
    });
  }
  const { LevelStorage } = await import('./level-storage.js');
  return LevelStorage.open(join(o.dataDir, 'db'), {
    tz: o.tz,
    clock: o.clock,
    ...(o.createIfMissing !== undefined ? { createIfMissing: o.createIfMissing } : {}),
    ...(o.events ? { events: o.events } : {}),
    ...(o.cacheKeys !== undefined ? { cacheKeys: o.cacheKeys } : {}),
    ...(o.restoredFrom ? { restoredFrom: o.restoredFrom } : {}),
  });
}
