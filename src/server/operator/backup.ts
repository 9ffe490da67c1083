// kmgrd backup and kmgrd restore, the storage side (see backup-format.ts for the file).
import { existsSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { adminSocketPath } from '../admin.js';
import { restoreInto, verifyBackup, writeBackup, type BackupHeader, type BackupSummary } from '../../store/backup-format.js';
import { LevelStorage } from '../../store/level-storage.js';
import { OPERATOR_STATEMENT_TIMEOUT_MS, openStorage } from '../../store/open.js';
import { redactUrl } from '../../store/pg/db.js';
import { ensurePrivateDir } from '../../io/atomic-file.js';
import { KmgrError, UsageError } from '../../protocol/errors.js';
import { askDaemon } from './admin-client.js';

/** Through the running daemon (a snapshot of its live database), else on the database directly. */
export async function backup(o: { data: string; databaseUrl?: string; out: string }): Promise<BackupSummary & { via: 'daemon' | 'database' }> {
  const dataDir = resolve(o.data);
  const out = resolve(o.out);
  // A backup of any size: the daemon answers when the file is complete. With no daemon at --data,
  // the database is read directly, from one snapshot (on PostgreSQL whatever its nodes are doing).
  const viaDaemon = await askDaemon(adminSocketPath(dataDir), { op: 'backup', out }, 24 * 3_600_000);
  let summary: BackupSummary;
  if (viaDaemon) summary = viaDaemon.reply as BackupSummary;
  else {
    const storage = await openStorage({ dataDir, databaseUrl: o.databaseUrl, tz: 'UTC', clock: Date.now, createIfMissing: false, statementTimeoutMs: OPERATOR_STATEMENT_TIMEOUT_MS });
    try {
      summary = await writeBackup(storage, out, Date.now());
    } finally {
      await storage.close();
    }
  }
  return { ...summary, via: viaDaemon ? 'daemon' : 'database' };
}

export interface Restored {
  /** Where it went: { data: DIR } or { database: URL without its password }. */
  target: Record<string, string>;
  /** The same, in words. */
  where: string;
  header: BackupHeader;
  records: number;
  noticed: number;
}

export async function restore(file: string, o: { data?: string; databaseUrl?: string }): Promise<Restored> {
  const backupFile = resolve(file);
  if (o.databaseUrl) return restoreIntoDatabase(backupFile, o.databaseUrl);
  if (o.data === undefined) throw new UsageError('kmgrd restore needs --data DIR (a new directory) or --database-url URL (an empty PostgreSQL database)');
  const dataDir = resolve(o.data);
  // Never over a database, even an empty-looking one: a restore is into a new directory.
  if (existsSync(dataDir) && readdirSync(dataDir).length > 0) {
    throw new KmgrError('target_not_empty', `${dataDir} is not empty; restore into a new directory, then point kmgrd serve --data at it`);
  }
  // A whole pass first: nothing is created from a truncated or altered file.
  const { header } = await verifyBackup(backupFile);
  await ensurePrivateDir(dataDir);
  let result;
  try {
    const storage = await LevelStorage.open(join(dataDir, 'db'), {
      tz: 'UTC',
      clock: Date.now,
      createIfMissing: true,
      restoredFrom: { snapshotId: header.snapshotId, takenAt: header.takenAt, sourceId: header.source.id },
    });
    try {
      result = await restoreInto(backupFile, storage, Date.now());
    } finally {
      await storage.close();
    }
  } catch (e) {
    // The directory was empty or new: what we made of it is removed, so the restore can be run again.
    for (const name of existsSync(dataDir) ? readdirSync(dataDir) : []) await rm(join(dataDir, name), { recursive: true, force: true });
    throw e;
  }
  return { target: { data: dataDir }, where: dataDir, ...result };
}

/** Into an empty PostgreSQL database, in one transaction: a failed restore leaves it empty. */
async function restoreIntoDatabase(backupFile: string, databaseUrl: string): Promise<Restored> {
  // A whole pass first: nothing is written from a truncated or altered file.
  await verifyBackup(backupFile);
  const storage = await openStorage({ dataDir: '', databaseUrl, tz: 'UTC', clock: Date.now, statementTimeoutMs: OPERATOR_STATEMENT_TIMEOUT_MS });
  let result;
  try {
    result = await restoreInto(backupFile, storage, Date.now());
  } finally {
    await storage.close();
  }
  return { target: { database: redactUrl(databaseUrl) }, where: 'the PostgreSQL database', ...result };
}
