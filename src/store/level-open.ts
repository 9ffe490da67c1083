// Opens the LevelDB under DATA/db only when it is the database the marker
// names and its files are whole; creates one only in a new data directory.
// Every refusal names the file and the recovery, and changes nothing: the
// checks run before LevelDB can delete or rewrite anything.
import { Level } from 'level';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ConfigError, UnavailableError } from '../protocol/errors.js';
import { inspectLevelDir, openLogComplaints, type FileFinding } from './level-files.js';
import { MARKER_FILE, newDatabaseId, readMarker, writeMarker, type DataMarker } from './marker.js';
import { checkedEncodings, StorageDamagedError, unwrapStoreError, type CheckedEncodings } from './record-codec.js';

export const META_ID_KEY = 'meta!id';
export const RECOVERY = 'nothing was changed; see "Recovering a damaged database" in kmgrd(8) (kmgrd check-db, then kmgrd restore from a backup)';

export type CheckedLevel = Level<string, string>;

export function damageError(dbDir: string, findings: FileFinding[]): StorageDamagedError {
  const f = findings[0]!;
  const more = findings.length > 1 ? ` (and ${findings.length - 1} more problem${findings.length > 2 ? 's' : ''})` : '';
  return new StorageDamagedError(`the database file ${join(dbDir, f.file)} ${f.problem}${more}: ${RECOVERY}`, {
    findings: findings.map((x) => ({ file: join(dbDir, x.file), problem: x.problem })),
  });
}

function hasFiles(dir: string): boolean {
  return existsSync(dir) && readdirSync(dir).length > 0;
}

/** LevelDB's own words for a failed open, never just "Database failed to open". */
function openError(dbDir: string, e: unknown): Error {
  const err = e as { code?: string; cause?: { code?: string; message?: string }; message?: string };
  if (err.cause?.code === 'LEVEL_LOCKED' || err.code === 'LEVEL_LOCKED') {
    return new UnavailableError(`the database at ${dbDir} is in use by another process (is kmgrd already running?)`);
  }
  const cause = err.cause?.message ?? err.message ?? String(e);
  if (/corrupt|checksum|missing files|bad/i.test(cause)) return new StorageDamagedError(`LevelDB found the database at ${dbDir} damaged (${cause}): ${RECOVERY}`);
  return new UnavailableError(`cannot open the database at ${dbDir}: ${cause}`);
}

export async function openLevel(
  dbDir: string,
  opts: { create: boolean; restoredFrom?: DataMarker['restoredFrom']; encodings?: CheckedEncodings; afterFailedWrite?: boolean },
): Promise<{ db: CheckedLevel; marker: DataMarker }> {
  const checkedText = (opts.encodings ?? checkedEncodings()).text;
  const dataDir = dirname(dbDir);
  const marker = readMarker(dataDir);
  if (!marker) {
    if (hasFiles(dbDir)) {
      throw new StorageDamagedError(
        `${dbDir} holds a database but ${join(dataDir, MARKER_FILE)} is missing, so kmgrd cannot tell whose it is: ${RECOVERY}`,
      );
    }
    if (!opts.create) throw new ConfigError(`there is no kmgrd database at ${dataDir} (check --data)`);
    const db = new Level<string, string>(dbDir, { keyEncoding: 'utf8', valueEncoding: checkedText as never, createIfMissing: true, errorIfExists: true });
    try {
      await db.open();
    } catch (e) {
      throw openError(dbDir, e);
    }
    const created: DataMarker = {
      format: 'kmgrd-data',
      version: 1,
      id: newDatabaseId(),
      store: 'leveldb',
      createdAt: new Date().toISOString(),
      ...(opts.restoredFrom ? { restoredFrom: opts.restoredFrom } : {}),
    };
    await db.put(META_ID_KEY, created.id, { sync: true });
    // The marker last: a directory with a marker always has its database.
    await writeMarker(dataDir, created);
    return { db, marker: created };
  }
  if (!hasFiles(dbDir)) {
    throw new StorageDamagedError(`the database directory ${dbDir} is missing or empty, though ${join(dataDir, MARKER_FILE)} says kmgrd initialised it: ${RECOVERY}`);
  }
  // Deep: every table block's checksum, ~350 MB/s, so a 1 GB database adds ~3 s to a start.
  const findings = inspectLevelDir(dbDir, true, opts.afterFailedWrite ?? false);
  if (findings.length > 0) throw damageError(dbDir, findings);
  const db = new Level<string, string>(dbDir, { keyEncoding: 'utf8', valueEncoding: checkedText as never, createIfMissing: false });
  try {
    await db.open();
  } catch (e) {
    throw openError(dbDir, e);
  }
  try {
    const complaints = openLogComplaints(dbDir);
    if (complaints.length > 0) throw new StorageDamagedError(`LevelDB skipped damage while opening ${dbDir} (db/LOG: ${complaints[0]!.trim()}): ${RECOVERY}`);
    const id = await db.get(META_ID_KEY).catch((e: unknown) => {
      throw unwrapStoreError(e);
    });
    if (id !== marker.id) {
      throw new StorageDamagedError(`${dbDir} is not the database ${join(dataDir, MARKER_FILE)} names (its identity is ${id ?? 'missing'}, not ${marker.id}): ${RECOVERY}`);
    }
  } catch (e) {
    await db.close().catch(() => undefined);
    throw e;
  }
  return { db, marker };
}
