// Passphrase KDF: scrypt (native in node:crypto, ~0.6 s at logN 17 on our machines).
// Parameters live in the keystore and are authenticated as associated data; the
// floor below is enforced on every read so that an edited file, or one written
// weakly by anyone, cannot downgrade the work an attacker must do (threat 3).
import { scrypt } from 'node:crypto';
import { IntegrityError } from '../protocol/errors.js';

export interface ScryptParams {
  alg: 'scrypt';
  logN: number;
  r: number;
  p: number;
  salt: Uint8Array;
}

export const KDF_DEFAULT_LOGN = 17;
/** Compiled-in floor: 2^15 x r=8 is 32 MiB of memory per guess. */
export const KDF_MIN_LOGN = 15;
export const KDF_MIN_R = 8;
const KDF_MIN_P = 1;
/**
 * Ceiling: what a real keystore can need and no more, so that a file edited up
 * to it still fails within seconds instead of blocking on ~16 GiB of scrypt.
 * kmgr writes r=8, p=1 and logN 15-20 (`--kdf-cost`): 2^20 x 8 is 1 GiB, a few
 * seconds here.
 */
export const KDF_MAX_LOGN = 20;
const KDF_MAX_R = 8;
const KDF_MAX_P = 1;
export const SALT_LEN = 16;

export function checkKdfParams(k: ScryptParams): void {
  const ok =
    k.alg === 'scrypt' &&
    Number.isInteger(k.logN) && k.logN >= KDF_MIN_LOGN && k.logN <= KDF_MAX_LOGN &&
    Number.isInteger(k.r) && k.r >= KDF_MIN_R && k.r <= KDF_MAX_R &&
    Number.isInteger(k.p) && k.p >= KDF_MIN_P && k.p <= KDF_MAX_P &&
    k.salt.length >= SALT_LEN;
  if (!ok) {
    throw new IntegrityError(
      `keystore KDF parameters are outside the allowed range (scrypt logN ${KDF_MIN_LOGN}-${KDF_MAX_LOGN}, r ${KDF_MIN_R}, p ${KDF_MIN_P}, salt >= ${SALT_LEN} bytes)`,
      'kdf_too_weak',
    );
  }
}

export function deriveKey(passphrase: Uint8Array, k: ScryptParams): Promise<Uint8Array> {
  checkKdfParams(k);
  const N = 2 ** k.logN;
  return new Promise((resolve, reject) => {
    scrypt(passphrase, k.salt, 32, { N, r: k.r, p: k.p, maxmem: 256 * N * k.r + (1 << 20) }, (err, key) =>
      err ? reject(err) : resolve(new Uint8Array(key)),
    );
  });
}
