// kmgrd check-db's reading: through the running daemon when there is one (its
// files are then live; they were checked when it started), else on the files:
// first LevelDB's own files, without opening them, then every record; or a
// PostgreSQL database, from one snapshot.
import { join, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { adminSocketPath } from '../admin.js';
import { fileFindings } from '../../store/level-open.js';
import { LevelStorage } from '../../store/level-storage.js';
import { OPERATOR_STATEMENT_TIMEOUT_MS, openStorage } from '../../store/open.js';
import { readMarker } from '../../store/marker.js';
import type { IntegrityReport } from '../../store/types.js';
import { ConfigError, KmgrError } from '../../protocol/errors.js';
import { askDaemon } from './admin-client.js';

export type CheckDbReport = IntegrityReport & { checked: 'files' | 'files+records' | 'records'; via: 'daemon' | 'database' };

async function direct(dataDir: string): Promise<IntegrityReport & { checked: 'files' | 'files+records' }> {
  const dbDir = join(dataDir, 'db');
  let marker;
  try {
    marker = readMarker(dataDir);
  } catch (e) {
    return { findings: [{ where: 'marker', problem: (e as Error).message }], records: 0, checked: 'files' };
  }
  if (!marker && !existsSync(dbDir)) throw new ConfigError(`there is no kmgrd database at ${dataDir} (check --data)`);
  const files = existsSync(dbDir) ? fileFindings(dbDir) : [{ file: '', problem: 'is missing' }];
  // Damaged files are not opened: LevelDB would drop or rewrite what it cannot read.
  if (files.length > 0) return { findings: files.map((f) => ({ where: `file ${join(dbDir, f.file)}`, problem: f.problem })), records: 0, checked: 'files' };
  let storage: LevelStorage;
  try {
    storage = await LevelStorage.open(dbDir, { tz: 'UTC', clock: Date.now, createIfMissing: false });
  } catch (e) {
    if (e instanceof KmgrError && e.code === 'storage_damaged') return { findings: [{ where: 'database', problem: e.message }], records: 0, checked: 'files' };
    throw e;
  }
  try {
    return { ...(await storage.checkIntegrity()), checked: 'files+records' };
  } finally {
    await storage.close();
  }
}

/** PostgreSQL keeps its own files whole: what is checked is how the tables agree. */
async function inDatabase(databaseUrl: string): Promise<IntegrityReport & { checked: 'records' }> {
  const storage = await openStorage({ dataDir: '', databaseUrl, tz: 'UTC', clock: Date.now, createIfMissing: false, statementTimeoutMs: OPERATOR_STATEMENT_TIMEOUT_MS });
  try {
    return { ...(await storage.checkIntegrity()), checked: 'records' };
  } finally {
    await storage.close();
  }
}

export async function checkDb(o: { data: string; databaseUrl?: string }): Promise<CheckDbReport> {
  const dataDir = resolve(o.data);
  const viaDaemon = await askDaemon(adminSocketPath(dataDir), { op: 'check-db' });
  if (viaDaemon) return { ...(viaDaemon.reply as IntegrityReport), checked: 'records', via: 'daemon' };
  if (o.databaseUrl) return { ...(await inDatabase(o.databaseUrl)), via: 'database' };
  return { ...(await direct(dataDir)), via: 'database' };
}
