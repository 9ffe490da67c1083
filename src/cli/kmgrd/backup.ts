// kmgrd backup and kmgrd restore (see backup-format.ts for the file).
import { existsSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { adminSocketPath } from '../../server/admin.js';
import { restoreInto, verifyBackup, writeBackup, type BackupHeader, type BackupSummary } from '../../store/backup-format.js';
import { LevelStorage } from '../../store/level-storage.js';
import { openStorage } from '../../store/open.js';
import { redactUrl } from '../../store/pg/db.js';
import { ensurePrivateDir } from '../../io/atomic-file.js';
import { KmgrError, UsageError } from '../../protocol/errors.js';
import { print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { askDaemon } from './admin-client.js';

/** Through the running daemon (a snapshot of its live database), else on the database directly. */
export async function backup(o: { data: string; databaseUrl?: string; out: string; json?: boolean }): Promise<number> {
  const dataDir = resolve(o.data);
  const out = resolve(o.out);
  // A backup of any size: the daemon answers when the file is complete. PostgreSQL is read
  // directly, from one snapshot, whatever its nodes are doing.
  const viaDaemon = o.databaseUrl ? undefined : await askDaemon(adminSocketPath(dataDir), { op: 'backup', out }, 24 * 3_600_000);
  let summary: BackupSummary;
  if (viaDaemon) summary = viaDaemon.reply as BackupSummary;
  else {
    const storage = await openStorage({ dataDir, databaseUrl: o.databaseUrl, tz: 'UTC', clock: Date.now, createIfMissing: false });
    try {
      summary = await writeBackup(storage, out, Date.now());
    } finally {
      await storage.close();
    }
  }
  if (o.json) printJson({ ...summary, via: viaDaemon ? 'daemon' : 'database' });
  else print(`Backed up ${summary.records} records (snapshot ${summary.takenAt}, ${summary.bytes} bytes, sha256 ${summary.sha256}) to ${summary.file}`);
  return EXIT.OK;
}

export async function restore(file: string, o: { data?: string; databaseUrl?: string; json?: boolean }): Promise<number> {
  const backupFile = resolve(file);
  if (o.databaseUrl) return restoreIntoDatabase(backupFile, o.databaseUrl, Boolean(o.json));
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
  return restored({ data: dataDir }, dataDir, header, result, Boolean(o.json));
}

/** Into an empty PostgreSQL database, in one transaction: a failed restore leaves it empty. */
async function restoreIntoDatabase(backupFile: string, databaseUrl: string, json: boolean): Promise<number> {
  const { header } = await verifyBackup(backupFile);
  const storage = await openStorage({ dataDir: '', databaseUrl, tz: 'UTC', clock: Date.now });
  let result;
  try {
    result = await restoreInto(backupFile, storage, Date.now());
  } finally {
    await storage.close();
  }
  return restored({ database: redactUrl(databaseUrl) }, 'the PostgreSQL database', header, result, json);
}

function restored(target: Record<string, string>, where: string, header: BackupHeader, result: { records: number; noticed: number }, json: boolean): number {
  if (json) printJson({ ...target, snapshotId: header.snapshotId, takenAt: header.takenAt, records: result.records, keysNoticed: result.noticed });
  else {
    print(`Restored ${result.records} records into ${where} from the snapshot taken at ${header.takenAt}.`);
    print(`Uses after ${header.takenAt} are missing: the owners of ${result.noticed} key${result.noticed === 1 ? '' : 's'} were sent a notice saying so.`);
  }
  return EXIT.OK;
}
