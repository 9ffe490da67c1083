// Moving the management key to a second device: the export is sealed
// under a fresh one-time code of 160 random bits, typed on the other device.
// The code's entropy makes a slow KDF unnecessary: HKDF-SHA256 derives the key.
import { hkdfSync } from 'node:crypto';
import { seal, open } from './aead.js';
import { encodeFields, fromB64, toB64 } from './bytes.js';
import { randomBytes, type RandomSource } from './random.js';
import { IntegrityError, RefusedError, UsageError } from '../protocol/errors.js';

export const TRANSFER_FORMAT = 'kmgr-device-transfer';
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'; // Crockford base32: no I, L, O, U

export interface TransferFile {
  format: typeof TRANSFER_FORMAT;
  v: 1;
  salt: string;
  box: string;
}

/** 160 bits as 32 base32 characters in groups of four. */
export function newTransferCode(): string {
  const bytes = randomBytes(20);
  let bits = 0;
  let acc = 0;
  let out = '';
  for (const b of bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(acc >> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join('-');
}

function codeBytes(code: string): Uint8Array {
  const clean = code.toUpperCase().replace(/[\s-]/g, '').replace(/O/g, '0').replace(/[IL]/g, '1');
  if (!/^[0-9A-HJKMNP-TV-Z]{32}$/.test(clean)) throw new UsageError('the one-time code must be 32 characters (groups of four, as printed by kmgr device export)');
  return new TextEncoder().encode(clean);
}

const ad = (salt: Uint8Array): Uint8Array => encodeFields([TRANSFER_FORMAT, 1, salt]);
const keyFor = (code: string, salt: Uint8Array): Uint8Array => new Uint8Array(hkdfSync('sha256', codeBytes(code), salt, TRANSFER_FORMAT, 32));

export function sealTransfer(code: string, payload: Uint8Array, rng: RandomSource = randomBytes): TransferFile {
  const salt = rng(16);
  return { format: TRANSFER_FORMAT, v: 1, salt: toB64(salt), box: toB64(seal(keyFor(code, salt), payload, ad(salt), rng)) };
}

export function openTransfer(code: string, doc: unknown): Uint8Array {
  const d = doc as Partial<TransferFile> | null;
  if (!d || d.format !== TRANSFER_FORMAT || d.v !== 1 || typeof d.salt !== 'string' || typeof d.box !== 'string') {
    throw new IntegrityError('this is not a kmgr device export');
  }
  const salt = fromB64(d.salt);
  const box = fromB64(d.box);
  if (!salt || !box) throw new IntegrityError('the device export is damaged');
  const key = keyFor(code, salt); // a malformed code is a usage error (64), said before trying it
  try {
    return open(key, box, ad(salt), 'device export');
  } catch {
    throw new RefusedError('wrong_passphrase', 'the one-time code does not open this export (mistyped, or the file was altered)');
  }
}
