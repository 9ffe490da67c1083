// Fixes from a security review, each shown to hold.
import t from 'tap';
import { chmod, readFile, rm, writeFile, cp } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { startServer, tempDir } from './helpers.js';
import { homeFor, newHome } from './escrow-util.js';
import { startLyingProxy } from './lying-proxy.js';
import { enrol, newIdentity, newPartnerId, register, registerBody, send, signed, type Target } from './raw-client.js';
import { isPublicAddress } from '../src/server/delivery/webhook.js';
import { VERIFY_RECORDS_PER_MINUTE } from '../src/terms/verify-flood.js';
import { auditHistory } from '../src/client/audit.js';
import { publicKeyObject } from '../src/crypto/sign.js';

t.test('a server that maps a partner name to another partner\'s ID gets a blob that does not open (65)', async (t) => {
  const server = await startServer(t);
  const a = await newHome(t, server, { partners: 'server' });
  const ra = await a.json(['register', 'bank-a']);
  const rb = await a.json(['register', 'bank-b']);
  // A fresh device: same home, but no local partner cache, talking through a lying proxy.
  const proxy = await startLyingProxy(t, server);
  proxy.rewrite.set('/v1/partners', (reply: { partners: Array<{ name: string; partnerId: string }> }) => ({
    partners: reply.partners.map((p) => ({ ...p, partnerId: p.name === 'bank-a' ? rb.partnerId : p.name === 'bank-b' ? ra.partnerId : p.partnerId })),
  }));
  const fresh = join(await tempDir(t, 'kmgr-fresh-'), 'home');
  await cp(a.home, fresh, { recursive: true });
  await rm(join(fresh, 'partners.json'));
  const config = JSON.parse(await readFile(join(fresh, 'config.json'), 'utf8')) as { server: string };
  config.server = proxy.url;
  await writeFile(join(fresh, 'config.json'), JSON.stringify(config), { mode: 0o600 });
  const f = await homeFor(fresh, a.pp).run(['fetch', 'bank-a']);
  t.equal(f.code, 65, `fetch through the lying name mapping: exit 65 (${f.stderr.trim()})`);
  t.equal(f.stdoutBytes.length, 0, 'nothing on stdout');
});

t.test('timestamps that are not real instants are refused (400), and nothing is stored', async (t) => {
  const server = await startServer(t);
  const target: Target = { url: server.url, ca: server.ca };
  const id = newIdentity();
  await enrol(target, id);
  for (const bad of ['2027-13-45T99:99:99Z', '2027-02-31T00:00:00Z', '2027-06-30T24:00:00Z']) {
    const p = newPartnerId();
    const terms = { expiresAt: bad, maxUses: null, maxPerDay: null, maxPerWeek: null, maxPerMonth: null, onLimit: 'deny' };
    const r = await register(target, id, p, registerBody({ terms }));
    t.equal(r.status, 400, `${bad}: 400`);
    t.equal(r.json.error.code, 'bad_request');
    t.equal((await send(target, signed(target, id, 'GET', `/v1/keys/${p}`))).status, 404, `${bad}: no key was stored`);
  }
  const r = await send(target, signed(target, id, 'GET', '/v1/keys'));
  t.equal(r.status, 200, 'listing still works');
});

t.test('webhooks cannot reach loopback, private or mapped addresses in https mode', async (t) => {
  for (const ip of ['127.0.0.1', '::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '10.0.0.1', '172.16.5.4', '192.168.1.1', '169.254.169.254', '100.64.0.1', 'fe80::1', 'fd00::1', '64:ff9b::7f00:1', '0.0.0.0']) {
    t.notOk(isPublicAddress(ip), `${ip} is not public`);
  }
  for (const ip of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111']) t.ok(isPublicAddress(ip), `${ip} is public`);
});

t.test('a flood of verify questions records at most the per-minute cap in the owner\'s history', async (t) => {
  const server = await startServer(t);
  const target: Target = { url: server.url, ca: server.ca };
  const a = await newHome(t, server);
  const reg = await a.json(['register', 'bank-a']);
  // All questions inside one (injected) minute; verify is unsigned, so the clock moves nothing else.
  server.clock.now = Date.parse('2027-03-10T12:00:10Z');
  const wrong = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const body = { personId: a.personId, partnerId: reg.partnerId, publicKey: wrong, requester: 'flooder' };
  const bytes = new TextEncoder().encode(JSON.stringify(body));
  const host = new URL(server.url).host;
  const replies = await Promise.all(
    Array.from({ length: VERIFY_RECORDS_PER_MINUTE + 40 }, () => send(target, { method: 'POST', path: '/v1/verify', headers: { host, 'content-type': 'application/json' }, body: bytes })),
  );
  t.ok(replies.every((r) => r.status === 200 && r.json.result === 'unknown'), 'every question is answered (a wrong public key reads "unknown" to the asker)');
  server.clock.now = undefined;
  const h = await a.json(['history', 'bank-a']);
  t.equal(h.history.filter((e: { result: string }) => e.result === 'verify').length, VERIFY_RECORDS_PER_MINUTE, 'at most the cap is recorded');
  t.equal(replies.length, VERIFY_RECORDS_PER_MINUTE + 40);
});

t.test('a home directory or state file writable by others is refused (78)', async (t) => {
  const server = await startServer(t);
  const a = await newHome(t, server);
  await chmod(a.home, 0o777);
  const r = await a.run(['whoami', '--json']);
  t.equal(r.code, 78, 'home 0777: exit 78');
  t.equal(JSON.parse(r.stderr).error.code, 'unsafe_permissions');
  await chmod(a.home, 0o700);
  await chmod(join(a.home, 'partners.json'), 0o666);
  t.equal((await a.run(['list'])).code, 78, 'partners.json 0666: exit 78');
  await chmod(join(a.home, 'partners.json'), 0o600);
  t.equal((await a.run(['list'])).code, 0, 'tightened again: works');
});

t.test('concurrent commands do not lose each other\'s partners.json changes', async (t) => {
  const server = await startServer(t);
  const a = await newHome(t, server);
  const names = ['p1', 'p2', 'p3', 'p4', 'p5', 'p6'];
  const runs = await Promise.all(names.map((n) => a.run(['register', n])));
  t.ok(runs.every((r) => r.code === 0), `all six registered (${runs.map((r) => r.code).join(',')})`);
  const idx = JSON.parse(await readFile(join(a.home, 'partners.json'), 'utf8')) as { partners: Array<{ name: string; key: unknown }> };
  t.same(idx.partners.map((p) => p.name).sort(), names, 'every partner is in the index');
  t.ok(idx.partners.every((p) => p.key), 'each with its key');
  const fetched = await Promise.all(names.map((n) => a.run(['fetch', n])));
  t.ok(fetched.every((r) => r.code === 0), 'each key fetches');
});

t.test('audit: a use the server refused to this client but counts as served is reported as forged', async (t) => {
  const id = newIdentity();
  const target: Target = { url: 'https://127.0.0.1:8443', ca: '' };
  const partnerId = newPartnerId();
  const req = signed(target, id, 'POST', `/v1/keys/${partnerId}/fetch`, {});
  const h = req.headers as Record<string, string>;
  const entry = {
    seq: 1,
    at: new Date(req.params.created * 1000).toISOString(),
    keyVersion: 1,
    result: 'served' as const,
    code: null,
    overLimit: null,
    remoteAddress: '127.0.0.1',
    requester: null,
    request: {
      method: 'POST',
      authority: h.host!,
      path: `/v1/keys/${partnerId}/fetch`,
      contentDigest: h['content-digest']!,
      device: '',
      signatureInput: h['signature-input']!.slice('kmgr='.length),
      signature: /^kmgr=:(.*):$/.exec(h.signature!)![1]!,
    },
  };
  const key = publicKeyObject(id.signer.publicKey);
  const nonce = req.params.nonce;
  const clean = auditHistory([entry], partnerId, id.keyId, key, { opened: new Set([nonce]), sent: new Set([nonce]) });
  t.equal(clean[0]!.verdict, 'ours', 'control: a served use this client opened is ours');
  const lied = auditHistory([entry], partnerId, id.keyId, key, { opened: new Set(), sent: new Set([nonce]), refused: new Set([nonce]) });
  t.equal(lied[0]!.verdict, 'forged', 'refused to the client, served in the history: forged');
  const twice = auditHistory([entry, { ...entry, seq: 2 }], partnerId, id.keyId, key, { opened: new Set([nonce]), sent: new Set([nonce]) });
  t.equal(twice[1]!.verdict, 'forged', 'one signed request counted twice: forged');
});
