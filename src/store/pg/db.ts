// The connection pool and the one transaction helper every PostgreSQL write
// goes through: BEGIN ... COMMIT with synchronous_commit on (a use is on the
// server's disk, and on a synchronous standby's if one is configured, before
// anyone is answered: threat 10), bounded retries of serialisation failures
// and deadlocks, and every database failure turned into one typed error
// (503), so a database restart is an outage, never a wrong answer.
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { KmgrError, UnavailableError } from '../../protocol/errors.js';
import { pgTypes } from './rows.js';

export interface PgOptions {
  /** postgres://USER[:PASSWORD]@HOST[:PORT]/DB, libpq style parameters allowed. */
  url: string;
  /** Connections this process keeps at most. Default 10. */
  poolSize?: number;
  /** Longest one statement may run before the server cancels it (ms). Default 5000. */
  statementTimeoutMs?: number;
  /** Longest a request waits for a connection before it is answered 503 (ms). Default 5000. */
  connectTimeoutMs?: number;
}

/** SQLSTATEs worth running the whole transaction again for. */
const RETRYABLE = new Set(['40001', '40P01']);
export const MAX_TX_ATTEMPTS = 5;

export function sqlState(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * Whether the database answered that it refused the transaction (so it was rolled back): not a
 * lost connection or a shutdown, after which a COMMIT may or may not have happened.
 */
export function refusedByDatabase(e: unknown): boolean {
  const state = sqlState(e instanceof KmgrError ? e.cause : e);
  return state !== undefined && !state.startsWith('08') && !state.startsWith('57P');
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'the database URL';
  }
}

/** A database failure as the caller sees it: the storage is unavailable (503). KmgrErrors pass through. */
export function storageError(e: unknown): KmgrError {
  if (e instanceof KmgrError) return e;
  const state = sqlState(e);
  const msg = (e as Error)?.message ?? String(e);
  if (state === '57014') return new UnavailableError('the database cancelled a statement that ran past the statement timeout').because(e);
  return new UnavailableError(`the database is unavailable: ${msg}${state ? ` (SQLSTATE ${state})` : ''}`).because(e);
}

export function makePool(o: PgOptions, onError: (e: Error) => void): pg.Pool {
  const pool = new pg.Pool({
    connectionString: o.url,
    max: o.poolSize ?? 10,
    connectionTimeoutMillis: o.connectTimeoutMs ?? 5000,
    idleTimeoutMillis: 30_000,
    statement_timeout: o.statementTimeoutMs ?? 5000,
    // Never fewer guarantees than the server's default: a reply means the commit is durable.
    options: '-c synchronous_commit=on',
    application_name: 'kmgrd',
    types: pgTypes(pg.types),
  });
  // An idle connection dropped by a database restart: pg removes it from the pool; without
  // this listener the 'error' event would end the process instead.
  pool.on('error', onError);
  return pool;
}

export type Tx = pg.PoolClient;

/**
 * Runs fn in one transaction; retries it on 40001/40P01 up to MAX_TX_ATTEMPTS times.
 * With `inline`, fn sends BEGIN and COMMIT itself, as part of its first and last
 * statements (one round trip each fewer on the hot path); the helper still rolls
 * back, retries and releases. `attempts` 1: fn can run only once (it reads a stream).
 */
export async function transaction<T>(pool: pg.Pool, fn: (c: Tx) => Promise<T>, opts: { inline?: boolean; attempts?: number } = {}): Promise<T> {
  const attempts = opts.attempts ?? MAX_TX_ATTEMPTS;
  for (let attempt = 1; ; attempt++) {
    let c: pg.PoolClient;
    try {
      c = await pool.connect();
    } catch (e) {
      throw storageError(e);
    }
    let broken: Error | undefined;
    // The connection may die between two statements of ours (a database restart); pg then
    // emits 'error' on the client, which without a listener would end the process.
    const onError = (e: Error): void => void (broken = e);
    c.on('error', onError);
    try {
      if (!opts.inline) await c.query('BEGIN');
      const out = await fn(c);
      if (!opts.inline) await c.query('COMMIT');
      return out;
    } catch (e) {
      try {
        await c.query('ROLLBACK');
      } catch (re) {
        broken = re as Error; // the connection is gone: do not hand it to anyone else
      }
      if (RETRYABLE.has(sqlState(e) ?? '') && attempt < attempts) {
        await sleep(Math.floor(Math.random() * 5 * attempt));
        continue;
      }
      throw storageError(e);
    } finally {
      c.off('error', onError);
      c.release(broken);
    }
  }
}

/** One statement outside a transaction (autocommit). */
export async function query<R extends pg.QueryResultRow>(pool: pg.Pool, text: string | pg.QueryConfig, values?: unknown[]): Promise<pg.QueryResult<R>> {
  try {
    return typeof text === 'string' ? await pool.query<R>(text, values) : await pool.query<R>(text);
  } catch (e) {
    throw storageError(e);
  }
}
