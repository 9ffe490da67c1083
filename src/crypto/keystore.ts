// The keystore: the management secrets sealed under a passphrase-derived key.
// Pure: bytes and plain objects in, bytes and plain objects out; files are the client's business.
import { seal, open } from './aead.js';
import { deriveKey, checkKdfParams, KDF_DEFAULT_LOGN, SALT_LEN, type ScryptParams } from './kdf.js';
import { encodeFields, fromB64, toB64, concat, wipe } from './bytes.js';
import { randomBytes, type RandomSource } from './random.js';
import { IntegrityError, RefusedError } from '../protocol/errors.js';

export const KEYSTORE_FORMAT = 'kmgr-keystore';
export const KEYSTORE_VERSION = 1;

/** The management key (Fig. 5): two independent random keys, one per purpose (threat 7). */
export interface ManagementSecrets {
  /** Ed25519 seed: signs requests and binding statements. Never encrypts. */
  signingSeed: Uint8Array;
  /** XChaCha20-Poly1305 key: wraps transaction keys. Never signs. */
  wrapKey: Uint8Array;
}

export interface KeystoreFile {
  format: typeof KEYSTORE_FORMAT;
  v: typeof KEYSTORE_VERSION;
  kdf: { alg: 'scrypt'; logN: number; r: number; p: number; salt: string };
  box: string;
}

export function generateSecrets(): ManagementSecrets {
  return { signingSeed: randomBytes(32), wrapKey: randomBytes(32) };
}

// Everything that decides how the box is opened is associated data, so an
// edit to the KDF parameters or salt makes the box fail to open (threat 3).
function keystoreAd(k: ScryptParams): Uint8Array {
  return encodeFields([KEYSTORE_FORMAT, KEYSTORE_VERSION, k.alg, k.logN, k.r, k.p, k.salt]);
}

export async function sealKeystore(
  passphrase: Uint8Array,
  secrets: ManagementSecrets,
  logN: number = KDF_DEFAULT_LOGN,
  rng: RandomSource = randomBytes,
): Promise<KeystoreFile> {
  const params: ScryptParams = { alg: 'scrypt', logN, r: 8, p: 1, salt: rng(SALT_LEN) };
  const key = await deriveKey(passphrase, params);
  const plain = concat(secrets.signingSeed, secrets.wrapKey);
  try {
    const box = seal(key, plain, keystoreAd(params), rng);
    return {
      format: KEYSTORE_FORMAT,
      v: KEYSTORE_VERSION,
      kdf: { alg: 'scrypt', logN: params.logN, r: params.r, p: params.p, salt: toB64(params.salt) },
      box: toB64(box),
    };
  } finally {
    wipe(key);
    wipe(plain);
  }
}

const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x);

/** Validates the file's shape and the KDF floor before doing any work. */
export function parseKeystore(doc: unknown): { params: ScryptParams; box: Uint8Array } {
  const bad = (why: string): never => {
    throw new IntegrityError(`keystore is malformed: ${why}`);
  };
  if (typeof doc !== 'object' || doc === null) return bad('not a JSON object');
  const d = doc as Record<string, unknown>;
  if (d.format !== KEYSTORE_FORMAT) bad('not a kmgr keystore');
  if (d.v !== KEYSTORE_VERSION) bad(`unsupported version ${String(d.v)}`);
  const k = d.kdf as Record<string, unknown> | null | undefined;
  if (typeof k !== 'object' || k === null) return bad('missing kdf');
  if (k.alg !== 'scrypt' || !isInt(k.logN) || !isInt(k.r) || !isInt(k.p) || typeof k.salt !== 'string') bad('bad kdf');
  const salt = fromB64(k.salt as string) ?? bad('bad salt encoding');
  const box = typeof d.box === 'string' ? fromB64(d.box) : undefined;
  if (!box) return bad('bad box encoding');
  const params: ScryptParams = { alg: 'scrypt', logN: k.logN as number, r: k.r as number, p: k.p as number, salt };
  checkKdfParams(params);
  return { params, box };
}

export async function openKeystore(passphrase: Uint8Array, doc: unknown): Promise<ManagementSecrets> {
  const { params, box } = parseKeystore(doc);
  const key = await deriveKey(passphrase, params);
  let plain: Uint8Array;
  try {
    plain = open(key, box, keystoreAd(params), 'keystore');
  } catch {
    // AEAD cannot tell a wrong passphrase from an altered box; say both.
    throw new RefusedError('wrong_passphrase', 'wrong passphrase (or the keystore was altered)');
  } finally {
    wipe(key);
  }
  if (plain.length !== 64) throw new IntegrityError('keystore contents have the wrong length');
  return { signingSeed: plain.slice(0, 32), wrapKey: plain.slice(32, 64) };
}
