// The owner's binding statement for a key's public half (threat 4), signed
// under the binding tag, never the request tag (threat 7).
import { bindingBytes, type BindingStatement } from '../crypto/binding.js';
import { TAG_BINDING } from '../crypto/sign.js';
import { toB64 } from '../crypto/bytes.js';
import type { SignedBinding } from '../protocol/messages.js';
import type { Session } from './session.js';

export async function signedBinding(s: Session, k: Omit<BindingStatement, 'personId' | 'issuedAt'>): Promise<SignedBinding> {
  // Every new statement says whether the key is locked (see BindingStatement.locked).
  const statement: BindingStatement = { personId: s.config.personId, issuedAt: new Date().toISOString(), ...k, locked: k.locked ?? false };
  const signature = await s.sign(TAG_BINDING, bindingBytes(statement));
  return { statement: statement as SignedBinding['statement'], signature: toB64(signature) };
}
