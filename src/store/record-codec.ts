// A checksum in every stored value, verified on every read (threat: a flipped
// byte or torn block in a LevelDB table that LevelDB, run without paranoid
// checks, would hand back as data: a key whose counter silently went down).
// Stored form: 8 hex digits of CRC-32C, then the payload. Used as level value
// encodings, so every get, iterator and batch of the LevelDB backend goes
// through them and none can forget.
import { crc32c } from './crc32c.js';
import { KmgrError, UnavailableError } from '../protocol/errors.js';

const enc = new TextEncoder();

/** Thrown by a read whose value fails its checksum; the storage then refuses to serve. */
export class StorageDamagedError extends KmgrError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('storage_damaged', message, details);
  }
}

const hex8 = (n: number): string => n.toString(16).padStart(8, '0');

export function encodeText(payload: string): string {
  return hex8(crc32c(enc.encode(payload))) + payload;
}

/** The payload of a stored text value, or undefined when its checksum does not match. */
export function checkText(stored: string): string | undefined {
  if (stored.length < 8 || !/^[0-9a-f]{8}$/.test(stored.slice(0, 8))) return undefined;
  const payload = stored.slice(8);
  return hex8(crc32c(enc.encode(payload))) === stored.slice(0, 8) ? payload : undefined;
}

export function encodeBytes(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(payload.length + 4);
  new DataView(out.buffer).setUint32(0, crc32c(payload));
  out.set(payload, 4);
  return out;
}

export function checkBytes(stored: Uint8Array): Uint8Array | undefined {
  if (stored.length < 4) return undefined;
  const payload = stored.subarray(4);
  const want = new DataView(stored.buffer, stored.byteOffset, 4).getUint32(0);
  return crc32c(payload) === want ? payload : undefined;
}

const DAMAGED = 'a stored record failed its checksum: the database is damaged (run kmgrd check-db, then restore a backup)';

/**
 * level value encodings (see level-transcoder): checked UTF-8 text and checked
 * bytes. `onDamage` hears of every failed check, so that the storage can stop
 * serving at the first one rather than only failing the one read.
 */
export function checkedEncodings(onDamage: (e: StorageDamagedError) => void = () => undefined) {
  const damaged = (): never => {
    const e = new StorageDamagedError(DAMAGED);
    onDamage(e);
    throw e;
  };
  return {
    text: {
      name: 'kmgr-checked-text',
      format: 'utf8' as const,
      encode: (v: string): string => encodeText(v),
      decode: (s: string): string => checkText(s) ?? damaged(),
    },
    bytes: {
      name: 'kmgr-checked-bytes',
      format: 'view' as const,
      encode: (v: Uint8Array): Uint8Array => encodeBytes(v),
      decode: (b: Uint8Array): Uint8Array => checkBytes(b) ?? damaged(),
    },
  };
}

export type CheckedEncodings = ReturnType<typeof checkedEncodings>;

/** The KmgrError behind a level error (level wraps what an encoding throws). */
export function unwrapStoreError(e: unknown): unknown {
  let cur = e;
  for (let i = 0; i < 4 && cur && !(cur instanceof KmgrError); i++) cur = (cur as { cause?: unknown }).cause;
  if (cur instanceof KmgrError) return cur;
  // A read while the store reopens itself after a failed write.
  if ((e as { code?: string })?.code === 'LEVEL_DATABASE_NOT_OPEN') return new UnavailableError('storage is reopening after a failed write; try again');
  // LevelDB's own finding on a read (a block that does not decompress) is damage too, never an internal error.
  const msg = (e as { cause?: { message?: string }; message?: string })?.cause?.message ?? (e as Error)?.message ?? '';
  return /Corruption/.test(msg) ? new StorageDamagedError(`LevelDB reported damage on a read (${msg}); run kmgrd check-db, then restore a backup`) : e;
}
