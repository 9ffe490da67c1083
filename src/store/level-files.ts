// Reads LevelDB's own files without LevelDB, so that damage is found before
// LevelDB opens them. LevelDB as bound by classic-level runs without paranoid
// checks: opened over a missing CURRENT it starts a new empty database and
// deletes the old tables; over a damaged log it drops the bad records ("ignoring
// error ... dropping N bytes" in db/LOG) and then folds the log into a table and
// deletes it. Either way acknowledged uses would vanish. Formats:
// https://github.com/google/leveldb/blob/main/doc/log_format.md and table_format.md.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { crc32c, unmaskCrc } from './crc32c.js';
import { concat } from '../crypto/bytes.js';

export interface FileFinding {
  /** The file's name inside db/. */
  file: string;
  problem: string;
}

const BLOCK = 32_768;
const HEADER = 7;
const FULL = 1, FIRST = 2, MIDDLE = 3, LAST = 4;

/** The records of a LevelDB log-format file (a .log or a MANIFEST), checking every CRC. */
export function readLogRecords(bytes: Uint8Array): { records: Uint8Array[]; problem?: string; truncated?: boolean } {
  const records: Uint8Array[] = [];
  let pending: Uint8Array[] | undefined;
  let off = 0;
  while (off < bytes.length) {
    const left = BLOCK - (off % BLOCK);
    if (left < HEADER) {
      off += left; // the writer pads a block's last few bytes with zeros
      continue;
    }
    if (bytes.length - off < HEADER) return { records, problem: `ends inside a record header at byte ${off} (truncated)`, truncated: true };
    const length = bytes[off + 4]! | (bytes[off + 5]! << 8);
    const type = bytes[off + 6]!;
    if (type === 0 && length === 0) {
      // A zero header is preallocated space, never data: the rest of the block must be zeros too.
      off += HEADER;
      continue;
    }
    if (HEADER + length > left) return { records, problem: `has a bad record length at byte ${off}` };
    if (off + HEADER + length > bytes.length) return { records, problem: `ends inside a record at byte ${off} (truncated)`, truncated: true };
    const stored = (bytes[off]! | (bytes[off + 1]! << 8) | (bytes[off + 2]! << 16) | (bytes[off + 3]! << 24)) >>> 0;
    if (crc32c(bytes, off + 6, off + HEADER + length) !== unmaskCrc(stored)) return { records, problem: `has a record with a bad checksum at byte ${off}` };
    const data = bytes.subarray(off + HEADER, off + HEADER + length);
    if (type === FULL && !pending) records.push(data);
    else if (type === FIRST && !pending) pending = [data];
    else if (type === MIDDLE && pending) pending.push(data);
    else if (type === LAST && pending) {
      pending.push(data);
      records.push(concat(...pending));
      pending = undefined;
    } else return { records, problem: `has a record fragment out of order at byte ${off}` };
    off += HEADER + length;
  }
  if (pending) return { records, problem: 'ends inside a record (truncated)', truncated: true };
  return { records };
}

class Reader {
  off = 0;
  constructor(private readonly b: Uint8Array) {}
  get done(): boolean {
    return this.off >= this.b.length;
  }
  varint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.off >= this.b.length) throw new Error('truncated varint');
      const byte = this.b[this.off++]!;
      v += (byte & 0x7f) * mul;
      if ((byte & 0x80) === 0) return v;
      mul *= 128;
    }
    throw new Error('overlong varint');
  }
  slice(): Uint8Array {
    const n = this.varint();
    if (this.off + n > this.b.length) throw new Error('truncated slice');
    const s = this.b.subarray(this.off, this.off + n);
    this.off += n;
    return s;
  }
}

interface Manifest {
  logNumber: number;
  prevLogNumber: number;
  /** Live table files: number -> size in bytes. */
  tables: Map<number, number>;
}

/** Applies a MANIFEST's version edits (LevelDB's version_edit.cc tags). */
function parseManifest(records: Uint8Array[]): Manifest {
  const m: Manifest = { logNumber: 0, prevLogNumber: 0, tables: new Map() };
  for (const rec of records) {
    const r = new Reader(rec);
    while (!r.done) {
      const tag = r.varint();
      if (tag === 1) r.slice();
      else if (tag === 2) m.logNumber = r.varint();
      else if (tag === 3 || tag === 4) r.varint();
      else if (tag === 5) {
        r.varint();
        r.slice();
      } else if (tag === 6) {
        r.varint();
        m.tables.delete(r.varint());
      }
      else if (tag === 7) {
        r.varint();
        const n = r.varint();
        const size = r.varint();
        r.slice();
        r.slice();
        m.tables.set(n, size);
      } else if (tag === 9) m.prevLogNumber = r.varint();
      else throw new Error(`unknown tag ${tag}`);
    }
  }
  return m;
}

const num6 = (n: number): string => String(n).padStart(6, '0');
const TABLE_MAGIC = [0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb];

/** Every data block of a table file checked against its CRC (table_format.md). */
export function checkTableBlocks(bytes: Uint8Array): string | undefined {
  if (bytes.length < 48) return 'is too short to be a table (truncated)';
  if (!TABLE_MAGIC.every((b, i) => bytes[bytes.length - 8 + i] === b)) return 'has no table footer (truncated or overwritten)';
  const footer = new Reader(bytes.subarray(bytes.length - 48));
  footer.varint();
  footer.varint(); // metaindex handle
  const indexOff = footer.varint();
  const indexSize = footer.varint();
  const block = (off: number, size: number): Uint8Array | string => {
    if (off + size + 5 > bytes.length) return `has a block past its end at byte ${off}`;
    const stored = (bytes[off + size + 1]! | (bytes[off + size + 2]! << 8) | (bytes[off + size + 3]! << 16) | (bytes[off + size + 4]! << 24)) >>> 0;
    if (crc32c(bytes, off, off + size + 1) !== unmaskCrc(stored)) return `has a block with a bad checksum at byte ${off}`;
    return bytes.subarray(off, off + size);
  };
  const indexRaw = block(indexOff, indexSize);
  if (typeof indexRaw === 'string') return indexRaw;
  let index: Uint8Array;
  try {
    index = bytes[indexOff + indexSize] === 1 ? snappyDecompress(indexRaw) : indexRaw;
  } catch {
    return 'has an index block that does not decompress';
  }
  // Index entries: shared, non-shared, value length, key delta, value (a block handle).
  const restarts = new DataView(index.buffer, index.byteOffset + index.length - 4, 4).getUint32(0, true);
  const end = index.length - 4 - 4 * restarts;
  const r = new Reader(index.subarray(0, end));
  try {
    while (!r.done) {
      r.varint();
      const nonShared = r.varint();
      const valueLen = r.varint();
      r.off += nonShared;
      const v = new Reader(index.subarray(r.off, r.off + valueLen));
      r.off += valueLen;
      const problem = block(v.varint(), v.varint());
      if (typeof problem === 'string') return problem;
    }
  } catch {
    return 'has an unreadable index block';
  }
  return undefined;
}

/** Snappy's raw format (format_description.txt), for LevelDB's compressed index blocks. */
export function snappyDecompress(src: Uint8Array): Uint8Array {
  const r = new Reader(src);
  const out = new Uint8Array(r.varint());
  let o = 0;
  let i = r.off;
  const le = (n: number): number => {
    let v = 0;
    for (let k = 0; k < n; k++) v += src[i + k]! * 2 ** (8 * k);
    i += n;
    return v;
  };
  while (i < src.length) {
    const tag = src[i++]!;
    const kind = tag & 3;
    if (kind === 0) {
      let len = tag >>> 2;
      if (len >= 60) len = le(len - 59);
      len += 1;
      if (i + len > src.length || o + len > out.length) throw new Error('literal overruns');
      out.set(src.subarray(i, i + len), o);
      i += len;
      o += len;
      continue;
    }
    let len: number, offset: number;
    if (kind === 1) {
      len = 4 + ((tag >>> 2) & 7);
      offset = ((tag >>> 5) << 8) | src[i++]!;
    } else {
      len = 1 + (tag >>> 2);
      offset = le(kind === 2 ? 2 : 4);
    }
    if (offset === 0 || offset > o || o + len > out.length) throw new Error('copy overruns');
    for (let k = 0; k < len; k++, o++) out[o] = out[o - offset]!;
  }
  if (o !== out.length) throw new Error('short output');
  return out;
}

/**
 * What is wrong with a LevelDB directory, before opening it: CURRENT, the
 * MANIFEST it names, every live table (present, of the recorded size, and with
 * `deep` every block's checksum), and every log file's record checksums.
 */
export function inspectLevelDir(dbDir: string, deep = false, tornTailOk = false): FileFinding[] {
  const out: FileFinding[] = [];
  const current = join(dbDir, 'CURRENT');
  if (!existsSync(current)) return [{ file: 'CURRENT', problem: 'is missing' }];
  const name = readFileSync(current, 'utf8');
  if (!/^MANIFEST-\d{6,}\n$/.test(name)) return [{ file: 'CURRENT', problem: 'is damaged (it does not name a MANIFEST)' }];
  const manifestName = name.trim();
  const manifestPath = join(dbDir, manifestName);
  if (!existsSync(manifestPath)) return [{ file: manifestName, problem: 'is missing (CURRENT names it)' }];
  const { records, problem } = readLogRecords(readFileSync(manifestPath));
  if (problem) return [{ file: manifestName, problem }];
  let manifest: Manifest;
  try {
    manifest = parseManifest(records);
  } catch (e) {
    return [{ file: manifestName, problem: `is damaged (${(e as Error).message})` }];
  }
  const files = new Set(readdirSync(dbDir));
  for (const [n, size] of manifest.tables) {
    const file = files.has(`${num6(n)}.ldb`) ? `${num6(n)}.ldb` : files.has(`${num6(n)}.sst`) ? `${num6(n)}.sst` : undefined;
    if (!file) {
      out.push({ file: `${num6(n)}.ldb`, problem: 'is missing (the MANIFEST lists it)' });
      continue;
    }
    const actual = statSync(join(dbDir, file)).size;
    if (actual !== size) {
      out.push({ file, problem: `is ${actual} bytes where the MANIFEST records ${size} (truncated or overwritten)` });
      continue;
    }
    if (deep) {
      const p = checkTableBlocks(readFileSync(join(dbDir, file)));
      if (p) out.push({ file, problem: p });
    }
  }
  if (manifest.logNumber > 0 && !files.has(`${num6(manifest.logNumber)}.log`)) out.push({ file: `${num6(manifest.logNumber)}.log`, problem: 'is missing (the MANIFEST names it as the current log)' });
  const logs = [...files].filter((f) => /^\d+\.log$/.test(f)).sort();
  for (const f of logs) {
    const n = Number(f.slice(0, -4));
    if (n < manifest.logNumber && n !== manifest.prevLogNumber) continue; // already folded into tables; LevelDB ignores it
    const r = readLogRecords(readFileSync(join(dbDir, f)));
    // After a write that failed (disk full) the live log may end in part of that write: never acknowledged, so not a loss.
    if (r.problem && !(tornTailOk && r.truncated && f === logs[logs.length - 1])) out.push({ file: f, problem: r.problem });
  }
  return out;
}

/** What LevelDB itself wrote to db/LOG about skipped damage while opening. */
export function openLogComplaints(dbDir: string): string[] {
  let text: string;
  try {
    text = readFileSync(join(dbDir, 'LOG'), 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').filter((l) => /ignoring error|dropping \d+ bytes|Corruption|checksum mismatch/i.test(l));
}
