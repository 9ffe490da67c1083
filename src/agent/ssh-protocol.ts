// The OpenSSH agent protocol (draft-miller-ssh-agent), as much as kmgr's SSH
// agent serves: list identities and sign. Every message is
//   uint32 length | byte type | contents
// with SSH wire types (RFC 4251: uint32, string = uint32 length + bytes,
// mpint). Anything else is answered SSH_AGENT_FAILURE by the server. Lengths
// are capped before anything is buffered, so a client cannot make the agent
// allocate without bound, and every read is bounds-checked: a malformed
// message is a failure answer, never a crash.
import { createPublicKey, sign as nodeSign, type KeyObject } from 'node:crypto';

const SSH_AGENT_FAILURE = 5;
export const SSH_AGENTC_REQUEST_IDENTITIES = 11;
const SSH_AGENT_IDENTITIES_ANSWER = 12;
export const SSH_AGENTC_SIGN_REQUEST = 13;
const SSH_AGENT_SIGN_RESPONSE = 14;

/** OpenSSH's own agent refuses messages over 256 KiB. */
const MAX_SSH_MESSAGE = 256 * 1024;

class SshWireError extends Error {}

/** Reads SSH wire types from a buffer; every read checks it stays inside. */
class SshReader {
  private off = 0;
  constructor(private readonly buf: Uint8Array) {}

  uint32(): number {
    if (this.off + 4 > this.buf.length) throw new SshWireError('truncated uint32');
    const v = Buffer.from(this.buf.buffer, this.buf.byteOffset + this.off, 4).readUInt32BE(0);
    this.off += 4;
    return v;
  }

  string(): Uint8Array {
    const n = this.uint32();
    if (this.off + n > this.buf.length) throw new SshWireError('truncated string');
    const v = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }

  get done(): boolean {
    return this.off === this.buf.length;
  }
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
};
const sshString = (b: Uint8Array | string): Buffer => {
  const bytes = typeof b === 'string' ? Buffer.from(b, 'utf8') : Buffer.from(b);
  return Buffer.concat([u32(bytes.length), bytes]);
};
/** An unsigned big-endian integer as an SSH mpint: no leading zeros, one 0x00 if the top bit is set. */
function sshMpint(b: Uint8Array): Buffer {
  let i = 0;
  while (i < b.length && b[i] === 0) i++;
  let v = Buffer.from(b.subarray(i));
  if (v.length > 0 && v[0]! & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
  return sshString(v);
}

/** One message: length, type, contents. */
function sshMessage(type: number, ...parts: Uint8Array[]): Buffer {
  const body = Buffer.concat([Buffer.from([type]), ...parts]);
  return Buffer.concat([u32(body.length), body]);
}

export const failure = (): Buffer => sshMessage(SSH_AGENT_FAILURE);

/**
 * Splits a byte stream into messages. push() returns each complete message
 * (type and contents); a length over the cap or of zero throws SshWireError,
 * after which the connection should be dropped.
 */
export class SshMessageDecoder {
  private buf = Buffer.alloc(0);

  push(chunk: Buffer): Array<{ type: number; body: Uint8Array }> {
    this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk]);
    const out: Array<{ type: number; body: Uint8Array }> = [];
    for (;;) {
      if (this.buf.length < 4) break;
      const n = this.buf.readUInt32BE(0);
      if (n === 0 || n > MAX_SSH_MESSAGE) throw new SshWireError(`agent message of ${n} bytes`);
      if (this.buf.length < 4 + n) break;
      out.push({ type: this.buf[4]!, body: new Uint8Array(this.buf.subarray(5, 4 + n)) });
      this.buf = this.buf.subarray(4 + n);
    }
    return out;
  }
}

export type SshKeyType = 'ed25519' | 'p256';

/** The SSH public key blob (RFC 4253 6.6 / RFC 5656 3.1) of an SPKI PEM public key. */
export function sshPublicKeyBlob(type: SshKeyType, spkiPem: string): Buffer {
  const key = createPublicKey(spkiPem);
  const jwk = key.export({ format: 'jwk' });
  const x = Buffer.from(jwk.x ?? '', 'base64url');
  if (type === 'ed25519') {
    if (key.asymmetricKeyType !== 'ed25519' || x.length !== 32) throw new SshWireError('not an Ed25519 public key');
    return Buffer.concat([sshString('ssh-ed25519'), sshString(x)]);
  }
  const y = Buffer.from(jwk.y ?? '', 'base64url');
  if (key.asymmetricKeyType !== 'ec' || jwk.crv !== 'P-256' || x.length !== 32 || y.length !== 32) throw new SshWireError('not a P-256 public key');
  return Buffer.concat([sshString('ecdsa-sha2-nistp256'), sshString('nistp256'), sshString(Buffer.concat([Buffer.from([4]), x, y]))]);
}

/** An SSH signature blob over data: string algorithm, string signature (RFC 8709 / RFC 5656 3.1.2). */
export function sshSign(type: SshKeyType, key: KeyObject, data: Uint8Array): Buffer {
  if (type === 'ed25519') return Buffer.concat([sshString('ssh-ed25519'), sshString(nodeSign(null, data, key))]);
  const rs = nodeSign('sha256', data, { key, dsaEncoding: 'ieee-p1363' });
  return Buffer.concat([sshString('ecdsa-sha2-nistp256'), sshString(Buffer.concat([sshMpint(rs.subarray(0, 32)), sshMpint(rs.subarray(32))]))]);
}

interface SignRequest {
  keyBlob: Uint8Array;
  data: Uint8Array;
  flags: number;
}

export function parseSignRequest(body: Uint8Array): SignRequest {
  const r = new SshReader(body);
  const keyBlob = r.string();
  const data = r.string();
  const flags = r.uint32();
  if (!r.done) throw new SshWireError('trailing bytes in a sign request');
  return { keyBlob, data, flags };
}

export function identitiesAnswer(ids: Array<{ blob: Uint8Array; comment: string }>): Buffer {
  return sshMessage(SSH_AGENT_IDENTITIES_ANSWER, u32(ids.length), ...ids.flatMap((i) => [sshString(i.blob), sshString(i.comment)]));
}

export function signResponse(signature: Uint8Array): Buffer {
  return sshMessage(SSH_AGENT_SIGN_RESPONSE, sshString(signature));
}
