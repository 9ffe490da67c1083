// Moving a LevelDB deployment into PostgreSQL with `kmgrd migrate`: every
// count, history record, notice, partner and nonce arrives, the limits hold on
// the new backend, and a second run (or a non-empty database) is refused.
import t from 'tap';
import { join } from 'node:path';
import { startServer, tempDir, kmgrd, pgUnavailable, testDatabase, enrol, keyStatus, newIdentity, newPartnerId, register, registerBody, send, signed, type Target, type PartnerList, LEVELDB } from './support/index.js';
import type { HistoryList, NoticeList } from '../src/protocol/messages.js';

const noPg = await pgUnavailable();

t.test('kmgrd migrate copies a LevelDB deployment into PostgreSQL and checks the counts', { skip: noPg ?? false }, async (t) => {
  const db = await testDatabase(t);
  const level = await startServer(t, { databaseUrl: LEVELDB });
  const lt: Target = { url: level.url, ca: level.ca };
  const id = newIdentity();
  t.equal((await enrol(lt, id)).status, 201);
  const partner = newPartnerId();
  const body = registerBody();
  t.equal((await register(lt, id, partner, { ...body, terms: { ...(body.terms as object), maxUses: 4 } })).status, 201);
  const used = signed(lt, id, 'POST', `/v1/keys/${partner}/fetch`, {});
  t.equal((await send(lt, used)).status, 200);
  for (let i = 0; i < 2; i++) t.equal((await send(lt, signed(lt, id, 'POST', `/v1/keys/${partner}/fetch`, {}))).status, 200);
  t.equal((await send(lt, signed(lt, id, 'POST', '/v1/partners', { name: 'shop', displayName: 'Shop' }))).status, 201);
  await level.stop();

  const partnerAdd = await kmgrd(['partner', 'add', 'bank-a', '--data', level.dataDir, '--json']);
  t.equal(partnerAdd.code, 0, partnerAdd.stderr);

  const r = await kmgrd(['migrate', '--data', level.dataDir, '--database-url', db, '--json']);
  t.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  t.same(out.copied, { persons: 1, keys: 1, uses: 3, history: 3, notices: 0, partners: 2, pending: 0 });
  t.equal(out.checked, true);

  const again = await kmgrd(['migrate', '--data', level.dataDir, '--database-url', db]);
  t.not(again.code, 0, 'a second migration into the same database is refused');
  t.match(again.stderr, /already holds kmgr data/);

  // The same data directory (its TLS files) now serves from PostgreSQL.
  // Reached by the old address too (as behind a load balancer), so a request made before the move can be replayed to it.
  const pgCheck = await kmgrd(['check-db', '--database-url', db, '--json']);
  t.equal(pgCheck.code, 0, pgCheck.stdout);
  t.match(JSON.parse(pgCheck.stdout), { ok: true, via: 'database', checked: 'records' }, 'check-db reads the PostgreSQL database directly');
  const terms = await kmgrd(['check-terms', '--database-url', db, '--json']);
  t.equal(terms.code, 0, terms.stderr);
  t.same(JSON.parse(terms.stdout).findings, [], 'check-terms runs against it with no daemon');
  const pg = await startServer(t, { dataDir: level.dataDir, databaseUrl: db, publicUrls: [level.url] });
  const pt: Target = { url: pg.url, ca: pg.ca };
  const status = await keyStatus(pt, id, partner);
  t.equal(status.status, 200);
  t.equal(status.json.uses.total, 3, 'the count arrived');
  const replay = await send(pt, used);
  t.equal(replay.json?.error?.code, 'auth_replay', 'a nonce used before the move is still refused after it');
  t.equal((await send(pt, signed(pt, id, 'POST', `/v1/keys/${partner}/fetch`, {}))).status, 200, 'the fourth use');
  const fifth = await send(pt, signed(pt, id, 'POST', `/v1/keys/${partner}/fetch`, {}));
  t.equal(fifth.json?.error?.code, 'terms_max_uses', 'the limit holds across the move');
  const hist = await send<HistoryList>(pt, signed(pt, id, 'GET', `/v1/keys/${partner}/history`));
  t.same(hist.json.history.map((h: { seq: number }) => h.seq), [5, 4, 3, 2, 1], 'the history continues its sequence');
  const partners = await send<PartnerList>(pt, signed(pt, id, 'GET', '/v1/partners'));
  t.same(partners.json.partners.map((p: { name: string }) => p.name), ['shop']);
  const list = await kmgrd(['partner', 'list', '--data', level.dataDir, '--database-url', db, '--json']);
  t.equal(list.code, 0, list.stderr);
  t.same(JSON.parse(list.stdout).partners.map((p: { name: string }) => p.name), ['bank-a'], 'the shared directory arrived');
});

t.test('a LevelDB backup restores into PostgreSQL, and a PostgreSQL backup back onto LevelDB; every owner is told', { skip: noPg ?? false }, async (t) => {
  const db = await testDatabase(t);
  const level = await startServer(t, { databaseUrl: LEVELDB });
  const lt: Target = { url: level.url, ca: level.ca };
  const id = newIdentity();
  t.equal((await enrol(lt, id)).status, 201);
  const partner = newPartnerId();
  const body = registerBody();
  t.equal((await register(lt, id, partner, { ...body, terms: { ...(body.terms as object), maxUses: 3 } })).status, 201);
  for (let i = 0; i < 2; i++) t.equal((await send(lt, signed(lt, id, 'POST', `/v1/keys/${partner}/fetch`, {}))).status, 200);
  const dir = await tempDir(t, 'kmgr-pg-restore-');
  const file = join(dir, 'level.kmgrbak');
  const b = await kmgrd(['backup', '--data', level.dataDir, '--out', file, '--json']);
  t.equal(b.code, 0, b.stderr);
  await level.stop();

  const r = await kmgrd(['restore', file, '--database-url', db, '--json']);
  t.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { database: string; keysNoticed: number };
  t.equal(out.keysNoticed, 1, 'the owner of the one key is told');
  t.notMatch(out.database, /:[^/@]*@/, 'the URL is shown without a password');
  const again = await kmgrd(['restore', file, '--database-url', db]);
  t.equal(again.code, 78, 'a second restore into the same database is refused');
  t.match(again.stderr, /already holds kmgr data/);

  const pgCheck = await kmgrd(['check-db', '--database-url', db, '--json']);
  t.equal(pgCheck.code, 0, pgCheck.stdout);
  t.match(JSON.parse(pgCheck.stdout), { ok: true, via: 'database', checked: 'records' }, 'check-db reads the PostgreSQL database directly');
  const terms = await kmgrd(['check-terms', '--database-url', db, '--json']);
  t.equal(terms.code, 0, terms.stderr);
  t.same(JSON.parse(terms.stdout).findings, [], 'check-terms runs against it with no daemon');
  const pg = await startServer(t, { dataDir: level.dataDir, databaseUrl: db, publicUrls: [level.url] });
  t.ok(pg.logs.lines.some((l) => /database restored from a snapshot/.test(l)), 'kmgrd says at start that the database was restored');
  const pt: Target = { url: pg.url, ca: pg.ca };
  t.equal((await keyStatus(pt, id, partner)).json.uses.total, 2, 'the count arrived');
  const notices = await send<NoticeList>(pt, signed(pt, id, 'GET', '/v1/notices'));
  t.same(notices.json.notices.map((n: { kind: string }) => n.kind), ['restored'], 'with a notice that later uses may be missing');
  t.equal((await send(pt, signed(pt, id, 'POST', `/v1/keys/${partner}/fetch`, {}))).status, 200, 'the third use');
  t.equal((await send(pt, signed(pt, id, 'POST', `/v1/keys/${partner}/fetch`, {}))).json?.error?.code, 'terms_max_uses', 'the limit holds');
  const fromPg = join(dir, 'pg.kmgrbak');
  const b2 = await kmgrd(['backup', '--database-url', db, '--out', fromPg, '--json']);
  t.equal(b2.code, 0, b2.stderr);
  await pg.stop();

  const back = join(dir, 'back');
  const r2 = await kmgrd(['restore', fromPg, '--data', back, '--json']);
  t.equal(r2.code, 0, r2.stderr);
  const check = await kmgrd(['check-db', '--data', back, '--json']);
  t.equal(check.code, 0, check.stdout);
  const lv = await startServer(t, { dataDir: back, databaseUrl: LEVELDB });
  const bt: Target = { url: lv.url, ca: lv.ca };
  t.equal((await keyStatus(bt, id, partner)).json.uses.total, 3, 'and LevelDB has the three uses');
});

t.test('kmgrd migrate without a database URL, or with a mistyped data directory, is a clear error', async (t) => {
  const r = await kmgrd(['migrate', '--data', '/nonexistent/kmgr']);
  t.equal(r.code, 64, r.stderr);
  t.match(r.stderr, /needs --database-url/);
  const r2 = await kmgrd(['migrate', '--data', '/nonexistent/kmgr', '--database-url', 'postgres://127.0.0.1:1/x']);
  t.not(r2.code, 0);
  t.match(r2.stderr, /no kmgrd database at/);
});
