// Creating and dropping whole databases on a PostgreSQL server: for tests and
// the benchmark, which each work in a database of their own with a random name.
import pg from 'pg';
import { randomBytes } from 'node:crypto';

/** The URL with its database replaced. */
export function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = '/' + encodeURIComponent(db);
  return u.toString();
}

/** Resolves to why the server cannot be used, or undefined when it answers. */
export async function unreachable(url: string): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
    await c.query('SELECT 1');
    return undefined;
  } catch (e) {
    return (e as Error).message || String(e);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Creates an empty database named PREFIX_<random> on the server of `url`; returns its URL. */
export async function createDatabase(url: string, prefix = 'kmgr_test'): Promise<string> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  return withDatabase(url, name);
}

/** Drops a database made by createDatabase, disconnecting whoever still uses it. */
export async function dropDatabase(dbUrl: string, adminUrl: string): Promise<void> {
  const name = decodeURIComponent(new URL(dbUrl).pathname.slice(1));
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`refusing to drop database ${JSON.stringify(name)}`);
  const c = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await c.end();
  }
}

/** Process IDs of the server's backends connected to database `db` (for the benchmark's CPU accounting). */
export async function backendPids(adminUrl: string, db: string): Promise<number[]> {
  const c = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    const r = await c.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db]);
    return r.rows.map((x) => x.pid);
  } finally {
    await c.end();
  }
}

export const databaseName = (url: string): string => decodeURIComponent(new URL(url).pathname.slice(1));

/** One statement on its own connection (tests and tools that inspect a database). */
export async function runSql<R extends pg.QueryResultRow = Record<string, unknown>>(url: string, text: string, values: unknown[] = []): Promise<R[]> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    return (await c.query<R>(text, values)).rows;
  } finally {
    await c.end();
  }
}
