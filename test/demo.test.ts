// The README's first command, `npm ci && npm run demo`: the script package.json
// names must exist after the build and, run as `npm run demo` runs it, start a
// real kmgrd and walk through init, register and fetch (here with its state in
// a temporary directory, a free port, and KMGR_DEMO_EXIT so it stops by itself).
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, freePort, tempDir, untracked } from './support/index.js';

function runDemo(script: string, env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(...untracked(process.execPath, [script]), { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
    child.stderr.on('data', (b: Buffer) => (out += b.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

t.test('npm run demo: the script exists and walks through init, register and fetch against a real kmgrd', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const m = /&&\s*node\s+(\S+)/.exec(pkg.scripts.demo ?? '');
  t.ok(m, `the demo script runs a file with node after building (${pkg.scripts.demo})`);
  if (!m) return;
  const script = join(ROOT, m[1]!);
  t.ok(existsSync(script), `${m[1]} exists after the build`);
  const dir = await tempDir(t, 'kmgr-demo-');
  const env = { KMGR_DEMO_DIR: dir, KMGR_DEMO_LISTEN: `127.0.0.1:${await freePort()}`, KMGR_DEMO_EXIT: '1' };
  const first = await runDemo(script, env);
  t.equal(first.code, 0, `the demo exits 0 with KMGR_DEMO_EXIT\n${first.code ? first.out : ''}`);
  t.match(first.out, /\$ kmgr init/, 'it initialises a client');
  t.match(first.out, /\$ kmgr register bank-a/, 'registers a key');
  t.match(first.out, /A signature made with the fetched key verifies against the registered public key/, 'and the fetched key is the registered one');
  t.ok(existsSync(join(dir, 'kmgr-data')) && existsSync(join(dir, 'demo-home', 'keystore.json')), 'its state lives in KMGR_DEMO_DIR');
  t.ok(readFileSync(join(dir, 'demo-passphrase'), 'utf8').trim().length >= 20, 'and a generated passphrase');

  // The same address again: the client's config names it.
  const again = await runDemo(script, env);
  t.equal(again.code, 0, `a second run reuses the state\n${again.code ? again.out : ''}`);
  t.match(again.out, /bank-a is already registered/);
  t.match(again.out, /verifies against the registered public key/);
});
