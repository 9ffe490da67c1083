// The whole life of a key: kmgr retire destroys the sealed key at the server
// (after confirmation), keeps its history shown as retired, and the name can
// be registered again one version up; two concurrent registers of one name
// never leave a key that no command can reach.
import t from 'tap';
import { startServer, newHome, kmgr, pp, jsonError, hasScript, ptySession, openServerStore } from './support/index.js';
import type { BackupRecord } from '../src/store/types.js';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';

t.jobs = 2;

t.test('retire: refused without --yes off a terminal; then the blob is gone, history kept, the name registers again', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  const reg = JSON.parse((await c.run(['register', 'bank-a', '--json'])).stdout) as { partnerId: string; keyVersion: number; publicKey: string };
  t.equal((await c.run(['fetch', 'bank-a'])).code, 0, 'one use');

  const unasked = await kmgr(['retire', 'bank-a', ...pp(c)], { home: c.home });
  t.equal(unasked.code, 64, 'no terminal, no --yes: refused');
  t.match(unasked.stderr, /--yes/);
  t.equal((await c.run(['fetch', 'bank-a'])).code, 0, 'the key still works');

  const r = await c.run(['retire', 'bank-a', '--yes', '--json']);
  t.equal(r.code, 0, 'retire --yes');
  const st = JSON.parse(r.stdout) as { retiredAt: string | null; keyVersion: number };
  t.type(st.retiredAt, 'string', 'the status says retired');

  const f = await kmgr(['--json', 'fetch', 'bank-a', ...pp(c)], { home: c.home });
  t.equal(f.code, 66, 'fetch after retire: 66');
  const status = await c.run(['status', 'bank-a']);
  t.match(status.stdout, /RETIRED at/, 'status shows it retired');
  const hist = JSON.parse((await c.run(['history', 'bank-a', '--json'])).stdout) as { history: Array<{ result: string }> };
  t.same(hist.history.map((h) => h.result), ['retired', 'served', 'served'], 'the history is kept, with the retirement');
  t.equal((await c.run(['audit', 'bank-a'])).code, 0, 'the retirement is not a use: audit is clean');
  t.equal((await c.run(['terms', 'bank-a', '--max-uses', '3'])).code, 66, 'terms of a retired key: 66');
  t.equal((await c.run(['rotate', 'bank-a'])).code, 66, 'rotate of a retired key: 66');
  t.equal((await c.run(['retire', 'bank-a', '--yes'])).code, 66, 'retiring twice: 66');

  const verify = await kmgr(['--json', 'verify', '--server', server.url, '--ca', server.ca, '--person', (JSON.parse((await c.run(['whoami', '--json'])).stdout) as { personId: string }).personId, '--partner-id', reg.partnerId, '--public-key', await pubFile(c, reg.publicKey)], { home: c.home });
  t.equal(verify.code, 1, 'verify: not verified');
  t.equal((JSON.parse(verify.stdout) as { result: string }).result, 'retired', 'because the key was retired (the asker holds it)');
  const other = JSON.parse((await c.run(['register', 'other-partner', '--json'])).stdout) as { publicKey: string };
  const stranger = await kmgr(['--json', 'verify', '--server', server.url, '--ca', server.ca, '--person', (JSON.parse((await c.run(['whoami', '--json'])).stdout) as { personId: string }).personId, '--partner-id', reg.partnerId, '--public-key', await pubFile(c, other.publicKey)], { home: c.home });
  t.equal((JSON.parse(stranger.stdout) as { result: string }).result, 'unknown', 'an asker with another key is not told the key was retired');

  // The blob itself is gone from the server's database.
  await server.stop();
  const storage = await openServerStore(t, server);
  const stored: BackupRecord[] = [];
  for await (const r of storage.exportRecords()) stored.push(r);
  t.ok(stored.some((r) => r.t === 'key' && r.key.partnerId === reg.partnerId && r.key.retiredAt), 'the key record is kept, marked retired');
  t.notOk(stored.some((r) => r.t === 'blob' && r.partnerId === reg.partnerId), 'no blob is stored for the retired key');
});

t.test('after retire, register makes a new key one version up with the same partner ID', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  const first = JSON.parse((await c.run(['register', 'bank-a', '--json'])).stdout) as { partnerId: string; keyVersion: number };
  t.equal((await c.run(['retire', 'bank-a', '--yes'])).code, 0);
  const again = await c.run(['register', 'bank-a', '--json', '--max-uses', '1']);
  t.equal(again.code, 0, 'the name registers again');
  const second = JSON.parse(again.stdout) as { partnerId: string; keyVersion: number; uses: { total: number } };
  t.equal(second.partnerId, first.partnerId, 'the same partner');
  t.equal(second.keyVersion, first.keyVersion + 1, 'one version up');
  t.equal(second.uses.total, 0, 'counts start afresh');
  t.equal((await c.run(['fetch', 'bank-a'])).code, 0, 'and the new key fetches');
  const hist = JSON.parse((await c.run(['history', 'bank-a', '--json'])).stdout) as { history: Array<{ result: string; keyVersion: number }> };
  t.same(hist.history.map((h) => [h.result, h.keyVersion]), [['served', 2], ['retired', 1]], 'one history across both keys');
});

t.test('a rekey leaves a retired key out (it has no blob to re-wrap) and re-wraps the rest', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('kept'));
  t.ok(await c.register('gone'));
  t.equal((await c.run(['retire', 'gone', '--yes'])).code, 0);
  const before = (await c.run(['fetch', 'kept'])).stdout;
  const rekey = await c.run(['rekey', '--passphrase-file', c.pp]);
  t.equal(rekey.code, 0, `rekey with a retired key present (${rekey.stderr.trim().split('\n')[0] ?? ''})`);
  t.equal((await c.run(['fetch', 'kept'])).stdout, before, 'the kept key opens under the new management key, unchanged');
  t.equal((await c.run(['fetch', 'gone'])).code, 66, 'the retired one is still retired');
  t.ok(await c.register('gone'), 'and its name registers again under the new key');
  t.equal((await c.run(['fetch', 'gone'])).code, 0);
});

t.test('two concurrent registers of one name: one wins, the other is refused, and every server key is reachable', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  const runs = await Promise.all([1, 2, 3].map(() => kmgr(['--json', 'register', 'race', ...pp(c)], { home: c.home })));
  const ok = runs.filter((r) => r.code === 0);
  t.equal(ok.length, 1, 'exactly one register succeeds');
  for (const r of runs.filter((x) => x.code !== 0)) {
    t.equal(r.code, 73, 'the others: 73');
    t.equal(jsonError(r).code, 'key_exists');
  }
  const idx = JSON.parse(await readFile(join(c.home, 'partners.json'), 'utf8')) as { partners: Array<{ name: string; id: string; key: unknown }> };
  t.equal(idx.partners.filter((p) => p.name === 'race').length, 1, 'one index entry');
  // Every key the server holds for this person is one the index names.
  const personId = (JSON.parse((await c.run(['whoami', '--json'])).stdout) as { personId: string }).personId;
  t.equal((await c.run(['fetch', 'race'])).code, 0, 'and the winner fetches');
  await server.stop();
  const storage = await openServerStore(t, server);
  const list = await storage.listKeys(personId);
  t.same(list.map((k) => k.partnerId), idx.partners.map((p) => p.id), 'the server holds keys only under partner IDs the index names');
});

t.test('retire at a terminal asks first; n keeps the key', { skip: !hasScript() && 'script(1) missing' }, async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('bank-a'));
  const no = ptySession(['retire', 'bank-a', ...pp(c)], c.home);
  await no.waitFor(/Retire bank-a's ed25519 key v1 \(0 uses\)\? .*\[y\/N\]/);
  no.type('n\r');
  const rn = await no.done();
  t.equal(rn.code, 130, 'n: cancelled');
  t.match(rn.screen, /retiring bank-a's key cancelled/);
  t.equal((await c.run(['fetch', 'bank-a'])).code, 0, 'the key is still there');
  const yes = ptySession(['retire', 'bank-a', ...pp(c)], c.home);
  await yes.waitFor(/\[y\/N\]/);
  yes.type('y\r');
  t.equal((await yes.done()).code, 0, 'y: retired');
  t.equal((await c.run(['fetch', 'bank-a'])).code, 66);
});

async function pubFile(c: { home: string }, pem: string): Promise<string> {
  const { writeFile } = await import('node:fs/promises');
  const p = join(c.home, '..', 'pub.pem');
  await writeFile(p, pem);
  return p;
}
