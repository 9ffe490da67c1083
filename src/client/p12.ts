// PKCS#12 files for programs that want the key and its certificate chain in
// one passphrase-protected file (kmgr fetch --format p12). pkijs builds the
// structures and does PBES2 (PBKDF2-HMAC-SHA-256, AES-256-CBC) and the
// HMAC-SHA-256 integrity MAC with WebCrypto: the choices OpenSSL 3 makes by
// default, and readable by `openssl pkcs12`. No ASN.1 is written by hand here.
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { randomBytes } from '../crypto/random.js';

const ITERATIONS = 100_000; // OpenSSL 3's pkcs12 default is 2048; more costs a guesser more.
const BAG_KEY = '1.2.840.113549.1.12.10.1.2'; // pkcs8ShroudedKeyBag
const BAG_CERT = '1.2.840.113549.1.12.10.1.3'; // certBag
const LOCAL_KEY_ID = '1.2.840.113549.1.9.21';
const FRIENDLY_NAME = '1.2.840.113549.1.9.20';

const ab = (b: Uint8Array): ArrayBuffer => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

/**
 * A PFX holding the private key (PKCS#8 DER) and the chain (DER, leaf first),
 * both encrypted under `passphrase`. The key and the leaf share a localKeyId so
 * that readers pair them; `label` becomes their friendlyName.
 */
export async function makePkcs12(pkcs8: Uint8Array, chain: Uint8Array[], passphrase: Uint8Array, label: string): Promise<Uint8Array> {
  const password = ab(passphrase);
  const keyId = randomBytes(20);
  const attrs = (leaf: boolean): pkijs.Attribute[] =>
    leaf
      ? [
          new pkijs.Attribute({ type: LOCAL_KEY_ID, values: [new asn1js.OctetString({ valueHex: ab(keyId) })] }),
          new pkijs.Attribute({ type: FRIENDLY_NAME, values: [new asn1js.BmpString({ value: label })] }),
        ]
      : [];
  const pbe = { password, contentEncryptionAlgorithm: { name: 'AES-CBC', length: 256 }, hmacHashAlgorithm: 'SHA-256', iterationCount: ITERATIONS };
  const keyBag = new pkijs.PKCS8ShroudedKeyBag({ parsedValue: pkijs.PrivateKeyInfo.fromBER(ab(pkcs8)) });
  await keyBag.makeInternalValues(pbe);
  const certBags = chain.map(
    (der, i) => new pkijs.SafeBag({ bagId: BAG_CERT, bagValue: new pkijs.CertBag({ parsedValue: pkijs.Certificate.fromBER(ab(der)) }), bagAttributes: attrs(i === 0) }),
  );
  const pfx = new pkijs.PFX({
    parsedValue: {
      integrityMode: 0, // password-based integrity
      authenticatedSafe: new pkijs.AuthenticatedSafe({
        parsedValue: {
          safeContents: [
            { privacyMode: 0, value: new pkijs.SafeContents({ safeBags: [new pkijs.SafeBag({ bagId: BAG_KEY, bagValue: keyBag, bagAttributes: attrs(true) })] }) },
            { privacyMode: 1, value: new pkijs.SafeContents({ safeBags: certBags }) }, // password-encrypted
          ],
        },
      }),
    },
  });
  await pfx.parsedValue!.authenticatedSafe!.makeInternalValues({ safeContents: [{}, pbe] });
  await pfx.makeInternalValues({ password, iterations: ITERATIONS, pbkdf2HashAlgorithm: 'SHA-256', hmacHashAlgorithm: 'SHA-256' });
  return new Uint8Array(pfx.toSchema().toBER(false));
}
