// The server checks a binding statement before storing it, so a garbage or
// mismatched statement is refused at registration rather than at a verifier.
// This is hygiene, not the defence: verifiers check the signature themselves.
import { fromB64, fromB64url } from '../crypto/bytes.js';
import { publicKeyObject } from '../crypto/sign.js';
import { verifyBinding } from '../crypto/binding.js';
import { UsageError } from '../protocol/errors.js';
import type { SignedBinding } from '../protocol/messages.js';
import type { PersonRecord } from '../store/types.js';

export function checkBinding(
  b: SignedBinding,
  person: PersonRecord,
  expect: { partnerId: string; keyId: string; alg: string; keyVersion: number },
): void {
  const s = b.statement;
  if (s.personId !== person.personId || s.partnerId !== expect.partnerId || s.keyId !== expect.keyId || s.alg !== expect.alg || s.keyVersion !== expect.keyVersion) {
    throw new UsageError('the binding statement does not describe this key', 'bad_request');
  }
  if (s.alg === 'aes256') throw new UsageError('symmetric keys have no public key to bind', 'bad_request');
  const sig = fromB64(b.signature);
  const owner = fromB64url(person.publicKey);
  if (!sig || !owner || !verifyBinding(publicKeyObject(owner), s, sig)) {
    throw new UsageError('the binding statement is not signed by your management key', 'bad_request');
  }
}
