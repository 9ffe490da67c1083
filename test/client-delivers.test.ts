// Once the server has served and counted a key, the client delivers it:
// local failures after the reply warn instead of withholding; fetch-log lines
// are appended whole; register never strands a key; a killed writer's
// temporary files are cleaned up by the next writer.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { newHome, startServer, tempDir } from './support/index.js';
import { writeFileAtomic } from '../src/io/atomic-file.js';

t.test('a fetch log that cannot be written does not withhold a counted key', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('bank-a'));
  const log = join(c.home, 'fetch-log.jsonl');
  await rm(log, { force: true });
  await mkdir(log); // any write to it fails (EISDIR), as on a full disk
  const r = await c.run(['fetch', 'bank-a']);
  t.equal(r.code, 0, `delivered: ${r.stderr}`);
  t.match(r.stdout, /BEGIN PRIVATE KEY/, 'the key is on stdout');
  t.match(r.stderr, /warning: bank-a: the server counted this use and the key is delivered, but the fetch log could not be written/);
  const status = await c.run(['status', 'bank-a', '--json']);
  t.equal(JSON.parse(status.stdout).uses.total, 1, 'the server counted it once');
});

t.test('fetch-log lines are appended whole: a torn line does not swallow the next', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('bank-a'));
  const log = join(c.home, 'fetch-log.jsonl');
  await writeFile(log, '{"at":"2026-01-01T00:00:00.000Z","partner":"bank-a","par', { mode: 0o600 }); // cut short by a full disk
  const f = await c.run(['fetch', 'bank-a']);
  t.equal(f.code, 0);
  t.equal(f.stderr, '', 'no warning');
  const text = await readFile(log, 'utf8');
  const lines = text.split('\n').filter(Boolean);
  t.equal(lines.length, 2, 'the torn line and the new one, each on its own line');
  t.equal(JSON.parse(lines[1]!).partner, 'bank-a', 'the new line is whole');
});

t.test('register never strands a key: a partner whose local record was lost adopts the key the server holds', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('bank-a'));
  const path = join(c.home, 'partners.json');
  const idx = JSON.parse(await readFile(path, 'utf8'));
  const id = idx.partners[0].id;
  // What a failed (or killed) save after the server accepted leaves: the partner recorded first, without its key.
  idx.partners[0].key = null;
  idx.partners[0].highWater = 0;
  await writeFile(path, JSON.stringify(idx), { mode: 0o600 });
  const again = await c.run(['register', 'bank-a']);
  t.equal(again.code, 73, 'the second register does not make a second key');
  t.match(again.stderr, /already holds key .* adopted/);
  const after = JSON.parse(await readFile(path, 'utf8'));
  t.equal(after.partners.length, 1, 'no second partner');
  t.equal(after.partners[0].id, id, 'the same partner ID');
  const f = await c.run(['fetch', 'bank-a']);
  t.equal(f.code, 0, `the adopted key is fetched and opens: ${f.stderr}`);
});

t.test("a killed writer's temporary files are removed by the next writer, a live writer's kept", async (t) => {
  const dir = await tempDir(t);
  const target = join(dir, 'partners.json');
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
  const leftover = `.partners.json.${dead}.a1b2c3d4e5f6.tmp`;
  const live = `.partners.json.${process.ppid}.0123456789ab.tmp`;
  await writeFile(join(dir, leftover), 'half');
  await writeFile(join(dir, live), 'in progress');
  await writeFileAtomic(target, '{}');
  const names = await readdir(dir);
  t.notOk(names.includes(leftover), 'the dead writer’s file is gone');
  t.ok(names.includes(live), 'a running writer’s file is kept');
  t.equal(await readFile(target, 'utf8'), '{}');
});
