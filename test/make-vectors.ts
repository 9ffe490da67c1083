// Writes the format vectors in fixtures/vectors/ from fixed inputs. Run it only
// when a format changes, and then under a new version number:
//   npm run build && node dist/test/make-vectors.js
// The vectors are committed; test/format-vectors.test.ts checks the code still
// decodes and re-encodes each of them byte for byte.
import { createPublicKey } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { p256 } from '@noble/curves/nist.js';
import { join } from 'node:path';
import { BLOB_FORMAT_VERSION, blobAd, sealBlob, type BlobContext } from '../src/crypto/blob.js';
import { KEYSTORE_VERSION, sealKeystore } from '../src/crypto/keystore.js';
import { KDF_MIN_LOGN, SALT_LEN } from '../src/crypto/kdf.js';
import { NONCE_LEN } from '../src/crypto/aead.js';
import { TRANSFER_FORMAT, sealTransfer } from '../src/crypto/transfer.js';
import { RECOVERY_FORMAT, RECOVERY_VERSION, sealRecoveryKit } from '../src/crypto/recovery.js';
import { signSuccession, successionBytes, type SuccessionStatement } from '../src/crypto/succession.js';
import { bindingBytes, signBinding, type BindingStatement } from '../src/crypto/binding.js';
import { fingerprint, managementKeyId, signerFromSeed, TAG_REQUEST } from '../src/crypto/sign.js';
import { encodeFields, toB64, toB64url, utf8 } from '../src/crypto/bytes.js';
import { sha256 } from '../src/crypto/hash.js';
import { formatContentDigest, formatSignature, serializeParams, signatureBase, SIG_LABEL, SIG_TAG, type RequestParts, type SignatureParams } from '../src/protocol/sigbase.js';
import { VECTORS, hex, inputBytes, replay } from './support/index.js';

const write = (name: string, v: unknown): void => writeFileSync(join(VECTORS, name), JSON.stringify(v, null, 2) + '\n');

const signingSeed = inputBytes('signing seed', 32);
const wrapKey = inputBytes('wrap key', 32);
const signer = signerFromSeed(signingSeed);
const personId = 'p_' + toB64url(inputBytes('person id', 16));
const keyId = managementKeyId(signer.publicKey);

async function keystore(): Promise<void> {
  const passphrase = 'correct horse battery staple';
  const salt = inputBytes('keystore salt', SALT_LEN);
  const nonce = inputBytes('keystore nonce', NONCE_LEN);
  const file = await sealKeystore(utf8(passphrase), { signingSeed, wrapKey }, KDF_MIN_LOGN, replay(salt, nonce));
  write(`keystore.v${KEYSTORE_VERSION}.json`, {
    what: 'the passphrase-sealed keystore (src/crypto/keystore.ts), as keystore.json holds it',
    inputs: { passphrase, logN: KDF_MIN_LOGN, signingSeed: hex(signingSeed), wrapKey: hex(wrapKey), salt: hex(salt), nonce: hex(nonce) },
    file,
  });
}

function blob(): void {
  const cases: Array<{ ctx: BlobContext; label: string }> = [
    { label: 'without a partner name', ctx: { personId, partnerId: 'pt_0001', keyId: 'k_' + toB64url(inputBytes('tx key id', 16)), alg: 'ed25519', keyVersion: 1 } },
    { label: 'with a partner name (partners on the server)', ctx: { personId, partnerId: 'pt_0002', keyId: 'k_' + toB64url(inputBytes('tx key id 2', 16)), alg: 'p256', keyVersion: 3, partnerName: 'bank-a' } },
  ];
  write(`blob.v${BLOB_FORMAT_VERSION}.json`, {
    what: 'a sealed transaction key (src/crypto/blob.ts): version byte || nonce || XChaCha20-Poly1305(wrapKey, nonce, ad, secret)',
    cases: cases.map(({ ctx, label }, i) => {
      const secret = inputBytes(`secret ${i}`, 32);
      const nonce = inputBytes(`blob nonce ${i}`, NONCE_LEN);
      return { label, inputs: { wrapKey: hex(wrapKey), context: ctx, secret: hex(secret), nonce: hex(nonce) }, ad: hex(blobAd(ctx)), blob: hex(sealBlob(wrapKey, ctx, secret, replay(nonce))) };
    }),
  });
}

function request(): void {
  const body = utf8(JSON.stringify({ format: 'pem' }));
  const parts: RequestParts = {
    method: 'POST',
    authority: '127.0.0.1:8443',
    path: '/v1/keys/pt_0001/fetch',
    query: '',
    contentDigest: formatContentDigest(toB64(sha256(body))),
    device: 'laptop',
  };
  const params: SignatureParams = { created: 1_800_000_000, expires: 1_800_000_060, nonce: toB64url(inputBytes('request nonce', 16)), keyid: keyId };
  const base = signatureBase(parts, params);
  const signature = signer.sign(TAG_REQUEST, utf8(base));
  write(`request-signature.${SIG_TAG.replace(/\//g, '-')}.json`, {
    what: 'a signed request (src/protocol/sigbase.ts, src/client/http.ts): RFC 9421 base, Ed25519 over encodeFields([tag, base])',
    inputs: { signingSeed: hex(signingSeed), body: hex(body), parts, params },
    publicKey: toB64url(signer.publicKey),
    keyId,
    fingerprint: fingerprint(signer.publicKey),
    base,
    signedMessage: hex(encodeFields([TAG_REQUEST, utf8(base)])),
    headers: {
      'content-digest': parts.contentDigest,
      'kmgr-device': parts.device,
      'signature-input': `${SIG_LABEL}=${serializeParams(params)}`,
      signature: formatSignature(toB64(signature)),
    },
  });
}

function binding(): void {
  // A P-256 public key from a fixed scalar, so the statement does not depend on a key generator.
  const point = p256.getPublicKey(inputBytes('p256 scalar', 32), false);
  const spki = Buffer.concat([Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex'), point]);
  const publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' }).export({ type: 'spki', format: 'pem' }).toString();
  const statement: BindingStatement = {
    personId,
    partnerId: 'pt_0002',
    keyId: 'k_' + toB64url(inputBytes('tx key id 2', 16)),
    alg: 'p256',
    publicKey,
    keyVersion: 3,
    issuedAt: '2027-01-02T03:04:05.000Z',
    expiresAt: '2027-12-31T00:00:00.000Z',
  };
  write('binding.v1.json', {
    what: "the owner's binding statement (src/crypto/binding.ts): Ed25519 over encodeFields([tag, bindingBytes])",
    inputs: { signingSeed: hex(signingSeed), statement },
    bytes: hex(bindingBytes(statement)),
    signature: toB64(signBinding(signer, statement)),
  });
}

function transfer(): void {
  const code = '0123-4567-89AB-CDEF-GHJK-MNPQ-RSTV-WXYZ';
  const payload = JSON.stringify({ note: 'the device export carries the management secrets and the home config; any bytes seal the same way' });
  const salt = inputBytes('transfer salt', 16);
  const nonce = inputBytes('transfer nonce', NONCE_LEN);
  write('device-export.v1.json', {
    what: `a device export (src/crypto/transfer.ts, ${TRANSFER_FORMAT}): HKDF-SHA256(code, salt) seals the payload`,
    inputs: { code, payload, salt: hex(salt), nonce: hex(nonce) },
    file: sealTransfer(code, utf8(payload), replay(salt, nonce)),
  });
}

function recoveryKit(): void {
  const code = 'ZYXW-VTSR-QPNM-KJHG-FEDC-BA98-7654-3210';
  const header = { personId, server: 'https://keys.example:8443', keyId, fingerprint: fingerprint(signer.publicKey), createdAt: '2027-01-02T03:04:05.000Z' };
  const payload = JSON.stringify({ note: 'the kit carries the management secrets, config, CA and partner index; any bytes seal the same way' });
  const salt = inputBytes('recovery salt', 16);
  const nonce = inputBytes('recovery nonce', NONCE_LEN);
  write(`recovery-kit.v${RECOVERY_VERSION}.json`, {
    what: `a recovery kit (src/crypto/recovery.ts, ${RECOVERY_FORMAT}): HKDF-SHA256(code, salt) seals the payload; format, version, person, server, key and time are associated data`,
    inputs: { code, header, payload, salt: hex(salt), nonce: hex(nonce) },
    file: sealRecoveryKit(code, header, utf8(payload), replay(salt, nonce)),
  });
}

function succession(): void {
  const next = signerFromSeed(inputBytes('next signing seed', 32));
  const statement: SuccessionStatement = {
    personId,
    oldKeyId: keyId,
    oldPublicKey: toB64url(signer.publicKey),
    newKeyId: managementKeyId(next.publicKey),
    newPublicKey: toB64url(next.publicKey),
    issuedAt: '2027-01-02T03:04:05Z',
  };
  write('succession.v1.json', {
    what: 'a succession statement (src/crypto/succession.ts): the old and the new management key each sign encodeFields(fields) under kmgr/succession/v1',
    inputs: { oldSigningSeed: hex(signingSeed), newSigningSeed: hex(inputBytes('next signing seed', 32)), statement },
    bytes: hex(successionBytes(statement)),
    signature: toB64(signSuccession(signer, statement)),
    newSignature: toB64(signSuccession(next, statement)),
  });
}

await keystore();
blob();
request();
binding();
transfer();
recoveryKit();
succession();
