// Binding statements (threat 4): the owner signs, with the management key and
// its own context tag, which public key is theirs for which partner, at which
// version and for which term. Verifiers check it against the owner's pinned
// fingerprint, so a server that swaps a public key is caught.
import { createPublicKey } from 'node:crypto';
import { encodeFields, equalBytes } from './bytes.js';
import { TAG_BINDING, verifySignature, type Signer } from './sign.js';
import type { KeyObject } from 'node:crypto';

export interface BindingStatement {
  personId: string;
  partnerId: string;
  keyId: string;
  alg: string;
  /** SPKI PEM of the transaction public key. */
  publicKey: string;
  keyVersion: number;
  /** ISO 8601; when the owner made the statement. */
  issuedAt: string;
  /** ISO 8601 or null: the end of the key's valid term. */
  expiresAt: string | null;
  /**
   * Whether the owner had locked the key when making the statement. Locking and
   * unlocking issue a new statement, so a verifier that has seen the newer one
   * cannot be told "match" for a locked key by a replay of the older. Absent in
   * statements made before the field existed (read as not locked).
   */
  locked?: boolean;
}

/** The DER bytes of a PEM public key: the form compared and signed, so PEM line breaks cannot matter. */
function spkiDer(pem: string): Uint8Array {
  return new Uint8Array(createPublicKey({ key: pem, format: 'pem' }).export({ type: 'spki', format: 'der' }));
}

export function samePublicKey(aPem: string, bPem: string): boolean {
  try {
    return equalBytes(spkiDer(aPem), spkiDer(bPem));
  } catch {
    return false;
  }
}

export function bindingBytes(s: BindingStatement): Uint8Array {
  const fields = [s.personId, s.partnerId, s.keyId, s.alg, spkiDer(s.publicKey), s.keyVersion, s.issuedAt, s.expiresAt ?? ''];
  // Appended only when present, so that statements signed before the field existed still verify.
  return encodeFields(s.locked === undefined ? fields : [...fields, s.locked ? 'locked' : 'usable']);
}

export function signBinding(signer: Pick<Signer, 'sign'>, s: BindingStatement): Uint8Array {
  return signer.sign(TAG_BINDING, bindingBytes(s));
}

export function verifyBinding(owner: KeyObject, s: BindingStatement, signature: Uint8Array): boolean {
  try {
    return verifySignature(owner, TAG_BINDING, bindingBytes(s), signature);
  } catch {
    return false;
  }
}
