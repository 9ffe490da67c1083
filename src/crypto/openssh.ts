// OpenSSH key encodings (PROTOCOL.key and RFC 4253/5656 public key blobs), for
// `kmgr fetch --format openssh` and `kmgr pubkey --format ssh`: ssh, ssh-keygen
// and ssh-add read these, and none of them read PKCS#8 Ed25519 PEM.
import type { KeyObject } from 'node:crypto';
import { concat, fromB64url, wipe } from './bytes.js';
import { randomBytes } from './random.js';
import { UsageError } from '../protocol/errors.js';

type SshKeyType = 'ed25519' | 'p256';
export const SSH_TYPES: readonly string[] = ['ed25519', 'p256'];

const u32 = (n: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
};
const sshString = (b: Uint8Array | string): Uint8Array => {
  const bytes = typeof b === 'string' ? new TextEncoder().encode(b) : b;
  return concat(u32(bytes.length), bytes);
};
/** An unsigned big-endian integer as an SSH mpint: no leading zeros, a zero byte if the top bit is set. */
const mpint = (b: Uint8Array): Uint8Array => {
  let i = 0;
  while (i < b.length && b[i] === 0) i++;
  const v = b.subarray(i);
  return sshString(v.length > 0 && v[0]! & 0x80 ? concat(new Uint8Array([0]), v) : v);
};

const NAME: Record<SshKeyType, string> = { ed25519: 'ssh-ed25519', p256: 'ecdsa-sha2-nistp256' };

interface Parts {
  /** ed25519: the 32-byte public key; p256: the uncompressed point 04||X||Y. */
  pub: Uint8Array;
  /** ed25519: the 32-byte seed; p256: the scalar. Only for private keys. */
  d?: Uint8Array;
}

function partsOf(type: SshKeyType, key: KeyObject): Parts {
  const jwk = key.export({ format: 'jwk' });
  const x = fromB64url(jwk.x ?? '');
  if (!x) throw new TypeError('key has no public part');
  const d = jwk.d !== undefined ? fromB64url(jwk.d) : undefined;
  if (type === 'ed25519') return { pub: x, ...(d ? { d } : {}) };
  const y = fromB64url(jwk.y ?? '');
  if (!y) throw new TypeError('EC key has no y');
  return { pub: concat(new Uint8Array([4]), x, y), ...(d ? { d } : {}) };
}

function publicBlob(type: SshKeyType, pub: Uint8Array): Uint8Array {
  return type === 'ed25519' ? concat(sshString(NAME.ed25519), sshString(pub)) : concat(sshString(NAME.p256), sshString('nistp256'), sshString(pub));
}

function requireSshType(type: string, what: string): SshKeyType {
  if (type !== 'ed25519' && type !== 'p256') throw new UsageError(`${type} keys have no ${what} form; it is for ed25519 and p256 keys`);
  return type;
}

/** `ssh-ed25519 AAAA… comment`, as in authorized_keys. */
export function sshPublicKey(type: string, publicKey: KeyObject, comment = ''): string {
  const t = requireSshType(type, 'ssh');
  const line = `${NAME[t]} ${Buffer.from(publicBlob(t, partsOf(t, publicKey).pub)).toString('base64')}`;
  return (comment ? `${line} ${comment}` : line) + '\n';
}

/** An unencrypted "openssh-key-v1" private key, as ssh-keygen writes it. */
export function opensshPrivateKey(type: string, privateKey: KeyObject, comment = ''): string {
  const t = requireSshType(type, 'openssh');
  const { pub, d } = partsOf(t, privateKey);
  if (!d) throw new TypeError('not a private key');
  const check = randomBytes(4);
  // Ed25519's private field is seed||public (64 bytes); ECDSA's is the scalar as an mpint.
  const secret = t === 'ed25519' ? concat(d, pub) : mpint(d);
  const body = [check, check, sshString(NAME[t]), ...(t === 'ed25519' ? [sshString(pub), sshString(secret)] : [sshString('nistp256'), sshString(pub), secret]), sshString(comment)];
  let priv = concat(...body);
  const pad = (8 - (priv.length % 8)) % 8;
  priv = concat(priv, Uint8Array.from({ length: pad }, (_, i) => i + 1));
  const all = concat(
    new TextEncoder().encode('openssh-key-v1\0'),
    sshString('none'),
    sshString('none'),
    sshString(''),
    u32(1),
    sshString(publicBlob(t, pub)),
    sshString(priv),
  );
  const b64 = Buffer.from(all).toString('base64');
  for (const b of [d, secret, priv, all]) wipe(b);
  const lines = b64.match(/.{1,70}/g) ?? [];
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${lines.join('\n')}\n-----END OPENSSH PRIVATE KEY-----\n`;
}

