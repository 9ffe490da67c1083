// Opens the LevelDB under DATA/db only when it is the database the marker
// names and its files are whole; creates one only in a new data directory.
// Every refusal names the file and the recovery, and changes nothing: the
// checks run before LevelDB can delete or rewrite anything.
import { Level } from 'level';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { writeFileAtomic } from '../io/atomic-file.js';
import { dirname, join } from 'node:path';
import { ConfigError, UnavailableError } from '../protocol/errors.js';
import { inspectLevelDir, openLogComplaints, type FileFinding } from './level-files.js';
import { checkNewDataDir, MARKER_FILE, newDatabaseId, readMarker, writeMarker, type DataMarker } from './marker.js';
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

/**
 * DATA/kmgrd-db-state.json: whether the database was closed cleanly, and the
 * size of each log then. A crash may leave part of one unacknowledged write at
 * the end of the newest log (LevelDB reads past it, as it should); after a
 * clean close nothing may be missing, so a truncated log is damage, not a crash.
 */
const STATE_FILE = 'kmgrd-db-state.json';
interface DbState {
  clean: boolean;
  logs?: Record<string, number>;
}

function readState(dataDir: string): DbState {
  try {
    return JSON.parse(readFileSync(join(dataDir, STATE_FILE), 'utf8')) as DbState;
  } catch {
    return { clean: false };
  }
}

/** Called after the database is closed: records the log sizes a clean close left. */
export async function markClosedCleanly(dbDir: string): Promise<void> {
  const logs: Record<string, number> = {};
  for (const f of readdirSync(dbDir)) if (/^\d+\.log$/.test(f)) logs[f] = statSync(join(dbDir, f)).size;
  await writeFileAtomic(join(dirname(dbDir), STATE_FILE), JSON.stringify({ clean: true, logs } satisfies DbState) + '\n');
}

function cleanCloseFindings(dbDir: string, state: DbState): FileFinding[] {
  const out: FileFinding[] = [];
  for (const [f, size] of Object.entries(state.logs ?? {})) {
    const path = join(dbDir, f);
    if (!existsSync(path)) out.push({ file: f, problem: 'is missing (it was there when kmgrd last stopped)' });
    else if (statSync(path).size !== size) out.push({ file: f, problem: `is ${statSync(path).size} bytes, not the ${size} it had when kmgrd last stopped (truncated or overwritten)` });
  }
  return out;
}

/** Everything wrong with db/'s files, as judged before opening (kmgrd check-db reports the same). */
export function fileFindings(dbDir: string, afterFailedWrite = false): FileFinding[] {
  const state = readState(dirname(dbDir));
  return [...(state.clean ? cleanCloseFindings(dbDir, state) : []), ...inspectLevelDir(dbDir, true, afterFailedWrite || !state.clean)];
}

function hasFiles(dir: string): boolean {
  return existsSync(dir) && readdirSync(dir).length > 0;
}

/** LevelDB's own words for a failed open, never just "Database failed to open". */
function openError(dbDir: string, e: unknown): Error {
  const err = e as { code?: string; cause?: { code?: string; message?: string }; message?: string };
  if (err.cause?.code === 'LEVEL_LOCKED' || err.code === 'LEVEL_LOCKED') {
    return new UnavailableError(`the database at ${dbDir} is in use by another process (is kmgrd already running?)`).because(e);
  }
  const cause = err.cause?.message ?? err.message ?? String(e);
  if (/corrupt|checksum|missing files|bad/i.test(cause)) return new StorageDamagedError(`LevelDB found the database at ${dbDir} damaged (${cause}): ${RECOVERY}`).because(e);
  return new UnavailableError(`cannot open the database at ${dbDir}: ${cause}`).because(e);
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
    checkNewDataDir(dataDir);
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
  const findings = fileFindings(dbDir, opts.afterFailedWrite);
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
  await writeFileAtomic(join(dataDir, STATE_FILE), JSON.stringify({ clean: false } satisfies DbState) + '\n');
  return { db, marker };
}
