// kmgr csr through the real CLI and a real kmgrd: a PKCS#10 request signed
// with the transaction key that `openssl req -verify` accepts, for the public
// key register printed, at one counted use; x25519 and aes256 keys, a malformed
// subject or SAN are refused before anything is counted.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hasOpenssl, newHome, startServer, tempDir, statusReader } from './support/index.js';

const openssl = (args: string[]): string => execFileSync('openssl', args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
const spki = (pem: string): string => createPublicKey(pem).export({ type: 'spki', format: 'der' }).toString('hex');

t.test('kmgr csr', { skip: !hasOpenssl() && 'needs openssl' }, async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  const dir = await tempDir(t);
  const pub: Record<string, string> = {};
  for (const [name, type] of [['bank-a', 'p256'], ['bank-e', 'ed25519'], ['bank-k', 'secp256k1'], ['bank-x', 'x25519'], ['bank-s', 'aes256']] as const) {
    const r = await c.run(['register', name, '--type', type]);
    t.equal(r.code, 0, `register ${name}: ${r.stderr}`);
    pub[name] = r.stdout;
  }
  const uses = await statusReader(c);

  for (const name of ['bank-a', 'bank-e', 'bank-k']) {
    const before = await uses(name);
    const r = await c.run(['csr', name, '--subject', `CN=${name} client,O=Example Ltd`, '--san', `DNS:${name}.example`, '--san', 'IP:192.0.2.7', '--passphrase-file', c.pp]);
    t.equal(r.code, 0, `${name}: ${r.stderr}`);
    const file = join(dir, `${name}.csr`);
    await writeFile(file, r.stdout);
    const text = openssl(['req', '-in', file, '-verify', '-noout', '-text']);
    t.match(text, /CN ?= ?[^,\n]*client/, `${name}: the subject`);
    t.match(text, new RegExp(`DNS:${name}\\.example, IP Address:192\\.0\\.2\\.7`), `${name}: the SANs`);
    t.equal(spki(openssl(['req', '-in', file, '-pubkey', '-noout'])), spki(pub[name]!), `${name}: the request's public key is the one register printed`);
    t.equal(await uses(name), before + 1, `${name}: one counted use`);
  }
  for (const name of ['bank-x', 'bank-s']) {
    const before = await uses(name);
    const r = await c.run(['--json', 'csr', name, '--subject', 'CN=x', '--passphrase-file', c.pp]);
    t.equal(r.code, 64, `${name}: refused`);
    t.equal(JSON.parse(r.stderr).error.code, 'key_type_unsupported');
    t.equal(await uses(name), before, `${name}: no use counted`);
  }
  const before = await uses('bank-a');
  const bad = await c.run(['csr', 'bank-a', '--subject', 'not a dn', '--passphrase-file', c.pp]);
  t.equal(bad.code, 64, 'a malformed subject is a usage error');
  const badSan = await c.run(['csr', 'bank-a', '--subject', 'CN=x', '--san', 'host.example', '--passphrase-file', c.pp]);
  t.equal(badSan.code, 64, 'a SAN without its kind is a usage error');
  t.match(badSan.stderr, /DNS:name, IP:address/);
  t.equal(await uses('bank-a'), before, 'neither counted a use');
});
