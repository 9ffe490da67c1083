// The CLI's behaviour against a real kmgrd: passphrases and keystore protection,
// usage errors that touch nothing, exit codes, the partner index, the fetch log
// and terminals. Server-side properties (races, restarts, leaks) are in cli-server.test.ts.
import t from 'tap';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { createPrivateKey, createPublicKey, scrypt, sign, verify } from 'node:crypto';
import { startServer, newHome, tempDir, PASSPHRASE, kmgr, snapshot, sameSnapshot, oneLine, jsonError, pp, freePort, countingListener, MSG, hasScript, underPty, type RunResult } from './support/index.js';
import { openSession } from '../src/client/session.js';
import { homePaths } from '../src/client/home.js';
import { seal } from '../src/crypto/aead.js';
import { encodeFields } from '../src/crypto/bytes.js';

// ---------------------------------------------------------------- tests

// Every subtest has its own server and home, so they may run side by side.
t.jobs = 3;

t.test('wrong passphrase: exit 77, nothing on stdout, no file changed, nothing counted', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('bank-a', { maxUses: 1 }), 'register');
  const bad = join(dirname(c.pp), 'bad-passphrase');
  await writeFile(bad, 'not the passphrase\n', { mode: 0o600 });
  const before = await snapshot(c.home);
  t.ok(before.has('keystore.json') && before.has('partners.json') && before.has('config.json'), 'the home holds keystore, partners and config');
  const logsBefore = server.logs.lines.length;

  const f = await kmgr(['fetch', 'bank-a', '--passphrase-file', bad], { home: c.home });
  t.equal(f.code, 77, 'fetch with a wrong passphrase exits 77');
  t.equal(f.stdoutBytes.length, 0, 'nothing on stdout');
  t.ok(oneLine(f.stderr), 'one line on stderr');
  const fj = await kmgr(['--json', 'fetch', 'bank-a', '--passphrase-file', bad], { home: c.home });
  t.equal(fj.code, 77);
  t.equal(jsonError(fj).code, 'wrong_passphrase', '--json error code wrong_passphrase');
  const r = await kmgr(['register', 'bank-b', '--passphrase-file', bad], { home: c.home });
  t.equal(r.code, 77, 'register with a wrong passphrase exits 77');
  t.equal(r.stdoutBytes.length, 0, 'nothing on stdout');
  const e = await kmgr(['fetch', 'bank-a'], { home: c.home, env: { KMGR_PASSPHRASE: 'nope' } });
  t.equal(e.code, 77, 'a wrong KMGR_PASSPHRASE exits 77');

  sameSnapshot(t, before, await snapshot(c.home), 'after wrong passphrases');
  t.equal(server.logs.lines.length, logsBefore, 'the server logged nothing: it was not contacted');
  const ok = await c.run(['fetch', 'bank-a']);
  t.equal(ok.code, 0, 'with --max-uses 1, a correct fetch still succeeds: nothing was counted');
});

t.test('a keystore readable by others is refused (exit 78, unsafe_permissions)', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('bank-a'), 'register');
  const ks = join(c.home, 'keystore.json');
  t.equal((await stat(ks)).mode & 0o777, 0o600, 'init wrote the keystore 0600');
  t.equal((await stat(c.home)).mode & 0o777, 0o700, 'in a 0700 directory');
  for (const mode of [0o644, 0o640, 0o604]) {
    await chmod(ks, mode);
    const before = await snapshot(c.home);
    const r = await kmgr(['--json', 'fetch', 'bank-a', ...pp(c)], { home: c.home });
    t.equal(r.code, 78, `mode ${mode.toString(8)}: exit 78`);
    t.equal(jsonError(r).code, 'unsafe_permissions', `mode ${mode.toString(8)}: code unsafe_permissions`);
    t.equal(r.stdoutBytes.length, 0, 'nothing on stdout');
    const plain = await kmgr(['fetch', 'bank-a', ...pp(c)], { home: c.home });
    t.equal(plain.code, 78);
    t.ok(oneLine(plain.stderr) && /chmod/.test(plain.stderr), 'one line telling how to fix it');
    sameSnapshot(t, before, await snapshot(c.home), `mode ${mode.toString(8)}`);
    t.equal((await stat(ks)).mode & 0o777, mode, 'the mode was left as it was');
  }
  await chmod(ks, 0o600);
  t.equal((await c.run(['fetch', 'bank-a'])).code, 0, 'chmod 600 and it works again');
});

t.test('keystore tampering: KDF downgrade exit 65 even with the right passphrase; an edited box, salt or parameter exit 77', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('bank-a'), 'register');
  const ksPath = join(c.home, 'keystore.json');
  const original = await readFile(ksPath, 'utf8');
  const doc = JSON.parse(original) as { format: string; v: number; kdf: { alg: string; logN: number; r: number; p: number; salt: string }; box: string };
  t.equal(doc.kdf.logN, 15, 'initClient made the keystore at logN 15');

  const tryWith = async (edit: (d: typeof doc) => void, what: string): Promise<RunResult> => {
    const d = JSON.parse(original) as typeof doc;
    edit(d);
    await writeFile(ksPath, JSON.stringify(d, null, 2) + '\n', { mode: 0o600 });
    const r = await kmgr(['--json', 'fetch', 'bank-a', ...pp(c)], { home: c.home });
    t.equal(r.stdoutBytes.length, 0, `${what}: nothing on stdout`);
    return r;
  };

  let r = await tryWith((d) => (d.kdf.logN = 14), 'logN 14');
  t.equal(r.code, 65, 'logN edited down to 14: exit 65');
  t.equal(jsonError(r).code, 'kdf_too_weak', 'code kdf_too_weak');
  r = await tryWith((d) => (d.kdf.r = 4), 'r 4');
  t.equal(r.code, 65, 'r edited down to 4: exit 65');
  r = await tryWith((d) => (d.kdf.salt = Buffer.alloc(8).toString('base64')), 'short salt');
  t.equal(r.code, 65, 'salt shortened to 8 bytes: exit 65');
  r = await tryWith((d) => (d.kdf.logN = 16), 'logN 16');
  t.equal(r.code, 77, 'logN edited (up, within range) breaks the box: exit 77');
  r = await tryWith((d) => {
    const s = Buffer.from(d.kdf.salt, 'base64');
    s[0]! ^= 1;
    d.kdf.salt = s.toString('base64');
  }, 'salt bit');
  t.equal(r.code, 77, 'one salt bit flipped: exit 77');
  r = await tryWith((d) => {
    const b = Buffer.from(d.box, 'base64');
    b[30]! ^= 0x40;
    d.box = b.toString('base64');
  }, 'box bit');
  t.equal(r.code, 77, 'one box bit flipped: exit 77');
  t.equal(jsonError(r).code, 'wrong_passphrase', 'reported as wrong passphrase or altered keystore');
  r = await tryWith((d) => {
    const b = Buffer.from(d.box, 'base64');
    d.box = b.subarray(0, b.length - 1).toString('base64');
  }, 'box truncated');
  t.equal(r.code, 77, 'box truncated by one byte: exit 77');

  // A file validly made with weak parameters: sealed correctly, with the real
  // secrets, at logN 14. The same construction at logN 15 must open (control).
  await writeFile(ksPath, original, { mode: 0o600 });
  const session = await openSession(homePaths(c.home), { passphraseFile: c.pp }, null);
  const plain = Buffer.concat([session.secrets!.signingSeed, session.secrets!.wrapKey]);
  const craft = async (logN: number): Promise<string> => {
    const salt = Buffer.from(Array.from({ length: 16 }, (_, i) => i * 7 + logN));
    const key = await new Promise<Buffer>((res, rej) =>
      scrypt(Buffer.from(PASSPHRASE), salt, 32, { N: 2 ** logN, r: 8, p: 1, maxmem: 256 * 2 ** logN * 8 + (1 << 20) }, (e, k) => (e ? rej(e) : res(k))),
    );
    const ad = encodeFields(['kmgr-keystore', 1, 'scrypt', logN, 8, 1, salt]);
    const box = seal(key, plain, ad);
    return JSON.stringify({ format: 'kmgr-keystore', v: 1, kdf: { alg: 'scrypt', logN, r: 8, p: 1, salt: salt.toString('base64') }, box: Buffer.from(box).toString('base64') }, null, 2) + '\n';
  };
  await writeFile(ksPath, await craft(15), { mode: 0o600 });
  const control = await kmgr(['fetch', 'bank-a', ...pp(c)], { home: c.home });
  t.equal(control.code, 0, `control: a keystore sealed by this test at logN 15 opens${control.code ? `: ${control.stderr}` : ''}`);
  await writeFile(ksPath, await craft(14), { mode: 0o600 });
  r = await kmgr(['--json', 'fetch', 'bank-a', ...pp(c)], { home: c.home });
  t.equal(r.code, 65, 'a keystore validly sealed at logN 14 is refused: exit 65');
  t.equal(jsonError(r).code, 'kdf_too_weak');
  t.equal(r.stdoutBytes.length, 0, 'nothing on stdout');

  await writeFile(ksPath, original, { mode: 0o600 });
  t.equal((await c.run(['fetch', 'bank-a'])).code, 0, 'the original keystore still works');
});

t.test('init twice: exit 73 and nothing changed; --force succeeds and keeps the old files as *.old-*', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('bank-a'), 'register');
  t.equal((await c.run(['fetch', 'bank-a'])).code, 0, 'fetch (so a fetch log exists)');
  const before = await snapshot(c.home);
  t.ok(before.has('fetch-log.jsonl'), 'fetch log exists');
  const logsBefore = server.logs.lines.length;
  const initArgs = ['init', '--server', server.url, '--ca', server.ca, ...pp(c), '--kdf-cost', '15'];

  const again = await kmgr(initArgs, { home: c.home });
  t.equal(again.code, 73, 'init again without --force: exit 73');
  t.equal(again.stdoutBytes.length, 0, 'nothing on stdout');
  t.ok(oneLine(again.stderr) && /--force/.test(again.stderr), 'one line mentioning --force');
  const againJson = await kmgr(['--json', ...initArgs], { home: c.home });
  t.equal(againJson.code, 73);
  t.equal(jsonError(againJson).code, 'keystore_exists', 'code keystore_exists');
  sameSnapshot(t, before, await snapshot(c.home), 'after a refused init');
  t.equal(server.logs.lines.length, logsBefore, 'the server was not contacted (no enrolment logged)');

  const forced = await kmgr([...initArgs, '--force'], { home: c.home });
  t.equal(forced.code, 0, `init --force: exit 0${forced.code ? `: ${forced.stderr}` : ''}`);
  const after = await snapshot(c.home);
  for (const f of ['keystore.json', 'config.json', 'partners.json', 'fetch-log.jsonl']) {
    const old = [...after.keys()].filter((k) => k.startsWith(`${f}.old-`));
    t.equal(old.length, 1, `${f}: one old copy kept`);
    if (old[0]) t.ok(after.get(old[0])!.equals(before.get(f)!), `${f}: the old copy is byte-identical to the replaced file`);
  }
  t.notOk(after.get('keystore.json')!.equals(before.get('keystore.json')!), 'a new keystore');
  const oldConf = JSON.parse(before.get('config.json')!.toString()) as { personId: string; fingerprint: string };
  const newConf = JSON.parse(after.get('config.json')!.toString()) as { personId: string; fingerprint: string };
  t.not(newConf.fingerprint, oldConf.fingerprint, 'a new management key');
  t.not(newConf.personId, oldConf.personId, 'a new personal ID');
  for (const f of ['keystore.json', 'config.json', 'partners.json']) {
    t.equal((await stat(join(c.home, f))).mode & 0o777, 0o600, `new ${f} is 0600`);
  }
  const gone = await c.run(['fetch', 'bank-a']);
  t.equal(gone.code, 66, 'the new identity has no partner bank-a (exit 66)');
});

t.test('init against an unreachable server exits 69 and writes nothing; without --ca against a self-signed server, 69 naming --ca', async (t) => {
  const server = await startServer(t);
  const root = await tempDir(t);
  const ppFile = join(root, 'pp');
  await writeFile(ppFile, PASSPHRASE + '\n', { mode: 0o600 });

  const port = await freePort();
  const home1 = join(root, 'home1');
  const r1 = await kmgr(['init', '--server', `https://127.0.0.1:${port}`, '--ca', server.ca, '--passphrase-file', ppFile, '--kdf-cost', '15'], { home: home1 });
  t.equal(r1.code, 69, 'closed port: exit 69');
  t.equal(r1.stdoutBytes.length, 0, 'nothing on stdout');
  t.ok(oneLine(r1.stderr), 'one line on stderr');
  t.equal((await snapshot(home1)).size, 0, 'nothing written in the home');

  const logsBefore = server.logs.lines.length;
  const home2 = join(root, 'home2');
  const r2 = await kmgr(['init', '--server', server.url, '--passphrase-file', ppFile, '--kdf-cost', '15'], { home: home2 });
  t.equal(r2.code, 69, 'self-signed server without --ca: exit 69');
  t.match(r2.stderr, /--ca/, 'the message mentions --ca');
  t.ok(oneLine(r2.stderr), 'one line on stderr');
  t.equal((await snapshot(home2)).size, 0, 'nothing written in the home');
  t.notOk(server.logs.lines.slice(logsBefore).some((l) => l.includes('person enrolled')), 'nobody was enrolled');

  const home3 = join(root, 'home3');
  const r3 = await kmgr(['init', '--server', server.url, '--ca', server.ca, '--passphrase-file', ppFile, '--kdf-cost', '15'], { home: home3 });
  t.equal(r3.code, 0, 'control: with --ca it succeeds');
});

t.test('passphrase sources: file, fd, KMGR_PASSPHRASE; none and no terminal: exit 64', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  const reg = await c.run(['register', 'bank-a']);
  t.equal(reg.code, 0, 'register');
  const pub = createPublicKey(reg.stdout);
  const works = (r: RunResult, what: string): void => {
    t.equal(r.code, 0, `${what}: exit 0${r.code ? `: ${r.stderr}` : ''}`);
    if (r.code === 0) t.ok(verify(null, MSG, pub, sign(null, MSG, createPrivateKey(r.stdout))), `${what}: the fetched key signs for the registered key`);
  };

  const [file, fd, env, fdBad, envBad, none, both, lowFd, emptyFd] = await Promise.all([
    kmgr(['fetch', 'bank-a', '--passphrase-file', c.pp], { home: c.home }),
    kmgr(['fetch', 'bank-a', '--passphrase-fd', '3'], { home: c.home, fd3: PASSPHRASE + '\n' }),
    kmgr(['fetch', 'bank-a'], { home: c.home, env: { KMGR_PASSPHRASE: PASSPHRASE } }),
    kmgr(['fetch', 'bank-a', '--passphrase-fd', '3'], { home: c.home, fd3: 'wrong\n' }),
    kmgr(['fetch', 'bank-a'], { home: c.home, env: { KMGR_PASSPHRASE: 'wrong' } }),
    kmgr(['fetch', 'bank-a'], { home: c.home }),
    kmgr(['fetch', 'bank-a', '--passphrase-file', c.pp, '--passphrase-fd', '3'], { home: c.home, fd3: PASSPHRASE + '\n' }),
    kmgr(['fetch', 'bank-a', '--passphrase-fd', '2'], { home: c.home }),
    kmgr(['fetch', 'bank-a', '--passphrase-fd', '3'], { home: c.home, fd3: '' }),
  ]);
  works(file, '--passphrase-file');
  works(fd, '--passphrase-fd 3');
  works(env, 'KMGR_PASSPHRASE');
  t.equal(fdBad.code, 77, 'a wrong passphrase on fd 3 is used, and refused: 77');
  t.equal(envBad.code, 77, 'a wrong KMGR_PASSPHRASE is used, and refused: 77');
  t.equal(none.code, 64, 'no source and no terminal: exit 64');
  t.equal(none.stdoutBytes.length, 0, 'nothing on stdout');
  t.match(none.stderr, /passphrase/, 'the message is about the passphrase');
  t.equal(both.code, 64, '--passphrase-file and --passphrase-fd together: 64');
  t.equal(lowFd.code, 64, '--passphrase-fd 2: 64');
  t.equal(emptyFd.code, 64, 'an empty passphrase on fd 3: 64');
});

t.test('usage errors: exit 64, one line on stderr, no file changed, the server not contacted', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('bank', { type: 'ed25519' }), 'register bank');
  t.ok(await c.register('vault', { type: 'aes256' }), 'register vault (aes256)');
  t.equal((await c.run(['fetch', 'bank'])).code, 0, 'fetch once so a fetch log exists');
  const P = pp(c);
  const cases: Array<[string, string[]]> = [
    ['unknown option', ['fetch', 'bank', '--bogus', ...P]],
    ['unknown option on register', ['register', 'newp', '--colour', 'blue', ...P]],
    ['--max-uses 0', ['register', 'newp', '--max-uses', '0', ...P]],
    ['--max-uses -1', ['register', 'newp', '--max-uses', '-1', ...P]],
    ['--max-uses abc', ['register', 'newp', '--max-uses', 'abc', ...P]],
    ['--max-per-day 1.5', ['register', 'newp', '--max-per-day', '1.5', ...P]],
    ['--expires 2027-02-30', ['register', 'newp', '--expires', '2027-02-30', ...P]],
    ['--expires tomorrow', ['register', 'newp', '--expires', 'tomorrow', ...P]],
    ['--expires in the past', ['register', 'newp', '--expires', '2020-01-01', ...P]],
    ['--expires with --valid-for', ['register', 'newp', '--expires', '2099-01-01', '--valid-for', '90d', ...P]],
    ['--valid-for 0d', ['register', 'newp', '--valid-for', '0d', ...P]],
    ['bad partner name (register)', ['register', 'bad/name', ...P]],
    ['bad partner name (fetch)', ['fetch', 'bad name', ...P]],
    ['bad partner name (partner add)', ['partner', 'add', '.hidden']],
    ['--format pem for aes256', ['fetch', 'vault', '--format', 'pem', ...P]],
    ['--type rsa', ['register', 'newp', '--type', 'rsa', ...P]],
    ['--format der', ['fetch', 'bank', '--format', 'der', ...P]],
  ];
  const runAll = async (what: string): Promise<void> => {
    const results = await Promise.all(cases.map(([, args]) => kmgr(args, { home: c.home })));
    cases.forEach(([name], i) => {
      const r = results[i]!;
      t.equal(r.code, 64, `${what}: ${name}: exit 64`);
      t.equal(r.stdoutBytes.length, 0, `${what}: ${name}: nothing on stdout`);
      t.ok(oneLine(r.stderr), `${what}: ${name}: exactly one line on stderr (got ${JSON.stringify(r.stderr)})`);
    });
  };

  // Against the real server: no file changes, no new server log line.
  const before = await snapshot(c.home);
  const logsBefore = server.logs.lines.length;
  await runAll('real server');
  sameSnapshot(t, before, await snapshot(c.home), 'after usage errors');
  t.equal(server.logs.lines.length, logsBefore, 'no new server log lines');

  // Under --json every usage error is a JSON error with the stable code "usage",
  // whether kmgr or its option parser caught it.
  const jsonCases = cases.filter(([name]) => ['unknown option', '--type rsa', '--max-uses 0', '--expires tomorrow'].includes(name));
  const jsonResults = await Promise.all(jsonCases.map(([, args]) => kmgr(['--json', ...args], { home: c.home })));
  jsonCases.forEach(([name], i) => {
    const r = jsonResults[i]!;
    t.equal(r.code, 64, `--json ${name}: exit 64`);
    t.equal(jsonError(r).code, 'usage', `--json ${name}: stderr is a JSON error with code usage (got ${JSON.stringify(r.stderr)})`);
  });

  // The server's log is quiet about most requests, so prove it another way too:
  // point the client at a listener that counts connections.
  const confPath = join(c.home, 'config.json');
  const conf = await readFile(confPath);
  const counter = await countingListener(t);
  await writeFile(confPath, JSON.stringify({ ...(JSON.parse(conf.toString()) as object), server: counter.url }, null, 2) + '\n', { mode: 0o600 });
  const before2 = await snapshot(c.home);
  await runAll('counting listener');
  t.equal(counter.count(), 0, 'no usage error opened a connection to the server');
  sameSnapshot(t, before2, await snapshot(c.home), 'after usage errors (counting listener)');
  const control = await kmgr(['fetch', 'bank', ...P], { home: c.home });
  t.equal(control.code, 69, 'control: a valid fetch does try the (dead) server: exit 69');
  t.ok(counter.count() >= 1, 'control: and the listener counted it');
  await writeFile(confPath, conf, { mode: 0o600 });
  const restored = await c.run(['fetch', 'bank']);
  t.equal(restored.code, 0, `config restored: fetch works${restored.code ? `: ${restored.stderr}` : ''}`);
});

t.test('unknown partner or key: exit 66; registering a partner that has a key: exit 73', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('bank-a'), 'register');
  const u = await c.run(['fetch', 'nobody']);
  t.equal(u.code, 66, 'fetch of an unknown partner: 66');
  t.equal(u.stdoutBytes.length, 0);
  t.ok(oneLine(u.stderr), 'one line');
  const uj = await kmgr(['--json', 'fetch', 'nobody', ...pp(c)], { home: c.home });
  t.equal(jsonError(uj).code, 'unknown_partner', 'code unknown_partner');
  t.equal((await c.run(['partner', 'add', 'keyless'])).code, 0, 'partner add keyless');
  const k = await kmgr(['--json', 'fetch', 'keyless', ...pp(c)], { home: c.home });
  t.equal(k.code, 66, 'fetch of a partner without a key: 66');
  t.equal(jsonError(k).code, 'unknown_key', 'code unknown_key');

  const before = await snapshot(c.home);
  const again = await c.run(['register', 'bank-a']);
  t.equal(again.code, 73, 'register bank-a again: 73');
  t.equal(again.stdoutBytes.length, 0, 'nothing on stdout');
  const againJ = await kmgr(['--json', 'register', 'bank-a', ...pp(c)], { home: c.home });
  t.equal(jsonError(againJ).code, 'key_exists', 'code key_exists');
  sameSnapshot(t, before, await snapshot(c.home), 'after refused re-registration');
  t.equal((await c.run(['fetch', 'bank-a'])).code, 0, 'the original key still fetches');
});

t.test('the fetch log gets one line per successful fetch and none for refused ones', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  const reg = await c.run(['register', 'logp', '--max-uses', '2', '--json']);
  t.equal(reg.code, 0, 'register');
  const rec = JSON.parse(reg.stdout) as { keyId: string; partnerId: string };
  const logPath = join(c.home, 'fetch-log.jsonl');
  const lines = async (): Promise<string[]> => {
    try {
      return (await readFile(logPath, 'utf8')).split('\n').filter(Boolean);
    } catch {
      return [];
    }
  };
  t.equal((await lines()).length, 0, 'no fetch log lines before any fetch');
  t.equal((await c.run(['fetch', 'logp'])).code, 0, 'fetch 1');
  t.equal((await lines()).length, 1, 'one line');
  t.equal((await c.run(['fetch', 'logp', '--format', 'hex'])).code, 0, 'fetch 2');
  t.equal((await lines()).length, 2, 'two lines');

  const refused = await kmgr(['--json', 'fetch', 'logp', ...pp(c)], { home: c.home });
  t.equal(refused.code, 77, 'fetch 3 refused by --max-uses 2: 77');
  t.equal(jsonError(refused).code, 'terms_max_uses', 'code terms_max_uses');
  t.equal(refused.stdoutBytes.length, 0, 'nothing on stdout');
  const bad = join(dirname(c.pp), 'bad');
  await writeFile(bad, 'wrong\n', { mode: 0o600 });
  t.equal((await kmgr(['fetch', 'logp', '--passphrase-file', bad], { home: c.home })).code, 77, 'wrong passphrase: 77');
  t.equal((await c.run(['fetch', 'nobody'])).code, 66, 'unknown partner: 66');
  t.equal((await c.run(['fetch', 'logp', '--format', 'nope'])).code, 64, 'usage error: 64');

  const ls = await lines();
  t.equal(ls.length, 2, 'still two lines after four refused fetches');
  const entries = ls.map((l) => JSON.parse(l) as { partner: string; partnerId: string; keyId: string; keyVersion: number; nonce: string; server: string; at: string });
  for (const e of entries) {
    t.equal(e.partner, 'logp');
    t.equal(e.partnerId, rec.partnerId, 'the partner ID');
    t.equal(e.keyId, rec.keyId, 'the key ID');
    t.equal(e.keyVersion, 1);
    t.equal(e.server, server.url);
    t.match(e.nonce, /^[A-Za-z0-9_-]{22}$/, 'the request nonce');
    t.ok(!Number.isNaN(Date.parse(e.at)), 'a timestamp');
  }
  t.not(entries[0]!.nonce, entries[1]!.nonce, 'distinct nonces');
  t.equal((await stat(logPath)).mode & 0o777, 0o600, 'the fetch log is 0600');
});

t.test('kmgr partner add/list/show/rm with --json; rm of a partner with a key needs --force', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  /** What partner add/show/list/rm and list print with --json, or the error's code, as far as this test reads them. */
  interface PartnerJson {
    partnerId?: string;
    partners?: Array<{ name: string; key?: { keyId: string } | null }>;
    code?: string;
  }
  const j = async (args: string[], code = 0): Promise<PartnerJson> => {
    const r = await kmgr([...args, '--json'], { home: c.home });
    t.equal(r.code, code, `${args.join(' ')} --json: exit ${code}${r.code !== code ? `: ${r.stderr}` : ''}`);
    if (code !== 0) {
      t.equal(r.stdoutBytes.length, 0, 'nothing on stdout');
      return jsonError(r);
    }
    return JSON.parse(r.stdout) as PartnerJson;
  };
  const added = await j(['partner', 'add', 'acme', '--name', 'Acme Bank', '--app-server', 'app1.acme.example', '--business', 'payments']);
  t.match(added, { name: 'acme', displayName: 'Acme Bank', appServer: 'app1.acme.example', business: 'payments', key: null }, 'add prints the entry');
  t.match(added.partnerId, /^[A-Za-z0-9_-]{1,64}$/, 'a partner ID');
  t.equal((await j(['partner', 'add', 'acme'], 73)).code, 'key_exists', 'adding acme again: 73');
  const bare = await j(['partner', 'add', 'beta']);
  t.match(bare, { name: 'beta', displayName: null, appServer: null, business: null, key: null });

  const list = await j(['partner', 'list']);
  t.same(list.partners?.map((p) => p.name).sort(), ['acme', 'beta'], 'list shows both');
  t.same(await j(['partner', 'show', 'acme']), added, 'show gives what add printed');
  t.equal((await j(['partner', 'show', 'nobody'], 66)).code, 'unknown_partner', 'show of an unknown partner: 66');

  // register keeps the partner (and its ID) that partner add made.
  const reg = await c.run(['register', 'acme', '--type', 'p256', '--json']);
  t.equal(reg.code, 0, 'register acme');
  const rec = JSON.parse(reg.stdout) as { partnerId: string; keyId: string };
  t.equal(rec.partnerId, added.partnerId, 'register used the partner ID that partner add made');
  const shown = await j(['partner', 'show', 'acme']);
  t.match(shown, { displayName: 'Acme Bank', key: { keyId: rec.keyId, type: 'p256', version: 1 } }, 'show now includes the key');
  const fullList = await j(['list']);
  t.equal(fullList.partners?.find((p) => p.name === 'acme')?.key?.keyId, rec.keyId, 'kmgr list --json shows the key');

  t.same(await j(['partner', 'rm', 'beta']), { removed: 'beta' }, 'rm of a partner without a key');
  t.same((await j(['partner', 'list'])).partners?.map((p) => p.name), ['acme'], 'beta is gone');
  const before = await snapshot(c.home);
  t.equal((await j(['partner', 'rm', 'acme'], 73)).code, 'key_exists', 'rm of a partner with a key: refused (73)');
  sameSnapshot(t, before, await snapshot(c.home), 'after a refused rm');
  t.same(await j(['partner', 'rm', 'acme', '--force']), { removed: 'acme' }, 'rm --force');
  t.same((await j(['partner', 'list'])).partners, [], 'no partners left');
  t.equal((await j(['partner', 'rm', 'acme'], 66)).code, 'unknown_partner', 'rm of an unknown partner: 66');
});


t.test('under a pseudo-terminal, fetch refuses (64, nothing counted); with --force it prints the key', { skip: hasScript() ? false : 'util-linux script(1) is not installed' }, async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('pty-a', { maxUses: 1 }), 'register pty-a --max-uses 1');
  const regB = await c.run(['register', 'pty-b', '--type', 'secp256k1']);
  t.equal(regB.code, 0, 'register pty-b');

  const refused = await underPty(['fetch', 'pty-a', ...pp(c)], c.home);
  t.equal(refused.code, 64, 'fetch to a terminal: exit 64');
  t.notMatch(refused.out, /PRIVATE KEY/, 'no key on the terminal');
  t.match(refused.out, /terminal/, 'says why');
  const refused2 = await underPty(['fetch', 'pty-a', '--format', 'hex', ...pp(c)], c.home);
  t.equal(refused2.code, 64, 'again with --format hex: 64');
  const refusedJ = await underPty(['--json', 'fetch', 'pty-a', ...pp(c)], c.home);
  t.match(refusedJ.out, /"code":"terminal_refused"/, '--json: code terminal_refused');
  const log = await readFile(join(c.home, 'fetch-log.jsonl'), 'utf8').catch(() => '');
  t.equal(log, '', 'nothing in the fetch log');

  const piped = await c.run(['fetch', 'pty-a']);
  t.equal(piped.code, 0, 'with --max-uses 1, a piped fetch still succeeds: the refused ones were not counted');
  t.equal((await c.run(['fetch', 'pty-a'])).code, 77, 'control: the limit of 1 is enforced (77)');

  const forced = await underPty(['fetch', 'pty-b', '--force', ...pp(c)], c.home);
  t.equal(forced.code, 0, 'with --force under a pty: exit 0');
  const pem = /-----BEGIN PRIVATE KEY-----\n[\s\S]+?-----END PRIVATE KEY-----\n/.exec(forced.out)?.[0];
  t.ok(pem, 'the key was printed to the terminal');
  if (pem) {
    const sig = sign('sha256', MSG, createPrivateKey(pem));
    t.ok(verify('sha256', MSG, createPublicKey(regB.stdout), sig), 'and it signs for the registered public key');
  }
});

