// Succession statements (kmgr rekey): the old management key signs that a new
// one replaces it, and the new key signs the same bytes (proof that whoever
// asked for the switch holds the new key). A verifier that pinned the old
// fingerprint can follow one such statement to the new key instead of being
// told "mismatch" forever, and cannot be led to a key the old one never named.
import { encodeFields, fromB64url } from './bytes.js';
import { managementKeyId, publicKeyObject, TAG_SUCCESSION, verifySignature, type Signer } from './sign.js';

export interface SuccessionStatement {
  personId: string;
  oldKeyId: string;
  /** Raw Ed25519, base64url. */
  oldPublicKey: string;
  newKeyId: string;
  newPublicKey: string;
  /** ISO 8601: when the owner made the statement. */
  issuedAt: string;
}

export function successionBytes(s: SuccessionStatement): Uint8Array {
  return encodeFields([s.personId, s.oldKeyId, s.oldPublicKey, s.newKeyId, s.newPublicKey, s.issuedAt]);
}

export function signSuccession(signer: Pick<Signer, 'sign'>, s: SuccessionStatement): Uint8Array {
  return signer.sign(TAG_SUCCESSION, successionBytes(s));
}

/**
 * True when both keys signed the statement and each key ID is derived from its
 * public key (so a statement cannot name one key and carry another's ID).
 */
export function verifySuccession(s: SuccessionStatement, oldSignature: Uint8Array, newSignature: Uint8Array): boolean {
  try {
    const oldRaw = fromB64url(s.oldPublicKey);
    const newRaw = fromB64url(s.newPublicKey);
    if (!oldRaw || !newRaw || oldRaw.length !== 32 || newRaw.length !== 32) return false;
    if (managementKeyId(oldRaw) !== s.oldKeyId || managementKeyId(newRaw) !== s.newKeyId) return false;
    const bytes = successionBytes(s);
    return verifySignature(publicKeyObject(oldRaw), TAG_SUCCESSION, bytes, oldSignature) && verifySignature(publicKeyObject(newRaw), TAG_SUCCESSION, bytes, newSignature);
  } catch {
    return false;
  }
}
