// Facts about keys that tests check from outside kmgr, with Node's own crypto.
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';

/** A message for tests that sign with a fetched key. */
export const MSG = Buffer.from('transfer 100 to bank-a');

/** Whether the PEM private key signs for the PEM public key. */
export function keyPairMatches(privatePem: string, publicPem: string): boolean {
  try {
    const msg = Buffer.from('kmgr escrow test message');
    const alg = createPublicKey(publicPem).asymmetricKeyType === 'ed25519' ? null : 'sha256';
    return verify(alg, msg, createPublicKey(publicPem), sign(alg, msg, createPrivateKey(privatePem)));
  } catch {
    return false;
  }
}
