// `npm run demo`: a working kmgrd on the embedded LevelDB and a client beside it,
// walking through init, register and fetch, then leaving the server running.
// State lives in ./kmgr-data (server) and ./demo-home (client); run it again to reuse them.
// KMGR_DEMO_DIR puts that state elsewhere (the test of this script does), KMGR_DEMO_LISTEN
// changes the address, KMGR_DEMO_EXIT stops the server at the end instead of leaving it up.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import { randomBytes, createPublicKey, createPrivateKey, sign, verify } from 'node:crypto';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const stateDir = process.env.KMGR_DEMO_DIR ? resolve(process.env.KMGR_DEMO_DIR) : root;
const data = join(stateDir, 'kmgr-data');
const home = join(stateDir, 'demo-home');
const pp = join(stateDir, 'demo-passphrase');
const listen = process.env.KMGR_DEMO_LISTEN ?? '127.0.0.1:8443';
const kmgr = join(root, 'bin', 'kmgr.js');
const env: NodeJS.ProcessEnv = { ...process.env, KMGR_HOME: home };
delete env.KMGR_PASSPHRASE;

function step(title: string, args: string[]): { stdout: string; code: number } {
  process.stdout.write(`\n$ kmgr ${args.map((a) => (/\s/.test(a) ? `"${a}"` : a)).join(" ")}\n`);
  const r = spawnSync(process.execPath, [kmgr, ...args, ...(['register', 'fetch'].includes(args[0]!) ? ['--passphrase-file', pp] : [])], {
    env,
    encoding: 'utf8',
  });
  process.stdout.write(title === 'fetch' ? `(private key, ${r.stdout.length} bytes, captured by the demo instead of printed)\n` : r.stdout);
  process.stderr.write(r.stderr);
  if (r.status !== 0) throw new Error(`kmgr ${args[0]} failed with exit code ${r.status}`);
  return { stdout: r.stdout, code: r.status };
}

async function startServer(): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(root, 'bin', 'kmgrd.js'), 'serve', '--data', data, '--listen', listen], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  await new Promise<void>((ok, fail) => {
    child.once('exit', (code) => fail(new Error(`kmgrd exited with code ${code} (is ${listen} already in use? set KMGR_DEMO_LISTEN)`)));
    lines.on('line', (line) => {
      process.stdout.write(`[kmgrd] ${line}\n`);
      if (line.includes('"kmgrd listening"')) ok();
    });
  });
  return child;
}

async function main(): Promise<void> {
  const server = await startServer();
  const stop = (): void => {
    server.kill('SIGTERM');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    if (!existsSync(pp)) writeFileSync(pp, randomBytes(18).toString('base64') + '\n', { mode: 0o600 });
    mkdirSync(home, { recursive: true, mode: 0o700 });
    if (!existsSync(join(home, 'keystore.json'))) {
      step('init', ['init', '--server', `https://${listen}`, '--ca', join(data, 'tls', 'cert.pem'), '--passphrase-file', pp]);
    }
    const listed = spawnSync(process.execPath, [kmgr, 'list', '--json'], { env, encoding: 'utf8' });
    const registered = (JSON.parse(listed.stdout) as { partners: { name: string; key: unknown }[] }).partners.some((p) => p.name === 'bank-a' && p.key);
    let publicPem: string;
    if (!registered) {
      const until = new Date(Date.now() + 365 * 86_400_000).toISOString().slice(0, 10);
      publicPem = step('register', ['register', 'bank-a', '--type', 'ed25519', '--expires', until, '--max-uses', '1000', '--max-per-day', '50', '--name', 'Bank A']).stdout;
    } else {
      const idx = JSON.parse(readFileSync(join(home, 'partners.json'), 'utf8')) as { partners: { name: string; key: { publicKey: string } }[] };
      publicPem = idx.partners.find((p) => p.name === 'bank-a')!.key.publicKey;
      process.stdout.write('\nbank-a is already registered (from an earlier demo run).\n');
    }
    const fetched = step('fetch', ['fetch', 'bank-a']);
    const msg = Buffer.from('demo transaction');
    const ok = verify(null, msg, createPublicKey(publicPem), sign(null, msg, createPrivateKey(fetched.stdout)));
    process.stdout.write(`\nA signature made with the fetched key ${ok ? 'verifies' : 'DOES NOT verify'} against the registered public key.\n`);
    if (!ok) throw new Error('the fetched key does not match the registered public key');
    step('whoami', ['whoami']);
    process.stdout.write(
      `\nkmgrd is running at https://${listen} (data in ${data}). Try, in another terminal:\n` +
        `  KMGR_HOME=${home} ${kmgr} fetch bank-a --passphrase-file ${pp} | openssl pkey -noout -text | head -3\n` +
        `  KMGR_HOME=${home} ${kmgr} list\n` +
        `Press Ctrl-C to stop the server.\n`,
    );
    if (process.env.KMGR_DEMO_EXIT) stop();
  } catch (e) {
    process.stderr.write(`demo: ${(e as Error).message}\n`);
    stop();
    process.exitCode = 1;
  }
  await new Promise<void>((done) => server.once('exit', () => done()));
}

void main();
