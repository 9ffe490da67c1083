// Output that cannot fail silently: a stdout that is full, closed or a broken
// pipe exits 74 with a message (before a use is counted where that can be
// known); --out files are atomic, 0600 and never replace a file kmgr did not
// write; public keys can be printed again, in PEM, ssh and JWK, at no cost;
// private keys in OpenSSH's own format, which ssh-keygen reads.
import t from 'tap';
import { spawn, execFileSync } from 'node:child_process';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createPublicKey } from 'node:crypto';
import { startServer, newHome, KMGR, tempDir, kmgr, pp, type Home, untracked } from './support/index.js';

t.jobs = 2;

/** Runs kmgr through sh, so the test can use the shell's own redirections (`>&-`, `> /dev/full`, `| true`). */
function sh(c: Home, args: string[], redirect: string): Promise<{ code: number; stderr: string }> {
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  // In a pipeline, the exit status reported is kmgr's (the left side), taken from a file.
  const status = join(c.home, '..', 'status');
  const cmd = `${[process.execPath, KMGR, ...args].map(q).join(' ')} ${redirect}`;
  const script = redirect.startsWith('|') ? `{ ${cmd.replace(redirect, '')}; echo $? > ${q(status)}; } ${redirect}` : `${cmd}; echo $? > ${q(status)}`;
  return new Promise((resolve, reject) => {
    const env: Record<string, string> = { KMGR_HOME: c.home };
    for (const k of ['PATH', 'HOME', 'TMPDIR']) if (process.env[k] !== undefined) env[k] = process.env[k]!;
    const child = spawn(...untracked('sh', ['-c', script]), { env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', () => {
      readFile(status, 'utf8').then((s) => resolve({ code: Number(s.trim()), stderr }), reject);
    });
  });
}

async function uses(c: Home, name: string): Promise<number> {
  const r = await c.run(['status', name, '--json']);
  return (JSON.parse(r.stdout) as { uses: { total: number } }).uses.total;
}

t.test('a stdout that cannot take the output exits 74 with one line naming what was lost', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.equal((await c.run(['register', 'bank-a'])).code, 0);

  const closed = await sh(c, ['fetch', 'bank-a', ...pp(c)], '>&-');
  t.equal(closed.code, 74, 'fetch >&- exits 74');
  t.match(closed.stderr, /stdout is closed/, 'and says stdout is closed');
  t.equal(await uses(c, 'bank-a'), 0, 'a closed stdout is refused before the use is counted');

  const full = await sh(c, ['fetch', 'bank-a', ...pp(c)], '> /dev/full');
  t.equal(full.code, 74, 'fetch > /dev/full exits 74');
  t.match(full.stderr, /ENOSPC/, 'naming ENOSPC');
  t.match(full.stderr, /use is counted/, 'and saying the use was spent');

  const pipe = await sh(c, ['fetch', 'bank-a', '--format', 'jwk', ...pp(c)], '| true');
  t.equal(pipe.code, 74, 'fetch into a pipe whose reader is gone exits 74');

  for (const args of [['list'], ['whoami'], ['pubkey', 'bank-a'], ['--json', 'list'], ['status', 'bank-a', ...pp(c)]]) {
    const r = await sh(c, args, '> /dev/full');
    t.equal(r.code, 74, `${args.join(' ')} > /dev/full exits 74`);
    t.equal(r.stderr.trim().split('\n').length, 1, 'with one line on stderr');
  }
  t.equal((await sh(c, ['list'], '>&-')).code, 74, 'list >&- exits 74');
  t.equal((await sh(c, ['list'], '> /dev/null')).code, 0, 'list > /dev/null is fine: the user asked for it');
});

t.test('fetch --out: atomic, 0600, refreshes its own file, never replaces another file unless --force', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.equal((await c.run(['register', 'bank-a'])).code, 0);
  const dir = await tempDir(t, 'kmgr-out-');
  const file = join(dir, 'bank-a.pem');

  const first = await c.run(['fetch', 'bank-a', '--out', file]);
  t.equal(first.code, 0, 'fetch --out');
  t.equal(first.stdout, '', 'nothing on stdout');
  t.equal((await stat(file)).mode & 0o777, 0o600, 'mode 0600');
  t.match(await readFile(file, 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
  t.equal((await c.run(['fetch', 'bank-a', '--out', file])).code, 0, 'kmgr replaces a file it wrote itself');

  const other = join(dir, 'notes.txt');
  await writeFile(other, 'my notes\n');
  const before = await uses(c, 'bank-a');
  const refused = await c.run(['fetch', 'bank-a', '--out', other]);
  t.equal(refused.code, 73, 'a file kmgr did not write: exit 73');
  t.match(refused.stderr, /kmgr did not write it.*--force/);
  t.equal(await readFile(other, 'utf8'), 'my notes\n', 'the file is untouched');
  t.equal(await uses(c, 'bank-a'), before, 'and nothing was counted');
  t.equal((await c.run(['fetch', 'bank-a', '--out', join(dir, 'no', 'such', 'dir')])).code, 74, 'a missing directory: 74, before counting');
  t.equal(await uses(c, 'bank-a'), before, 'still nothing counted');

  const forced = await c.run(['fetch', 'bank-a', '--out', other, '--force']);
  t.equal(forced.code, 0, '--force replaces it');
  t.match(await readFile(other, 'utf8'), /PRIVATE KEY/);

  const j = await c.run(['fetch', 'bank-a', '--out', file, '--json']);
  t.same(JSON.parse(j.stdout), { partner: 'bank-a', format: 'pem', file }, '--json with --out names the file, not the key');
});

t.test('register --out writes the public key the same way', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  const dir = await tempDir(t, 'kmgr-out-');
  const taken = join(dir, 'taken.pub');
  await writeFile(taken, 'x');
  const refused = await c.run(['register', 'bank-b', '--out', taken]);
  t.equal(refused.code, 73, 'refused before anything is registered');
  t.equal((await c.run(['pubkey', 'bank-b'])).code, 66, 'bank-b is not registered');
  const pub = join(dir, 'bank-b.pub');
  const r = await c.run(['register', 'bank-b', '--out', pub]);
  t.equal(r.code, 0);
  t.equal(r.stdout, '', 'the key went to the file');
  t.equal((await stat(pub)).mode & 0o777, 0o600);
  t.equal(await readFile(pub, 'utf8'), (await c.run(['pubkey', 'bank-b'])).stdout.trimEnd() + '\n', 'the file holds the public key');
});

t.test('pubkey and status show the public key at no cost; --format openssh is read by ssh-keygen', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  for (const [name, type] of [['ed', 'ed25519'], ['ec', 'p256']]) {
    const reg = await c.run(['register', name!, '--type', type!, '--max-uses', '1']);
    t.equal(reg.code, 0);
    const pem = (await c.run(['pubkey', name!])).stdout;
    t.equal(pem, reg.stdout, `${type}: pubkey prints what register printed`);
    const ssh = (await c.run(['pubkey', name!, '--format', 'ssh'])).stdout;
    const jwk = JSON.parse((await c.run(['pubkey', name!, '--format', 'jwk'])).stdout) as object;
    t.same(createPublicKey({ key: jwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }), pem, `${type}: the JWK is the same key`);
    const st = await c.run(['status', name!]);
    t.match(st.stdout, pem.trimEnd(), `${type}: status shows the public key`);
    t.equal((JSON.parse((await c.run(['status', name!, '--json'])).stdout) as { uses: { total: number } }).uses.total, 0, 'pubkey and status counted nothing');

    const f = await c.run(['fetch', name!, '--format', 'openssh']);
    t.equal(f.code, 0, `${type}: fetch --format openssh`);
    t.match(f.stdout, /^-----BEGIN OPENSSH PRIVATE KEY-----\n/);
    const keyFile = join(c.home, '..', `${name}.key`);
    await writeFile(keyFile, f.stdoutBytes, { mode: 0o600 });
    await chmod(keyFile, 0o600);
    const derived = execFileSync('ssh-keygen', ['-y', '-f', keyFile], { encoding: 'utf8' });
    t.equal(derived.split(' ').slice(0, 2).join(' '), ssh.split(' ').slice(0, 2).join(' '), `${type}: ssh-keygen -y derives the key pubkey --format ssh prints`);
  }
  t.equal((await c.run(['register', 'xk', '--type', 'x25519'])).code, 0);
  const bad = await c.run(['fetch', 'xk', '--format', 'openssh']);
  t.equal(bad.code, 64, 'x25519 has no OpenSSH form: 64');
  t.equal((await c.run(['status', 'xk', '--json'])).stdout.includes('"total": 0'), true, 'refused before counting');
});

t.test('fetch --json puts the key and its format in an object', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.equal((await c.run(['register', 'sym', '--type', 'aes256'])).code, 0);
  const r = await kmgr(['--json', 'fetch', 'sym', ...pp(c)], { home: c.home });
  t.equal(r.code, 0);
  const o = JSON.parse(r.stdout) as { partner: string; format: string; key: string };
  t.equal(o.partner, 'sym');
  t.equal(o.format, 'base64', 'aes256 defaults to base64');
  t.equal(Buffer.from(o.key, 'base64').length, 32);
});
