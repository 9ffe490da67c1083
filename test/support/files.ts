// Files on disk: temporary directories removed at teardown, whole-tree snapshots
// (to prove a command wrote nothing), JSON state files, passphrase files.
import type { Test } from 'tap';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type Teardown = { teardown(fn: () => unknown): void };

export async function tempDir(t: Teardown, prefix = 'kmgr-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Every file under dir (recursively), by path relative to dir, with its bytes. */
export async function snapshot(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = async (d: string, rel: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p, join(rel, e.name));
      else if (e.isFile()) out.set(join(rel, e.name), await readFile(p));
    }
  };
  await walk(dir, '');
  return out;
}

export function sameSnapshot(t: Test, before: Map<string, Buffer>, after: Map<string, Buffer>, what: string): void {
  t.same([...after.keys()].sort(), [...before.keys()].sort(), `${what}: the same files`);
  const changed = [...before].filter(([k, v]) => !after.get(k)?.equals(v)).map(([k]) => k);
  t.same(changed, [], `${what}: every file byte-identical`);
}

/**
 * A JSON file, as the type the caller names: the state files' own types live in src/,
 * and the test's assertions check the contents, so the parse is not checked again here.
 */
export async function readJson<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T;
}

export async function writePassphrase(dir: string, name: string, passphrase: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, passphrase + '\n', { mode: 0o600 });
  return p;
}
