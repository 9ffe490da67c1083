// The offline recovery kit (kmgr recovery-kit / kmgr recover): the management
// key sealed under a fresh recovery code of 160 random bits, meant to be kept
// apart from the file (file in one place, code on paper). Neither recovers
// anything alone, and the server holds neither.
//
// The code's entropy makes a slow KDF unnecessary (as for device transfers):
// HKDF-SHA256 derives the key. The format, version, person, server and key
// named in the clear are all associated data, so a kit edited to point at
// another server or person does not open (threat 1).
import { hkdfSync } from 'node:crypto';
import { seal, open } from './aead.js';
import { encodeFields, fromB64, toB64 } from './bytes.js';
import { randomBytes, type RandomSource } from './random.js';
import { codeBytes } from './transfer.js';
import { IntegrityError, RefusedError } from '../protocol/errors.js';

export const RECOVERY_FORMAT = 'kmgr-recovery-kit';
export const RECOVERY_VERSION = 1;
const CODE_HELP = 'the recovery code must be 32 characters (groups of four, as printed by kmgr recovery-kit)';

/** What the kit says in the clear, so a person can tell which identity it restores. */
export interface RecoveryKitHeader {
  personId: string;
  server: string;
  keyId: string;
  fingerprint: string;
  createdAt: string;
}

export interface RecoveryKitFile extends RecoveryKitHeader {
  format: typeof RECOVERY_FORMAT;
  v: typeof RECOVERY_VERSION;
  salt: string;
  box: string;
}

const ad = (h: RecoveryKitHeader, salt: Uint8Array): Uint8Array =>
  encodeFields([RECOVERY_FORMAT, RECOVERY_VERSION, h.personId, h.server, h.keyId, h.fingerprint, h.createdAt, salt]);
const keyFor = (code: string, salt: Uint8Array): Uint8Array => new Uint8Array(hkdfSync('sha256', codeBytes(code, CODE_HELP), salt, RECOVERY_FORMAT, 32));

/** `rng`: the randomness (the salt, then the nonce); injected only by the format vectors. */
export function sealRecoveryKit(code: string, header: RecoveryKitHeader, payload: Uint8Array, rng: RandomSource = randomBytes): RecoveryKitFile {
  const salt = rng(16);
  const h: RecoveryKitHeader = { personId: header.personId, server: header.server, keyId: header.keyId, fingerprint: header.fingerprint, createdAt: header.createdAt };
  return { format: RECOVERY_FORMAT, v: RECOVERY_VERSION, ...h, salt: toB64(salt), box: toB64(seal(keyFor(code, salt), payload, ad(h, salt), rng)) };
}

export function parseRecoveryKit(doc: unknown): RecoveryKitFile {
  const d = doc as Partial<RecoveryKitFile> | null;
  const fields = ['personId', 'server', 'keyId', 'fingerprint', 'createdAt', 'salt', 'box'] as const;
  if (!d || typeof d !== 'object' || d.format !== RECOVERY_FORMAT) throw new IntegrityError('this is not a kmgr recovery kit');
  if (d.v !== RECOVERY_VERSION) throw new IntegrityError(`this recovery kit has an unsupported version ${String(d.v)}`);
  for (const f of fields) if (typeof d[f] !== 'string') throw new IntegrityError(`the recovery kit is damaged (${f})`);
  return d as RecoveryKitFile;
}

export function openRecoveryKit(code: string, kit: RecoveryKitFile): Uint8Array {
  const salt = fromB64(kit.salt);
  const box = fromB64(kit.box);
  if (!salt || !box) throw new IntegrityError('the recovery kit is damaged');
  const key = keyFor(code, salt); // a malformed code is a usage error, said before trying it
  try {
    return open(key, box, ad(kit, salt), 'recovery kit');
  } catch {
    throw new RefusedError('wrong_passphrase', 'the recovery code does not open this kit (mistyped, or the file was altered)');
  }
}
