// What only the PostgreSQL backend has to promise: its schema is versioned and a
// newer one is refused; every node counts in one time zone; several processes
// on one database record each notice once and never deliver one together; an
// unreachable database is "unavailable", never a crash.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { pgUnavailable, testDatabase } from './support/index.js';
import { openStorage } from '../src/store/open.js';
import { SCHEMA_VERSION } from '../src/store/pg/schema.js';
import { runSql } from '../src/store/pg/databases.js';
import { makePool, transaction } from '../src/store/pg/db.js';
import { periodsAt } from '../src/terms/periods.js';
import type { KeyRecord, NonceClaim, Storage } from '../src/store/types.js';

const noPg = await pgUnavailable();
const T0 = Date.parse('2026-03-10T12:00:00Z');
const DAY = 86_400_000;
const open = (databaseUrl: string, extra: { tz?: string; pinTimeZone?: boolean } = {}): Promise<Storage> =>
  openStorage({ dataDir: '/nonexistent', databaseUrl, tz: extra.tz ?? 'UTC', clock: () => T0, ...(extra.pinTimeZone ? { pinTimeZone: true } : {}) });
const rid = (): string => randomBytes(12).toString('base64url');
const nonce = (keyId: string): NonceClaim => ({ keyId, nonce: rid(), expiresAt: T0 + 300_000 });

async function keyExpiringSoon(s: Storage): Promise<{ personId: string }> {
  const p = { personId: 'p_' + rid(), keyId: 'mk_' + rid(), alg: 'ed25519' as const, publicKey: rid(), createdAt: T0 };
  await s.enrol(p, nonce(p.keyId));
  const rec: KeyRecord = {
    personId: p.personId, partnerId: rid(), keyId: 'k_' + rid(), alg: 'ed25519', keyVersion: 1, registeredAt: T0, inhibited: false,
    expiresAt: T0 + 2 * DAY, maxUses: null, maxPerDay: null, maxPerWeek: null, maxPerMonth: null, onLimit: 'deny',
    uses: { total: 0, day: 0, week: 0, month: 0, periods: periodsAt(T0, 'UTC') }, lastUsedAt: null, historySeq: 0,
  };
  await s.registerKey(rec, new Uint8Array(16), nonce(p.keyId));
  return p;
}

t.test('PostgreSQL backend', { skip: noPg ?? false }, async (t) => {
  t.test('the schema is created once, versioned; a database with a newer schema is refused', async (t) => {
    const url = await testDatabase(t);
    await (await open(url)).close();
    await (await open(url)).close(); // a second start migrates nothing
    const v = await runSql<{ version: number }>(url, 'SELECT version FROM kmgr_schema ORDER BY version');
    t.same(v.map((r) => r.version), Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1), 'one row per migration');
    await runSql(url, 'INSERT INTO kmgr_schema (version) VALUES ($1)', [SCHEMA_VERSION + 1]);
    await t.rejects(open(url), { code: 'config', message: /newer than this kmgrd knows/ });
  });

  t.test('every node counts in the time zone the first one recorded', async (t) => {
    const url = await testDatabase(t);
    await (await open(url, { tz: 'Europe/Berlin', pinTimeZone: true })).close();
    await t.rejects(open(url, { tz: 'UTC', pinTimeZone: true }), { code: 'config', message: /--tz Europe\/Berlin/ });
    await (await open(url, { tz: 'Europe/Berlin', pinTimeZone: true })).close();
  });

  t.test('two processes checking terms at once record each finding once', async (t) => {
    const url = await testDatabase(t);
    const [a, b] = await Promise.all([open(url), open(url)]);
    t.teardown(() => Promise.all([a.close(), b.close()]));
    const people = await Promise.all(Array.from({ length: 5 }, () => keyExpiringSoon(a)));
    const [ra, rb] = await Promise.all([a.checkTerms(T0, 14 * DAY), b.checkTerms(T0, 14 * DAY)]);
    const isNew = [...ra, ...rb].filter((f) => f.isNew).length;
    t.equal(isNew, 5, 'each finding is new in exactly one of the two runs');
    for (const p of people) t.equal((await a.listNotices(p.personId, { unreadOnly: false })).length, 1);
  });

  t.test('two deliverers never take the same notice; a lease that ran out is taken over', async (t) => {
    const url = await testDatabase(t);
    const [a, b] = await Promise.all([open(url), open(url)]);
    t.teardown(() => Promise.all([a.close(), b.close()]));
    for (let i = 0; i < 6; i++) await keyExpiringSoon(a);
    await a.checkTerms(T0, 14 * DAY);
    const [da, db] = await Promise.all([a.dueDeliveries(T0, 100), b.dueDeliveries(T0, 100)]);
    const keys = [...da, ...db].map((d) => d.key);
    t.equal(keys.length, 6, 'every due notice went to one deliverer');
    t.equal(new Set(keys).size, 6, 'none to both');
    t.same(await b.dueDeliveries(T0 + 1000, 100), [], 'leased notices are not handed out again');
    const later = await b.dueDeliveries(T0 + 11 * 60_000, 100);
    t.equal(later.length, 6, 'after the lease runs out (a deliverer died) another takes them over');
  });

  t.test('a deadlock between two transactions is retried: both commit, neither is lost', async (t) => {
    const url = await testDatabase(t);
    await runSql(url, 'CREATE TABLE pair (id int PRIMARY KEY, n int NOT NULL)');
    await runSql(url, 'INSERT INTO pair VALUES (1, 0), (2, 0)');
    const pool = makePool({ url, poolSize: 4 }, () => undefined);
    t.teardown(() => pool.end());
    // Each locks one row, waits until the other holds its row too, then wants the other's:
    // PostgreSQL aborts one with SQLSTATE 40P01 and the helper runs that one again.
    let held = 0;
    let attempts = 0;
    let release!: () => void;
    const barrier = new Promise<void>((r) => (release = r));
    const bothHold = async (): Promise<void> => {
      if (++held === 2) release();
      await barrier;
    };
    const cross = (first: number, second: number) =>
      transaction(pool, async (c) => {
        attempts++;
        await c.query('UPDATE pair SET n = n + 1 WHERE id = $1', [first]);
        await bothHold();
        await c.query('UPDATE pair SET n = n + 1 WHERE id = $1', [second]);
      });
    await Promise.all([cross(1, 2), cross(2, 1)]);
    t.ok(attempts >= 3, `one transaction was aborted as a deadlock and run again (${attempts} attempts)`);
    t.same(await runSql(url, 'SELECT id, n FROM pair ORDER BY id'), [{ id: 1, n: 2 }, { id: 2, n: 2 }], 'each commit counted once');
  });

  t.test('an operator tool never makes a kmgr database of a mistyped URL', async (t) => {
    const url = await testDatabase(t);
    await t.rejects(openStorage({ dataDir: '/nonexistent', databaseUrl: url, tz: 'UTC', clock: () => T0, createIfMissing: false }), {
      code: 'config',
      message: /there is no kmgr database at/,
    });
    t.same(await runSql(url, `SELECT to_regclass('kmgr_schema')::text AS t`), [{ t: null }], 'and nothing was created there');
  });

  t.test('a backup that stops reading early hands its connection back clean: writes work after it', async (t) => {
    const url = await testDatabase(t);
    // One connection only, so the next write gets the one the export used.
    const s = await openStorage({ dataDir: '/nonexistent', databaseUrl: url, tz: 'UTC', clock: () => T0, poolSize: 1 });
    t.teardown(() => s.close());
    await keyExpiringSoon(s);
    for await (const r of s.exportRecords()) {
      t.equal(r.t, 'person', 'the export began');
      break; // as writeBackup does when its file cannot be written
    }
    const p = await keyExpiringSoon(s);
    t.ok(await s.personByPersonId(p.personId), 'a write and a read after it succeed on the same connection');
  });

  t.test('an unreachable database is unavailable (503), not a crash', async (t) => {
    await t.rejects(open('postgres://postgres@127.0.0.1:1/none'), { code: 'unavailable', message: /database is unavailable/ });
    await t.rejects(open('mysql://x'), { code: 'usage' });
  });
});
