// What a hostile server or a hostile neighbour can do to a client's own
// state: version numbers that would push partners.json out of range, a FIFO
// or device in a state file's place, KDF parameters edited up to an absurd
// cost, a CA file or fetch log others can write, an enrolment reply naming
// someone else. Each must be a clear error at once that leaves the home as it
// was. A hang would be killed by the harness and fail the exit-code checks.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chmod, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { kmgr, startServer, tempDir, PASSPHRASE, startLyingProxy, jsonError, partnerId, snapshot, newHome } from './support/index.js';
import type { KeyStatus, PersonInfo } from '../src/protocol/messages.js';


t.test("rotate does not take the server's version number on its word", async (t) => {
  const server = await startServer(t);
  const double = await startLyingProxy(t, server);
  const c = await newHome(t, double);
  t.equal((await c.run(['register', 'bank-a'])).code, 0, 'registered');
  const id = await partnerId(c, 'bank-a');
  const before = await snapshot(c.home);
  for (const v of [1e9, 5000]) {
    double.rewrite.set(`/v1/keys/${id}`, (r: KeyStatus) => ({ ...r, keyVersion: v }));
    const r = await c.run(['rotate', 'bank-a']);
    t.equal(r.code, 65, `a status claiming version ${v}: rotate refuses (${r.stderr.trim()})`);
    t.match(r.stderr, /far past version 1 that this client knows/, 'and says why');
  }
  double.rewrite.delete(`/v1/keys/${id}`);
  const after = await snapshot(c.home);
  for (const f of ['partners.json', 'config.json', 'keystore.json']) t.same(after.get(f), before.get(f), `${f} unchanged`);
  t.equal((await c.run(['status', 'bank-a'])).code, 0, 'later commands still work');
  const rot = await c.run(['rotate', 'bank-a', '--json']);
  t.equal(rot.code, 0, `control: an honest rotation (${rot.stderr.trim()})`);
  t.equal(JSON.parse(rot.stdout).keyVersion, 2, 'to version 2');
});

t.test('a FIFO or a device in the place of a state file fails at once', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.equal((await c.run(['register', 'bank-a'])).code, 0, 'registered');
  const ks = join(c.home, 'keystore.json');
  const saved = await readFile(ks);
  await rm(ks);
  execFileSync('mkfifo', ['-m', '600', ks]);
  let r = await c.run(['fetch', 'bank-a', '--json']);
  t.equal(r.code, 78, `keystore.json is a FIFO: exit 78 (${r.stderr.trim()})`);
  t.match(jsonError(r).message ?? '', /is not a regular file/, 'it says what is wrong');
  await rm(ks);
  await symlink('/dev/zero', ks);
  r = await c.run(['fetch', 'bank-a']);
  t.equal(r.code, 78, `keystore.json is /dev/zero: exit 78 (${r.stderr.trim()})`);
  await rm(ks);
  await writeFile(ks, saved, { mode: 0o600 });
  t.equal((await c.run(['fetch', 'bank-a'])).code, 0, 'the real keystore back: fetch works');
  const sent = join(c.home, 'fetch-sent.jsonl');
  const log = await readFile(sent);
  await rm(sent);
  execFileSync('mkfifo', ['-m', '600', sent]);
  r = await c.run(['fetch', 'bank-a']);
  t.equal(r.code, 78, `the sent log is a FIFO: fetch refuses at once (${r.stderr.trim()})`);
  t.equal(r.stdoutBytes.length, 0, 'nothing on stdout');
  await rm(sent);
  await writeFile(sent, log, { mode: 0o600 });
});

t.test('KDF parameters edited up to the old ceiling are refused without running scrypt', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.equal((await c.run(['register', 'bank-a'])).code, 0, 'registered');
  const ks = join(c.home, 'keystore.json');
  const doc = JSON.parse(await readFile(ks, 'utf8')) as { kdf: { logN: number; r: number; p: number } };
  for (const [what, kdf] of [['logN 22, r 32, p 16', { logN: 22, r: 32, p: 16 }], ['logN 21', { logN: 21, r: 8, p: 1 }], ['r 16', { logN: 15, r: 16, p: 1 }], ['p 4', { logN: 15, r: 8, p: 4 }]] as const) {
    await writeFile(ks, JSON.stringify({ ...doc, kdf: { ...doc.kdf, ...kdf } }), { mode: 0o600 });
    const r = await c.run(['status', 'bank-a', '--json']);
    t.equal(r.code, 65, `${what}: exit 65 (${r.stderr.trim()})`);
    t.equal(jsonError(r).code, 'kdf_too_weak', `${what}: kdf_too_weak, the parameters are out of range`);
  }
});

t.test('ca.pem and the fetch logs get the permission checks of the other state files', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.equal((await c.run(['register', 'bank-a'])).code, 0, 'registered');
  t.equal((await c.run(['fetch', 'bank-a'])).code, 0, 'fetched: both logs exist');
  for (const f of ['ca.pem', 'fetch-sent.jsonl', 'fetch-log.jsonl']) {
    const path = join(c.home, f);
    await chmod(path, 0o622);
    const cmd = f === 'ca.pem' ? ['status', 'bank-a'] : f === 'fetch-sent.jsonl' ? ['fetch', 'bank-a'] : ['audit', 'bank-a'];
    const r = await c.run([...cmd, '--json']);
    t.equal(r.code, 78, `${f} writable by others: ${cmd[0]} exits 78 (${r.stderr.trim()})`);
    t.equal(jsonError(r).code, 'unsafe_permissions', `${f}: unsafe_permissions`);
    t.equal(r.stdoutBytes.length, 0, `${f}: nothing on stdout`);
    await chmod(path, 0o600);
  }
  t.equal((await c.run(['audit', 'bank-a'])).code, 0, 'chmod 600 and the audit works again');
});

t.test('init refuses an enrolment the server does not stand by', async (t) => {
  const server = await startServer(t);
  const double = await startLyingProxy(t, server);
  const other = await newHome(t, server); // somebody else's person ID
  const otherId = JSON.parse(await readFile(join(other.home, 'config.json'), 'utf8')).personId as string;
  double.rewrite.set('/v1/persons', (r: PersonInfo) => ({ ...r, personId: otherId }));
  const home = join(await tempDir(t, 'kmgr-home-'), 'home');
  const pp = home + '-pp';
  await writeFile(pp, PASSPHRASE + '\n', { mode: 0o600 });
  const r = await kmgr(['init', '--server', double.url, '--ca', double.ca, '--passphrase-file', pp, '--kdf-cost', '15'], { home });
  t.equal(r.code, 65, `the enrolment reply names another person: exit 65 (${r.stderr.trim()})`);
  t.match(r.stderr, /says it belongs to/, 'and says so');
  t.notOk(existsSync(join(home, 'config.json')), 'nothing was saved');
  double.rewrite.delete('/v1/persons');
  const ok = await kmgr(['init', '--server', double.url, '--ca', double.ca, '--passphrase-file', pp, '--kdf-cost', '15'], { home });
  t.equal(ok.code, 0, `control: an honest enrolment (${ok.stderr.trim()})`);
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
