// PostgreSQL for tests. The server comes from KMGR_TEST_DATABASE_URL (default:
// the machine's own, trust authentication); each test gets a database of its
// own with a random name, dropped afterwards. Without a server the PostgreSQL
// tests skip and say why; under CI (CI=true) a missing server is a failure, so
// CI can never pass without having run them.
import { createDatabase, dropDatabase, unreachable } from '../src/store/pg/databases.js';

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
export async function testDatabase(t: { teardown(fn: () => unknown): void }, prefix = 'kmgr_test'): Promise<string> {
  const url = await createDatabase(PG_ADMIN_URL, prefix);
  t.teardown(() => dropDatabase(url, PG_ADMIN_URL));
  return url;
}
