// The backup file: one JSON object per line, in terms of the Storage-level
// records (persons, keys, blobs, history, notices, partners...), never a
// backend's own keys, so a file taken from LevelDB restores into any backend
// that can import these records. Line 1 is the header; the last line is the
// trailer with the record count and the SHA-256 of every byte before it, so a
// truncated or altered file is refused before anything is restored.
// Holds what the database holds: sealed blobs (the server never has plaintext).
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fsyncDir } from '../io/atomic-file.js';
import { IntegrityError } from '../protocol/errors.js';
import type { BackupRecord } from './types.js';
import { newNotice } from './apply-use.js';

export const BACKUP_FORMAT = 'kmgr-backup';
export const BACKUP_VERSION = 1;

export interface BackupHeader {
  format: typeof BACKUP_FORMAT;
  version: number;
  snapshotId: string;
  /** When the snapshot was taken (ISO 8601): uses after it are not in the file. */
  takenAt: string;
  source: { id: string; store: string };
}

export type { BackupRecord, RestoreRecord } from './types.js';

interface Trailer {
  t: 'end';
  records: number;
  sha256: string;
}

/** What a backend offers for backups: one consistent snapshot, as records. */
export interface BackupSource {
  identity(): { id: string; store: string };
  exportRecords(): AsyncIterable<BackupRecord>;
}

/** What a backend offers for restores: records into an empty database. */
export interface RestoreTarget {
  importRecords(records: AsyncIterable<BackupRecord>): Promise<number>;
}

export interface BackupSummary {
  file: string;
  snapshotId: string;
  takenAt: string;
  records: number;
  bytes: number;
  sha256: string;
}

/**
 * Streams a snapshot to `out`: written to a temporary file (mode 0600) beside
 * it, fsynced, then renamed, so `out` is always a whole backup or absent.
 * Memory stays flat: lines go out in ~64 KiB writes as the records arrive.
 */
export async function writeBackup(source: BackupSource, out: string, now: number): Promise<BackupSummary> {
  const tmp = join(dirname(out), `.${basename(out)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  const hash = createHash('sha256');
  let bytes = 0;
  let buf: string[] = [];
  let bufLen = 0;
  const flush = async (): Promise<void> => {
    if (buf.length === 0) return;
    const chunk = Buffer.from(buf.join(''), 'utf8');
    buf = [];
    bufLen = 0;
    hash.update(chunk);
    bytes += chunk.length;
    await fh.write(chunk);
  };
  const line = async (v: unknown): Promise<void> => {
    const s = JSON.stringify(v) + '\n';
    buf.push(s);
    bufLen += s.length;
    if (bufLen >= 65_536) await flush();
  };
  const header: BackupHeader = {
    format: BACKUP_FORMAT,
    version: BACKUP_VERSION,
    snapshotId: randomBytes(12).toString('base64url'),
    takenAt: new Date(now).toISOString(),
    source: source.identity(),
  };
  let records = 0;
  try {
    await line(header);
    for await (const r of source.exportRecords()) {
      await line(r);
      records++;
    }
    await flush();
    const sha256 = hash.digest('hex');
    const trailer: Trailer = { t: 'end', records, sha256 };
    const last = Buffer.from(JSON.stringify(trailer) + '\n');
    await fh.write(last);
    await fh.sync();
    await fh.close();
    await rename(tmp, out);
    await fsyncDir(dirname(out));
    return { file: out, snapshotId: header.snapshotId, takenAt: header.takenAt, records, bytes: bytes + last.length, sha256 };
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

const bad = (file: string, why: string): IntegrityError => new IntegrityError(`${file} is not a usable kmgr backup: ${why}`);

/**
 * The records of a backup file, checked as they stream: the header first, the
 * trailer's count and SHA-256 at the end (an error then, after the last record;
 * callers verify a whole pass before trusting any record: see verifyBackup).
 */
export async function* readBackup(file: string, onHeader?: (h: BackupHeader) => void): AsyncGenerator<BackupRecord> {
  const hash = createHash('sha256');
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let header: BackupHeader | undefined;
  let trailer: Trailer | undefined;
  let records = 0;
  for await (const text of lines) {
    if (trailer) throw bad(file, 'there is data after its end line');
    let v: { t?: string };
    try {
      v = JSON.parse(text) as { t?: string };
    } catch {
      throw bad(file, `line ${records + 2} is not JSON (damaged or truncated)`);
    }
    if (!header) {
      const h = v as unknown as BackupHeader;
      if (h.format !== BACKUP_FORMAT) throw bad(file, 'it does not start with a kmgr-backup header');
      if (h.version !== BACKUP_VERSION) throw bad(file, `it is format version ${h.version}; this kmgrd reads version ${BACKUP_VERSION}`);
      header = h;
      onHeader?.(h);
      hash.update(text + '\n');
      continue;
    }
    if (v.t === 'end') {
      trailer = v as Trailer;
      continue;
    }
    hash.update(text + '\n');
    records++;
    yield v as BackupRecord;
  }
  if (!header) throw bad(file, 'it is empty');
  if (!trailer) throw bad(file, 'it has no end line (truncated)');
  if (trailer.records !== records) throw bad(file, `its end line counts ${trailer.records} records, the file has ${records}`);
  if (trailer.sha256 !== hash.digest('hex')) throw bad(file, 'its checksum does not match (damaged or altered)');
}

/** A whole pass over the file: its header and record count, or the reason it is unusable. */
export async function verifyBackup(file: string): Promise<{ header: BackupHeader; records: number }> {
  let header: BackupHeader | undefined;
  let records = 0;
  for await (const r of readBackup(file, (h) => (header = h))) {
    void r;
    records++;
  }
  return { header: header!, records };
}

/**
 * Restores a verified backup into an empty database: its records, then what
 * the restore itself must record (threat: a restore rolls counters back). The
 * database says it was restored from a snapshot taken at T, and the owner of
 * every key gets a notice, queued for delivery, that uses after T are missing.
 */
export async function restoreInto(
  file: string,
  target: RestoreTarget,
  now: number,
): Promise<{ header: BackupHeader; records: number; noticed: number }> {
  let header: BackupHeader | undefined;
  const keys: { personId: string; partnerId: string; keyVersion: number }[] = [];
  let n = 0;
  async function* records(): AsyncGenerator<BackupRecord> {
    for await (const r of readBackup(file, (h) => (header = h))) {
      if (r.t === 'key') keys.push({ personId: r.key.personId, partnerId: r.key.partnerId, keyVersion: r.key.keyVersion });
      n++;
      yield r;
    }
  }
  const restoredAt = new Date(now).toISOString();
  async function* afterwards(): AsyncGenerator<BackupRecord> {
    const h = header!;
    yield { t: 'restored', restore: { snapshotId: h.snapshotId, takenAt: h.takenAt, restoredAt, sourceId: h.source.id } };
    for (const k of keys) {
      const notice = newNotice(k, {
        kind: 'restored',
        message: `${k.partnerId} (v${k.keyVersion}): the server's database was restored from a backup taken at ${h.takenAt}; uses and changes after that time are missing from this key's history and counts (run kmgr audit)`,
      }, now);
      yield { t: 'notice', notice };
      yield { t: 'pending', delivery: { key: '', personId: notice.personId, notice, channels: {} } };
    }
  }
  // One import of everything: a backend that imports in one transaction (PostgreSQL) restores
  // all of it, the restore's own records included, or nothing.
  async function* everything(): AsyncGenerator<BackupRecord> {
    yield* records();
    yield* afterwards();
  }
  await target.importRecords(everything());
  return { header: header!, records: n, noticed: keys.length };
}
