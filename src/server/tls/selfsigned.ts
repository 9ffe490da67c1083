// Self-signed X.509 v3 certificate (ECDSA P-256 / SHA-256) built with
// node:crypto only. Node can parse certificates but not create them, so the
// TBSCertificate is assembled by hand with the DER helpers in ./der.js.
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import {
  bitString, boolean, explicit, implicitPrimitive, octetString, oid, readTlv,
  sequence, set, smallInteger, time, unsignedInteger, utf8String,
} from './der.js';

interface SelfSigned {
  certPem: string;
  keyPem: string;
  /** SHA-256 of the certificate DER, formatted like X509Certificate.fingerprint256 ("AB:CD:..."). */
  fingerprint256: string;
}

interface SelfSignedOptions {
  commonName?: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  days?: number;
  now?: Date;
}

const OID = {
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const;

/** IPv4 -> 4 bytes, IPv6 (with :: compression and optional dotted IPv4 tail) -> 16 bytes. */
function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  if (!isIPv6(ip) || ip.includes('%')) throw new Error(`invalid IP address: ${ip}`);
  const groups = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const [a = 0, b = 0, c = 0, d = 0] = g.split('.').map(Number);
        out.push((a << 8) | b, (c << 8) | d);
      } else {
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const [head = '', tail] = ip.split('::');
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const words = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  if (words.length !== 8) throw new Error(`invalid IP address: ${ip}`);
  const buf = Buffer.alloc(16);
  words.forEach((w, i) => buf.writeUInt16BE(w, i * 2));
  return buf;
}

/** Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }.
 *  DER omits a value equal to its DEFAULT, so `critical` is only written when true. */
function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical
    ? sequence(oid(id), boolean(true), octetString(value))
    : sequence(oid(id), octetString(value));
}

export function makeSelfSignedCert(opts: SelfSignedOptions = {}): SelfSigned {
  const commonName = opts.commonName ?? 'kmgrd';
  const dnsNames = opts.dnsNames ?? ['localhost'];
  const ipAddresses = opts.ipAddresses ?? ['127.0.0.1', '::1'];
  const days = opts.days ?? 825;
  const now = opts.now ?? new Date();
  if (!(days > 0) || !Number.isFinite(days)) throw new RangeError(`days must be positive, got ${days}`);

  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });

  // SubjectKeyIdentifier: SHA-1 of the subjectPublicKey BIT STRING contents
  // (RFC 5280 4.2.1.2 method 1). SPKI = SEQUENCE { AlgorithmIdentifier, BIT STRING };
  // skip the algorithm, then drop the BIT STRING's leading unused-bits byte.
  const spkiBody = readTlv(spki).value;
  const keyBits = readTlv(spkiBody, readTlv(spkiBody).end).value.subarray(1);
  const ski = createHash('sha1').update(keyBits).digest();

  // Serial: 16 random bytes, top bit cleared (positive) and next bit set so the
  // minimal DER encoding is always exactly 16 bytes with no 0x00 pad.
  const serial = randomBytes(16);
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x40;

  const sigAlg = sequence(oid(OID.ecdsaWithSHA256)); // parameters absent for ECDSA
  const name = sequence(set(sequence(oid(OID.commonName), utf8String(commonName))));
  const notBefore = new Date(now.getTime() - 5 * 60_000);
  const notAfter = new Date(now.getTime() + days * 86_400_000);

  const sanNames = [
    ...dnsNames.map((d) => implicitPrimitive(2, Buffer.from(d, 'ascii'))), // dNSName [2] IA5String
    ...ipAddresses.map((ip) => implicitPrimitive(7, ipBytes(ip))),         // iPAddress [7] OCTET STRING
  ];

  const extensions = [
    extension(OID.basicConstraints, true, sequence(boolean(true))), // cA TRUE, no pathLen
    // KeyUsage is a named BIT STRING: digitalSignature = bit 0, keyCertSign = bit 5
    // -> 1000 0100 = 0x84. DER strips trailing zero bits, so 2 bits are unused.
    extension(OID.keyUsage, true, bitString(Buffer.from([0x84]), 2)),
    extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth))),
    ...(sanNames.length ? [extension(OID.subjectAltName, false, sequence(...sanNames))] : []),
    extension(OID.subjectKeyIdentifier, false, octetString(ski)),
  ];

  const tbs = sequence(
    explicit(0, smallInteger(2)),   // version [0] EXPLICIT: 2 means v3
    unsignedInteger(serial),
    sigAlg,
    name,                           // issuer == subject (self-signed)
    sequence(time(notBefore), time(notAfter)),
    name,
    spki,                           // SubjectPublicKeyInfo, verbatim from node:crypto
    explicit(3, sequence(...extensions)), // extensions [3] EXPLICIT
  );

  const signature = sign('sha256', tbs, privateKey); // DER Ecdsa-Sig-Value
  const cert = sequence(tbs, sigAlg, bitString(signature));

  const b64 = cert.toString('base64').match(/.{1,64}/g) ?? [];
  const certPem = `-----BEGIN CERTIFICATE-----\n${b64.join('\n')}\n-----END CERTIFICATE-----\n`;
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const fingerprint256 = (createHash('sha256').update(cert).digest('hex').toUpperCase().match(/../g) ?? []).join(':');
  return { certPem, keyPem, fingerprint256 };
}
