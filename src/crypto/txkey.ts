// Transaction keys: one per business partner (Fig. 5). Key pairs are carried as
// PKCS#8 DER inside the sealed blob; aes256 keys as their 32 raw bytes.
import { createECDH, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, type JsonWebKey } from 'node:crypto';
import { equalBytes, fromB64url, toB64, toB64url, toHex, wipe } from './bytes.js';
import { randomBytes } from './random.js';
import { UsageError } from '../protocol/errors.js';

export const KEY_TYPES = ['ed25519', 'p256', 'secp256k1', 'x25519', 'aes256'] as const;
export type KeyType = (typeof KEY_TYPES)[number];
import { OUTPUT_FORMATS, type OutputFormat } from './formats.js';
export { OUTPUT_FORMATS, type OutputFormat };


export interface TransactionKey {
  type: KeyType;
  /** PKCS#8 DER for key pairs, 32 raw bytes for aes256. This is what gets sealed. */
  secret: Uint8Array;
}

const CURVES: Record<'p256' | 'secp256k1', string> = { p256: 'prime256v1', secp256k1: 'secp256k1' };

export function generateTransactionKey(type: KeyType): TransactionKey {
  if (type === 'aes256') return { type, secret: randomBytes(32) };
  const { privateKey } =
    type === 'ed25519' ? generateKeyPairSync('ed25519')
    : type === 'x25519' ? generateKeyPairSync('x25519')
    : generateKeyPairSync('ec', { namedCurve: CURVES[type] });
  return { type, secret: new Uint8Array(privateKey.export({ type: 'pkcs8', format: 'der' })) };
}

function privateKeyObject(k: TransactionKey): KeyObject {
  return createPrivateKey({ key: Buffer.from(k.secret), format: 'der', type: 'pkcs8' });
}

/** Which kmgr type a node KeyObject is, or undefined for types kmgr does not handle. */
function typeOf(key: KeyObject): KeyType | undefined {
  const t = key.asymmetricKeyType;
  if (t === 'ed25519' || t === 'x25519') return t;
  if (t === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return 'p256';
    if (curve === 'secp256k1') return 'secp256k1';
  }
  return undefined;
}

/** SPKI PEM of a key pair's public half; undefined for symmetric keys. */
export function publicKeyPem(k: TransactionKey): string | undefined {
  if (k.type === 'aes256') return undefined;
  return createPublicKey(privateKeyObject(k)).export({ type: 'spki', format: 'pem' }) as string;
}

/**
 * Reads an existing key for `register --import`: a PKCS#8/SEC1 PEM private key,
 * or a JWK (a private OKP/EC key, or an "oct" 256-bit key).
 */
export function importTransactionKey(text: string, expected?: KeyType): TransactionKey {
  let key: TransactionKey;
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    let jwk: JsonWebKey & { k?: string };
    try {
      jwk = JSON.parse(trimmed) as JsonWebKey & { k?: string };
    } catch {
      throw new UsageError('the key file is neither PEM nor valid JSON (JWK)');
    }
    if (jwk.kty === 'oct') {
      const raw = typeof jwk.k === 'string' ? fromB64url(jwk.k) : undefined;
      if (!raw || raw.length !== 32) throw new UsageError('a symmetric JWK must hold exactly 32 bytes (aes256)');
      key = { type: 'aes256', secret: raw };
    } else {
      if (typeof jwk.d !== 'string') throw new UsageError('the JWK has no private part ("d"); kmgr escrows private keys');
      key = fromKeyObject(() => createPrivateKey({ key: jwk, format: 'jwk' }));
    }
  } else if (trimmed.startsWith('-----BEGIN')) {
    if (/-----BEGIN (ENCRYPTED )?PRIVATE KEY-----|-----BEGIN EC PRIVATE KEY-----/.test(trimmed) === false) {
      throw new UsageError('the PEM file holds no private key (expected PRIVATE KEY or EC PRIVATE KEY)');
    }
    if (trimmed.includes('ENCRYPTED PRIVATE KEY')) throw new UsageError('encrypted PEM keys are not supported; decrypt it first (openssl pkey)');
    key = fromKeyObject(() => createPrivateKey({ key: trimmed, format: 'pem' }));
  } else {
    throw new UsageError('the key file is neither PEM nor JWK');
  }
  if (expected && expected !== key.type) throw new UsageError(`the imported key is ${key.type}, not ${expected}`);
  return key;
}

function fromKeyObject(make: () => KeyObject): TransactionKey {
  let obj: KeyObject;
  try {
    obj = make();
  } catch (e) {
    throw new UsageError(`the key could not be read: ${(e as Error).message}`).because(e);
  }
  const type = typeOf(obj);
  if (!type) throw new UsageError('unsupported key type (kmgr handles ed25519, p256, secp256k1, x25519 and aes256)');
  if (type === 'p256' || type === 'secp256k1') checkEcPoint(obj, type);
  return { type, secret: new Uint8Array(obj.export({ type: 'pkcs8', format: 'der' })) };
}

/**
 * An EC key file carries its public point beside the scalar, and node keeps
 * whatever the file says. A point that is not d*G would make register print,
 * and a verifier trust, a public key that is not the escrowed key's.
 */
function checkEcPoint(obj: KeyObject, type: 'p256' | 'secp256k1'): void {
  const jwk = obj.export({ format: 'jwk' });
  const d = fromB64url(jwk.d ?? '');
  const x = fromB64url(jwk.x ?? '');
  const y = fromB64url(jwk.y ?? '');
  if (!d || !x || !y) throw new UsageError('the EC key is incomplete');
  const ecdh = createECDH(CURVES[type]);
  ecdh.setPrivateKey(d);
  const derived = new Uint8Array(ecdh.getPublicKey()); // 0x04 || X || Y
  const embedded = new Uint8Array(1 + x.length + y.length);
  embedded[0] = 4;
  embedded.set(x, 1);
  embedded.set(y, 1 + x.length);
  wipe(d);
  if (!equalBytes(derived, embedded)) throw new UsageError("the key file's public key does not belong to its private key");
}

/** Renders the secret for `kmgr fetch`. The caller decides where it may go. */
export function formatTransactionKey(k: TransactionKey, format: OutputFormat): string {
  if (k.type === 'aes256') {
    switch (format) {
      case 'pem':
        throw new UsageError('aes256 keys have no PEM form; use --format jwk, raw, hex or base64');
      case 'jwk':
        return JSON.stringify({ kty: 'oct', k: toB64url(k.secret), alg: 'A256GCM' }) + '\n';
      case 'raw':
        return Buffer.from(k.secret).toString('latin1');
      case 'hex':
        return toHex(k.secret) + '\n';
      case 'base64':
        return toB64(k.secret) + '\n';
    }
  }
  const obj = privateKeyObject(k);
  if (format === 'pem') return obj.export({ type: 'pkcs8', format: 'pem' }) as string;
  const jwk = obj.export({ format: 'jwk' });
  if (format === 'jwk') return JSON.stringify(jwk) + '\n';
  const d = fromB64url(jwk.d as string);
  if (!d) throw new TypeError('key has no private scalar');
  try {
    if (format === 'raw') return Buffer.from(d).toString('latin1');
    if (format === 'hex') return toHex(d) + '\n';
    return toB64(d) + '\n';
  } finally {
    wipe(d);
  }
}

/** Raw bytes for --format raw (kept as bytes so stdout gets exactly them). */
export function rawTransactionKey(k: TransactionKey): Uint8Array {
  if (k.type === 'aes256') return k.secret.slice();
  const d = fromB64url(privateKeyObject(k).export({ format: 'jwk' }).d as string);
  if (!d) throw new TypeError('key has no private scalar');
  return d;
}
