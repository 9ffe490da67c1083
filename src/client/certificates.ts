// The certificate chain kept at the server beside a key, as the client takes
// it: the server is not trusted to hand back the chain it was given (threat 1:
// a swapped or altered reply), so every chain is checked again here, against
// the public key this device registered (or, for a fetch, the one the opened
// private key derives), before it is shown, printed or packed.
import { createPublicKey, type X509Certificate } from 'node:crypto';
import { buildChain, parsePemCertificates } from '../crypto/certs.js';
import { IntegrityError, KmgrError } from '../protocol/errors.js';
import type { KeyStatus } from '../protocol/messages.js';
import { api } from './api.js';
import type { PartnerEntry } from './partners.js';
import type { Session } from './session.js';

/**
 * The public key to hold certificates against: the one this device registered
 * for the current version, else the server's copy (a device that did not
 * register the key has nothing better; `trusted` says which).
 */
export function publicKeyFor(partner: PartnerEntry, status: KeyStatus, name: string): { publicKey: string; trusted: boolean } {
  const known = partner.key;
  if (known?.publicKey && known.keyId === status.keyId && known.version === status.keyVersion) return { publicKey: known.publicKey, trusted: true };
  if (status.publicKey) return { publicKey: status.publicKey, trusted: false };
  throw new KmgrError('key_type_unsupported', `${name} has no public key (an ${status.alg} key cannot have a certificate)`);
}

/** The chain kept for the key, checked; throws no_certificate when there is none. */
export async function checkedChain(session: Session, partner: PartnerEntry, name: string, status: KeyStatus): Promise<X509Certificate[]> {
  const view = await api.certificates(session, partner.id);
  if (view.keyVersion !== status.keyVersion) throw new IntegrityError(`the server sent certificates for version ${view.keyVersion} of ${name}, not ${status.keyVersion}`);
  if (view.certificates.length === 0) throw new KmgrError('no_certificate', `no certificate is kept for ${name} (kmgr csr ${name}, then kmgr cert import ${name} CERT.pem)`);
  const { publicKey } = publicKeyFor(partner, status, name);
  const certs = parsePemCertificates(view.certificates.join('\n'), `the server's chain for ${name}`);
  try {
    const chain = buildChain(certs, publicKey);
    if (chain.length !== certs.length) throw new Error('extra certificates');
    return chain;
  } catch (e) {
    // What the server sent does not certify our key, or does not link: it was altered.
    throw new IntegrityError(`the server sent a certificate chain for ${name} that does not check out: ${(e as Error).message}`);
  }
}

/** SPKI PEM of a private key (PKCS#8 PEM), to hold a fetched key's chain against. */
export function publicOfPrivatePem(pem: string): string {
  return createPublicKey(pem).export({ type: 'spki', format: 'pem' }) as string;
}
