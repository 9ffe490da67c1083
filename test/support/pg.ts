// PostgreSQL for tests. The server comes from KMGR_TEST_DATABASE_URL (default:
// the machine's own, trust authentication); each test gets a database of its
// own with a random name, dropped afterwards. Without a server the PostgreSQL
// tests skip and say why; under CI (CI=true) a missing server is a failure, so
// CI can never pass without having run them.
//
// Tests that stop, crash or fail over the database get a throwaway cluster
// instead: Debian's server binaries, initdb in a temporary directory, its own
// port and socket directory, never the machine's shared server. initdb refuses
// to run as root, so as root the cluster runs as the postgres user.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createDatabase, dropDatabase, unreachable } from '../../src/store/pg/databases.js';
import type { Teardown } from './files.js';
import { freePort } from './net.js';

export const PG_ADMIN_URL = process.env.KMGR_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

let probe: Promise<string | undefined> | undefined;

/** Why PostgreSQL tests cannot run here, or undefined when they can. Throws under CI. */
export async function pgUnavailable(): Promise<string | undefined> {
  probe ??= unreachable(PG_ADMIN_URL);
  const why = await probe;
  if (why === undefined) return undefined;
  const reason = `no PostgreSQL server at ${PG_ADMIN_URL} (${why}); set KMGR_TEST_DATABASE_URL to run the PostgreSQL tests`;
  if (process.env.CI === 'true') throw new Error(`CI requires PostgreSQL: ${reason}`);
  return reason;
}

/** A fresh database for this test, dropped at teardown. */
export async function testDatabase(t: Teardown, prefix = 'kmgr_test'): Promise<string> {
  const url = await createDatabase(PG_ADMIN_URL, prefix);
  t.teardown(() => dropDatabase(url, PG_ADMIN_URL));
  return url;
}

/**
 * KMGR_TEST_STORE=postgres runs every in-process server on PostgreSQL: one database
 * per data directory (a restart on the same directory finds its data again).
 */
const databases = new Map<string, string>();
/** The database an in-process server on this data directory used, so `kmgrd` subprocesses on it can be pointed there. */
export const testDatabaseOf = (dataDir: string): string | undefined => databases.get(dataDir);
export async function databaseFor(t: Teardown, dataDir: string): Promise<string> {
  let url = databases.get(dataDir);
  if (!url) {
    url = await testDatabase(t);
    databases.set(dataDir, url);
  }
  return url;
}

const run = promisify(execFile);
export const PG_BIN = process.env.KMGR_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** Why throwaway clusters cannot be made here, or undefined. */
export function clusterUnavailable(): string | undefined {
  if (!existsSync(join(PG_BIN, 'initdb')) || !existsSync(join(PG_BIN, 'pg_ctl'))) return `no PostgreSQL server binaries in ${PG_BIN} (set KMGR_PG_BIN)`;
  if (process.getuid?.() === 0 && !existsSync('/usr/sbin/runuser')) return 'running as root without runuser to start PostgreSQL as postgres';
  return undefined;
}

async function asOwner(cmd: string, args: string[]): Promise<string> {
  const full = process.getuid?.() === 0 ? ['/usr/sbin/runuser', ['-u', 'postgres', '--', cmd, ...args]] as const : [cmd, args] as const;
  const r = await run(full[0], [...full[1]], { timeout: 60_000 });
  return r.stdout;
}

export interface Cluster {
  dir: string;
  port: number;
  /** postgres://postgres@127.0.0.1:PORT/postgres */
  url: string;
  start(): Promise<void>;
  /** fast: a clean shutdown; immediate: a crash (recovery replays the WAL at the next start). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Runs SQL as the superuser through psql. */
  psql(sql: string): Promise<string>;
  /** Makes a standby the primary. */
  promote(): Promise<void>;
}

/** A new cluster, or with standbyOf a streaming standby of one (named `name` for synchronous_standby_names). */
export async function makeCluster(t: Teardown, opts: { conf?: string[]; standbyOf?: Cluster; name?: string } = {}): Promise<Cluster> {
  const base = await mkdtemp(join(tmpdir(), 'kmgr-pg-'));
  const dir = join(base, 'data');
  if (process.getuid?.() === 0) await run('chown', ['postgres:postgres', base]);
  const port = await freePort();
  if (opts.standbyOf) {
    await asOwner(join(PG_BIN, 'pg_basebackup'), ['-h', '127.0.0.1', '-p', String(opts.standbyOf.port), '-U', 'postgres', '-D', dir, '-R', '-X', 'stream', '-c', 'fast']);
  } else {
    await asOwner(join(PG_BIN, 'initdb'), ['-D', dir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  }
  const conf = [`port = ${port}`, `listen_addresses = '127.0.0.1'`, `unix_socket_directories = '${base}'`, 'fsync = on', 'max_connections = 100', ...(opts.conf ?? [])];
  if (opts.standbyOf) conf.push(`primary_conninfo = 'host=127.0.0.1 port=${opts.standbyOf.port} user=postgres application_name=${opts.name ?? 'standby'}'`);
  if (opts.standbyOf) await appendFile(join(dir, 'postgresql.auto.conf'), conf.join('\n') + '\n');
  else await appendFile(join(dir, 'postgresql.conf'), conf.join('\n') + '\n');
  if (!opts.standbyOf) await writeFile(join(dir, 'pg_hba.conf'), 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n');
  if (process.getuid?.() === 0) await run('chown', ['-R', 'postgres:postgres', base]);
  const log = join(base, 'log');
  let running = false;
  const c: Cluster = {
    dir,
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async start() {
      await asOwner(join(PG_BIN, 'pg_ctl'), ['-D', dir, '-l', log, '-w', '-t', '60', 'start']);
      running = true;
    },
    async stop(mode = 'fast') {
      await asOwner(join(PG_BIN, 'pg_ctl'), ['-D', dir, '-m', mode, '-w', '-t', '60', 'stop']);
      running = false;
    },
    async promote() {
      await asOwner(join(PG_BIN, 'pg_ctl'), ['-D', dir, '-w', '-t', '60', 'promote']);
    },
    psql: (sql) => asOwner('/usr/bin/psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-At', '-c', sql]),
  };
  await c.start();
  t.teardown(async () => {
    if (running) await c.stop('immediate').catch(() => undefined);
    await rm(base, { recursive: true, force: true });
  });
  return c;
}
