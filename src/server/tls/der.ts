// Minimal ASN.1 DER encoder (plus a tiny reader), just enough to build an
// X.509 certificate. Every function returns a complete TLV (tag, length,
// value) as a Buffer, so structures are built by nesting calls.

/** Encode a DER length. Short form (< 128) is one byte; long form is
 *  0x80 | number-of-length-bytes, followed by the big-endian length with
 *  no leading zero bytes (DER requires the minimal encoding). */
function encodeLength(len: number): Buffer {
  if (len < 0x80) return Buffer.from([len]);
  const bytes: number[] = [];
  for (let n = len; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Generic TLV with a single-byte tag. */
function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), encodeLength(body.length), body]);
}

export const sequence = (...items: Buffer[]): Buffer => tlv(0x30, ...items);
export const set = (...items: Buffer[]): Buffer => tlv(0x31, ...items);
export const boolean = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0x00]));
export const octetString = (b: Buffer): Buffer => tlv(0x04, b);
export const utf8String = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));

/** INTEGER from unsigned big-endian bytes. DER integers are two's complement
 *  and minimal: strip redundant leading zeros, then prepend a single 0x00 if
 *  the high bit is set (otherwise the value would read as negative). */
export function unsignedInteger(bytes: Buffer): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  let v = bytes.subarray(i);
  if (v.length === 0) v = Buffer.from([0]);
  if ((v[0] ?? 0) & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
  return tlv(0x02, v);
}

export const smallInteger = (n: number): Buffer => {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`bad integer ${n}`);
  const bytes: number[] = [];
  for (let x = n; x > 0; x = Math.floor(x / 256)) bytes.unshift(x & 0xff);
  return unsignedInteger(Buffer.from(bytes.length ? bytes : [0]));
};

/** BIT STRING: first content byte is the number of unused bits in the last byte. */
export const bitString = (b: Buffer, unusedBits = 0): Buffer =>
  tlv(0x03, Buffer.from([unusedBits]), b);

/** OBJECT IDENTIFIER: first two arcs packed as 40*a + b, every arc in base-128
 *  with the continuation bit (0x80) set on all but the last byte. */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((s) => {
    if (!/^\d+$/.test(s)) throw new Error(`bad OID ${dotted}`);
    return Number(s);
  });
  const [a, b, ...rest] = arcs;
  if (a === undefined || b === undefined) throw new Error(`bad OID ${dotted}`);
  const out: number[] = [];
  for (const arc of [40 * a + b, ...rest]) {
    const chunk: number[] = [arc & 0x7f];
    for (let x = Math.floor(arc / 128); x > 0; x = Math.floor(x / 128)) chunk.unshift((x & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** Context-specific EXPLICIT tag [n]: constructed (0xa0 | n) wrapping the
 *  complete inner TLV, as used for TBSCertificate version [0] and extensions [3]. */
export const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner);

/** Context-specific IMPLICIT primitive tag [n] (0x80 | n): replaces the
 *  universal tag, content stays as-is (GeneralName dNSName [2], iPAddress [7]). */
export const implicitPrimitive = (n: number, content: Buffer): Buffer => tlv(0x80 | n, content);

/** X.509 Time: UTCTime (YYMMDDHHMMSSZ) for years 1950..2049, GeneralizedTime
 *  (YYYYMMDDHHMMSSZ) otherwise (RFC 5280 4.1.2.5). Fractional seconds dropped. */
export function time(d: Date): Buffer {
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  const y = d.getUTCFullYear();
  const rest = p(d.getUTCMonth() + 1) + p(d.getUTCDate()) + p(d.getUTCHours()) +
    p(d.getUTCMinutes()) + p(d.getUTCSeconds()) + 'Z';
  if (y >= 1950 && y < 2050) return tlv(0x17, Buffer.from(p(y % 100) + rest, 'ascii'));
  return tlv(0x18, Buffer.from(p(y, 4) + rest, 'ascii'));
}

/** Read one TLV at `offset`; returns the tag, its value and where the next TLV starts. */
export function readTlv(buf: Buffer, offset = 0): { tag: number; value: Buffer; end: number } {
  const tag = buf[offset];
  let lenByte = buf[offset + 1];
  if (tag === undefined || lenByte === undefined) throw new Error('DER: truncated');
  let pos = offset + 2;
  let len = lenByte;
  if (lenByte & 0x80) {
    const n = lenByte & 0x7f;
    if (n === 0 || n > 4) throw new Error('DER: unsupported length');
    len = 0;
    for (let i = 0; i < n; i++) {
      lenByte = buf[pos++];
      if (lenByte === undefined) throw new Error('DER: truncated');
      len = len * 256 + lenByte;
    }
  }
  if (pos + len > buf.length) throw new Error('DER: truncated');
  return { tag, value: buf.subarray(pos, pos + len), end: pos + len };
}
