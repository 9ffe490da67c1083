// Unit tests for src/crypto: keystore (threat 3), blob sealing (threats 1, 2, 5),
// signatures (threat 7), byte encodings and transaction keys. Real cryptography
// throughout; randomised cases use a seeded PRNG so every run is the same.
import t from 'tap';
import { Buffer } from 'node:buffer';
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes as nodeRandomBytes,
  scryptSync,
  webcrypto,
  type JsonWebKey,
} from 'node:crypto';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { p256 } from '@noble/curves/nist.js';
import { secp256k1 } from '@noble/curves/secp256k1.js';

import {
  sealKeystore,
  openKeystore,
  parseKeystore,
  generateSecrets,
  KEYSTORE_FORMAT,
  KEYSTORE_VERSION,
  type KeystoreFile,
} from '../src/crypto/keystore.js';
import { checkKdfParams, deriveKey, KDF_MIN_LOGN, KDF_MIN_R, KDF_MAX_LOGN, SALT_LEN } from '../src/crypto/kdf.js';
import { sealBlob, openBlob, blobAd, BLOB_FORMAT_VERSION, type BlobContext } from '../src/crypto/blob.js';
import { NONCE_LEN, TAG_LEN } from '../src/crypto/aead.js';
import {
  signerFromSeed,
  publicKeyObject,
  verifySignature,
  fingerprint,
  managementKeyId,
  TAG_REQUEST,
  TAG_BINDING,
} from '../src/crypto/sign.js';
import { encodeFields, fromB64, fromB64url, fromHex, toB64, toB64url, toHex, utf8 } from '../src/crypto/bytes.js';
import {
  KEY_TYPES,
  OUTPUT_FORMATS,
  generateTransactionKey,
  formatTransactionKey,
  importTransactionKey,
  publicKeyPem,
  rawTransactionKey,
  type KeyType,
  type TransactionKey,
} from '../src/crypto/txkey.js';
import { KmgrError, IntegrityError, RefusedError, UsageError } from '../src/protocol/errors.js';
import { mulberry32 } from './support/index.js';

// ---------------------------------------------------------------- helpers

const randInt = (rng: () => number, lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1));
const randBytes = (rng: () => number, n: number): Uint8Array => {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rng() * 256);
  return b;
};

type Outcome =
  | { kind: 'returned'; value: unknown }
  | { kind: 'threw'; error: unknown };

function run(fn: () => unknown): Outcome {
  try {
    return { kind: 'returned', value: fn() };
  } catch (error) {
    return { kind: 'threw', error };
  }
}
async function runAsync(fn: () => Promise<unknown>): Promise<Outcome> {
  try {
    return { kind: 'returned', value: await fn() };
  } catch (error) {
    return { kind: 'threw', error };
  }
}
/** A short description for assertion messages. */
function describe(o: Outcome): string {
  if (o.kind === 'returned') return 'returned a value';
  const e = o.error;
  if (e instanceof KmgrError) return `${e.constructor.name}(${e.code}): ${e.message}`;
  if (e instanceof Error) return `${e.constructor.name}: ${e.message}`;
  return `non-error thrown: ${String(e)}`;
}
/** True when the outcome is a thrown KmgrError of the given class with the given code. */
function isError(o: Outcome, cls: abstract new (...a: never[]) => KmgrError, code: string): boolean {
  return o.kind === 'threw' && o.error instanceof cls && (o.error).code === code;
}

/**
 * Watches a promise for a fixed number of microtask turns only. A promise that
 * waits for scrypt (libuv thread pool) cannot settle inside the microtask
 * queue, so "settled here" proves no KDF work was awaited.
 */
async function settlesWithoutIo(p: Promise<unknown>): Promise<{ settled: boolean; outcome?: Outcome }> {
  let outcome: Outcome | undefined;
  p.then(
    (value) => (outcome = { kind: 'returned', value }),
    (error) => (outcome = { kind: 'threw', error }),
  );
  for (let i = 0; i < 50 && outcome === undefined; i++) await Promise.resolve();
  if (outcome === undefined) {
    await p.catch(() => undefined); // let it finish so nothing dangles
    return { settled: false };
  }
  return { settled: true, outcome };
}

/** An independent length-prefixed field encoding (4-byte BE length + bytes). */
function fieldsByHand(fields: Array<string | number | Uint8Array>): Uint8Array {
  const chunks: Buffer[] = [];
  for (const f of fields) {
    const b = typeof f === 'string' ? Buffer.from(f, 'utf8') : typeof f === 'number' ? Buffer.from(String(f), 'utf8') : Buffer.from(f);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    chunks.push(len, b);
  }
  return new Uint8Array(Buffer.concat(chunks));
}

/**
 * Builds a keystore file by hand (node's scrypt + @noble/ciphers), bypassing
 * sealKeystore, so we can make files with parameters sealKeystore would never use.
 */
function handKeystore(
  passphrase: string,
  plain: Uint8Array,
  kdf: { logN: number; r: number; p: number; salt: Uint8Array },
): KeystoreFile {
  const N = 2 ** kdf.logN;
  const key = scryptSync(Buffer.from(passphrase, 'utf8'), kdf.salt, 32, { N, r: kdf.r, p: kdf.p, maxmem: 256 * N * kdf.r + (1 << 20) });
  const ad = fieldsByHand([KEYSTORE_FORMAT, KEYSTORE_VERSION, 'scrypt', kdf.logN, kdf.r, kdf.p, kdf.salt]);
  const nonce = new Uint8Array(nodeRandomBytes(24));
  const ct = xchacha20poly1305(new Uint8Array(key), nonce, ad).encrypt(plain);
  return {
    format: KEYSTORE_FORMAT,
    v: KEYSTORE_VERSION,
    kdf: { alg: 'scrypt', logN: kdf.logN, r: kdf.r, p: kdf.p, salt: Buffer.from(kdf.salt).toString('base64') },
    box: Buffer.concat([nonce, ct]).toString('base64'),
  };
}

const PASS = 'correct horse battery staple';
const pass = (s = PASS): Uint8Array => utf8(s);
const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;
const eqBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

// ---------------------------------------------------------------- keystore

t.test('keystore', async (t) => {
  const secrets = generateSecrets();
  const file = await sealKeystore(pass(), secrets, 15);

  t.test('generateSecrets gives two independent 32-byte keys', async (t) => {
    const s = generateSecrets();
    t.equal(s.signingSeed.length, 32);
    t.equal(s.wrapKey.length, 32);
    t.notOk(eqBytes(s.signingSeed, s.wrapKey), 'signing seed and wrap key differ');
  });

  t.test('file shape', async (t) => {
    t.equal(file.format, 'kmgr-keystore');
    t.equal(file.v, 1);
    t.same(Object.keys(file.kdf).sort(), ['alg', 'logN', 'p', 'r', 'salt']);
    t.equal(file.kdf.alg, 'scrypt');
    t.equal(file.kdf.logN, 15);
    t.equal(file.kdf.r, 8);
    t.equal(file.kdf.p, 1);
    t.equal(fromB64(file.kdf.salt)?.length, SALT_LEN, 'salt is 16 bytes, strict base64');
    // nonce 24 + ciphertext 64 + tag 16
    t.equal(fromB64(file.box)?.length, 24 + 64 + 16, 'box is nonce || ciphertext || tag');
    const serial = JSON.stringify(file);
    t.notOk(serial.includes(toB64(secrets.signingSeed)), 'signing seed not in the file');
    t.notOk(serial.includes(toB64(secrets.wrapKey)), 'wrap key not in the file');
  });

  t.test('round trip (also through JSON text)', async (t) => {
    const back = await openKeystore(pass(), JSON.parse(JSON.stringify(file)));
    t.ok(eqBytes(back.signingSeed, secrets.signingSeed), 'signing seed round trips');
    t.ok(eqBytes(back.wrapKey, secrets.wrapKey), 'wrap key round trips');
  });

  t.test('two seals of the same secrets use fresh salt and nonce', async (t) => {
    const again = await sealKeystore(pass(), secrets, 15);
    t.not(again.kdf.salt, file.kdf.salt, 'salt differs');
    t.not(again.box, file.box, 'box differs');
  });

  t.test('wrong passphrase: RefusedError wrong_passphrase', async (t) => {
    for (const wrong of ['correct horse battery stapl', 'Correct horse battery staple', '', PASS + ' ']) {
      const o = await runAsync(() => openKeystore(pass(wrong), file));
      t.ok(isError(o, RefusedError, 'wrong_passphrase'), `passphrase ${JSON.stringify(wrong)}: ${describe(o)}`);
    }
  });

  t.test('an altered box is refused, never opened', async (t) => {
    const box = fromB64(file.box)!;
    for (const i of [0, 23, 24, 60, box.length - 1]) {
      const b = box.slice();
      b[i] = b[i]! ^ 0x01;
      const doc = { ...clone(file), box: toB64(b) };
      const o = await runAsync(() => openKeystore(pass(), doc));
      t.ok(isError(o, RefusedError, 'wrong_passphrase'), `flip in box byte ${i}: ${describe(o)}`);
    }
  });

  t.test('threat 3: editing KDF fields within range makes open fail even with the right passphrase', async (t) => {
    const salt = fromB64(file.kdf.salt)!;
    const otherSalt = salt.slice();
    otherSalt[0] = otherSalt[0]! ^ 0x80;
    const edits: Array<[string, (k: KeystoreFile['kdf']) => void]> = [
      ['logN 15 -> 16', (k) => (k.logN = 16)],
      ['salt one bit changed', (k) => (k.salt = toB64(otherSalt))],
      ['salt extended to 17 bytes', (k) => (k.salt = toB64(Uint8Array.from([...salt, 0])))],
    ];
    for (const [what, edit] of edits) {
      const doc = clone(file);
      edit(doc.kdf);
      t.doesNotThrow(() => parseKeystore(doc), `${what}: still inside the allowed range`);
      const o = await runAsync(() => openKeystore(pass(), doc));
      t.ok(isError(o, RefusedError, 'wrong_passphrase'), `${what}: ${describe(o)}`);
    }
  });

  t.test('threat 3: the box is bound to the documented AD (built by hand with noble)', async (t) => {
    const salt = new Uint8Array(nodeRandomBytes(16));
    const plain = new Uint8Array(64).fill(7);
    const good = handKeystore(PASS, plain, { logN: 15, r: 8, p: 1, salt });
    const opened = await openKeystore(pass(), good);
    t.ok(eqBytes(opened.signingSeed, plain.subarray(0, 32)) && eqBytes(opened.wrapKey, plain.subarray(32)), 'hand-built keystore (same AD construction) opens');
    // Now seal with the right key but an AD missing the salt: must not open.
    const N = 2 ** 15;
    const key = scryptSync(Buffer.from(PASS), salt, 32, { N, r: 8, p: 1, maxmem: 256 * N * 8 + (1 << 20) });
    const nonce = new Uint8Array(nodeRandomBytes(24));
    const badAd = fieldsByHand([KEYSTORE_FORMAT, KEYSTORE_VERSION, 'scrypt', 15, 8, 1]);
    const ct = xchacha20poly1305(new Uint8Array(key), nonce, badAd).encrypt(plain);
    const doc = { ...clone(good), box: Buffer.concat([nonce, ct]).toString('base64') };
    const o = await runAsync(() => openKeystore(pass(), doc));
    t.ok(isError(o, RefusedError, 'wrong_passphrase'), `box sealed without the salt in its AD is refused: ${describe(o)}`);
  });

  t.test('the settle-without-I/O probe does see real KDF work (control)', async (t) => {
    const r = await settlesWithoutIo(openKeystore(pass('wrong'), file));
    t.notOk(r.settled, 'a real scrypt run cannot settle within microtasks');
  });

  t.test('threat 3: KDF parameters below the floor or above the ceiling: kdf_too_weak before any KDF work', async (t) => {
    const edits: Array<[string, (k: KeystoreFile['kdf']) => void]> = [
      ['logN 14', (k) => (k.logN = KDF_MIN_LOGN - 1)],
      ['logN 10', (k) => (k.logN = 10)],
      ['logN 1', (k) => (k.logN = 1)],
      ['logN 0', (k) => (k.logN = 0)],
      ['logN -1', (k) => (k.logN = -1)],
      ['r 7', (k) => (k.r = KDF_MIN_R - 1)],
      ['r 1', (k) => (k.r = 1)],
      ['r 0', (k) => (k.r = 0)],
      ['p 0', (k) => (k.p = 0)],
      ['salt 15 bytes', (k) => (k.salt = toB64(new Uint8Array(15)))],
      ['salt empty', (k) => (k.salt = '')],
      ['logN 21 (above ceiling)', (k) => (k.logN = KDF_MAX_LOGN + 1)],
      ['logN 22 (the old ceiling: 4 GiB of scrypt)', (k) => (k.logN = 22)],
      ['r 9 (kmgr writes r 8)', (k) => (k.r = 9)],
      ['r 32 (the old ceiling)', (k) => (k.r = 32)],
      ['p 2 (kmgr writes p 1)', (k) => (k.p = 2)],
      ['p 16 (the old ceiling)', (k) => (k.p = 16)],
      ['logN 40 (absurd)', (k) => (k.logN = 40)],
      ['logN 1e6', (k) => (k.logN = 1e6)],
      ['r 33', (k) => (k.r = 33)],
      ['r 1e9', (k) => (k.r = 1e9)],
      ['p 17', (k) => (k.p = 17)],
      ['p 1e9', (k) => (k.p = 1e9)],
    ];
    for (const [what, edit] of edits) {
      const doc = clone(file);
      edit(doc.kdf);
      const sync = run(() => parseKeystore(doc));
      t.ok(isError(sync, IntegrityError, 'kdf_too_weak'), `${what}: parseKeystore -> ${describe(sync)}`);
      const r = await settlesWithoutIo(openKeystore(pass(), doc));
      t.ok(r.settled, `${what}: openKeystore refuses without waiting for scrypt`);
      if (r.outcome) t.ok(isError(r.outcome, IntegrityError, 'kdf_too_weak'), `${what}: openKeystore -> ${describe(r.outcome)}`);
    }
  });

  t.test('checkKdfParams and deriveKey enforce the floor themselves', async (t) => {
    const salt = new Uint8Array(16);
    t.doesNotThrow(() => checkKdfParams({ alg: 'scrypt', logN: 15, r: 8, p: 1, salt }));
    t.doesNotThrow(() => checkKdfParams({ alg: 'scrypt', logN: 20, r: 8, p: 1, salt }));
    for (const [what, k] of [
      ['logN 14', { alg: 'scrypt', logN: 14, r: 8, p: 1, salt }],
      ['logN 15.5', { alg: 'scrypt', logN: 15.5, r: 8, p: 1, salt }],
      ['logN NaN', { alg: 'scrypt', logN: NaN, r: 8, p: 1, salt }],
      ['logN Infinity', { alg: 'scrypt', logN: Infinity, r: 8, p: 1, salt }],
      ['r 8.5', { alg: 'scrypt', logN: 15, r: 8.5, p: 1, salt }],
      ['alg argon2', { alg: 'argon2' as 'scrypt', logN: 15, r: 8, p: 1, salt }],
    ] as const) {
      const o = run(() => checkKdfParams(k));
      t.ok(isError(o, IntegrityError, 'kdf_too_weak'), `checkKdfParams ${what}: ${describe(o)}`);
    }
    // deriveKey checks before calling scrypt: it throws synchronously (or rejects at once).
    const sync = run(() => deriveKey(pass(), { alg: 'scrypt', logN: 40, r: 8, p: 1, salt }));
    let outcome: Outcome | undefined = sync.kind === 'threw' ? sync : undefined;
    if (sync.kind === 'returned') outcome = (await settlesWithoutIo(sync.value as Promise<unknown>)).outcome;
    t.ok(outcome && isError(outcome, IntegrityError, 'kdf_too_weak'), `deriveKey(logN 40) refused at once${outcome ? ' (' + describe(outcome) + ')' : ''}`);
  });

  t.test('threat 3: a keystore validly made with weak parameters is refused', async (t) => {
    const plain = new Uint8Array(nodeRandomBytes(64));
    const cases: Array<[string, { logN: number; r: number; p: number; salt: Uint8Array }]> = [
      ['logN 10', { logN: 10, r: 8, p: 1, salt: new Uint8Array(nodeRandomBytes(16)) }],
      ['logN 14', { logN: 14, r: 8, p: 1, salt: new Uint8Array(nodeRandomBytes(16)) }],
      ['r 4', { logN: 15, r: 4, p: 1, salt: new Uint8Array(nodeRandomBytes(16)) }],
      ['salt 8 bytes', { logN: 15, r: 8, p: 1, salt: new Uint8Array(nodeRandomBytes(8)) }],
    ];
    for (const [what, kdf] of cases) {
      const weak = handKeystore(PASS, plain, kdf);
      const r = await settlesWithoutIo(openKeystore(pass(), weak));
      t.ok(r.settled && r.outcome && isError(r.outcome, IntegrityError, 'kdf_too_weak'),
        `${what}: refused with kdf_too_weak${r.outcome ? ' (' + describe(r.outcome) + ')' : ''}`);
    }
    // Control: the same construction at the floor opens, so the refusals above are about the parameters.
    const ok = handKeystore(PASS, plain, { logN: 15, r: 8, p: 1, salt: new Uint8Array(nodeRandomBytes(16)) });
    const opened = await openKeystore(pass(), ok);
    t.ok(eqBytes(opened.signingSeed, plain.subarray(0, 32)) && eqBytes(opened.wrapKey, plain.subarray(32)), 'control: hand-built file at the floor opens');
  });

  t.test('contents of the wrong length: integrity', async (t) => {
    const salt = new Uint8Array(nodeRandomBytes(16));
    for (const n of [0, 32, 63, 65]) {
      const doc = handKeystore(PASS, new Uint8Array(n), { logN: 15, r: 8, p: 1, salt });
      const o = await runAsync(() => openKeystore(pass(), doc));
      t.ok(isError(o, IntegrityError, 'integrity'), `${n}-byte contents: ${describe(o)}`);
    }
  });

  t.test('malformed shapes: typed integrity errors', async (t) => {
    const k = file.kdf;
    const salt = fromB64(k.salt)!;
    const box = fromB64(file.box)!;
    // Non-canonical base64: change the last char's unused low bits ("==" ends 4 unused bits).
    const nonCanonical = (s: string): string => {
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
      const stripped = s.replace(/=+$/, '');
      const last = stripped[stripped.length - 1]!;
      const next = alphabet[(alphabet.indexOf(last) + 1) % 64]!;
      return stripped.slice(0, -1) + next + s.slice(stripped.length);
    };
    t.ok(k.salt.endsWith('=='), 'a 16-byte salt has padding (precondition)');
    t.same(Buffer.from(nonCanonical(k.salt), 'base64'), Buffer.from(salt), 'precondition: node decodes the non-canonical salt to the same bytes');
    const cases: Array<[string, unknown]> = [
      ['null', null],
      ['undefined', undefined],
      ['number', 42],
      ['string', JSON.stringify(file)],
      ['array', [file]],
      ['empty object', {}],
      ['wrong format', { ...file, format: 'kmgr-keystor' }],
      ['missing format', { v: 1, kdf: k, box: file.box }],
      ['version 2', { ...file, v: 2 }],
      ['version "1"', { ...file, v: '1' }],
      ['version 0', { ...file, v: 0 }],
      ['missing kdf', { format: file.format, v: 1, box: file.box }],
      ['kdf null', { ...file, kdf: null }],
      ['kdf string', { ...file, kdf: 'scrypt' }],
      ['kdf alg argon2id', { ...file, kdf: { ...k, alg: 'argon2id' } }],
      ['kdf alg missing', { ...file, kdf: { logN: k.logN, r: k.r, p: k.p, salt: k.salt } }],
      ['logN as string', { ...file, kdf: { ...k, logN: '15' } }],
      ['logN fractional', { ...file, kdf: { ...k, logN: 15.5 } }],
      ['logN null', { ...file, kdf: { ...k, logN: null } }],
      ['r missing', { ...file, kdf: { alg: 'scrypt', logN: k.logN, p: k.p, salt: k.salt } }],
      ['r boolean', { ...file, kdf: { ...k, r: true } }],
      ['p missing', { ...file, kdf: { alg: 'scrypt', logN: k.logN, r: k.r, salt: k.salt } }],
      ['salt number', { ...file, kdf: { ...k, salt: 12345 } }],
      ['salt bytes array', { ...file, kdf: { ...k, salt: Array.from(salt) } }],
      ['salt junk', { ...file, kdf: { ...k, salt: '!!!!not base64!!!!' } }],
      ['salt with whitespace', { ...file, kdf: { ...k, salt: ' ' + k.salt } }],
      ['salt with newline', { ...file, kdf: { ...k, salt: k.salt + '\n' } }],
      ['salt base64url', { ...file, kdf: { ...k, salt: toB64url(salt) } }],
      ['salt non-canonical', { ...file, kdf: { ...k, salt: nonCanonical(k.salt) } }],
      ['box missing', { format: file.format, v: 1, kdf: k }],
      ['box number', { ...file, box: 1 }],
      ['box null', { ...file, box: null }],
      ['box junk', { ...file, box: '***' }],
      ['box base64url', { ...file, box: toB64url(box) }],
      ['box unpadded', { ...file, box: file.box.replace(/=+$/, '') }],
    ];
    for (const [what, doc] of cases) {
      const sync = run(() => parseKeystore(doc));
      t.ok(isError(sync, IntegrityError, 'integrity'), `${what}: parseKeystore -> ${describe(sync)}`);
      const r = await settlesWithoutIo(openKeystore(pass(), doc));
      t.ok(r.settled && r.outcome && isError(r.outcome, IntegrityError, 'integrity'),
        `${what}: openKeystore refuses at once with integrity${r.outcome ? ' (' + describe(r.outcome) + ')' : ''}`);
    }
  });
});

// ---------------------------------------------------------------- blobs

t.test('blob sealing', async (t) => {
  const wrapKey = new Uint8Array(nodeRandomBytes(32));
  const ctx: BlobContext = { personId: 'p_alice', partnerId: 'bank-a', keyId: 'k_0001', alg: 'ed25519', keyVersion: 1 };
  const secret = new Uint8Array(nodeRandomBytes(48));
  const blob = sealBlob(wrapKey, ctx, secret);

  t.test('layout and round trip', async (t) => {
    t.equal(BLOB_FORMAT_VERSION, 1);
    t.equal(blob[0], BLOB_FORMAT_VERSION, 'first byte is the format version');
    t.equal(blob.length, 1 + NONCE_LEN + secret.length + TAG_LEN, 'version || nonce || ciphertext || tag');
    t.ok(eqBytes(openBlob(wrapKey, { ...ctx }, blob), secret), 'opens with an equal (not identical) context object');
    const again = sealBlob(wrapKey, ctx, secret);
    t.notOk(eqBytes(again, blob), 'fresh nonce: sealing twice gives different blobs');
    t.ok(eqBytes(openBlob(wrapKey, ctx, again), secret), 'second seal opens too');
    for (const n of [0, 1, 32, 121, 1000]) {
      const s = new Uint8Array(nodeRandomBytes(n));
      t.ok(eqBytes(openBlob(wrapKey, ctx, sealBlob(wrapKey, ctx, s)), s), `${n}-byte secret round trips`);
    }
  });

  t.test('independent check of the AD: the box is XChaCha20-Poly1305 under the documented AD', async (t) => {
    const ad = fieldsByHand(['kmgr/blob', 1, ctx.personId, ctx.partnerId, ctx.keyId, ctx.alg, ctx.keyVersion]);
    t.ok(eqBytes(blobAd(ctx), ad), 'blobAd = (tag, version, person, partner, key id, alg, key version)');
    const plain = xchacha20poly1305(wrapKey, blob.subarray(1, 1 + NONCE_LEN), ad).decrypt(blob.subarray(1 + NONCE_LEN));
    t.ok(eqBytes(plain, secret), 'noble decrypts it with the hand-built AD');
  });

  t.test('threat 1: any single field of the context changed: IntegrityError', async (t) => {
    const variants: Array<[string, BlobContext]> = [
      ['personId', { ...ctx, personId: 'p_bob' }],
      ['personId case', { ...ctx, personId: 'P_alice' }],
      ['partnerId', { ...ctx, partnerId: 'bank-b' }],
      ['partnerId prefix', { ...ctx, partnerId: 'bank-' }],
      ['keyId', { ...ctx, keyId: 'k_0002' }],
      ['alg', { ...ctx, alg: 'p256' }],
      ['alg empty', { ...ctx, alg: '' }],
      ['keyVersion + 1 (threat 5)', { ...ctx, keyVersion: 2 }],
      ['keyVersion 0', { ...ctx, keyVersion: 0 }],
      ['boundary moved between person and partner', { ...ctx, personId: 'p_alic', partnerId: 'ebank-a' }],
      ['person and partner swapped', { ...ctx, personId: ctx.partnerId, partnerId: ctx.personId }],
    ];
    for (const [what, c] of variants) {
      const o = run(() => openBlob(wrapKey, c, blob));
      t.ok(isError(o, IntegrityError, 'integrity'), `${what}: ${describe(o)}`);
    }
    const otherKey = new Uint8Array(nodeRandomBytes(32));
    const o = run(() => openBlob(otherKey, ctx, blob));
    t.ok(isError(o, IntegrityError, 'integrity'), `another wrap key: ${describe(o)}`);
  });

  t.test('threat 2: unknown format versions refused', async (t) => {
    for (const v of [0, 2, 3, 0x7f, 0x80, 0xff]) {
      const b = blob.slice();
      b[0] = v;
      const o = run(() => openBlob(wrapKey, ctx, b));
      t.ok(isError(o, IntegrityError, 'integrity'), `version byte ${v}: ${describe(o)}`);
    }
    const o = run(() => openBlob(wrapKey, ctx, new Uint8Array(0)));
    t.ok(isError(o, IntegrityError, 'integrity'), `empty blob: ${describe(o)}`);
    // A box sealed by hand under a "version 2" AD, with byte 0 = 2, is still refused.
    const ad2 = fieldsByHand(['kmgr/blob', 2, ctx.personId, ctx.partnerId, ctx.keyId, ctx.alg, ctx.keyVersion]);
    const nonce = new Uint8Array(nodeRandomBytes(24));
    const v2 = Buffer.concat([Buffer.of(2), nonce, xchacha20poly1305(wrapKey, nonce, ad2).encrypt(secret)]);
    const o2 = run(() => openBlob(wrapKey, ctx, new Uint8Array(v2)));
    t.ok(isError(o2, IntegrityError, 'integrity'), `a well-formed "version 2" blob: ${describe(o2)}`);
    // And a version-1 byte in front of a box sealed with the version-2 AD: refused (version is inside the AD).
    const v1prefix = new Uint8Array(v2);
    v1prefix[0] = 1;
    const o3 = run(() => openBlob(wrapKey, ctx, v1prefix));
    t.ok(isError(o3, IntegrityError, 'integrity'), `version byte rewritten to 1 over a version-2 box: ${describe(o3)}`);
  });

  t.test('threat 2: bit flips, truncations, extensions, random bytes: always a typed error', async (t) => {
    const rng = mulberry32(0xb10b);
    let cases = 0;
    const failures: string[] = [];
    const check = (what: string, b: Uint8Array): void => {
      cases++;
      const o = run(() => openBlob(wrapKey, ctx, b));
      if (!isError(o, IntegrityError, 'integrity')) failures.push(`${what}: ${describe(o)}`);
    };
    // Every single-bit flip of the blob.
    for (let i = 0; i < blob.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const b = blob.slice();
        b[i] = b[i]! ^ (1 << bit);
        check(`flip byte ${i} bit ${bit}`, b);
      }
    }
    t.equal(cases, blob.length * 8, 'every bit position tried');
    // Every truncation, and random ones of random-length fresh blobs.
    for (let n = 0; n < blob.length; n++) check(`truncate to ${n}`, blob.slice(0, n));
    for (let i = 0; i < 200; i++) {
      const s = randBytes(rng, randInt(rng, 0, 80));
      const fresh = sealBlob(wrapKey, ctx, s);
      const n = randInt(rng, 0, fresh.length - 1);
      check(`random truncation ${n}/${fresh.length}`, fresh.slice(0, n));
      const cut = randInt(rng, 1, fresh.length - 1);
      check(`random bytes removed at ${cut}`, Uint8Array.from([...fresh.subarray(0, cut), ...fresh.subarray(cut + 1)]));
      check('extended by random bytes', Uint8Array.from([...fresh, ...randBytes(rng, randInt(rng, 1, 16))]));
    }
    // Random byte strings, half of them with a valid version byte so they reach the AEAD.
    for (let i = 0; i < 400; i++) {
      const b = randBytes(rng, randInt(rng, 0, 160));
      if (i % 2 === 0 && b.length > 0) b[0] = BLOB_FORMAT_VERSION;
      check(`random ${b.length} bytes`, b);
    }
    // Random multi-byte corruption.
    for (let i = 0; i < 200; i++) {
      const b = blob.slice();
      const k = randInt(rng, 1, 6);
      for (let j = 0; j < k; j++) {
        const at = randInt(rng, 0, b.length - 1);
        b[at] = b[at]! ^ randInt(rng, 1, 255);
      }
      if (eqBytes(b, blob)) continue; // two corruptions cancelled out
      check(`${k} random byte corruptions`, b);
    }
    t.ok(cases > 2000, `${cases} cases run`);
    t.same(failures, [], 'every altered blob gave IntegrityError(integrity), never plaintext or another exception');
    t.ok(eqBytes(openBlob(wrapKey, ctx, blob), secret), 'the original still opens (the loop did not mutate it)');
  });
});

// ---------------------------------------------------------------- signatures

t.test('signatures', async (t) => {
  const seed = new Uint8Array(nodeRandomBytes(32));
  const signer = signerFromSeed(seed);
  const pub = publicKeyObject(signer.publicKey);
  const payload = utf8('GET /v1/keys/bank-a 1700000000');

  t.test('public key matches an independent implementation', async (t) => {
    t.equal(signer.publicKey.length, 32);
    t.ok(eqBytes(signer.publicKey, ed25519.getPublicKey(seed)), 'noble derives the same public key from the seed');
    const sig = signer.sign(TAG_REQUEST, payload);
    t.ok(ed25519.verify(sig, fieldsByHand([TAG_REQUEST, payload]), signer.publicKey), 'signature is over (tag, payload) length-prefixed');
    t.notOk(ed25519.verify(sig, payload, signer.publicKey), 'signature is not over the bare payload');
  });

  t.test('threat 7: context tags separate purposes', async (t) => {
    t.not(TAG_REQUEST, TAG_BINDING);
    const sReq = signer.sign(TAG_REQUEST, payload);
    const sBind = signer.sign(TAG_BINDING, payload);
    t.equal(sReq.length, 64);
    t.ok(verifySignature(pub, TAG_REQUEST, payload, sReq), 'request signature verifies as a request');
    t.ok(verifySignature(pub, TAG_BINDING, payload, sBind), 'binding signature verifies as a binding');
    t.notOk(verifySignature(pub, TAG_BINDING, payload, sReq), 'request signature does not verify as a binding');
    t.notOk(verifySignature(pub, TAG_REQUEST, payload, sBind), 'binding signature does not verify as a request');
    t.notOk(eqBytes(sReq, sBind), 'the two signatures differ');
  });

  t.test('tampering, other keys, wrong lengths', async (t) => {
    const sig = signer.sign(TAG_BINDING, payload);
    const p2 = payload.slice();
    p2[0] = p2[0]! ^ 1;
    t.notOk(verifySignature(pub, TAG_BINDING, p2, sig), 'changed payload');
    for (const i of [0, 31, 32, 63]) {
      const s = sig.slice();
      s[i] = s[i]! ^ 0x10;
      t.notOk(verifySignature(pub, TAG_BINDING, payload, s), `flipped signature byte ${i}`);
    }
    const other = publicKeyObject(signerFromSeed(new Uint8Array(nodeRandomBytes(32))).publicKey);
    t.notOk(verifySignature(other, TAG_BINDING, payload, sig), 'another public key');
    for (const s of [new Uint8Array(0), sig.slice(0, 63), Uint8Array.from([...sig, 0]), new Uint8Array(128)]) {
      let r: boolean | string;
      try {
        r = verifySignature(pub, TAG_BINDING, payload, s);
      } catch (e) {
        r = `threw ${(e as Error).message}`;
      }
      t.equal(r, false, `${s.length}-byte signature: false, no throw`);
    }
    t.equal(verifySignature(pub, TAG_BINDING, payload, new Uint8Array(64)), false, 'all-zero 64-byte signature');
    t.equal(verifySignature(pub, TAG_BINDING, payload, new Uint8Array(64).fill(0xff)), false, 'all-0xff 64-byte signature');
  });

  t.test('bad key material is a TypeError', async (t) => {
    t.throws(() => signerFromSeed(new Uint8Array(31)), TypeError);
    t.throws(() => signerFromSeed(new Uint8Array(33)), TypeError);
    t.throws(() => publicKeyObject(new Uint8Array(31)), TypeError);
  });

  t.test('fingerprint and management key id', async (t) => {
    const fp = fingerprint(signer.publicKey);
    t.match(fp, /^SHA256:[A-Za-z0-9_-]{43}$/, 'SHA256: + 43 base64url chars');
    t.equal(fp, 'SHA256:' + createHash('sha256').update(signer.publicKey).digest('base64url'), 'is sha256 of the raw public key');
    t.equal(fingerprint(signerFromSeed(seed).publicKey), fp, 'same key, same fingerprint');
    const otherPk = signerFromSeed(new Uint8Array(nodeRandomBytes(32))).publicKey;
    t.not(fingerprint(otherPk), fp, 'other key, other fingerprint');

    const id = managementKeyId(signer.publicKey);
    t.match(id, /^mk_[A-Za-z0-9_-]{22}$/, 'mk_ + 22 base64url chars');
    t.equal(managementKeyId(signerFromSeed(seed.slice()).publicKey), id, 'stable for a key');
    t.equal(managementKeyId(Uint8Array.from(signer.publicKey)), id, 'stable across copies');
    t.not(managementKeyId(otherPk), id, 'differs for another key');
    const expected = 'mk_' + createHash('sha256').update('kmgr/mk-id').update(signer.publicKey).digest('base64url').slice(0, 22);
    t.equal(id, expected, 'derived from sha256("kmgr/mk-id" || public key)');
    t.not(id.slice(3), fp.slice(7, 29), 'id is domain-separated from the fingerprint');
    // Known answer for a fixed key, so a change to the derivation is noticed.
    const fixed = signerFromSeed(new Uint8Array(32).fill(1)).publicKey;
    t.equal(managementKeyId(fixed), managementKeyId(ed25519.getPublicKey(new Uint8Array(32).fill(1))), 'fixed seed: same id via noble');
  });
});

// ---------------------------------------------------------------- bytes

t.test('encodeFields', async (t) => {
  t.notOk(eqBytes(encodeFields(['ab', 'c']), encodeFields(['a', 'bc'])), '("ab","c") != ("a","bc")');
  t.notOk(eqBytes(encodeFields(['a']), encodeFields(['a', ''])), '("a") != ("a","")');
  t.notOk(eqBytes(encodeFields(['', 'a']), encodeFields(['a', ''])), '("","a") != ("a","")');
  t.notOk(eqBytes(encodeFields([]), encodeFields([''])), '() != ("")');
  t.notOk(eqBytes(encodeFields([12, 3]), encodeFields([1, 23])), '(12,3) != (1,23)');
  t.equal(toHex(encodeFields(['ab', 'c'])), '000000026162' + '0000000163', 'known encoding');
  t.equal(toHex(encodeFields([Uint8Array.of(0, 255)])), '0000000200ff', 'bytes pass through');
  t.equal(toHex(encodeFields([17])), '000000023137', 'numbers as decimal text');
  t.equal(toHex(encodeFields(['é'])), '00000002c3a9', 'strings as UTF-8');
  t.equal(encodeFields([]).length, 0);
  const big = new Uint8Array(70000);
  t.equal(toHex(encodeFields([big]).subarray(0, 4)), '00011170', 'length is 4-byte big-endian');
  // Property: for random tuples, encodeFields is injective (compare against the tuples themselves).
  const rng = mulberry32(42);
  const seen = new Map<string, string>();
  let collisions = 0;
  for (let i = 0; i < 500; i++) {
    const n = randInt(rng, 0, 4);
    const fields: string[] = [];
    for (let j = 0; j < n; j++) fields.push('ab'.repeat(randInt(rng, 0, 2)) + 'a'.repeat(randInt(rng, 0, 2)));
    const key = toHex(encodeFields(fields));
    const prev = seen.get(key);
    if (prev !== undefined && prev !== JSON.stringify(fields)) collisions++;
    seen.set(key, JSON.stringify(fields));
    if (!eqBytes(encodeFields(fields), fieldsByHand(fields))) collisions++;
  }
  t.equal(collisions, 0, 'no two distinct tuples share an encoding (500 random tuples)');
});

t.test('strict decoders', async (t) => {
  t.test('fromB64', async (t) => {
    t.same(fromB64('QQ=='), Uint8Array.of(0x41));
    t.same(fromB64('QUI='), Uint8Array.of(0x41, 0x42));
    t.same(fromB64('QUJD'), Uint8Array.of(0x41, 0x42, 0x43));
    t.same(fromB64(''), new Uint8Array(0));
    t.same(fromB64('+/+/'), Uint8Array.of(0xfb, 0xff, 0xbf));
    for (const s of [
      'QQ', 'QQ=', 'Q===', 'Q', '====', '=QQQ', 'Q=Q=', 'QQ==QQ==', 'QQ==A', ' QQ==', 'QQ== ', 'QQ==\n', 'Q Q=', 'QQ\n==',
      'QR==', 'QUJ=', 'QUK=', // non-canonical: unused low bits set
      '-_-_', 'QQ-_', // base64url alphabet
      'QQ%3D', '!!!!', 'QUJD\u0000', 'ＱＱ==', 'QUJD====',
    ]) {
      t.equal(fromB64(s), undefined, `rejects ${JSON.stringify(s)}`);
    }
  });
  t.test('fromB64url', async (t) => {
    t.same(fromB64url('QQ'), Uint8Array.of(0x41));
    t.same(fromB64url('QUI'), Uint8Array.of(0x41, 0x42));
    t.same(fromB64url(''), new Uint8Array(0));
    t.same(fromB64url('-_-_'), Uint8Array.of(0xfb, 0xff, 0xbf));
    for (const s of ['Q', 'QUJDR', 'QQ==', 'QQ=', 'QR', 'QUJ', 'QUK', '+/+/', ' QQ', 'QQ ', 'QQ\n', 'Q Q', '!!', 'QQ.']) {
      t.equal(fromB64url(s), undefined, `rejects ${JSON.stringify(s)}`);
    }
  });
  t.test('fromHex', async (t) => {
    t.same(fromHex('00ff10'), Uint8Array.of(0, 255, 16));
    t.same(fromHex(''), new Uint8Array(0));
    for (const s of ['0', '0ff', 'zz', 'g0', '0x00', ' 00', '00 ', '00\n', '0 0', '-1', '+1', '00:11', 'ｆｆ']) {
      t.equal(fromHex(s), undefined, `rejects ${JSON.stringify(s)}`);
    }
  });
  t.test('property: random strings decode only when canonical; encodings round trip', async (t) => {
    const rng = mulberry32(7);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n.';
    let bad = 0;
    let accepted = 0;
    for (let i = 0; i < 3000; i++) {
      let s = '';
      const n = randInt(rng, 0, 12);
      for (let j = 0; j < n; j++) s += alphabet[Math.floor(rng() * alphabet.length)];
      const a = fromB64(s);
      if (a) {
        accepted++;
        if (toB64(a) !== s) bad++;
      }
      const b = fromB64url(s);
      if (b) {
        accepted++;
        if (toB64url(b) !== s) bad++;
      }
      const h = fromHex(s);
      if (h && toHex(h) !== s.toLowerCase()) bad++;
    }
    t.equal(bad, 0, 'every accepted string is the canonical encoding of what it decodes to');
    t.ok(accepted > 0, `some random strings were valid (${accepted})`);
    for (let i = 0; i < 300; i++) {
      const b = randBytes(rng, randInt(rng, 0, 40));
      if (!eqBytes(fromB64(toB64(b)) ?? Uint8Array.of(1, 2, 3), b)) bad++;
      if (!eqBytes(fromB64url(toB64url(b)) ?? Uint8Array.of(1, 2, 3), b)) bad++;
      if (!eqBytes(fromHex(toHex(b)) ?? Uint8Array.of(1, 2, 3), b)) bad++;
    }
    t.equal(bad, 0, 'to/from round trips for 300 random byte strings');
  });
});

// ---------------------------------------------------------------- transaction keys

/** The raw public key (x, or 04||x||y) named by an SPKI PEM, via node. */
function rawPublicFromPem(pem: string): Uint8Array {
  const jwk = createPublicKey(pem).export({ format: 'jwk' });
  const x = Buffer.from(jwk.x as string, 'base64url');
  if (jwk.kty === 'OKP') return new Uint8Array(x);
  return new Uint8Array(Buffer.concat([Buffer.of(4), x, Buffer.from(jwk.y as string, 'base64url')]));
}
/** The raw public key computed from a private scalar/seed by @noble/curves (an independent implementation). */
function rawPublicFromSecret(type: Exclude<KeyType, 'aes256'>, d: Uint8Array): Uint8Array {
  switch (type) {
    case 'ed25519':
      return ed25519.getPublicKey(d);
    case 'x25519':
      return x25519.getPublicKey(d);
    case 'p256':
      return p256.getPublicKey(d, false);
    case 'secp256k1':
      return secp256k1.getPublicKey(d, false);
  }
}
const NODE_TYPE: Record<Exclude<KeyType, 'aes256'>, [string, string | undefined]> = {
  ed25519: ['ed25519', undefined],
  x25519: ['x25519', undefined],
  p256: ['ec', 'prime256v1'],
  secp256k1: ['ec', 'secp256k1'],
};

t.test('transaction keys', async (t) => {
  for (const type of KEY_TYPES) {
    t.test(type, async (t) => {
      const k = generateTransactionKey(type);
      t.equal(k.type, type);
      const other = generateTransactionKey(type);
      t.notOk(eqBytes(k.secret, other.secret), 'two generated keys differ');
      const pubPem = publicKeyPem(k);
      if (type === 'aes256') {
        t.equal(k.secret.length, 32, 'aes256 secret is 32 raw bytes');
        t.equal(pubPem, undefined, 'no public key');
        const pemOut = run(() => formatTransactionKey(k, 'pem'));
        t.ok(isError(pemOut, UsageError, 'usage'), `pem format: ${describe(pemOut)}`);
        const jwkText = formatTransactionKey(k, 'jwk');
        t.ok(jwkText.endsWith('\n'), 'jwk ends with a newline');
        const jwk = JSON.parse(jwkText) as JsonWebKey;
        t.equal(jwk.kty, 'oct');
        // WebCrypto imports it (and checks alg A256GCM fits a 256-bit key).
        const ck = await webcrypto.subtle.importKey('jwk', jwk, { name: 'AES-GCM' }, true, ['encrypt', 'decrypt']);
        t.ok(eqBytes(new Uint8Array(await webcrypto.subtle.exportKey('raw', ck)), k.secret), 'WebCrypto reads the JWK as the secret');
        const raw = formatTransactionKey(k, 'raw');
        t.ok(eqBytes(new Uint8Array(Buffer.from(raw, 'latin1')), k.secret), 'raw is the 32 bytes');
        t.equal(Buffer.from(raw, 'latin1').length, 32);
        const hex = formatTransactionKey(k, 'hex');
        t.match(hex, /^[0-9a-f]{64}\n$/, 'hex: 64 lowercase hex digits and a newline');
        t.ok(eqBytes(new Uint8Array(Buffer.from(hex.trim(), 'hex')), k.secret), 'hex decodes to the secret');
        const b64 = formatTransactionKey(k, 'base64');
        t.match(b64, /^[A-Za-z0-9+/]{43}=\n$/, 'base64: padded, with a newline');
        t.ok(eqBytes(new Uint8Array(Buffer.from(b64.trim(), 'base64')), k.secret), 'base64 decodes to the secret');
        t.ok(eqBytes(rawTransactionKey(k), k.secret), 'rawTransactionKey is the secret');
        // JWK import round trip
        const back = importTransactionKey(jwkText);
        t.equal(back.type, 'aes256');
        t.ok(eqBytes(back.secret, k.secret), 'JWK import round trips');
        t.equal(importTransactionKey(jwkText, 'aes256').type, 'aes256', 'expected type matches');
        const mism = run(() => importTransactionKey(jwkText, 'ed25519'));
        t.ok(isError(mism, UsageError, 'usage'), `expected ed25519 but aes256: ${describe(mism)}`);
        return;
      }

      t.type(pubPem, 'string');
      t.match(pubPem!, /^-----BEGIN PUBLIC KEY-----\n/, 'SPKI PEM');
      const [nodeType, curve] = NODE_TYPE[type];
      const pubObj = createPublicKey(pubPem!);
      t.equal(pubObj.asymmetricKeyType, nodeType);
      if (curve) t.equal(pubObj.asymmetricKeyDetails?.namedCurve, curve);
      const rawPub = rawPublicFromPem(pubPem!);

      // pem
      const pem = formatTransactionKey(k, 'pem');
      t.match(pem, /^-----BEGIN PRIVATE KEY-----\n[\s\S]+-----END PRIVATE KEY-----\n$/, 'pem is PKCS#8');
      const fromPem = createPrivateKey(pem);
      t.equal(fromPem.asymmetricKeyType, nodeType);
      t.equal(createPublicKey(fromPem).export({ type: 'spki', format: 'pem' }), pubPem, 'pem private key corresponds to publicKeyPem');
      // jwk
      const jwkText = formatTransactionKey(k, 'jwk');
      t.ok(jwkText.endsWith('\n'), 'jwk ends with a newline');
      const jwk = JSON.parse(jwkText) as JsonWebKey;
      t.type(jwk.d, 'string', 'jwk has the private part');
      const fromJwk = createPrivateKey({ key: jwk, format: 'jwk' });
      t.equal(createPublicKey(fromJwk).export({ type: 'spki', format: 'pem' }), pubPem, 'jwk private key corresponds to publicKeyPem');
      // raw / hex / base64: the private scalar or seed
      const raw = new Uint8Array(Buffer.from(formatTransactionKey(k, 'raw'), 'latin1'));
      t.equal(raw.length, 32, 'raw is 32 bytes');
      t.ok(eqBytes(raw, new Uint8Array(Buffer.from(jwk.d!, 'base64url'))), 'raw is the JWK d');
      t.ok(eqBytes(rawPublicFromSecret(type, raw), rawPub), 'noble derives publicKeyPem from the raw secret');
      t.ok(eqBytes(rawTransactionKey(k), raw), 'rawTransactionKey equals --format raw');
      const hex = formatTransactionKey(k, 'hex');
      t.match(hex, /^[0-9a-f]{64}\n$/, 'hex: 64 lowercase hex digits and a newline');
      t.ok(eqBytes(new Uint8Array(Buffer.from(hex.trim(), 'hex')), raw), 'hex is the raw secret');
      const b64 = formatTransactionKey(k, 'base64');
      t.match(b64, /^[A-Za-z0-9+/]{43}=\n$/, 'base64: padded, with a newline');
      t.ok(eqBytes(new Uint8Array(Buffer.from(b64.trim(), 'base64')), raw), 'base64 is the raw secret');
      // openssh: ed25519 and p256 only (what ssh-keygen reads is tested in cli-output.test.ts)
      if (type === 'ed25519' || type === 'p256') t.match(formatTransactionKey(k, 'openssh'), /^-----BEGIN OPENSSH PRIVATE KEY-----\n[\s\S]+-----END OPENSSH PRIVATE KEY-----\n$/, 'openssh');
      else t.throws(() => formatTransactionKey(k, 'openssh'), { code: 'usage' }, `${type} has no OpenSSH form`);
      t.same(OUTPUT_FORMATS.slice().sort(), ['base64', 'hex', 'jwk', 'openssh', 'pem', 'raw'], 'all formats covered');

      // import round trips
      for (const [what, text] of [['PEM', pem], ['JWK', jwkText], ['PEM with surrounding whitespace', `\n\n  ${pem}\n`]] as const) {
        const back = importTransactionKey(text);
        t.equal(back.type, type, `${what}: type`);
        t.equal(publicKeyPem(back), pubPem, `${what}: same public key`);
        t.ok(eqBytes(rawTransactionKey(back), raw), `${what}: same private scalar`);
        t.equal(importTransactionKey(text, type).type, type, `${what}: expected type accepted`);
        for (const wrong of KEY_TYPES.filter((x) => x !== type)) {
          const o = run(() => importTransactionKey(text, wrong));
          t.ok(isError(o, UsageError, 'usage'), `${what} with expected ${wrong}: ${describe(o)}`);
        }
      }
      if (curve) {
        const sec1 = createPrivateKey(pem).export({ type: 'sec1', format: 'pem' }) as string;
        t.match(sec1, /BEGIN EC PRIVATE KEY/);
        const back = importTransactionKey(sec1);
        t.equal(back.type, type, 'SEC1 PEM: type');
        t.equal(publicKeyPem(back), pubPem, 'SEC1 PEM: same public key');
      }

      // refusals
      const refusals: Array<[string, string]> = [
        ['public-key PEM', pubPem!],
        ['encrypted PEM', createPrivateKey(pem).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'pw' }) as string],
        ['public JWK', JSON.stringify(createPublicKey(pubPem!).export({ format: 'jwk' }))],
      ];
      for (const [what, text] of refusals) {
        const o = run(() => importTransactionKey(text));
        t.ok(isError(o, UsageError, 'usage'), `${what}: ${describe(o)}`);
      }
    });
  }

  t.test('imports that must be refused', async (t) => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    const ed448 = generateKeyPairSync('ed448').privateKey;
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey;
    const cases: Array<[string, string]> = [
      ['RSA PKCS#8 PEM', rsa.export({ type: 'pkcs8', format: 'pem' }) as string],
      ['RSA PKCS#1 PEM', rsa.export({ type: 'pkcs1', format: 'pem' }) as string],
      ['RSA JWK', JSON.stringify(rsa.export({ format: 'jwk' }))],
      ['Ed448 PEM', ed448.export({ type: 'pkcs8', format: 'pem' }) as string],
      ['P-384 PEM', p384.export({ type: 'pkcs8', format: 'pem' }) as string],
      ['P-384 JWK', JSON.stringify(p384.export({ format: 'jwk' }))],
      ['empty', ''],
      ['whitespace', '  \n'],
      ['garbage', 'hello world'],
      ['binary garbage', 'x' + Buffer.from(randBytes(mulberry32(99), 64)).toString('latin1')],
      ['PEM header with junk body', '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'],
      ['PEM header without footer', '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n'],
      ['certificate PEM header', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'],
      ['broken JSON', '{"kty": "OKP", '],
      ['JSON array-ish', '{]'],
      ['empty JWK', '{}'],
      ['OKP JWK with junk d', '{"kty":"OKP","crv":"Ed25519","d":"abc","x":"abc"}'],
      ['oct JWK of 16 bytes', JSON.stringify({ kty: 'oct', k: toB64url(new Uint8Array(16)) })],
      ['oct JWK of 33 bytes', JSON.stringify({ kty: 'oct', k: toB64url(new Uint8Array(33)) })],
      ['oct JWK with padded k', JSON.stringify({ kty: 'oct', k: toB64(new Uint8Array(32)) })],
      ['oct JWK with k a number', '{"kty":"oct","k":5}'],
      ['oct JWK without k', '{"kty":"oct"}'],
    ];
    for (const [what, text] of cases) {
      const o = run(() => importTransactionKey(text));
      t.ok(isError(o, UsageError, 'usage'), `${what}: ${describe(o)}`);
    }
  });

  t.test('an EC key whose embedded public key does not match its private scalar is not imported as-is', async (t) => {
    // A JWK or PKCS#8 file may carry the public point alongside d. If it is not
    // the point for d, kmgr must refuse the file (or derive the public key from
    // d); otherwise `register --import` would publish, and sign a binding for, a
    // public key that does not belong to the escrowed private key.
    for (const type of ['p256', 'secp256k1', 'ed25519', 'x25519'] as const) {
      const a = generateTransactionKey(type);
      const b = generateTransactionKey(type);
      const ja = JSON.parse(formatTransactionKey(a, 'jwk')) as JsonWebKey;
      const jb = JSON.parse(formatTransactionKey(b, 'jwk')) as JsonWebKey;
      const mixed = { ...ja, x: jb.x, ...(jb.y ? { y: jb.y } : {}) };
      const o = run(() => importTransactionKey(JSON.stringify(mixed)));
      const ok =
        isError(o, UsageError, 'usage') ||
        (o.kind === 'returned' &&
          eqBytes(rawPublicFromPem(publicKeyPem(o.value as TransactionKey)!), rawPublicFromSecret(type, new Uint8Array(Buffer.from(ja.d!, 'base64url')))));
      t.ok(ok, `${type} JWK with another key's public part: refused, or public key derived from d (${o.kind === 'returned' ? 'accepted, publicKeyPem is ' + (eqBytes(rawPublicFromPem(publicKeyPem(o.value as TransactionKey)!), rawPublicFromPem(publicKeyPem(b)!)) ? "the other key's" : 'derived from d') : describe(o)})`);
    }
    for (const type of ['p256', 'secp256k1'] as const) {
      const a = generateTransactionKey(type);
      const b = generateTransactionKey(type);
      // PKCS#8 for these curves ends with the 65-byte uncompressed public point.
      const mixedDer = Buffer.concat([Buffer.from(a.secret.subarray(0, a.secret.length - 65)), Buffer.from(b.secret.subarray(b.secret.length - 65))]);
      const pem = `-----BEGIN PRIVATE KEY-----\n${mixedDer.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END PRIVATE KEY-----\n`;
      const o = run(() => importTransactionKey(pem));
      const dA = rawTransactionKey(a);
      const ok =
        isError(o, UsageError, 'usage') ||
        (o.kind === 'returned' && eqBytes(rawPublicFromPem(publicKeyPem(o.value as TransactionKey)!), rawPublicFromSecret(type, dA)));
      const what = o.kind === 'returned'
        ? (eqBytes(rawPublicFromPem(publicKeyPem(o.value as TransactionKey)!), rawPublicFromPem(publicKeyPem(b)!)) ? "accepted, publicKeyPem is the other key's" : 'accepted, publicKeyPem derived from d')
        : describe(o);
      t.ok(ok, `${type} PKCS#8 PEM with another key's public point: refused, or public key derived from d (${what})`);
    }
  });
});
