// Certificates kept beside a transaction key: parsing a PEM chain, checking
// that its leaf certifies exactly this key and that each certificate is issued
// (and signed) by the next, and summing one up for people. Parsing and
// signature checks are node:crypto's X509Certificate (OpenSSL); nothing here
// reads ASN.1 by hand. Shared by the client (kmgr cert import, show, get) and
// the server, which refuses a chain for another key.
import { createPublicKey, X509Certificate } from 'node:crypto';
import { KmgrError, UsageError } from '../protocol/errors.js';

/** At most this many certificates in a chain (leaf, intermediates, root). */
const MAX_CHAIN = 8;
/** Longest PEM certificate accepted. */
const MAX_CERT_PEM = 12_000;

const PEM_CERT = /-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END CERTIFICATE-----/g;

export interface CertSummary {
  subject: string;
  issuer: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  /** SHA-256 of the DER certificate, colon-separated hex as OpenSSL prints it. */
  fingerprint: string;
  subjectAltName: string | null;
}

/** Every certificate in a PEM text, in order; text outside the blocks (openssl's "subject=" lines) is ignored. */
export function parsePemCertificates(text: string, what: string): X509Certificate[] {
  const blocks = text.match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw new UsageError(`${what} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  if (blocks.length > MAX_CHAIN) throw new UsageError(`${what} holds ${blocks.length} certificates; at most ${MAX_CHAIN} are kept`);
  return blocks.map((b, i) => {
    if (b.length > MAX_CERT_PEM) throw new UsageError(`certificate ${i + 1} of ${what} is longer than ${MAX_CERT_PEM} characters`);
    try {
      return new X509Certificate(b);
    } catch (e) {
      throw new UsageError(`certificate ${i + 1} of ${what} cannot be read: ${(e as Error).message}`);
    }
  });
}

const spkiDer = (pem: string): Buffer => createPublicKey(pem).export({ type: 'spki', format: 'der' });

/**
 * Orders certificates into a chain whose leaf certifies `publicKey` (SPKI PEM)
 * and each next one issued and signed the one before; refuses a leaf for
 * another key (certificate_mismatch) and any certificate that does not link
 * (chain_broken). The leaf is found whatever order the files list them in.
 */
export function buildChain(certs: X509Certificate[], publicKey: string): X509Certificate[] {
  const want = spkiDer(publicKey);
  const leafAt = certs.findIndex((c) => c.publicKey.export({ type: 'spki', format: 'der' }).equals(want));
  if (leafAt < 0) {
    throw new KmgrError('certificate_mismatch', `the certificate (subject ${oneLine(certs[0]!.subject)}) certifies another public key than the registered key`);
  }
  const rest = certs.filter((_, i) => i !== leafAt);
  const chain = [certs[leafAt]!];
  while (rest.length > 0) {
    const last = chain[chain.length - 1]!;
    const at = rest.findIndex((c) => last.checkIssued(c) && last.verify(c.publicKey));
    if (at < 0) {
      throw new KmgrError('chain_broken', `the chain does not link: no certificate given issued ${oneLine(last.subject)} (${oneLine(rest[0]!.subject)} did not sign it)`);
    }
    chain.push(rest.splice(at, 1)[0]!);
  }
  return chain;
}

function oneLine(dn: string): string {
  return dn.split('\n').filter(Boolean).join(', ');
}

export function summarize(c: X509Certificate): CertSummary {
  return {
    subject: oneLine(c.subject),
    issuer: oneLine(c.issuer),
    serial: c.serialNumber.toLowerCase(),
    notBefore: new Date(c.validFrom).toISOString(),
    notAfter: new Date(c.validTo).toISOString(),
    fingerprint: c.fingerprint256,
    subjectAltName: c.subjectAltName ?? null,
  };
}

export const toPem = (c: X509Certificate): string => c.toString().replace(/\r\n/g, '\n').replace(/\n?$/, '\n');
