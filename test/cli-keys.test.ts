// Every key type through the real CLI and a real kmgrd: what `kmgr fetch` prints,
// in every format, is parsed back with node:crypto and checked against the public
// key that `kmgr register` printed (a signature, an ECDH agreement, or an AES-GCM
// round trip). Also --import (PEM, SEC1 PEM, JWK) and register --json.
import t, { type Test } from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  createCipheriv, createDecipheriv, createECDH, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync,
  randomBytes, sign, verify, type KeyObject,
} from 'node:crypto';
import { startServer, newHome, tempDir, type RunResult } from './support/index.js';

type AsymType = 'ed25519' | 'p256' | 'secp256k1' | 'x25519';
const ASYM: AsymType[] = ['ed25519', 'p256', 'secp256k1', 'x25519'];
const CURVE: Record<'p256' | 'secp256k1', { ecdh: string; jwk: string; node: string }> = {
  p256: { ecdh: 'prime256v1', jwk: 'P-256', node: 'prime256v1' },
  secp256k1: { ecdh: 'secp256k1', jwk: 'secp256k1', node: 'secp256k1' },
};
// PKCS#8 prefixes for a raw 32-byte Ed25519 / X25519 private key (RFC 8410).
const PKCS8_PREFIX = {
  ed25519: Buffer.from('302e020100300506032b657004220420', 'hex'),
  x25519: Buffer.from('302e020100300506032b656e04220420', 'hex'),
};

const MSG = Buffer.from('transfer 100 to bank-a');

function spkiDer(k: KeyObject): Buffer {
  return k.export({ type: 'spki', format: 'der' });
}

/** The public key node derives from a private key, as SPKI DER. */
function publicOf(priv: KeyObject): Buffer {
  return spkiDer(createPublicKey(priv));
}

/** Checks that priv is the private half of pub, by use: sign/verify, or ECDH agreement. */
function checkPair(t: Test, type: AsymType, priv: KeyObject, pub: KeyObject, what: string): void {
  if (type === 'ed25519') {
    t.ok(verify(null, MSG, pub, sign(null, MSG, priv)), `${what}: an Ed25519 signature verifies against the registered key`);
    t.notOk(verify(null, Buffer.from('transfer 900 to bank-a'), pub, sign(null, MSG, priv)), `${what}: and not for another message`);
  } else if (type === 'x25519') {
    const peer = generateKeyPairSync('x25519');
    const ours = diffieHellman({ privateKey: priv, publicKey: peer.publicKey });
    const theirs = diffieHellman({ privateKey: peer.privateKey, publicKey: pub });
    t.equal(ours.length, 32, `${what}: a 32-byte shared secret`);
    t.ok(ours.equals(theirs), `${what}: ECDH with a fresh peer agrees with the peer's view using the registered public key`);
  } else {
    const sig = sign('sha256', MSG, priv);
    t.ok(verify('sha256', MSG, pub, sig), `${what}: an ECDSA/SHA-256 signature verifies against the registered key`);
    t.notOk(verify('sha256', Buffer.from('transfer 900 to bank-a'), pub, sig), `${what}: and not for another message`);
  }
}

/** Rebuilds a private KeyObject from the raw private scalar/seed printed by --format raw|hex|base64. */
function privateFromRaw(type: AsymType, d: Buffer): KeyObject {
  if (type === 'ed25519' || type === 'x25519') {
    return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX[type], d]), format: 'der', type: 'pkcs8' });
  }
  // EC: derive the public point from d with ECDH (independently of the registered key), then build a JWK.
  const ecdh = createECDH(CURVE[type].ecdh);
  ecdh.setPrivateKey(d);
  const point = ecdh.getPublicKey(); // 0x04 || X || Y
  const jwk = {
    kty: 'EC',
    crv: CURVE[type].jwk,
    d: d.toString('base64url'),
    x: point.subarray(1, 33).toString('base64url'),
    y: point.subarray(33, 65).toString('base64url'),
  };
  return createPrivateKey({ key: jwk, format: 'jwk' });
}

function ok(t: Test, r: RunResult, what: string): void {
  t.equal(r.code, 0, `${what} exits 0${r.code === 0 ? '' : `: ${r.stderr}`}`);
}

t.test('each key pair type: fetch in every format yields the private half of the registered public key', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  for (const type of ASYM) {
    await t.test(type, async (t) => {
      const name = `partner-${type}`;
      const reg = await c.run(['register', name, '--type', type]);
      ok(t, reg, 'register');
      t.match(reg.stdout, /^-----BEGIN PUBLIC KEY-----\n[\s\S]+-----END PUBLIC KEY-----\n?$/, 'register prints one SPKI PEM');
      const pub = createPublicKey(reg.stdout);
      t.equal(pub.type, 'public');
      if (type === 'p256' || type === 'secp256k1') {
        t.equal(pub.asymmetricKeyType, 'ec');
        t.equal(pub.asymmetricKeyDetails?.namedCurve, CURVE[type].node, 'the registered key is on the right curve');
      } else t.equal(pub.asymmetricKeyType, type, 'the registered key has the right type');

      const [def, pem, jwk, raw, hex, b64] = await Promise.all([
        c.run(['fetch', name]),
        c.run(['fetch', name, '--format', 'pem']),
        c.run(['fetch', name, '--format', 'jwk']),
        c.run(['fetch', name, '--format', 'raw']),
        c.run(['fetch', name, '--format', 'hex']),
        c.run(['fetch', name, '--format', 'base64']),
      ]);
      for (const [r, f] of [[def, 'default'], [pem, 'pem'], [jwk, 'jwk'], [raw, 'raw'], [hex, 'hex'], [b64, 'base64']] as const) ok(t, r, `fetch (${f})`);

      // Default and pem: PKCS#8 PEM.
      t.match(def.stdout, /^-----BEGIN PRIVATE KEY-----\n/, 'the default format is PKCS#8 PEM');
      t.equal(def.stdout, pem.stdout, 'the default format is --format pem');
      const privPem = createPrivateKey(pem.stdout);
      t.ok(publicOf(privPem).equals(spkiDer(pub)), 'pem: its public half is the registered public key');
      checkPair(t, type, privPem, pub, 'pem');

      // JWK.
      const j = JSON.parse(jwk.stdout) as Record<string, string>;
      t.type(j.d, 'string', 'jwk: has the private part d');
      const privJwk = createPrivateKey({ key: j, format: 'jwk' });
      t.ok(publicOf(privJwk).equals(spkiDer(pub)), 'jwk: its public half is the registered public key');
      checkPair(t, type, privJwk, pub, 'jwk');

      // raw / hex / base64: the same 32 private bytes.
      t.equal(raw.stdoutBytes.length, 32, 'raw: exactly 32 bytes on stdout');
      t.match(hex.stdout, /^[0-9a-f]{64}\n$/, 'hex: 64 hex digits and a newline');
      t.match(b64.stdout, /^[A-Za-z0-9+/]{43}=\n$/, 'base64: 32 bytes of base64 and a newline');
      const dHex = Buffer.from(hex.stdout.trim(), 'hex');
      const dB64 = Buffer.from(b64.stdout.trim(), 'base64');
      t.ok(raw.stdoutBytes.equals(dHex), 'raw and hex agree');
      t.ok(raw.stdoutBytes.equals(dB64), 'raw and base64 agree');
      t.ok(raw.stdoutBytes.equals(Buffer.from(j.d!, 'base64url')), 'raw and the JWK d agree');
      const privRaw = privateFromRaw(type, raw.stdoutBytes);
      t.ok(publicOf(privRaw).equals(spkiDer(pub)), 'raw: the key rebuilt from the raw bytes has the registered public key');
      checkPair(t, type, privRaw, pub, 'raw');

      // Each fetch was a separate success: six fetch-log lines for this partner are checked in cli-behaviour.
      t.equal(def.stderr.includes('PRIVATE KEY'), false, 'nothing secret on stderr');
    });
  }
});

t.test('aes256: register prints nothing on stdout; every format gives the same 32 bytes; AES-256-GCM round trip', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  const reg = await c.run(['register', 'vault', '--type', 'aes256']);
  ok(t, reg, 'register');
  t.equal(reg.stdout, '', 'symmetric register prints nothing on stdout');
  t.equal(reg.stdoutBytes.length, 0);
  t.match(reg.stderr, /aes256/, 'and says what it did on stderr');

  const [def, jwk, raw, hex, b64, pem] = await Promise.all([
    c.run(['fetch', 'vault']),
    c.run(['fetch', 'vault', '--format', 'jwk']),
    c.run(['fetch', 'vault', '--format', 'raw']),
    c.run(['fetch', 'vault', '--format', 'hex']),
    c.run(['fetch', 'vault', '--format', 'base64']),
    c.run(['fetch', 'vault', '--format', 'pem']),
  ]);
  for (const [r, f] of [[def, 'default'], [jwk, 'jwk'], [raw, 'raw'], [hex, 'hex'], [b64, 'base64']] as const) ok(t, r, `fetch (${f})`);
  t.equal(pem.code, 64, '--format pem for aes256 is a usage error');
  t.equal(pem.stdout, '', 'and prints nothing on stdout');

  t.equal(def.stdout, b64.stdout, 'the default format for aes256 is base64');
  t.match(b64.stdout, /^[A-Za-z0-9+/]{43}=\n$/, 'base64 of 32 bytes');
  t.match(hex.stdout, /^[0-9a-f]{64}\n$/, 'hex of 32 bytes');
  t.equal(raw.stdoutBytes.length, 32, 'raw: exactly 32 bytes');
  const j = JSON.parse(jwk.stdout) as { kty: string; k: string; alg?: string };
  t.equal(j.kty, 'oct', 'jwk kty oct');
  const kRaw = raw.stdoutBytes;
  const kHex = Buffer.from(hex.stdout.trim(), 'hex');
  const kB64 = Buffer.from(b64.stdout.trim(), 'base64');
  const kJwk = Buffer.from(j.k, 'base64url');
  t.ok(kRaw.equals(kHex) && kRaw.equals(kB64) && kRaw.equals(kJwk), 'raw, hex, base64 and jwk hold the same bytes');
  t.notOk(kRaw.equals(Buffer.alloc(32)), 'not an all-zero key');

  // Encrypt with the key read from one format, decrypt with the key from another.
  const iv = randomBytes(12);
  const plain = Buffer.from('pay 100 to bank-a');
  const enc = createCipheriv('aes-256-gcm', kHex, iv);
  const ct = Buffer.concat([enc.update(plain), enc.final()]);
  const tag = enc.getAuthTag();
  const dec = createDecipheriv('aes-256-gcm', kJwk, iv);
  dec.setAuthTag(tag);
  t.ok(Buffer.concat([dec.update(ct), dec.final()]).equals(plain), 'AES-256-GCM: hex-key ciphertext opens with the JWK key');
  const bad = createDecipheriv('aes-256-gcm', kB64, iv);
  bad.setAuthTag(Buffer.from(tag.map((b, i) => (i === 0 ? b ^ 1 : b))));
  bad.update(ct);
  t.throws(() => bad.final(), 'and a flipped tag bit is refused');

  // A second aes256 key is a different key.
  ok(t, await c.run(['register', 'vault2', '--type', 'aes256']), 'register a second aes256 key');
  const other = await c.run(['fetch', 'vault2', '--format', 'hex']);
  ok(t, other, 'fetch the second');
  t.not(other.stdout, hex.stdout, 'two registrations give two different keys');
});

t.test('register --import: PEM (PKCS#8 and SEC1) and JWK keys register and fetch back as the same key', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  const dir = await tempDir(t, 'kmgr-import-');

  const cases: Array<{ name: string; type: string; file: string; text: string; priv: KeyObject | Buffer }> = [];
  const p256 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  cases.push({ name: 'imp-p256-pem', type: 'p256', file: 'p256.pem', text: p256.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, priv: p256.privateKey });
  const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
  cases.push({ name: 'imp-k1-sec1', type: 'secp256k1', file: 'k1-sec1.pem', text: k1.privateKey.export({ type: 'sec1', format: 'pem' }) as string, priv: k1.privateKey });
  const ed = generateKeyPairSync('ed25519');
  cases.push({ name: 'imp-ed-jwk', type: 'ed25519', file: 'ed.jwk', text: JSON.stringify(ed.privateKey.export({ format: 'jwk' })), priv: ed.privateKey });
  const x = generateKeyPairSync('x25519');
  cases.push({ name: 'imp-x-pem', type: 'x25519', file: 'x.pem', text: x.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, priv: x.privateKey });
  const aes = randomBytes(32);
  cases.push({ name: 'imp-aes-jwk', type: 'aes256', file: 'aes.jwk', text: JSON.stringify({ kty: 'oct', k: aes.toString('base64url') }), priv: aes });

  for (const k of cases) {
    await t.test(`${k.type} from ${k.file}`, async (t) => {
      const path = join(dir, k.file);
      await writeFile(path, k.text, { mode: 0o600 });
      const reg = await c.run(['register', k.name, '--import', path, '--json']);
      ok(t, reg, 'register --import --json');
      const rec = JSON.parse(reg.stdout) as { partner: string; type: string; publicKey: string | null; keyId: string; keyVersion: number };
      t.equal(rec.partner, k.name, 'the JSON record names the partner');
      t.equal(rec.type, k.type, 'the type is read from the imported key');
      t.match(rec.keyId, /^k_[A-Za-z0-9_-]{22}$/, 'a key ID');
      t.equal(rec.keyVersion, 1, 'version 1');
      if (Buffer.isBuffer(k.priv)) {
        t.equal(rec.publicKey, null, 'a symmetric key has publicKey null');
        const f = await c.run(['fetch', k.name, '--format', 'raw']);
        ok(t, f, 'fetch');
        t.ok(f.stdoutBytes.equals(k.priv), 'fetch returns the imported bytes');
      } else {
        t.ok(spkiDer(createPublicKey(rec.publicKey!)).equals(publicOf(k.priv)), 'the publicKey in the record is the imported key\'s public half');
        const f = await c.run(['fetch', k.name]);
        ok(t, f, 'fetch');
        const got = createPrivateKey(f.stdout);
        t.ok(
          got.export({ type: 'pkcs8', format: 'der' }).equals(k.priv.export({ type: 'pkcs8', format: 'der' })),
          'fetch returns the imported private key (same PKCS#8)',
        );
      }
    });
  }

  await t.test('an imported key of another type than --type is a usage error', async (t) => {
    const path = join(dir, 'p256.pem');
    const r = await c.run(['register', 'imp-mismatch', '--import', path, '--type', 'ed25519']);
    t.equal(r.code, 64, 'exit 64');
    t.equal(r.stdout, '', 'nothing on stdout');
    const list = JSON.parse((await c.run(['--json', 'partner', 'list'])).stdout) as { partners: Array<{ name: string }> };
    t.notOk(list.partners.some((p) => p.name === 'imp-mismatch'), 'no partner was added');
  });

  await t.test('a public key is refused for import', async (t) => {
    const path = join(dir, 'pub.pem');
    await writeFile(path, p256.publicKey.export({ type: 'spki', format: 'pem' }) as string);
    const r = await c.run(['register', 'imp-public', '--import', path]);
    t.equal(r.code, 64, 'exit 64');
    t.equal(r.stdout, '');
  });
});

t.test('register --json prints a JSON record with the public key and the status', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  const reg = await c.run(['register', 'bank-j', '--type', 'p256', '--max-uses', '7', '--max-per-day', '3', '--expires', '2099-06-30', '--json']);
  ok(t, reg, 'register --json');
  // The same shape as kmgr status --json and rotate --json.
  const rec = JSON.parse(reg.stdout) as {
    partner: string; partnerId: string; keyId: string; type: string; keyVersion: number; publicKey: string;
    uses: { total: number }; limits: { total: number | null; day: number | null }; expiresAt: string | null;
  };
  t.equal(rec.partner, 'bank-j');
  t.equal(rec.type, 'p256');
  t.match(rec.publicKey, /^-----BEGIN PUBLIC KEY-----/, 'publicKey is an SPKI PEM');
  t.equal(rec.uses.total, 0, 'no uses yet');
  t.equal(rec.limits.total, 7, 'max-uses recorded');
  t.equal(rec.limits.day, 3, 'max-per-day recorded');
  t.equal(rec.expiresAt, '2099-07-01T00:00:00.000Z', 'valid through the end of 2099-06-30 UTC');
  const st = await c.run(['status', 'bank-j', '--json']);
  t.same(Object.keys(JSON.parse(st.stdout) as object).sort(), Object.keys(rec).sort(), 'status --json has the same fields as register --json');
  const pub = createPublicKey(rec.publicKey);
  const f = await c.run(['fetch', 'bank-j']);
  ok(t, f, 'fetch');
  checkPair(t, 'p256', createPrivateKey(f.stdout), pub, 'fetched key vs the JSON publicKey');
});
