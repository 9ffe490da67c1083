// The one AEAD kmgr uses: XChaCha20-Poly1305 with a random 24-byte nonce.
// There is no algorithm negotiation (threat 2): a sealed box is nonce || ciphertext+tag.
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { randomBytes, type RandomSource } from './random.js';
import { concat } from './bytes.js';
import { IntegrityError } from '../protocol/errors.js';

const KEY_LEN = 32;
export const NONCE_LEN = 24;
export const TAG_LEN = 16;

export function seal(key: Uint8Array, plaintext: Uint8Array, ad: Uint8Array, rng: RandomSource = randomBytes): Uint8Array {
  if (key.length !== KEY_LEN) throw new TypeError('AEAD key must be 32 bytes');
  const nonce = rng(NONCE_LEN);
  return concat(nonce, xchacha20poly1305(key, nonce, ad).encrypt(plaintext));
}

/** Throws IntegrityError for any box that does not authenticate under key and ad. */
export function open(key: Uint8Array, box: Uint8Array, ad: Uint8Array, what: string): Uint8Array {
  if (key.length !== KEY_LEN) throw new TypeError('AEAD key must be 32 bytes');
  if (box.length < NONCE_LEN + TAG_LEN) throw new IntegrityError(`${what} is truncated`);
  try {
    return xchacha20poly1305(key, box.subarray(0, NONCE_LEN), ad).decrypt(box.subarray(NONCE_LEN));
  } catch {
    throw new IntegrityError(`${what} failed authentication: it was altered, or belongs to another context`);
  }
}
