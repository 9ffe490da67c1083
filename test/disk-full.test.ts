// A full disk: kmgrd answers 503 naming no path, /v1/health says writes fail,
// no acknowledged use is lost, and it recovers by itself when space returns.
// Real LevelDB on a small tmpfs, mounted by the test (skipped, saying why, where mounting is not allowed).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { startServer, tempDir, kmgrd, enrol, health, keyStatus, newIdentity, newPartnerId, register, send, signed, LEVELDB } from './support/index.js';

async function mountTmpfs(dir: string): Promise<string | undefined> {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m,mode=0700', 'tmpfs', dir], { stdio: 'pipe' });
    return undefined;
  } catch (e) {
    return `cannot mount a tmpfs here (${String((e as { stderr?: Buffer }).stderr ?? e).trim() || 'not permitted'})`;
  }
}

/** Fills the file system: writes until ENOSPC. */
async function fill(path: string): Promise<void> {
  const fh = await open(path, 'w');
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) await fh.write(chunk);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    await fh.close().catch(() => undefined);
  }
  // What is left is smaller than a chunk: take it byte by byte in small pieces.
  const small = await open(path, 'a');
  try {
    for (;;) await small.write(Buffer.alloc(512));
  } catch {
    // full
  } finally {
    await small.close().catch(() => undefined);
  }
}

const mnt = join(await tempDir(t, 'kmgrd-tmpfs-'), 'mnt');
await mkdir(mnt);
const why = await mountTmpfs(mnt);
if (why) console.log(`# skipping the disk-full test: ${why}`);
else t.teardown(() => execFileSync('umount', ['-l', mnt]));

t.test('a full disk: 503 without paths, health not ok, no acknowledged use lost, recovery without restart', { skip: why ?? false }, async (t) => {
  const dataDir = join(mnt, 'data');
  let server = await startServer(t, { dataDir, databaseUrl: LEVELDB });
  let target = { url: server.url, ca: server.ca };
  const id = newIdentity();
  t.equal((await enrol(target, id)).status, 201);
  const partner = newPartnerId();
  t.equal((await register(target, id, partner)).status, 201);
  const fetchOnce = () => send(target, signed(target, id, 'POST', `/v1/keys/${partner}/fetch`, {}));
  let acknowledged = 0;
  for (let i = 0; i < 3; i++) if ((await fetchOnce()).status === 200) acknowledged++;
  t.equal(acknowledged, 3);

  const filler = join(mnt, 'filler');
  await fill(filler);
  // The log's last page may still have room: fetch until a write needs a new page.
  let refused: Awaited<ReturnType<typeof fetchOnce>> | undefined;
  let attempts = 0;
  for (let i = 0; i < 500 && !refused; i++) {
    const r = await fetchOnce();
    if (r.status === 200) acknowledged++;
    else {
      attempts++;
      refused = r;
    }
  }
  t.ok(refused, 'a write eventually failed');
  t.equal(refused?.status, 503, 'answered 503');
  t.equal(refused?.json?.error?.code, 'unavailable');
  t.notMatch(refused?.json?.error?.message ?? '', /\//, `the message names no path: ${refused?.json?.error?.message}`);
  const h = await health(target);
  t.equal(h.status, 503, '/v1/health does not claim all is well');
  t.equal(h.json.storage, 'write_failing');
  const again = await fetchOnce();
  if (again.status === 200) acknowledged++;
  else attempts++;
  t.equal(again.status, 503, 'still refused while the disk is full');

  await rm(filler);
  // Recovery runs on the server's own retry timer; wait for the health endpoint to say so.
  let healthy = false;
  for (let i = 0; i < 300 && !healthy; i++) {
    healthy = (await health(target)).status === 200;
    if (!healthy) await new Promise((r) => setTimeout(r, 50));
  }
  t.ok(healthy, 'healthy again once space returned, without a restart');
  const after = await fetchOnce();
  t.equal(after.status, 200, 'fetches are served again');
  acknowledged++;

  await server.stop();
  const check = await kmgrd(['check-db', '--data', dataDir]);
  t.equal(check.code, 0, `the database is consistent after the failed writes: ${check.stdout}${check.stderr}`);
  server = await startServer(t, { dataDir, databaseUrl: LEVELDB });
  target = { url: server.url, ca: server.ca };
  const total = (await keyStatus(target, id, partner)).json.uses.total;
  t.ok(total >= acknowledged, `every acknowledged use is stored (${total} >= ${acknowledged})`);
  t.ok(total <= acknowledged + attempts, `no more than the attempts (${total} <= ${acknowledged + attempts})`);
});
