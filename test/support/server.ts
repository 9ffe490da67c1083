// kmgrd for tests: in this process (real HTTPS, real LevelDB in a temporary
// directory, or PostgreSQL under KMGR_TEST_STORE=postgres) with a clock the test
// may set and the log lines kept, or as its own `kmgrd serve` process.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { startDaemon, type Daemon, type DaemonOptions } from '../../src/server/daemon.js';
import { kmgrdEnv, untracked } from './cli.js';
import type { Teardown } from './files.js';
import { KMGRD } from './paths.js';
import { databaseFor, testDatabaseOf } from './pg.js';
import { openStorage } from '../../src/store/open.js';
import type { Storage } from '../../src/store/types.js';

/** Collects pino's JSON lines so tests can assert on what was logged. */
export class LogSink extends Writable {
  lines: string[] = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    cb();
  }
}

/** Where a client finds a key server: kmgrd itself, or a test double in front of it. */
export interface ServerAddress {
  url: string;
  /** The PEM certificate to trust for it. */
  ca: string;
}

export interface TestServer extends ServerAddress {
  daemon: Daemon;
  dataDir: string;
  logs: LogSink;
  clock: { now: number | undefined };
  stop(): Promise<void>;
}

/** Starts kmgrd in-process on 127.0.0.1:0. The clock follows real time unless clock.now is set. */
/** A test about LevelDB itself (its files, caches, disk) passes databaseUrl: LEVELDB: it stays on LevelDB under KMGR_TEST_STORE=postgres. */
export const LEVELDB = '';

export async function startServer(t: Teardown, opts: Partial<DaemonOptions> & { dataDir?: string } = {}): Promise<TestServer> {
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

export interface ServeProcess {
  child: ChildProcess;
  url: string;
  port: number;
  /** The certificate the node serves (its own self-signed one unless --tls-cert was given). */
  ca: string;
  exited: Promise<number | null>;
  /** Everything the node logged on stdout and stderr so far. */
  output: string[];
  stop(): Promise<number | null>;
}

/**
 * Starts `kmgrd serve --data DIR --listen 127.0.0.1:0 ARGS` as its own process, in the
 * environment cli.ts gives kmgrd; resolves once it listens, stops it at teardown.
 */
export async function spawnServe(t: Teardown, dataDir: string, args: string[] = [], ca?: string): Promise<ServeProcess> {
  const full = ['serve', '--data', dataDir, '--listen', '127.0.0.1:0', '--rate-per-address', '0', '--rate-per-key', '0', ...args];
  const child = spawn(...untracked(process.execPath, [KMGRD, ...full]), { env: kmgrdEnv(full), stdio: ['ignore', 'pipe', 'pipe'] });
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

/**
 * The stopped server's store, opened as kmgrd would (LevelDB in its data directory, or its
 * test database under KMGR_TEST_STORE=postgres), for a test that checks what was stored.
 */
export async function openServerStore(t: Teardown, server: { dataDir: string }): Promise<Storage> {
  const storage = await openStorage({ dataDir: server.dataDir, databaseUrl: testDatabaseOf(server.dataDir), tz: 'UTC', clock: Date.now, createIfMissing: false });
  t.teardown(() => storage.close());
  return storage;
}
