// kmgr exec through the real CLI and a real kmgrd: the program sees the key
// (its hash equals the hash of what kmgr fetch prints) in a variable or in a
// private 0600 file that is gone afterwards; its exit status is kmgr's; a
// SIGTERM sent to kmgr reaches it; death by a signal is 128+n; each exec is one
// counted use; and the key is in no process's argv.
import t from 'tap';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { KMGR, kmgr, newHome, startServer, agent, startAgent, statusReader, untracked } from './support/index.js';

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

// The child: prints the hash of its variable, or of the file it names, then what it was asked to do.
const CHILD = `
const fs = require('node:fs'), crypto = require('node:crypto');
const [how, v, then] = process.argv.slice(1);
const val = how === 'file' ? fs.readFileSync(process.env[v]) : Buffer.from(process.env[v] ?? '');
const st = how === 'file' ? fs.statSync(process.env[v]) : undefined;
const dir = how === 'file' ? fs.statSync(require('node:path').dirname(process.env[v])) : undefined;
console.log(JSON.stringify({ hash: crypto.createHash('sha256').update(val).digest('hex'), path: how === 'file' ? process.env[v] : null,
  mode: st ? (st.mode & 0o777).toString(8) : null, dirMode: dir ? (dir.mode & 0o777).toString(8) : null,
  passphrase: process.env.KMGR_PASSPHRASE ?? null, argv: fs.readFileSync('/proc/' + process.ppid + '/cmdline', 'utf8') }));
if (then === 'exit3') process.exit(3);
if (then === 'term') { process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(7); }); console.log('ready'); setInterval(() => {}, 1000); }
if (then === 'die') { console.log('ready'); setInterval(() => {}, 1000); }
`;

t.test('kmgr exec', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('bank-a', { type: 'p256' }));
  t.ok(await c.register('bank-b', { type: 'aes256', maxUses: 3 }));
  const keyA = (await c.run(['fetch', 'bank-a'])).stdoutBytes;
  const keyB = (await c.run(['fetch', 'bank-b'])).stdoutBytes;
  const pp = ['--passphrase-file', c.pp];
  // Each case names its own passphrase source (or none, for the agent), so kmgr runs as given.
  const exec = (args: string[], env: Record<string, string> = {}) => kmgr(['exec', ...args], { home: c.home, env });
  const uses = await statusReader(c);

  await t.test('a key in a variable, and the exit status passed on', async (t) => {
    const before = await uses('bank-a');
    const r = await exec(['bank-a', '--env', 'TLS_KEY', ...pp, '--', process.execPath, '-e', CHILD, 'env', 'TLS_KEY', 'exit3'], { KMGR_PASSPHRASE: 'not for the child' });
    t.equal(r.code, 3, 'kmgr exits with the child status');
    const out = JSON.parse(r.stdout.split('\n')[0]!);
    t.equal(out.hash, sha(keyA), 'the child saw exactly the key kmgr fetch prints');
    t.equal(out.passphrase, null, 'the keystore passphrase is not passed to the child');
    t.notOk(out.argv.includes('PRIVATE KEY'), "the key is not in kmgr's argv");
    t.equal(await uses('bank-a'), before + 1, 'one counted use');
  });

  await t.test('keys in files, several at once, removed afterwards', async (t) => {
    const r = await exec(['bank-a', 'bank-b', '--file', 'bank-a=A', '--file', 'bank-b=B', ...pp, '--', process.execPath, '-e',
      `${CHILD.replace('process.argv.slice(1)', "['file','A']")}; const b = require('node:fs').readFileSync(process.env.B); console.log(require('node:crypto').createHash('sha256').update(b).digest('hex'))`]);
    t.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    const out = JSON.parse(lines[0]!);
    t.equal(out.hash, sha(keyA), 'the file holds key A');
    t.equal(lines[1], sha(keyB), 'the other file holds key B');
    t.equal(out.mode, '600', 'the file is 0600');
    t.equal(out.dirMode, '700', 'its directory is 0700');
    t.ok(out.path.startsWith('/dev/shm/') || out.path.startsWith(process.env.XDG_RUNTIME_DIR ?? '/nonexistent'), `on a memory-backed file system: ${out.path}`);
    t.notOk(existsSync(out.path), 'the file is gone');
    t.notOk(existsSync(dirname(out.path)), 'and its directory too');
  });

  await t.test('SIGTERM to kmgr reaches the child; the file is still removed', async (t) => {
    const child = spawn(...untracked(process.execPath, [KMGR, 'exec', 'bank-a', '--file', 'K', ...pp, '--', process.execPath, '-e', CHILD, 'file', 'K', 'term']), {
      env: { PATH: process.env.PATH!, KMGR_HOME: c.home }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    // A line that is exactly "ready": the child's first line quotes kmgr's argv, which holds the child's source text.
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.split('\n').includes('ready')) resolve();
    }));
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    t.equal(code, 7, `kmgr exits with the status the child chose on SIGTERM ${err}`);
    t.ok(out.split('\n').includes('got SIGTERM'), 'the child received the forwarded SIGTERM');
    const path = JSON.parse(out.split('\n')[0]!).path as string;
    t.notOk(existsSync(path), 'the key file is gone');
  });

  await t.test('death by a signal is 128+n', async (t) => {
    const child = spawn(...untracked(process.execPath, [KMGR, 'exec', 'bank-a', '--file', 'K', ...pp, '--', process.execPath, '-e', CHILD, 'file', 'K', 'die']), {
      env: { PATH: process.env.PATH!, KMGR_HOME: c.home }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    let out = '';
    // A line that is exactly "ready": the child's first line quotes kmgr's argv, which holds the child's source text.
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.split('\n').includes('ready')) resolve();
    }));
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    t.equal(code, 143, 'SIGTERM (15) gives 143');
    t.notOk(existsSync(JSON.parse(out.split('\n')[0]!).path), 'the key file is gone');
  });

  await t.test('mistakes cost no use', async (t) => {
    const before = await uses('bank-b');
    const cases: Array<[string[], number, RegExp]> = [
      [['bank-b', ...pp], 64, /give the command/],
      [['bank-a', 'bank-b', '--env', 'X', ...pp, '--', 'true'], 64, /say which one/],
      [['bank-b', '--env', 'bad-name', ...pp, '--', 'true'], 64, /not a valid environment variable/],
      [['bank-b', 'nobody', ...pp, '--', 'true'], 66, /nobody/],
      [['bank-b', '--format', 'raw', ...pp, '--', 'true'], 64, /--format raw cannot go in an environment variable/],
    ];
    for (const [args, code, msg] of cases) {
      const r = await exec(args);
      t.equal(r.code, code, `${args.join(' ')}: exit ${code}`);
      t.match(r.stderr, msg);
    }
    t.equal(await uses('bank-b'), before, 'nothing was counted');
    const nf = await exec(['bank-b', ...pp, '--', '/nonexistent/program']);
    t.equal(nf.code, 127, 'a command that does not exist: 127');
    t.equal((await exec(['bank-b', ...pp, '--', 'no-such-program-kmgr'])).code, 127, 'also when looked up in PATH');
    t.equal(await uses('bank-b'), before, 'and it cost no use');
  });

  await t.test('through a running agent: no passphrase needed', async (t) => {
    await startAgent(t, c.home, c.pp);
    const before = await uses('bank-a');
    const r = await exec(['bank-a', '--env', 'K', '--', process.execPath, '-e', CHILD, 'env', 'K']);
    t.equal(r.code, 0, r.stderr);
    t.equal(JSON.parse(r.stdout.split('\n')[0]!).hash, sha(keyA), 'the same key, fetched by the agent');
    t.equal(await uses('bank-a'), before + 1, 'one counted use');
    t.equal((await agent(['stop'], { home: c.home })).code, 0);
  });

  await t.test('a refused fetch runs nothing', async (t) => {
    // bank-b allows 3 uses: the fetch at the start and the file test took two; this is the third, the next is refused.
    t.equal((await exec(['bank-b', ...pp, '--', 'true'])).code, 0);
    const r = await exec(['bank-b', ...pp, '--', process.execPath, '-e', 'console.log("ran")']);
    t.equal(r.code, 77, 'refused by its terms');
    t.notMatch(r.stdout, /ran/, 'the command did not run');
  });
});
