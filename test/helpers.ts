// Shared test harness: a real kmgrd (in-process, real HTTPS, real LevelDB in a
// temporary directory) and the real kmgr CLI run as a subprocess.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { startDaemon, type Daemon, type DaemonOptions } from '../src/server/daemon.js';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const KMGR = join(ROOT, 'bin', 'kmgr.js');
export const KMGRD = join(ROOT, 'bin', 'kmgrd.js');
export const PASSPHRASE = 'correct horse battery staple';

/** Tests that drive the openssl CLI skip themselves without it. */
export function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export async function tempDir(t: { teardown(fn: () => unknown): void }, prefix = 'kmgr-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Collects pino's JSON lines so tests can assert on what was logged. */
export class LogSink extends Writable {
  lines: string[] = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    cb();
  }
}

export interface TestServer {
  daemon: Daemon;
  dataDir: string;
  url: string;
  ca: string;
  logs: LogSink;
  clock: { now: number | undefined };
  stop(): Promise<void>;
}

/** Starts kmgrd in-process on 127.0.0.1:0. The clock follows real time unless clock.now is set. */
export async function startServer(
  t: { teardown(fn: () => unknown): void },
  opts: Partial<DaemonOptions> & { dataDir?: string } = {},
): Promise<TestServer> {
  // A data directory made here is removed only after the daemon has stopped (one teardown for
  // both): removing it first raced the daemon's last writes (ENOTEMPTY on a fast machine).
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'kmgrd-data-')));
  const databaseUrl = opts.databaseUrl ?? (process.env.KMGR_TEST_STORE === 'postgres' ? await databaseFor(t, dataDir) : undefined);
  const logs = new LogSink();
  const clock: { now: number | undefined } = { now: undefined };
  let daemon: Daemon;
  try {
    daemon = await startDaemon({
      host: '127.0.0.1',
      port: 0,
      tz: 'UTC',
      logLevel: 'info',
      // Rate limits off unless a test asks for them: tests fire bursts on purpose.
      ratePerAddress: 0,
      ratePerKey: 0,
      verifyPerAddress: 0,
      enrolPerAddressPerMinute: 0,
      clock: () => clock.now ?? Date.now(),
      logDest: logs,
      ...opts,
      ...(databaseUrl ? { databaseUrl } : {}),
      dataDir,
    });
  } catch (e) {
    if (ownDir) await rm(dataDir, { recursive: true, force: true });
    throw e;
  }
  // Every caller waits for the one stop, however many ask (a test's own stop and the teardown's).
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => (stopping ??= daemon.stop());
  t.teardown(async () => {
    await stop().catch(() => undefined); // a test that stopped it has seen any failure already
    if (ownDir) await rm(dataDir, { recursive: true, force: true });
  });
  return { daemon, dataDir, url: daemon.url, ca: daemon.certPath, logs, clock, stop };
}

/**
 * KMGR_TEST_STORE=postgres runs every in-process server on PostgreSQL: one database
 * per data directory (a restart on the same directory finds its data again).
 */
const databases = new Map<string, string>();
/** The database an in-process server on this data directory used, so `kmgrd` subprocesses on it can be pointed there. */
export const testDatabaseOf = (dataDir: string): string | undefined => databases.get(dataDir);
async function databaseFor(t: { teardown(fn: () => unknown): void }, dataDir: string): Promise<string> {
  let url = databases.get(dataDir);
  if (!url) {
    const { testDatabase } = await import('./pg-util.js');
    url = await testDatabase(t);
    databases.set(dataDir, url);
  }
  return url;
}

export interface RunResult {
  code: number;
  stdout: string;
  stdoutBytes: Buffer;
  stderr: string;
}

export interface KmgrRunOptions {
  home: string;
  env?: Record<string, string>;
  input?: string;
  timeoutMs?: number;
  /** In its own session, with no controlling terminal (so a missing passphrase source can never hang on a prompt). */
  detached?: boolean;
  /** Written to an extra pipe on file descriptor 3 (for --passphrase-fd 3). */
  fd3?: string;
  /** Inherit NODE_EXTRA_CA_CERTS (default true). */
  extraCa?: boolean;
}

/** Runs the real kmgr CLI. env is added to a clean environment (no KMGR_PASSPHRASE unless given). */
export function kmgr(args: string[], opts: KmgrRunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string> = {};
    const inherit = ['PATH', 'HOME', 'TMPDIR', 'LANG', ...(opts.extraCa === false ? [] : ['NODE_EXTRA_CA_CERTS'])];
    for (const k of inherit) if (process.env[k] !== undefined) env[k] = process.env[k]!;
    Object.assign(env, { KMGR_HOME: opts.home }, opts.env ?? {});
    const stdio: Array<'pipe'> = opts.fd3 !== undefined ? ['pipe', 'pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe'];
    const child = spawn(process.execPath, [KMGR, ...args], { env, stdio, detached: opts.detached ?? false });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      resolve({ code: code ?? -1, stdout: stdoutBytes.toString('utf8'), stdoutBytes, stderr: Buffer.concat(err).toString('utf8') });
    });
    if (opts.fd3 !== undefined) {
      const fd3 = child.stdio[3] as NodeJS.WritableStream;
      fd3.on('error', () => undefined);
      fd3.end(opts.fd3);
    }
    child.stdin.end(opts.input ?? '');
  });
}

/** A client home initialised against a server, with a passphrase file. KDF cost at the floor to keep tests quick. */
export async function initClient(
  t: { teardown(fn: () => unknown): void },
  server: TestServer,
): Promise<{ home: string; pp: string; run: (args: string[], env?: Record<string, string>) => Promise<RunResult> }> {
  const home = join(await tempDir(t, 'kmgr-home-'), 'home');
  const pp = join(dirname(home), 'passphrase');
  await writeFile(pp, PASSPHRASE + '\n', { mode: 0o600 });
  const r = await kmgr(['init', '--server', server.url, '--ca', server.ca, '--passphrase-file', pp, '--kdf-cost', '15'], { home });
  if (r.code !== 0) throw new Error(`kmgr init failed (${r.code}): ${r.stderr}`);
  const run = (args: string[], env?: Record<string, string>) =>
    kmgr([...args, ...(needsPassphrase(args[0]) ? ['--passphrase-file', pp] : [])], { home, ...(env ? { env } : {}) });
  return { home, pp, run };
}

const PASSPHRASE_COMMANDS = new Set(['register', 'fetch', 'status', 'history', 'audit', 'terms', 'lock', 'unlock', 'notices', 'rotate', 'notify', 'retire', 'pubkey']);
function needsPassphrase(cmd: string | undefined): boolean {
  return cmd !== undefined && PASSPHRASE_COMMANDS.has(cmd);
}

export interface ServeProcess {
  child: import('node:child_process').ChildProcess;
  url: string;
  port: number;
  /** The certificate the node serves (its own self-signed one unless --tls-cert was given). */
  ca: string;
  exited: Promise<number | null>;
  /** Everything the node logged on stdout and stderr so far. */
  output: string[];
  stop(): Promise<number | null>;
}

/** Starts `kmgrd serve --data DIR --listen 127.0.0.1:0 ARGS` as its own process; resolves once it listens. */
export async function spawnServe(t: { teardown(fn: () => unknown): void }, dataDir: string, args: string[] = [], ca?: string): Promise<ServeProcess> {
  const { createInterface } = await import('node:readline');
  const child = spawn(process.execPath, [KMGRD, 'serve', '--data', dataDir, '--listen', '127.0.0.1:0', '--rate-per-address', '0', '--rate-per-key', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.stderr.on('data', (c: Buffer) => output.push(c.toString('utf8')));
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error(`kmgrd did not start: ${output.join('')}`)), 30_000);
    lines.on('line', (l) => {
      output.push(l);
      const m = /"port":(\d+)/.exec(l);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    void exited.then((c) => reject(new Error(`kmgrd exited with ${c}: ${output.join('\n')}`)));
  });
  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    return exited;
  };
  t.teardown(stop);
  return { child, url: `https://127.0.0.1:${port}`, port, ca: ca ?? join(dataDir, 'tls', 'cert.pem'), exited, output, stop };
}
