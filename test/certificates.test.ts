// Certificates beside keys, through the real CLI, a real kmgrd and a
// throwaway OpenSSL CA (root -> intermediate -> leaf): kmgr csr makes a request
// that `openssl req -verify` accepts, for the registered public key, at one
// counted use; kmgr cert import checks the leaf is the registered key and the
// chain links, and keeps it at the server; cert show / get and kmgr status read
// it with no counted use; fetch --format pem-chain and p12 (read by `openssl
// pkcs12`) pair the key with it; kmgrd check-terms notices an expiring
// certificate; a mismatched or unlinked chain is refused and changes nothing.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hasOpenssl, initClient, startServer, tempDir } from './helpers.js';
import { kmgrd } from './escrow-util.js';

const openssl = (args: string[], input?: string): string => execFileSync('openssl', args, { encoding: 'utf8', ...(input !== undefined ? { input } : {}), stdio: ['pipe', 'pipe', 'pipe'] });
const spki = (pem: string): string => createPublicKey(pem).export({ type: 'spki', format: 'der' }).toString('hex');

t.test('certificates beside keys', { skip: !hasOpenssl() && 'needs openssl' }, async (t) => {
  const server = await startServer(t);
  const c = await initClient(t, server);
  const dir = await tempDir(t);
  const f = (n: string): string => join(dir, n);
  const pub: Record<string, string> = {};
  for (const [name, type] of [['bank-a', 'p256'], ['bank-e', 'ed25519'], ['bank-k', 'secp256k1'], ['bank-x', 'x25519'], ['bank-s', 'aes256']] as const) {
    const r = await c.run(['register', name, '--type', type]);
    t.equal(r.code, 0, `register ${name}: ${r.stderr}`);
    pub[name] = r.stdout;
  }
  const uses = async (name: string): Promise<number> => JSON.parse((await c.run(['status', name, '--json'])).stdout).uses.total as number;
  const csr = (name: string, extra: string[] = []) => c.run(['csr', name, '--subject', `CN=${name} client,O=Example Ltd`, '--san', `DNS:${name}.example`, ...extra, '--passphrase-file', c.pp]);

  // The throwaway CA: an EC root and an intermediate it signed.
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('root.key'), '-out', f('root.pem'), '-subj', '/CN=Test Root', '-days', '30']);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('inter.key'), '-out', f('inter.csr'), '-subj', '/CN=Test Intermediate']);
  await writeFile(f('ca.ext'), 'basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\n');
  openssl(['x509', '-req', '-in', f('inter.csr'), '-CA', f('root.pem'), '-CAkey', f('root.key'), '-CAcreateserial', '-out', f('inter.pem'), '-days', '30', '-extfile', f('ca.ext')]);
  const issue = (csrFile: string, out: string, days: string): void => {
    openssl(['x509', '-req', '-in', csrFile, '-CA', f('inter.pem'), '-CAkey', f('inter.key'), '-CAcreateserial', '-out', out, '-days', days, '-copy_extensions', 'copy']);
  };

  await t.test('kmgr csr: verified by openssl, for the registered key, one counted use', async (t) => {
    for (const name of ['bank-a', 'bank-e', 'bank-k']) {
      const before = await uses(name);
      const r = await csr(name);
      t.equal(r.code, 0, `${name}: ${r.stderr}`);
      await writeFile(f(`${name}.csr`), r.stdout);
      const text = openssl(['req', '-in', f(`${name}.csr`), '-verify', '-noout', '-text']);
      t.match(text, /CN ?= ?[^,\n]*client/, `${name}: the subject`);
      t.match(text, new RegExp(`DNS:${name}\\.example`), `${name}: the SAN`);
      const reqPub = openssl(['req', '-in', f(`${name}.csr`), '-pubkey', '-noout']);
      t.equal(spki(reqPub), spki(pub[name]!), `${name}: the request's public key is the one register printed`);
      t.equal(await uses(name), before + 1, `${name}: one counted use`);
    }
    for (const name of ['bank-x', 'bank-s']) {
      const before = await uses(name);
      const r = await c.run(['--json', 'csr', name, '--subject', 'CN=x', '--passphrase-file', c.pp]);
      t.equal(r.code, 64, `${name}: refused`);
      t.equal(JSON.parse(r.stderr).error.code, 'key_type_unsupported');
      t.equal(await uses(name), before, `${name}: no use counted`);
    }
    const bad = await c.run(['csr', 'bank-a', '--subject', 'not a dn', '--passphrase-file', c.pp]);
    t.equal(bad.code, 64, 'a malformed subject is a usage error');
    const badSan = await c.run(['csr', 'bank-a', '--subject', 'CN=x', '--san', 'host.example', '--passphrase-file', c.pp]);
    t.equal(badSan.code, 64, 'a SAN without its kind is a usage error');
  });

  issue(f('bank-a.csr'), f('bank-a.pem'), '20');
  issue(f('bank-e.csr'), f('bank-e.pem'), '20');
  await writeFile(f('chain.pem'), (await readFile(f('inter.pem'), 'utf8')) + (await readFile(f('root.pem'), 'utf8')));

  await t.test('cert import refuses a mismatched certificate and a broken chain', async (t) => {
    const wrong = await c.run(['--json', 'cert', 'import', 'bank-e', f('bank-a.pem'), f('chain.pem'), '--passphrase-file', c.pp]);
    t.equal(wrong.code, 64);
    t.equal(JSON.parse(wrong.stderr).error.code, 'certificate_mismatch', "bank-a's certificate is not bank-e's");
    const broken = await c.run(['--json', 'cert', 'import', 'bank-a', f('bank-a.pem'), f('root.pem'), '--passphrase-file', c.pp]);
    t.equal(broken.code, 64);
    t.equal(JSON.parse(broken.stderr).error.code, 'chain_broken', 'the root did not issue the leaf');
    const none = await c.run(['--json', 'cert', 'show', 'bank-a', '--passphrase-file', c.pp]);
    t.equal(none.code, 66, 'nothing was kept');
    t.equal(JSON.parse(none.stderr).error.code, 'no_certificate');
  });

  await t.test('import, show, get, status: no counted use', async (t) => {
    const before = await uses('bank-a');
    const imp = await c.run(['cert', 'import', 'bank-a', f('bank-a.pem'), f('chain.pem'), '--passphrase-file', c.pp]);
    t.equal(imp.code, 0, imp.stderr);
    t.match(imp.stdout, /Kept 3 certificate/);
    const show = await c.run(['--json', 'cert', 'show', 'bank-a', '--passphrase-file', c.pp]);
    t.equal(show.code, 0, show.stderr);
    const certs = JSON.parse(show.stdout).certificates as Array<Record<string, string>>;
    const leaf = new X509Certificate(await readFile(f('bank-a.pem')));
    t.equal(certs.length, 3);
    t.equal(certs[0]!.fingerprint, leaf.fingerprint256, 'the fingerprint openssl would print');
    t.equal(certs[0]!.serial, leaf.serialNumber.toLowerCase(), 'the serial');
    t.match(certs[0]!.issuer, /Test Intermediate/);
    t.equal(certs[0]!.notAfter, new Date(leaf.validTo).toISOString());
    const human = await c.run(['cert', 'show', 'bank-a', '--passphrase-file', c.pp]);
    t.match(human.stdout, /subject: +.*bank-a client/);
    t.match(human.stdout, /days left/);
    const get = await c.run(['cert', 'get', 'bank-a', '--passphrase-file', c.pp]);
    t.equal(get.code, 0);
    t.equal(get.stdout.match(/BEGIN CERTIFICATE/g)?.length, 3, 'the whole chain');
    await writeFile(f('got.pem'), get.stdout);
    t.match(openssl(['verify', '-CAfile', f('root.pem'), '-untrusted', f('chain.pem'), f('got.pem')]), /OK/, 'the leaf printed first verifies up to the root');
    const st = await c.run(['status', 'bank-a']);
    t.match(st.stdout, /certificate: .*bank-a client/, 'status names the certificate');
    t.match(st.stdout, /valid .*days left/, 'and its validity');
    t.equal(await uses('bank-a'), before, 'none of these counted a use');
  });

  await t.test('fetch --format pem-chain and p12', async (t) => {
    const before = await uses('bank-a');
    const key = (await c.run(['fetch', 'bank-a'])).stdout;
    const chain = await c.run(['fetch', 'bank-a', '--format', 'pem-chain']);
    t.equal(chain.code, 0, chain.stderr);
    t.ok(chain.stdout.startsWith(key), 'the key first');
    t.equal(chain.stdout.match(/BEGIN CERTIFICATE/g)?.length, 3, 'then its chain');
    await writeFile(f('p12pass'), 'file passphrase\n', { mode: 0o600 });
    const p12 = await c.run(['fetch', 'bank-a', '--format', 'p12', '--out', f('a.p12'), '--p12-passphrase-file', f('p12pass')]);
    t.equal(p12.code, 0, p12.stderr);
    const info = openssl(['pkcs12', '-info', '-in', f('a.p12'), '-passin', `file:${f('p12pass')}`, '-noenc']);
    t.equal(info.match(/BEGIN CERTIFICATE/g)?.length, 3, 'openssl reads the three certificates');
    const keyIn = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/.exec(info)![0];
    t.equal(createPrivateKey(keyIn).export({ type: 'pkcs8', format: 'pem' }), createPrivateKey(key).export({ type: 'pkcs8', format: 'pem' }), 'and the key');
    t.throws(() => openssl(['pkcs12', '-info', '-in', f('a.p12'), '-passin', `file:${c.pp}`, '-noenc']), 'the keystore passphrase does not open it');
    t.equal(await uses('bank-a'), before + 3, 'each fetch is one counted use');
    const noCert = await c.run(['fetch', 'bank-k', '--format', 'pem-chain', '--json']);
    t.equal(noCert.code, 66, 'a key without a certificate');
    const k = await uses('bank-k');
    t.equal(k, 1, 'and that cost no use (only the csr above counted)');
    const noPass = await c.run(['fetch', 'bank-a', '--format', 'p12', '--out', f('b.p12')]);
    t.equal(noPass.code, 64, 'no passphrase source and no terminal: a usage error');
    t.match(noPass.stderr, /PKCS#12 passphrase/);
  });

  await t.test('kmgrd check-terms notices an expiring certificate', async (t) => {
    issue(f('bank-e.csr'), f('bank-e-short.pem'), '3');
    t.equal((await c.run(['cert', 'import', 'bank-e', f('bank-e-short.pem'), f('chain.pem'), '--passphrase-file', c.pp])).code, 0);
    const r = await kmgrd(['check-terms', '--data', server.dataDir, '--json']);
    t.equal(r.code, 0, r.stderr);
    const findings = JSON.parse(r.stdout).findings as Array<{ kind: string; partnerId: string; message: string }>;
    const cert = findings.filter((x) => x.kind.startsWith('certificate_'));
    t.equal(cert.length, 1, 'one certificate finding: the 3-day one, within the 14-day window; the 20-day one is not yet at 2/3');
    t.equal(cert[0]!.kind, 'certificate_expiring');
    t.match(cert[0]!.message, /bank-e/);
    const later = await kmgrd(['check-terms', '--data', server.dataDir, '--json', '--at', new Date(Date.now() + 15 * 86_400_000).toISOString()]);
    const kinds = (JSON.parse(later.stdout).findings as Array<{ kind: string; message: string }>).filter((x) => x.kind.startsWith('certificate_'));
    t.same(kinds.map((x) => x.kind).sort(), ['certificate_expired', 'certificate_expiring'], 'later: bank-e expired, bank-a past two thirds of its 20 days');
    const notices = await c.run(['notices', '--passphrase-file', c.pp]);
    t.match(notices.stdout, /certificate of bank-e/, 'the owner sees it in kmgr notices');
  });
});
