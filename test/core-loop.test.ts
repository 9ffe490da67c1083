import t from 'tap';
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startServer, newHome, tempDir, initHome } from './support/index.js';

t.test('init, register, fetch: the key printed by fetch signs for the public key register printed', async (t) => {
  const server = await startServer(t);
  // The whole loop on the command line, `kmgr init` included (other tests start from newHome's in-process init).
  const c = await initHome(t, server);
  t.match(c.personId, /./, 'kmgr init --json names the new identity');
  const reg = await c.run(['register', 'bank-a', '--expires', '2099-06-30', '--max-uses', '1000', '--max-per-day', '50']);
  t.equal(reg.code, 0, reg.stderr);
  const pub = createPublicKey(reg.stdout);
  const f = await c.run(['fetch', 'bank-a']);
  t.equal(f.code, 0, f.stderr);
  const priv = createPrivateKey(f.stdout);
  const msg = Buffer.from('transfer 100 to bank-a');
  t.ok(verify(null, msg, pub, sign(null, msg, priv)), 'signature verifies against the registered public key');
});

// The whole loop checked with the openssl command line a user would use: the fetched key and the registered public key are one pair.
const haveOpenssl = spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;
t.test('kmgr fetch --format pem | openssl pkey works, and an openssl signature verifies against the registered key', { skip: haveOpenssl ? false : 'openssl is not installed' }, async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  const reg = await c.run(['register', 'bank-a', '--type', 'ed25519']);
  t.equal(reg.code, 0, reg.stderr);
  const dir = await tempDir(t, 'kmgr-openssl-');
  const pub = join(dir, 'pub.pem');
  await writeFile(pub, reg.stdout);
  const f = await c.run(['fetch', 'bank-a', '--format', 'pem']);
  t.equal(f.code, 0, f.stderr);
  const check = spawnSync('openssl', ['pkey', '-noout'], { input: f.stdout });
  t.equal(check.status, 0, 'openssl pkey reads the fetched key');
  const key = join(dir, 'key.pem');
  await writeFile(key, f.stdout, { mode: 0o600 });
  const msg = join(dir, 'msg');
  await writeFile(msg, 'pay bank-a 100\n');
  const sig = join(dir, 'sig');
  t.equal(spawnSync('openssl', ['pkeyutl', '-sign', '-rawin', '-inkey', key, '-in', msg, '-out', sig]).status, 0, 'openssl signs with it');
  const v = spawnSync('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', pub, '-rawin', '-in', msg, '-sigfile', sig], { encoding: 'utf8' });
  t.equal(v.status, 0, 'the signature verifies against the public key register printed');
  t.match(v.stdout, /Verified Successfully/);
});

t.test('with --verify-threads 0 (signatures verified on the main thread) the loop works the same', async (t) => {
  const server = await startServer(t, { verifyThreads: 0 });
  const c = await newHome(t, server);
  const reg = await c.run(['register', 'bank-a', '--type', 'p256']);
  t.equal(reg.code, 0, reg.stderr);
  const f = await c.run(['fetch', 'bank-a']);
  t.equal(f.code, 0, f.stderr);
  const msg = Buffer.from('inline');
  t.ok(verify('sha256', msg, createPublicKey(reg.stdout), sign('sha256', msg, createPrivateKey(f.stdout))), 'the fetched key signs for the registered public key');
});
