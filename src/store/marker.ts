// The marker beside db/ (DATA/kmgrd-data.json): a data directory kmgrd has
// initialised says so, and names its database. Without it kmgrd cannot tell a
// new directory from one whose database was lost; with it, a missing or
// swapped database is refused instead of replaced by an empty one.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeFileAtomic } from '../io/atomic-file.js';
import { StorageDamagedError } from './record-codec.js';
import { ConfigError } from '../protocol/errors.js';

export const MARKER_FILE = 'kmgrd-data.json';
export const MARKER_VERSION = 1;

export interface DataMarker {
  format: 'kmgrd-data';
  version: number;
  /** The database's identity; the database holds it too (meta!id). */
  id: string;
  store: 'leveldb' | 'postgresql';
  createdAt: string;
  /** Set when the database was made by `kmgrd restore`. */
  restoredFrom?: { snapshotId: string; takenAt: string; sourceId: string };
}

export const markerPath = (dataDir: string): string => join(dataDir, MARKER_FILE);

/** What kmgrd itself puts in a data directory. */
const OWN_NAMES = new Set(['db', 'tls', 'admin.sock', MARKER_FILE, 'kmgrd-db-state.json']);

/**
 * A database is created only in an empty or new directory (or one holding only
 * what kmgrd made there): a mistyped --data pointing at some other directory
 * must not become a key server's home. A directory with a marker is kmgrd's.
 */
export function checkNewDataDir(dataDir: string): void {
  if (!existsSync(dataDir) || existsSync(markerPath(dataDir))) return;
  const foreign = readdirSync(dataDir).filter((n) => !OWN_NAMES.has(n));
  if (foreign.length > 0) {
    throw new ConfigError(
      `${dataDir} is not empty and is not a kmgrd data directory (it holds ${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}); give an empty or new --data directory`,
    );
  }
}

export function newDatabaseId(): string {
  return randomBytes(16).toString('base64url');
}

export function readMarker(dataDir: string): DataMarker | undefined {
  const path = markerPath(dataDir);
  if (!existsSync(path)) return undefined;
  let m: DataMarker;
  try {
    m = JSON.parse(readFileSync(path, 'utf8')) as DataMarker;
  } catch {
    throw new StorageDamagedError(`${path} is damaged (not JSON); restore it or the data directory from a backup`);
  }
  if (m?.format !== 'kmgrd-data' || typeof m.id !== 'string') throw new StorageDamagedError(`${path} is damaged (not a kmgrd data marker); restore it or the data directory from a backup`);
  if (m.version !== MARKER_VERSION) throw new StorageDamagedError(`${path} is version ${m.version}; this kmgrd reads version ${MARKER_VERSION}`);
  return m;
}

export async function writeMarker(dataDir: string, m: DataMarker): Promise<void> {
  await writeFileAtomic(markerPath(dataDir), JSON.stringify(m, null, 2) + '\n', 0o600);
}
