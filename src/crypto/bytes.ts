// Byte helpers. Binary data is Uint8Array everywhere inside kmgr; these are the edges.
import { Buffer } from 'node:buffer';
import { timingSafeEqual } from 'node:crypto';

const te = new TextEncoder();
const td = new TextDecoder('utf-8', { fatal: true });

export const utf8 = (s: string): Uint8Array => te.encode(s);
/** Strict UTF-8 decode: invalid sequences throw rather than becoming U+FFFD. */
export const fromUtf8 = (b: Uint8Array): string => td.decode(b);

export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const view = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

export const toB64 = (b: Uint8Array): string => view(b).toString('base64');
export const toB64url = (b: Uint8Array): string => view(b).toString('base64url');
export const toHex = (b: Uint8Array): string => view(b).toString('hex');

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;
const B64URL = /^[A-Za-z0-9_-]*$/;
const HEX = /^(?:[0-9a-fA-F]{2})*$/;

/** Strict base64: Buffer.from silently skips junk, which would let two encodings name one value. */
export function fromB64(s: string): Uint8Array | undefined {
  if (s.length % 4 !== 0 || !B64.test(s)) return undefined;
  const b = Buffer.from(s, 'base64');
  return toB64(b) === s ? new Uint8Array(b) : undefined;
}
export function fromB64url(s: string): Uint8Array | undefined {
  if (!B64URL.test(s) || s.length % 4 === 1) return undefined;
  const b = Buffer.from(s, 'base64url');
  return toB64url(b) === s ? new Uint8Array(b) : undefined;
}
export function fromHex(s: string): Uint8Array | undefined {
  if (!HEX.test(s)) return undefined;
  return new Uint8Array(Buffer.from(s, 'hex'));
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Unambiguous encoding of a tuple of fields: each field is a 4-byte big-endian
 * length followed by its bytes. Used for associated data and signed statements,
 * so that ("ab","c") and ("a","bc") can never encode alike.
 */
export function encodeFields(fields: ReadonlyArray<string | number | Uint8Array>): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const f of fields) {
    const b = typeof f === 'string' ? utf8(f) : typeof f === 'number' ? utf8(String(f)) : f;
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, b.length);
    parts.push(len, b);
  }
  return concat(...parts);
}

/** The fields encodeFields wrote; undefined if the bytes are not such an encoding. */
export function decodeFields(b: Uint8Array): Uint8Array[] | undefined {
  const out: Uint8Array[] = [];
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let o = 0; o < b.length; ) {
    if (o + 4 > b.length) return undefined;
    const n = view.getUint32(o);
    if (o + 4 + n > b.length) return undefined;
    out.push(b.subarray(o + 4, o + 4 + n));
    o += 4 + n;
  }
  return out;
}

/** Best-effort wipe of secret bytes we own (JS gives no guarantee; it narrows the window). */
export function wipe(b: Uint8Array | undefined): void {
  if (b) b.fill(0);
}
