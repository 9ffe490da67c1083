// PKCS#10 certificate requests for transaction keys (kmgr csr). The ASN.1 is
// @peculiar/x509's (names, extensions, the request structure); the signature
// is node:crypto's, made with the key as a KeyObject, so that secp256k1 works
// too (WebCrypto, which @peculiar/x509 signs with by default, has no
// secp256k1). No ASN.1 is written by hand here.
// @peculiar/x509 resolves its algorithms through tsyringe, which needs the Reflect metadata API first.
import 'reflect-metadata';
import { createPrivateKey, createPublicKey, sign as nodeSign, type KeyObject } from 'node:crypto';
import { Name, Pkcs10CertificateRequestGenerator, SubjectAlternativeNameExtension, type JsonGeneralName } from '@peculiar/x509';
import { KmgrError, UsageError } from '../protocol/errors.js';
import type { KeyType } from '../crypto/txkey.js';

const CSR_KEY_TYPES = ['ed25519', 'p256', 'secp256k1'] as const;
type CsrKeyType = (typeof CSR_KEY_TYPES)[number];

export function checkCsrKeyType(type: KeyType, name: string): asserts type is CsrKeyType {
  if (!(CSR_KEY_TYPES as readonly string[]).includes(type)) {
    const why = type === 'aes256' ? 'a symmetric key has no public key to certify' : 'an X25519 key can only agree on secrets, not sign a request';
    throw new KmgrError('key_type_unsupported', `${name} is an ${type} key: ${why} (certificate requests need ed25519, p256 or secp256k1)`);
  }
}

/** "CN=a,O=b" (RFC 4514) or OpenSSL's "/CN=a/O=b". */
export function parseSubject(subject: string): Name {
  let text = subject.trim();
  if (text.startsWith('/')) text = text.slice(1).split('/').filter(Boolean).join(',');
  if (text === '' || !/^[A-Za-z][A-Za-z0-9.]*=/.test(text)) throw new UsageError(`--subject ${JSON.stringify(subject)} is not a distinguished name like "CN=bank-a client,O=Example"`);
  try {
    const name = new Name(text);
    if (name.toJSON().length === 0) throw new Error('empty');
    return name;
  } catch (e) {
    throw new UsageError(`--subject ${JSON.stringify(subject)} is not a valid distinguished name (${(e as Error).message})`);
  }
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

/** --san DNS:host, IP:addr, email:addr, URI:uri. */
export function parseSan(spec: string): JsonGeneralName {
  const m = /^(DNS|IP|email|URI):(.+)$/i.exec(spec);
  if (!m) throw new UsageError(`--san ${JSON.stringify(spec)}: write DNS:name, IP:address, email:address or URI:uri`);
  const kind = m[1]!.toLowerCase();
  const value = m[2]!;
  if (kind === 'dns') {
    if (!/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$/.test(value)) throw new UsageError(`--san ${spec}: not a DNS name`);
    return { type: 'dns', value };
  }
  if (kind === 'ip') {
    if (!IPV4.test(value) && !(value.includes(':') && /^[0-9A-Fa-f:.]+$/.test(value))) throw new UsageError(`--san ${spec}: not an IP address`);
    return { type: 'ip', value };
  }
  if (kind === 'email') {
    if (!/^[^\s@]+@[^\s@]+$/.test(value)) throw new UsageError(`--san ${spec}: not an e-mail address`);
    return { type: 'email', value };
  }
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(value)) throw new UsageError(`--san ${spec}: not a URI`);
  return { type: 'url', value };
}

const toArrayBuffer = (b: Uint8Array): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

/**
 * The provider interface @peculiar/x509 signs through, backed by a node
 * KeyObject: it asks for the public key (SPKI) and for a signature over the
 * request info, which for ECDSA it wants as r||s (it encodes the DER itself).
 */
interface NodeProvider {
  subtle: {
    exportKey(): Promise<ArrayBuffer>;
    sign(alg: unknown, key: unknown, data: ArrayBuffer): Promise<ArrayBuffer>;
  };
}

function nodeProvider(key: KeyObject, type: CsrKeyType): NodeProvider {
  const subtle = {
    exportKey: async (): Promise<ArrayBuffer> => toArrayBuffer(createPublicKey(key).export({ type: 'spki', format: 'der' })),
    sign: async (_alg: unknown, _key: unknown, data: ArrayBuffer): Promise<ArrayBuffer> =>
      toArrayBuffer(type === 'ed25519' ? nodeSign(null, Buffer.from(data), key) : nodeSign('sha256', Buffer.from(data), { key, dsaEncoding: 'ieee-p1363' })),
  };
  return { subtle };
}

/** A PEM certificate request for the key (PKCS#8 DER), signed by it. */
export async function makeCsr(pkcs8: Uint8Array, type: CsrKeyType, subject: string, sans: string[]): Promise<string> {
  const name = parseSubject(subject);
  const names = sans.map(parseSan);
  const key = createPrivateKey({ key: Buffer.from(pkcs8), format: 'der', type: 'pkcs8' });
  const algorithm =
    type === 'ed25519' ? { name: 'Ed25519' } : { name: 'ECDSA', hash: 'SHA-256', namedCurve: type === 'p256' ? 'P-256' : 'K-256' };
  const csr = await Pkcs10CertificateRequestGenerator.create(
    {
      name,
      // Stand-ins for WebCrypto keys: the generator reads only their algorithm; the provider holds the key.
      keys: { privateKey: { algorithm }, publicKey: { algorithm } } as never,
      signingAlgorithm: algorithm,
      ...(names.length > 0 ? { extensions: [new SubjectAlternativeNameExtension(names)] } : {}),
    },
    nodeProvider(key, type),
  );
  return csr.toString('pem') + '\n';
}
