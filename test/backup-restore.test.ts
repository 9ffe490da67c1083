// kmgrd backup and restore on real LevelDB and real kmgrd: a snapshot taken
// while the server serves restores into a new directory that serves the same
// keys, terms, counters and history, and tells every owner what is missing.
import t, { type Test } from 'tap';
import { readFile, stat, writeFile, readdir, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startServer, tempDir, kmgrd, oneLine, enrol, keyStatus, newIdentity, newPartnerId, register, registerBody, send, signed, type Identity, type Target, LEVELDB } from './support/index.js';
import type { HistoryList, NoticeList } from '../src/protocol/messages.js';

const fetchOnce = (target: Target, id: Identity, partner: string) => send(target, signed(target, id, 'POST', `/v1/keys/${partner}/fetch`, {}));
const history = async (target: Target, id: Identity, partner: string) => (await send<HistoryList>(target, signed(target, id, 'GET', `/v1/keys/${partner}/history`))).json.history;

async function serving(t: Test) {
  const dir = await tempDir(t, 'kmgrd-backup-');
  const server = await startServer(t, { dataDir: join(dir, 'data'), databaseUrl: LEVELDB });
  const target = { url: server.url, ca: server.ca };
  const id = newIdentity();
  t.equal((await enrol(target, id)).status, 201);
  const partner = newPartnerId();
  const body = registerBody({ terms: { expiresAt: null, maxUses: 5, maxPerDay: null, maxPerWeek: 4, maxPerMonth: null, onLimit: 'deny' } });
  t.equal((await register(target, id, partner, body)).status, 201);
  return { dir, server, target, id, partner, body };
}

t.test('a backup taken while kmgrd serves restores into a new directory with the same keys, terms, counters and history', async (t) => {
  const s = await serving(t);
  for (let i = 0; i < 2; i++) t.equal((await fetchOnce(s.target, s.id, s.partner)).status, 200);
  const before = await keyStatus(s.target, s.id, s.partner);
  const histBefore = await history(s.target, s.id, s.partner);
  const out = join(s.dir, 'nightly.kmgrbak');
  const b = await kmgrd(['backup', '--data', s.server.dataDir, '--out', out, '--json']);
  t.equal(b.code, 0, b.stderr);
  t.equal(JSON.parse(b.stdout).via, 'daemon', 'taken through the running daemon');
  t.equal((await stat(out)).mode & 0o777, 0o600, 'the backup file is mode 0600');
  const text = await readFile(out, 'utf8');
  t.match(text.split('\n')[0], /"format":"kmgr-backup","version":1/, 'a versioned header');
  t.ok(text.includes(s.body.blob as string), 'it holds the sealed blob as registered (the server never had more)');
  // A use after the snapshot: missing from the restored database, and the owner is told so.
  t.equal((await fetchOnce(s.target, s.id, s.partner)).status, 200);

  const restored = join(s.dir, 'restored');
  const r = await kmgrd(['restore', out, '--data', restored]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /sent a notice/);
  const marker = JSON.parse(await readFile(join(restored, 'kmgrd-data.json'), 'utf8'));
  t.match(marker.restoredFrom, { takenAt: JSON.parse(b.stdout).takenAt }, 'the restored database records the snapshot it came from');
  t.equal((await kmgrd(['check-db', '--data', restored])).code, 0, 'the restored database is consistent');

  const again = await startServer(t, { dataDir: restored, databaseUrl: LEVELDB });
  const target2 = { url: again.url, ca: again.ca };
  const after = await keyStatus(target2, s.id, s.partner);
  t.equal(after.status, 200);
  t.same(after.json, before.json, 'same key, terms and counters as at the snapshot');
  t.same(await history(target2, s.id, s.partner), histBefore, 'same history as at the snapshot');
  const notices = (await send<NoticeList>(target2, signed(target2, s.id, 'GET', '/v1/notices'))).json.notices;
  const restoredNotice = notices.find((n) => n.kind === 'restored');
  t.ok(restoredNotice, 'the owner has a notice about the restore');
  t.match(restoredNotice?.message, /restored from a backup taken at .*missing/);
  const f = await fetchOnce(target2, s.id, s.partner);
  t.equal(f.status, 200, 'the restored server serves the key');
  t.equal((await keyStatus(target2, s.id, s.partner)).json.uses.total, 3, 'and counts on from the snapshot');
});

t.test('a backup under load is one consistent snapshot', async (t) => {
  const s = await serving(t);
  t.equal((await send(s.target, signed(s.target, s.id, 'PATCH', `/v1/keys/${s.partner}`, { maxUses: null, maxPerWeek: null }))).status, 200);
  let running = true;
  const workers = Array.from({ length: 8 }, async () => {
    while (running) await fetchOnce(s.target, s.id, s.partner);
  });
  const out = join(s.dir, 'busy.kmgrbak');
  const b = await kmgrd(['backup', '--data', s.server.dataDir, '--out', out]);
  running = false;
  await Promise.all(workers);
  t.equal(b.code, 0, b.stderr);
  const restored = join(s.dir, 'restored');
  t.equal((await kmgrd(['restore', out, '--data', restored])).code, 0);
  const check = await kmgrd(['check-db', '--data', restored]);
  t.equal(check.code, 0, `counters agree with the history in the snapshot: ${check.stdout}`);
});

t.test('kmgrd backup works without a running daemon', async (t) => {
  const s = await serving(t);
  await s.server.stop();
  const out = join(s.dir, 'cold.kmgrbak');
  const b = await kmgrd(['backup', '--data', s.server.dataDir, '--out', out, '--json']);
  t.equal(b.code, 0, b.stderr);
  t.equal(JSON.parse(b.stdout).via, 'database');
  const restored = join(s.dir, 'restored');
  t.equal((await kmgrd(['restore', out, '--data', restored])).code, 0);
});

t.test('restore refuses a non-empty target and a damaged or truncated file, creating nothing', async (t) => {
  const s = await serving(t);
  const out = join(s.dir, 'b.kmgrbak');
  t.equal((await kmgrd(['backup', '--data', s.server.dataDir, '--out', out])).code, 0);

  const busy = join(s.dir, 'busy');
  await mkdir(busy);
  await writeFile(join(busy, 'something'), 'x');
  const r1 = await kmgrd(['restore', out, '--data', busy]);
  t.equal(r1.code, 73, 'a non-empty target: exit 73');
  t.ok(oneLine(r1.stderr));
  t.same(await readdir(busy), ['something'], 'the target is untouched');

  const text = await readFile(out, 'utf8');
  const altered = join(s.dir, 'altered.kmgrbak');
  await writeFile(altered, text.replace('"total":0', '"total":9'));
  const truncated = join(s.dir, 'truncated.kmgrbak');
  await writeFile(truncated, text.slice(0, Math.floor(text.length * 0.7)));
  for (const [file, why] of [[altered, /checksum does not match/], [truncated, /not JSON|no end line/]] as const) {
    const target = join(s.dir, `into-${file.length}-${why.source.length}`);
    const r = await kmgrd(['restore', file, '--data', target]);
    t.equal(r.code, 65, `${file}: exit 65`);
    t.match(r.stderr, why);
    t.ok(oneLine(r.stderr));
    t.same(await readdir(target).catch(() => []), [], 'nothing was created');
  }
});
