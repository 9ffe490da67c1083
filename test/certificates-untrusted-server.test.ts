// The server is not trusted with certificates either: a server that swaps the
// chain kept beside a key is caught by kmgr cert show / get and by fetch
// --format pem-chain (exit 65, nothing printed, no use counted); and the
// server itself refuses, from any client, a chain whose leaf certifies
// another key than the registered one, or one for another key version.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hasOpenssl, newHome, startServer, tempDir, startLyingProxy, directClient, partnerId, statusReader } from './support/index.js';
import { signedRequest } from '../src/client/http.js';
import { KeyStatus } from '../src/protocol/messages.js';

const openssl = (args: string[]): string => execFileSync('openssl', args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });

t.test('a server that swaps or is sent a wrong chain', { skip: !hasOpenssl() && 'needs openssl' }, async (t) => {
  const server = await startServer(t);
  const double = await startLyingProxy(t, server);
  const c = await newHome(t, double);
  const dir = await tempDir(t);
  const f = (n: string): string => join(dir, n);
  const pp = ['--passphrase-file', c.pp];
  for (const name of ['bank-a', 'bank-b']) {
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f(`${name}.key`)]);
    openssl(['req', '-x509', '-key', f(`${name}.key`), '-subj', `/CN=${name}`, '-days', '10', '-out', f(`${name}.pem`)]);
    t.ok(await c.register(name, { importFile: f(`${name}.key`) }));
    t.equal((await c.run(['cert', 'import', name, f(`${name}.pem`), ...pp])).code, 0, `${name}: a self-signed certificate is a chain of one`);
  }
  const [idA, idB] = [await partnerId(c, 'bank-a'), await partnerId(c, 'bank-b')];
  const uses = await statusReader(c);

  await t.test('a swapped chain: exit 65, nothing printed, no use', async (t) => {
    const bChain = (await readFile(f('bank-b.pem'), 'utf8')).replace(/\n?$/, '\n');
    double.rewrite.set(`/v1/keys/${idA}/certificates`, (reply: { keyVersion: number }) => ({ keyVersion: reply.keyVersion, certificates: [bChain] }));
    const show = await c.run(['cert', 'show', 'bank-a', ...pp]);
    t.equal(show.code, 65, `cert show: ${show.stderr.trim()}`);
    t.match(show.stderr, /does not check out/);
    const get = await c.run(['cert', 'get', 'bank-a', ...pp]);
    t.equal(get.code, 65, 'cert get');
    t.equal(get.stdout, '', 'prints nothing');
    const chain = await c.run(['fetch', 'bank-a', '--format', 'pem-chain']);
    t.equal(chain.code, 65, 'fetch --format pem-chain');
    t.equal(chain.stdout, '', 'prints no key');
    t.equal(await uses('bank-a'), 0, 'and the key was not fetched');
    double.rewrite.delete(`/v1/keys/${idA}/certificates`);
    t.equal((await c.run(['cert', 'show', 'bank-a', ...pp])).code, 0, 'the true chain shows again');
  });

  await t.test('the server refuses a chain for another key or version, from any client', async (t) => {
    const { ep, id } = await directClient(c, server);
    const put = (partner: string, body: unknown) => signedRequest(ep, id, 'PUT', `/v1/keys/${partner}/certificates`, body, KeyStatus);
    const bPem = await readFile(f('bank-b.pem'), 'utf8');
    await t.rejects(put(idA, { keyVersion: 1, certificates: [bPem] }), { code: 'certificate_mismatch' }, "bank-b's certificate for bank-a");
    await t.rejects(put(idB, { keyVersion: 2, certificates: [bPem] }), { code: 'version_conflict' }, 'a version the key does not have');
    await t.rejects(put(idB, { keyVersion: 1, certificates: ['not a certificate'] }), { code: 'bad_request' }, 'not PEM');
    await t.rejects(put(idB, { keyVersion: 1, certificates: [bPem], extra: 1 }), { code: 'bad_request' }, 'an unknown field');
    const st = await put(idB, { keyVersion: 1, certificates: [] });
    t.equal(st.body.certificate, null, 'an empty list removes the chain');
    t.equal((await c.run(['cert', 'show', 'bank-b', ...pp])).code, 66, 'so there is none to show');
  });
});
