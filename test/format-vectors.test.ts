// Every format kmgr writes or signs, against its known-answer vector in
// fixtures/vectors/: the code must decode each vector to its recorded inputs
// and re-encode those inputs to the recorded bytes exactly. A change to a
// format fails here until it gets a new version number (the vector file is
// named by the version the code declares) and new vectors from
// test/make-vectors.ts; fixtures/README.md says how another implementation uses them.
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { BLOB_FORMAT_VERSION, blobAd, openBlob, sealBlob, type BlobContext } from '../src/crypto/blob.js';
import { KEYSTORE_VERSION, openKeystore, sealKeystore, type KeystoreFile } from '../src/crypto/keystore.js';
import { NONCE_LEN } from '../src/crypto/aead.js';
import { openTransfer, sealTransfer, type TransferFile } from '../src/crypto/transfer.js';
import { RECOVERY_VERSION, openRecoveryKit, parseRecoveryKit, sealRecoveryKit, type RecoveryKitFile, type RecoveryKitHeader } from '../src/crypto/recovery.js';
import { successionBytes, verifySuccession, type SuccessionStatement } from '../src/crypto/succession.js';
import { bindingBytes, signBinding, verifyBinding, type BindingStatement } from '../src/crypto/binding.js';
import { fingerprint, managementKeyId, publicKeyObject, signerFromSeed, verifySignature, TAG_REQUEST } from '../src/crypto/sign.js';
import { encodeFields, fromB64, fromUtf8, toB64, toB64url, utf8 } from '../src/crypto/bytes.js';
import { sha256 } from '../src/crypto/hash.js';
import {
  formatContentDigest, formatSignature, parseSignature, parseSignatureInput, serializeParams, signatureBase, SIG_LABEL, SIG_TAG,
  type RequestParts, type SignatureParams,
} from '../src/protocol/sigbase.js';
import { VECTORS, hex, readVector, replay, unhex } from './support/index.js';

t.test('a vector exists for the version of each format the code declares', async (t) => {
  for (const name of [
    `keystore.v${KEYSTORE_VERSION}.json`,
    `blob.v${BLOB_FORMAT_VERSION}.json`,
    `request-signature.${SIG_TAG.replace(/\//g, '-')}.json`,
    'binding.v1.json',
    'device-export.v1.json',
    `recovery-kit.v${RECOVERY_VERSION}.json`,
    'succession.v1.json',
  ]) {
    t.ok(existsSync(join(VECTORS, name)), `fixtures/vectors/${name} (a new format version needs new vectors)`);
  }
});

t.test('keystore: opens to the recorded secrets and re-seals byte for byte', async (t) => {
  const v = readVector<{ inputs: { passphrase: string; logN: number; signingSeed: string; wrapKey: string; salt: string; nonce: string }; file: KeystoreFile }>(
    `keystore.v${KEYSTORE_VERSION}.json`,
  );
  const secrets = await openKeystore(utf8(v.inputs.passphrase), v.file);
  t.equal(hex(secrets.signingSeed), v.inputs.signingSeed, 'signing seed');
  t.equal(hex(secrets.wrapKey), v.inputs.wrapKey, 'wrap key');
  const rng = replay(unhex(v.inputs.salt), unhex(v.inputs.nonce));
  const again = await sealKeystore(utf8(v.inputs.passphrase), secrets, v.inputs.logN, rng);
  t.same(again, v.file, 'the same inputs seal to the same file');
  t.ok(rng.done(), 'sealing used exactly the recorded salt and nonce');
  t.equal(fromB64(v.file.box)!.subarray(0, NONCE_LEN).length, NONCE_LEN, 'the box starts with its nonce');
  t.equal(hex(fromB64(v.file.box)!.subarray(0, NONCE_LEN)), v.inputs.nonce, 'box = nonce || ciphertext+tag');
});

t.test('sealed blob: associated data, opening and re-sealing', async (t) => {
  const v = readVector<{ cases: Array<{ label: string; inputs: { wrapKey: string; context: BlobContext; secret: string; nonce: string }; ad: string; blob: string }> }>(
    `blob.v${BLOB_FORMAT_VERSION}.json`,
  );
  t.ok(v.cases.length >= 2, 'with and without a partner name');
  for (const c of v.cases) {
    const key = unhex(c.inputs.wrapKey);
    t.equal(hex(blobAd(c.inputs.context)), c.ad, `${c.label}: associated data`);
    t.equal(hex(openBlob(key, c.inputs.context, unhex(c.blob))), c.inputs.secret, `${c.label}: opens to the secret`);
    const rng = replay(unhex(c.inputs.nonce));
    t.equal(hex(sealBlob(key, c.inputs.context, unhex(c.inputs.secret), rng)), c.blob, `${c.label}: re-seals byte for byte`);
    t.equal(c.blob.slice(0, 2), BLOB_FORMAT_VERSION.toString(16).padStart(2, '0'), `${c.label}: the first byte is the format version`);
    t.equal(c.blob.slice(2, 2 + 2 * NONCE_LEN), c.inputs.nonce, `${c.label}: then the nonce`);
  }
});

t.test('request signature: base, headers and signature', async (t) => {
  const v = readVector<{
    inputs: { signingSeed: string; body: string; parts: RequestParts; params: SignatureParams };
    publicKey: string;
    keyId: string;
    fingerprint: string;
    base: string;
    signedMessage: string;
    headers: Record<string, string>;
  }>(`request-signature.${SIG_TAG.replace(/\//g, '-')}.json`);
  const signer = signerFromSeed(unhex(v.inputs.signingSeed));
  t.equal(toB64url(signer.publicKey), v.publicKey, 'public key from the seed');
  t.equal(managementKeyId(signer.publicKey), v.keyId, 'management key ID');
  t.equal(fingerprint(signer.publicKey), v.fingerprint, 'fingerprint');
  t.equal(formatContentDigest(toB64(sha256(unhex(v.inputs.body)))), v.headers['content-digest'], 'content digest of the body');
  t.equal(signatureBase(v.inputs.parts, v.inputs.params), v.base, 'signature base');
  t.equal(`${SIG_LABEL}=${serializeParams(v.inputs.params)}`, v.headers['signature-input'], 'Signature-Input header');
  t.same(parseSignatureInput(v.headers['signature-input']!), v.inputs.params, 'Signature-Input parses back');
  t.equal(hex(encodeFields([TAG_REQUEST, utf8(v.base)])), v.signedMessage, 'the signed message is the tagged base');
  const sig = signer.sign(TAG_REQUEST, utf8(v.base));
  t.equal(formatSignature(toB64(sig)), v.headers.signature, 'Ed25519 is deterministic: the same signature');
  const parsed = fromB64(parseSignature(v.headers.signature!)!)!;
  t.ok(verifySignature(publicKeyObject(signer.publicKey), TAG_REQUEST, utf8(v.base), parsed), 'the recorded signature verifies');
});

t.test('binding statement: bytes and signature', async (t) => {
  const v = readVector<{ inputs: { signingSeed: string; statement: BindingStatement }; bytes: string; signature: string }>('binding.v1.json');
  const signer = signerFromSeed(unhex(v.inputs.signingSeed));
  t.equal(hex(bindingBytes(v.inputs.statement)), v.bytes, 'signed bytes');
  t.equal(toB64(signBinding(signer, v.inputs.statement)), v.signature, 'the same signature');
  t.ok(verifyBinding(publicKeyObject(signer.publicKey), v.inputs.statement, fromB64(v.signature)!), 'the recorded signature verifies');
});

t.test('device export: opens with the code and re-seals byte for byte', async (t) => {
  const v = readVector<{ inputs: { code: string; payload: string; salt: string; nonce: string }; file: TransferFile }>('device-export.v1.json');
  t.equal(fromUtf8(openTransfer(v.inputs.code, v.file)), v.inputs.payload, 'opens to the payload');
  const rng = replay(unhex(v.inputs.salt), unhex(v.inputs.nonce));
  t.same(sealTransfer(v.inputs.code, utf8(v.inputs.payload), rng), v.file, 'the same inputs seal to the same file');
  t.ok(rng.done(), 'sealing used exactly the recorded salt and nonce');
});

t.test('recovery kit: opens with the code, binds its header, and re-seals byte for byte', async (t) => {
  const v = readVector<{ inputs: { code: string; header: RecoveryKitHeader; payload: string; salt: string; nonce: string }; file: RecoveryKitFile }>(`recovery-kit.v${RECOVERY_VERSION}.json`);
  const kit = parseRecoveryKit(v.file);
  t.equal(fromUtf8(openRecoveryKit(v.inputs.code, kit)), v.inputs.payload, 'opens to the payload');
  t.throws(() => openRecoveryKit(v.inputs.code, { ...kit, server: 'https://elsewhere.example' }), 'the server named in the clear is associated data');
  const rng = replay(unhex(v.inputs.salt), unhex(v.inputs.nonce));
  t.same(sealRecoveryKit(v.inputs.code, v.inputs.header, utf8(v.inputs.payload), rng), v.file, 'the same inputs seal to the same file');
  t.ok(rng.done(), 'sealing used exactly the recorded salt and nonce');
});

t.test('succession statement: the recorded bytes, signed by both keys', async (t) => {
  const v = readVector<{ inputs: { oldSigningSeed: string; newSigningSeed: string; statement: SuccessionStatement }; bytes: string; signature: string; newSignature: string }>('succession.v1.json');
  t.equal(hex(successionBytes(v.inputs.statement)), v.bytes, 'the signed bytes');
  t.ok(verifySuccession(v.inputs.statement, fromB64(v.signature)!, fromB64(v.newSignature)!), 'both signatures verify');
  t.notOk(verifySuccession(v.inputs.statement, fromB64(v.newSignature)!, fromB64(v.signature)!), 'swapped, they do not');
  t.notOk(verifySuccession({ ...v.inputs.statement, newKeyId: v.inputs.statement.oldKeyId }, fromB64(v.signature)!, fromB64(v.newSignature)!), 'a key ID not derived from its key is refused');
  const old = signerFromSeed(unhex(v.inputs.oldSigningSeed));
  t.equal(toB64url(old.publicKey), v.inputs.statement.oldPublicKey, 'the old key is the recorded seed\'s');
});
