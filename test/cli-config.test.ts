// Configuration a user can repair: config show/set, re-trusting a changed
// server certificate after seeing its fingerprint; directories that are not
// kmgr's are never chmod-ed; a missing home is "not initialised" everywhere;
// KMGR_AGENT_SOCK names the agent's socket; prompts (three passphrase tries,
// Ctrl-C, confirmations) at a real pseudo-terminal.
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, newHome, tempDir, PASSPHRASE, kmgr, kmgrd, writePassphrase, pp, jsonError, hasScript, ptySession, startAgent } from './support/index.js';

t.jobs = 2;

const fp = async (file: string): Promise<string> => `SHA256:${new X509Certificate(await readFile(file)).fingerprint256}`;

t.test('config show, set server, set ca: the TLS hint names the command, and trust changes only when confirmed', async (t) => {
  const server = await startServer(t);
  const other = await startServer(t); // another certificate
  const c = await newHome(t, server);
  const show = await kmgr(['config', 'show', '--json'], { home: c.home });
  t.equal(show.code, 0);
  const cfg = JSON.parse(show.stdout) as { server: string; ca: { fingerprint: string } };
  t.equal(cfg.server, server.url);
  t.equal(cfg.ca.fingerprint, await fp(server.ca), 'the trusted certificate, by fingerprint');
  t.match((await kmgr(['config', 'show'], { home: c.home })).stdout, (await fp(server.ca)).slice(0, 30));

  t.equal((await kmgr(['config', 'set', 'server', 'http://x'], { home: c.home })).code, 64, 'not https: 64');
  t.equal((await kmgr(['config', 'set', 'colour', 'blue'], { home: c.home })).code, 64, 'no such setting: 64');
  t.equal((await kmgr(['config', 'set', 'server', other.url], { home: c.home })).code, 0, 'the server moved');
  const tls = await kmgr(['notices', ...pp(c)], { home: c.home });
  t.equal(tls.code, 69, 'its certificate is not trusted: 69');
  t.match(tls.stderr, /kmgr config set ca FILE/, 'the hint names the command that repairs it');

  const before = await readFile(join(c.home, 'ca.pem'), 'utf8');
  const unasked = await kmgr(['config', 'set', 'ca', other.ca], { home: c.home });
  t.equal(unasked.code, 64, 'no terminal and no --yes: refused');
  t.match(unasked.stderr, await fp(other.ca), 'but the new fingerprint was shown');
  t.equal(await readFile(join(c.home, 'ca.pem'), 'utf8'), before, 'nothing changed');
  t.equal((await kmgr(['config', 'set', 'ca', join(c.home, 'nope.pem'), '--yes'], { home: c.home })).code, 66, 'a missing certificate file: 66');

  const yes = await kmgr(['config', 'set', 'ca', other.ca, '--yes'], { home: c.home });
  t.equal(yes.code, 0, '--yes');
  const now = await kmgr(['--json', 'notices', ...pp(c)], { home: c.home });
  t.not(now.code, 69, 'TLS now succeeds');
  // The server does not say whether a key is enrolled (a stranger learns nothing): a signature it cannot check.
  t.equal(now.code, 77, 'and the server answers: it refuses the request (77)');
  t.match(jsonError(now), { code: 'auth_bad_signature', message: /not enrolled at this server/ }, 'because this person is not enrolled there');

  t.equal((await kmgr(['config', 'set', 'server', server.url], { home: c.home })).code, 0, 'back to the first server');
  t.equal((await kmgr(['config', 'set', 'ca', server.ca, '--yes'], { home: c.home })).code, 0);
  t.ok(await c.register('bank-a'), 'and it works again, with the same identity');
});

t.test('kmgr never tightens a directory that holds others\' files; an empty one of the user\'s is tightened and it says so', async (t) => {
  const base = await tempDir(t, 'kmgr-dirs-');
  const shared = join(base, 'shared');
  await mkdir(shared);
  await chmod(shared, 0o1777);
  await writeFile(join(shared, 'someone-elses.txt'), 'x');

  const d = await kmgrd(['serve', '--data', shared, '--listen', '127.0.0.1:0']);
  t.equal(d.code, 78, 'kmgrd serve --data on a shared directory: 78');
  t.match(d.stderr, /not a kmgrd data directory|will not change its permissions/, 'refused, saying why');
  t.equal((await stat(shared)).mode & 0o7777, 0o1777, 'its mode is unchanged');

  const server = await startServer(t);
  const init = await kmgr(['init', '--server', server.url, '--ca', server.ca, '--passphrase-file', await writePassphrase(base, 'pp', PASSPHRASE), '--kdf-cost', '15'], { home: shared });
  t.equal(init.code, 78, 'kmgr init --home on it: 78');
  t.equal((await stat(shared)).mode & 0o7777, 0o1777, 'unchanged');
  t.notOk(existsSync(join(shared, 'keystore.json')), 'nothing written');

  const empty = join(base, 'empty');
  await mkdir(empty);
  await chmod(empty, 0o755);
  const ok = await kmgr(['init', '--server', server.url, '--ca', server.ca, '--passphrase-file', await writePassphrase(base, 'pp', PASSPHRASE), '--kdf-cost', '15'], { home: empty });
  t.equal(ok.code, 0, 'an empty directory of the user\'s is fine');
  t.match(ok.stderr, /made .*empty private \(mode 755 -> 700\)/, 'and the message says it was tightened');
  t.equal((await stat(empty)).mode & 0o777, 0o700);
});

t.test('a home that does not exist is "not initialised" (78) for every command, and is not created', async (t) => {
  const home = join(await tempDir(t), 'no-home');
  for (const args of [['list'], ['partner', 'add', 'x'], ['partner', 'list'], ['whoami'], ['pubkey', 'x'], ['config', 'show'], ['agent', 'status'], ['status', 'x'], ['fetch', 'x'], ['register', 'x'], ['retire', 'x', '--yes'], ['passwd']]) {
    const r = await kmgr(['--json', ...args], { home, env: { KMGR_PASSPHRASE: PASSPHRASE } });
    t.equal(r.code, 78, `${args.join(' ')}: 78`);
    t.equal(jsonError(r).code, 'not_initialised', `${args.join(' ')}: not_initialised`);
  }
  t.notOk(existsSync(home), 'no command made the home');
});

t.test('KMGR_AGENT_SOCK names the agent\'s socket', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('bank-a'));
  const dir = await tempDir(t, 'kmgr-sock-');
  const sock = join(dir, 'my-agent.sock');
  const a = await startAgent(t, c.home, c.pp, [], { KMGR_AGENT_SOCK: sock });
  t.equal(a.socket, sock, 'agent start listens where KMGR_AGENT_SOCK says');
  const f = await kmgr(['fetch', 'bank-a'], { home: c.home, env: { KMGR_AGENT_SOCK: sock } });
  t.equal(f.code, 0, 'a fetch with no passphrase source is served by that agent');
  const without = await kmgr(['agent', 'status'], { home: c.home });
  t.equal(without.code, 69, 'without the variable, the default socket has no agent');
  t.equal((await kmgr(['agent', 'stop'], { home: c.home, env: { KMGR_AGENT_SOCK: sock } })).code, 0);
});

t.test('at a terminal: three passphrase tries, Ctrl-C exits 130 naming what was cancelled, confirmations', { skip: !hasScript() && 'script(1) missing' }, async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('bank-a'));

  const three = ptySession(['status', 'bank-a'], c.home);
  await three.waitFor(/Passphrase for/);
  three.type('wrong one\r');
  await three.waitFor(/Wrong passphrase, try again/);
  await three.waitFor(/Passphrase for/);
  three.type('wrong two\r');
  await three.waitFor(/Passphrase for/);
  three.type(`${PASSPHRASE}\r`);
  const r3 = await three.done();
  t.equal(r3.code, 0, 'the third try unlocks');
  t.match(r3.screen, /unlocking…/, 'an unlocking line while the KDF runs');
  t.match(r3.screen, /uses: +total 0/);

  const fails = ptySession(['status', 'bank-a'], c.home);
  for (let i = 0; i < 3; i++) {
    await fails.waitFor(/Passphrase for/);
    fails.type(`wrong ${i}\r`);
  }
  const rf = await fails.done();
  t.equal(rf.code, 77, 'three wrong answers: 77');

  const cancel = ptySession(['status', 'bank-a'], c.home);
  await cancel.waitFor(/Passphrase for/);
  cancel.type('\u0003');
  const rc = await cancel.done();
  t.equal(rc.code, 130, 'Ctrl-C at the passphrase prompt: 130');
  t.match(rc.screen, /passphrase entry cancelled/, 'naming what was cancelled');

  const other = await startServer(t);
  const no = ptySession(['config', 'set', 'ca', other.ca], c.home);
  await no.waitFor(/\[y\/N\]/);
  no.type('n\r');
  t.equal((await no.done()).code, 130, 'answering n: cancelled');
  const yes = ptySession(['config', 'set', 'ca', other.ca], c.home);
  await yes.waitFor(/\[y\/N\]/);
  yes.type('y\r');
  t.equal((await yes.done()).code, 0, 'answering y: trusted');
  t.equal(await fp(join(c.home, 'ca.pem')), await fp(other.ca));
});

