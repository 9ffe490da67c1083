// kmgrd backup and kmgrd restore (see backup-format.ts for the file).
import { existsSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { adminSocketPath } from '../../server/admin.js';
import { restoreInto, verifyBackup, writeBackup, type BackupSummary } from '../../store/backup-format.js';
import { LevelStorage } from '../../store/level-storage.js';
import { ensurePrivateDir } from '../../io/atomic-file.js';
import { KmgrError } from '../../protocol/errors.js';
import { print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { askDaemon } from './admin-client.js';

/** Through the running daemon (a snapshot of its live database), else on the database directly. */
export async function backup(o: { data: string; out: string; json?: boolean }): Promise<number> {
  const dataDir = resolve(o.data);
  const out = resolve(o.out);
  // A backup of any size: the daemon answers when the file is complete.
  const viaDaemon = await askDaemon(adminSocketPath(dataDir), { op: 'backup', out }, 24 * 3_600_000);
  let summary: BackupSummary;
  if (viaDaemon) summary = viaDaemon.reply as BackupSummary;
  else {
    const storage = await LevelStorage.open(join(dataDir, 'db'), { tz: 'UTC', clock: Date.now, createIfMissing: false });
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

export async function restore(file: string, o: { data: string; json?: boolean }): Promise<number> {
  const dataDir = resolve(o.data);
  const backupFile = resolve(file);
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
  const line = {
    data: dataDir,
    snapshotId: header.snapshotId,
    takenAt: header.takenAt,
    records: result.records,
    keysNoticed: result.noticed,
  };
  if (o.json) printJson(line);
  else {
    print(`Restored ${result.records} records into ${dataDir} from the snapshot taken at ${header.takenAt}.`);
    print(`Uses after ${header.takenAt} are missing: the owners of ${result.noticed} key${result.noticed === 1 ? '' : 's'} were sent a notice saying so.`);
  }
  return EXIT.OK;
}
