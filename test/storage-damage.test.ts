// Damaged storage is refused, never replaced or served: each case damages a
// real LevelDB file in a temporary data directory, then runs the real kmgrd.
import t, { type Test } from 'tap';
import { mkdir, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Level } from 'level';
import { startServer, tempDir, kmgrd, oneLine, snapshot, sameSnapshot, enrol, health, keyStatus, newIdentity, newPartnerId, register, send, signed, type Identity, LEVELDB } from './support/index.js';
import { LevelStorage } from '../src/store/level-storage.js';
import { encodeText } from '../src/store/record-codec.js';

interface Populated {
  dataDir: string;
  db: string;
  id: Identity;
  partner: string;
}

/** A data directory with one person, one key used three times; kmgrd stopped. `tables`: fold the log into a table first. */
async function populated(t: Test, tables = false): Promise<Populated> {
  const dataDir = join(await tempDir(t, 'kmgrd-damage-'), 'data');
  const server = await startServer(t, { dataDir, databaseUrl: LEVELDB });
  const target = { url: server.url, ca: server.ca };
  const id = newIdentity();
  t.equal((await enrol(target, id)).status, 201);
  const partner = newPartnerId();
  t.equal((await register(target, id, partner)).status, 201);
  for (let i = 0; i < 3; i++) t.equal((await send(target, signed(target, id, 'POST', `/v1/keys/${partner}/fetch`, {}))).status, 200);
  await server.stop();
  const db = join(dataDir, 'db');
  if (tables) {
    // Opening recovers the log into a level-0 table.
    const s = await LevelStorage.open(db, { tz: 'UTC', clock: Date.now, createIfMissing: false });
    await s.close();
  }
  return { dataDir, db, id, partner };
}

const fileEnding = async (dir: string, ext: string): Promise<string> => {
  const names = (await readdir(dir)).filter((f) => f.endsWith(ext)).sort();
  // The log with data (the newest may be empty after a reopen).
  for (const n of names.reverse()) if ((await readFile(join(dir, n))).length > 0) return n;
  throw new Error(`no ${ext} file with data`);
};

/** Opening db/ outside kmgrd rewrote its logs; forget kmgrd's record of a clean stop (as after a crash), so only the record checks can tell. */
const forgetCleanClose = (p: Populated): Promise<void> => rm(join(p.dataDir, 'kmgrd-db-state.json'), { force: true });

async function flipByte(path: string, at: (len: number) => number): Promise<void> {
  const b = await readFile(path);
  b[at(b.length)]! ^= 0x40;
  await writeFile(path, b);
}

/** serve, partner add and check-terms all refuse with exit 65 and one sentence naming `file`; no file of db/ changes. */
async function refusedEverywhere(t: Test, p: Populated, file: string): Promise<void> {
  const before = await snapshot(p.db);
  for (const args of [
    ['serve', '--data', p.dataDir, '--listen', '127.0.0.1:0'],
    ['partner', 'add', 'bank-z', '--data', p.dataDir],
    ['check-terms', '--data', p.dataDir],
  ]) {
    const r = await kmgrd(args);
    t.equal(r.code, 65, `kmgrd ${args[0]} exits 65 (damaged data)`);
    t.ok(oneLine(r.stderr), `kmgrd ${args[0]}: one sentence (${r.stderr.trim()})`);
    t.match(r.stderr, file, `kmgrd ${args[0]} names ${file}`);
    t.match(r.stderr, /restore/, `kmgrd ${args[0]} names the recovery`);
  }
  sameSnapshot(t, before, await snapshot(p.db), 'after the refusals');
  const check = await kmgrd(['check-db', '--data', p.dataDir, '--json']);
  t.equal(check.code, 1, 'check-db exits 1');
  const report = JSON.parse(check.stdout) as { ok: boolean; findings: { where: string }[] };
  t.equal(report.ok, false);
  t.ok(report.findings.some((f) => f.where.includes(file)), `check-db reports ${file}`);
  sameSnapshot(t, before, await snapshot(p.db), 'after check-db');
}

t.test('check-db on a healthy database exits 0', async (t) => {
  const p = await populated(t);
  const r = await kmgrd(['check-db', '--data', p.dataDir]);
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.match(r.stdout, /consistent/);
});

t.test('a missing db/CURRENT is refused, and the old tables and logs are kept', async (t) => {
  const p = await populated(t, true);
  await rm(join(p.db, 'CURRENT'));
  await refusedEverywhere(t, p, 'CURRENT');
});

t.test('a CURRENT naming a missing MANIFEST is refused', async (t) => {
  const p = await populated(t);
  await writeFile(join(p.db, 'CURRENT'), 'MANIFEST-999999\n');
  await refusedEverywhere(t, p, 'MANIFEST-999999');
});

t.test('a flipped byte in the log is refused before LevelDB could drop the record', async (t) => {
  const p = await populated(t);
  const log = await fileEnding(p.db, '.log');
  await flipByte(join(p.db, log), (n) => Math.floor(n / 2));
  await refusedEverywhere(t, p, log);
});

t.test('a truncated log is refused', async (t) => {
  const p = await populated(t);
  const log = await fileEnding(p.db, '.log');
  const path = join(p.db, log);
  await truncate(path, (await readFile(path)).length - 20);
  await refusedEverywhere(t, p, log);
});

t.test('a flipped byte in a table block is refused', async (t) => {
  const p = await populated(t, true);
  const table = await fileEnding(p.db, '.ldb');
  await flipByte(join(p.db, table), () => 10);
  await refusedEverywhere(t, p, table);
});

t.test('a missing table file is refused', async (t) => {
  const p = await populated(t, true);
  const table = await fileEnding(p.db, '.ldb');
  await rm(join(p.db, table));
  await refusedEverywhere(t, p, table);
});

t.test('a data directory whose db/ vanished is not given a new empty database', async (t) => {
  const p = await populated(t);
  await rm(p.db, { recursive: true });
  for (const args of [['serve', '--data', p.dataDir, '--listen', '127.0.0.1:0'], ['partner', 'add', 'bank-z', '--data', p.dataDir]]) {
    const r = await kmgrd(args);
    t.equal(r.code, 65, `kmgrd ${args[0]} exits 65`);
    t.match(r.stderr, /kmgrd-data\.json says kmgrd initialised it/);
  }
  t.same(await readdir(p.dataDir).then((n) => n.includes('db')), false, 'no database was created');
});

t.test('a database without its marker is refused', async (t) => {
  const p = await populated(t);
  await rm(join(p.dataDir, 'kmgrd-data.json'));
  const r = await kmgrd(['serve', '--data', p.dataDir, '--listen', '127.0.0.1:0']);
  t.equal(r.code, 65);
  t.match(r.stderr, /kmgrd-data\.json is missing/);
});

t.test('a record failing its checksum: kmgrd serves nothing, health says so, check-db names it', async (t) => {
  const p = await populated(t);
  // A value LevelDB reads back whole but whose bytes changed: what a flipped bit in a table looks like once past LevelDB.
  const raw = new Level<string, string>(p.db, { valueEncoding: 'utf8' });
  let ctr: string | undefined;
  for await (const k of raw.keys({ gt: 'ctr!', lt: 'ctr!~' })) ctr = k;
  const stored = await raw.get(ctr!);
  await raw.put(ctr!, stored.replace('"total":3', '"total":0'));
  await raw.close();
  await forgetCleanClose(p);

  const server = await startServer(t, { dataDir: p.dataDir, databaseUrl: LEVELDB });
  const target = { url: server.url, ca: server.ca };
  t.equal((await health(target)).status, 200, 'healthy until the damaged record is read');
  const fetch = await send(target, signed(target, p.id, 'POST', `/v1/keys/${p.partner}/fetch`, {}));
  t.equal(fetch.status, 503, 'the fetch is refused, not served with a reset counter');
  t.equal(fetch.json?.error?.code, 'storage_damaged');
  t.notMatch(JSON.stringify(fetch.json), p.dataDir, 'the answer names no path');
  const h = await health(target);
  t.equal(h.status, 503, 'health reports the damage');
  t.equal(h.json.storage, 'damaged');
  t.equal((await keyStatus(target, p.id, p.partner)).status, 503, 'every other request is refused too');
  await server.stop();

  const check = await kmgrd(['check-db', '--data', p.dataDir]);
  t.equal(check.code, 1);
  t.match(check.stdout, `record ${ctr}: fails its checksum`);
});

t.test('check-db reports a counter that disagrees with the history, a gap in the history and a key without its blob', async (t) => {
  const p = await populated(t);
  const raw = new Level<string, string>(p.db, { valueEncoding: 'utf8' });
  const hist: string[] = [];
  for await (const k of raw.keys({ gt: 'hist!', lt: 'hist!~' })) hist.push(k);
  const blobs: string[] = [];
  for await (const k of raw.keys({ gt: 'blob!', lt: 'blob!~' })) blobs.push(k);
  // Records removed whole, with valid checksums elsewhere: what a skipped log record leaves.
  await raw.del(hist[1]!);
  await raw.del(blobs[0]!);
  await raw.put('hist!zz!yy!000000000001', encodeText(JSON.stringify({ seq: 1, at: 0, keyVersion: 1, result: 'served', remoteAddress: '' })));
  await raw.close();
  await forgetCleanClose(p);
  const r = await kmgrd(['check-db', '--data', p.dataDir, '--json']);
  t.equal(r.code, 1);
  const problems = (JSON.parse(r.stdout) as { findings: { problem: string }[] }).findings.map((f) => f.problem).join('\n');
  t.match(problems, /history jumps from entry 1 to 3/);
  t.match(problems, /counter says 3 uses of version 1, its history records 2/);
  t.match(problems, /no sealed blob for its version 1/);
  t.match(problems, /history or counters but no key record/);
});

t.test('after a crash, part of one unacknowledged write at the end of the newest log is not damage', async (t) => {
  const p = await populated(t);
  const log = await fileEnding(p.db, '.log');
  const path = join(p.db, log);
  await forgetCleanClose(p); // as if killed: no record of a clean stop
  await truncate(path, (await readFile(path)).length - 5);
  const s = await LevelStorage.open(p.db, { tz: 'UTC', clock: Date.now, createIfMissing: false });
  t.ok(s.state().ok, 'opens, as LevelDB recovers up to the last whole write');
  await s.close();
  t.equal((await kmgrd(['check-db', '--data', p.dataDir])).code, 0, 'and check-db agrees');
});

t.test('a directory that is neither empty nor kmgrd\'s gets no database, and is left as it was', async (t) => {
  const dir = await tempDir(t, 'kmgrd-foreign-');
  await writeFile(join(dir, 'notes.txt'), 'mine');
  for (const args of [['serve', '--data', dir, '--listen', '127.0.0.1:0'], ['partner', 'add', 'bank-z', '--data', dir]]) {
    const r = await kmgrd(args);
    t.equal(r.code, 78, `kmgrd ${args[0]} exits 78`);
    t.ok(oneLine(r.stderr));
    t.match(r.stderr, /not empty and is not a kmgrd data directory/);
  }
  t.same(await readdir(dir), ['notes.txt'], 'nothing was added');
});

t.test("an open that fails carries LevelDB's own cause, and is not an internal error", async (t) => {
  const p = await populated(t);
  await rm(join(p.db, 'LOCK'));
  await mkdir(join(p.db, 'LOCK')); // LevelDB cannot take its lock file
  const r = await kmgrd(['check-terms', '--data', p.dataDir]);
  t.not(r.code, 70, 'not exit 70');
  t.equal(r.code, 69);
  t.match(r.stderr, /LOCK/, `the cause is named: ${r.stderr.trim()}`);
  t.notMatch(r.stderr, /Database failed to open/);
});
