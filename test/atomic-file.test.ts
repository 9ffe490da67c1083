// Unit tests for src/io/atomic-file.ts (threat 12): private modes, whole-file
// replacement, no temp files left behind, and a writer killed with SIGKILL at
// random moments always leaves either the old or the new document.
import t from 'tap';
import { mkdtemp, rm, readFile, readdir, stat, writeFile, chmod, mkdir, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { writeFileAtomic, ensurePrivateDir, appendLineDurable, fsyncDir } from '../src/io/atomic-file.js';
import { mulberry32, untracked } from './support/index.js';


async function tempDir(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kmgr-atomic-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}
const modeOf = async (p: string): Promise<number> => (await stat(p)).mode & 0o777;
const umask = process.umask();

t.test('writeFileAtomic creates a 0600 file by default', async (t) => {
  const dir = await tempDir(t);
  const p = join(dir, 'keystore.json');
  await writeFileAtomic(p, '{"a":1}\n');
  t.equal(await readFile(p, 'utf8'), '{"a":1}\n');
  t.equal(await modeOf(p), 0o600, 'mode 0600');
  t.same(await readdir(dir), ['keystore.json'], 'no temp file left behind');
});

t.test('an explicit mode is honoured (within the umask)', async (t) => {
  const dir = await tempDir(t);
  const p = join(dir, 'f');
  await writeFileAtomic(p, 'x', 0o640);
  t.equal(await modeOf(p), 0o640 & ~umask);
});

t.test('replaces content, whatever the old mode, by rename (a new inode)', async (t) => {
  const dir = await tempDir(t);
  const p = join(dir, 'doc.json');
  await writeFile(p, 'old content that is longer than the new one\n');
  await chmod(p, 0o644);
  const before = await stat(p);
  const oldFd = await open(p, 'r');
  t.teardown(() => oldFd.close());
  await writeFileAtomic(p, 'new\n');
  t.equal(await readFile(p, 'utf8'), 'new\n', 'content replaced, no tail of the old content');
  t.equal(await modeOf(p), 0o600, 'the replacement is 0600, not the old 0644');
  const after = await stat(p);
  t.not(after.ino, before.ino, 'a new inode: the file was renamed into place, not rewritten');
  t.equal((await oldFd.readFile('utf8')), 'old content that is longer than the new one\n', 'a reader holding the old file still sees the old whole file');
  // Repeated replacement.
  for (let i = 0; i < 20; i++) await writeFileAtomic(p, `v${i}`);
  t.equal(await readFile(p, 'utf8'), 'v19');
  t.same(await readdir(dir), ['doc.json'], 'no temp files after 21 replacements');
});

t.test('binary data is written exactly', async (t) => {
  const dir = await tempDir(t);
  const p = join(dir, 'bin');
  const data = new Uint8Array(70_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 131 + 7) & 0xff;
  await writeFileAtomic(p, data);
  t.same(new Uint8Array(await readFile(p)), data);
  // A subarray view writes only its own bytes.
  await writeFileAtomic(p, data.subarray(10, 20));
  t.same(new Uint8Array(await readFile(p)), data.slice(10, 20), 'subarray: only the viewed bytes');
  await writeFileAtomic(p, '');
  t.equal((await stat(p)).size, 0, 'empty content');
});

t.test('failures leave no temp files and do not touch the target', async (t) => {
  const dir = await tempDir(t);
  // Target is a non-empty directory: rename fails.
  const target = join(dir, 'target');
  await mkdir(target);
  await writeFile(join(target, 'inside'), 'keep');
  await t.rejects(writeFileAtomic(target, 'data'), 'renaming over a directory fails');
  t.same((await readdir(dir)).sort(), ['target'], 'the temp file was removed after the failed rename');
  t.equal(await readFile(join(target, 'inside'), 'utf8'), 'keep');
  // Missing parent directory.
  await t.rejects(writeFileAtomic(join(dir, 'missing', 'f'), 'data'), { code: 'ENOENT' });
  t.same((await readdir(dir)).sort(), ['target'], 'nothing created');
});

t.test('concurrent writers: the file is one whole version, no temp files remain', async (t) => {
  const dir = await tempDir(t);
  const p = join(dir, 'c.json');
  const docs = Array.from({ length: 16 }, (_, i) => JSON.stringify({ writer: i, pad: String(i).repeat(20_000) }));
  await Promise.all(docs.map((d) => writeFileAtomic(p, d)));
  const got = await readFile(p, 'utf8');
  t.ok(docs.includes(got), 'content is exactly one of the written documents');
  t.same(await readdir(dir), ['c.json'], 'no temp files');
});

t.test('ensurePrivateDir, appendLineDurable, fsyncDir', async (t) => {
  const dir = await tempDir(t);
  const d = join(dir, 'a', 'b');
  await ensurePrivateDir(d);
  t.equal(await modeOf(d), 0o700, 'new directory is 0700');
  await chmod(d, 0o755);
  await ensurePrivateDir(d);
  t.equal(await modeOf(d), 0o700, 'a loose existing directory is tightened to 0700');
  const log = join(d, 'log');
  await appendLineDurable(log, 'one');
  await appendLineDurable(log, 'two\n');
  t.equal(await readFile(log, 'utf8'), 'one\ntwo\n', 'one line each, newline added only when missing');
  t.equal(await modeOf(log), 0o600);
  await t.resolves(fsyncDir(d));
  await t.rejects(fsyncDir(join(d, 'nope')), { code: 'ENOENT' });
});

// ---------------------------------------------------------------- crash test

const MODULE_URL = new URL('../src/io/atomic-file.js', import.meta.url).href;

// The writer: alternates between two complete JSON documents forever, writing
// "w" to stdout (synchronous for pipes on Linux) after each completed write.
const WRITER = `
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from ${JSON.stringify(MODULE_URL)};
const path = process.env.KMGR_T_PATH;
const docs = [readFileSync(process.env.KMGR_T_A), readFileSync(process.env.KMGR_T_B)];
let i = readFileSync(path).equals(docs[0]) ? 1 : 0;
for (;;) {
  await writeFileAtomic(path, docs[i]);
  i ^= 1;
  process.stdout.write('w');
}
`;

function makeDoc(name: string, rng: () => number): string {
  const items: Array<Record<string, unknown>> = [];
  for (let i = 0; i < 3000; i++) items.push({ i, name, v: Math.floor(rng() * 1e9), s: name.repeat(8) });
  return JSON.stringify({ doc: name, items }) + '\n';
}

t.test('threat 12: a writer killed at random moments leaves the old or the new document', async (t) => {
  const dir = await tempDir(t);
  const rng = mulberry32(0xdead);
  const A = makeDoc('alpha', rng);
  const B = makeDoc('bravo', rng);
  t.ok(A.length > 100_000 && A.length !== B.length, `documents are large (${A.length} and ${B.length} bytes) and differ in length`);
  const aPath = join(dir, 'A.json');
  const bPath = join(dir, 'B.json');
  await writeFile(aPath, A);
  await writeFile(bPath, B);
  const target = join(dir, 'state.json');
  await writeFile(target, A, { mode: 0o600 });

  const env: NodeJS.ProcessEnv = { ...process.env, KMGR_T_PATH: target, KMGR_T_A: aPath, KMGR_T_B: bPath };
  delete env.NODE_OPTIONS;
  const CYCLES = 30;
  const bad: string[] = [];
  const seen = { A: 0, B: 0 };
  let writes = 0;
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const child = spawn(...untracked(process.execPath, ['--input-type=module', '-e', WRITER]), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = 0;
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal })),
    );
    // Wait for the first completed write, then a random few tens of ms more.
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (c: Buffer) => {
        out += c.length;
        resolve();
      });
      void exited.then(() => resolve());
    });
    await new Promise((r) => setTimeout(r, Math.floor(rng() * 40)));
    child.kill('SIGKILL');
    const { code, signal } = await exited;
    if (signal !== 'SIGKILL') bad.push(`cycle ${cycle}: writer ended by itself (code ${code}): ${err.slice(0, 500)}`);
    writes += out;
    const got = await readFile(target, 'utf8');
    if (got === A) seen.A++;
    else if (got === B) seen.B++;
    else bad.push(`cycle ${cycle}: torn file, ${got.length} bytes`);
    try {
      JSON.parse(got);
    } catch {
      bad.push(`cycle ${cycle}: file does not parse`);
    }
  }
  t.same(bad, [], `after each of ${CYCLES} kills the file is exactly one of the two documents`);
  t.equal(seen.A + seen.B, CYCLES);
  t.ok(writes >= CYCLES, `the writers completed ${writes} replacements in all (at least one per cycle)`);
  t.equal(await modeOf(target), 0o600, 'still 0600');
  const leftovers = (await readdir(dir)).filter((n) => n.endsWith('.tmp'));
  t.ok(leftovers.every((n) => /^\.state\.json\.\d+\.[0-9a-f]{12}\.tmp$/.test(n)), 'any leftover temp files are hidden, named after the target and their writer');
  // Each writer removes what dead writers left: at most the last one killed has left one.
  t.ok(leftovers.length <= 1, `killed writers' temp files were cleaned up by the next writer (${leftovers.length} left)`);
  t.comment(`A ${seen.A} times, B ${seen.B} times; ${leftovers.length} temp files left by killed writers`);
});
