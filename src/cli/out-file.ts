// --out FILE for fetch (a private key) and register (a public key): written
// atomically (a reader never sees half a key, a crash leaves the old file or
// the new one) with mode 0600. A file that is there already is replaced only
// if kmgr wrote it: this home remembers the device and inode of each file it
// wrote, so `kmgr fetch bank-a --out key.pem` can refresh its own file every
// day, but a typo never overwrites somebody's other file (--force does).
import { access, lstat } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { KmgrError } from '../protocol/errors.js';
import { writeFileAtomic } from '../io/atomic-file.js';
import { readJsonFile } from '../client/files.js';
import type { HomePaths } from '../client/home.js';

const recordPath = (paths: HomePaths): string => join(paths.dir, 'out-files.json');

type Written = Record<string, string>;

async function loadWritten(paths: HomePaths): Promise<Written> {
  const v = await readJsonFile(recordPath(paths));
  if (v === undefined) return {};
  const files = typeof v === 'object' && v !== null ? (v as { files?: unknown }).files : undefined;
  return typeof files === 'object' && files !== null ? (files as Written) : {};
}

const identity = (st: { dev: number; ino: number }): string => `${st.dev}:${st.ino}`;

/**
 * Checks, before anything is counted, that `file` may be written: its directory
 * exists and is writable, and it is absent, or a file this home wrote, or --force.
 */
export async function checkOutFile(paths: HomePaths, file: string, force: boolean | undefined): Promise<void> {
  const abs = resolve(file);
  try {
    await access(dirname(abs), fsConstants.W_OK | fsConstants.X_OK);
  } catch (e) {
    throw new KmgrError('output_failed', `cannot write into ${dirname(abs)} (${(e as NodeJS.ErrnoException).code ?? 'not writable'})`);
  }
  let st;
  try {
    st = await lstat(abs);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new KmgrError('output_failed', `cannot examine ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (force) return;
  if (st.isDirectory()) throw new KmgrError('file_exists', `${file} is a directory; --out names the file to write`);
  const mine = (await loadWritten(paths))[abs] === identity(st) && st.isFile();
  if (!mine) throw new KmgrError('file_exists', `${file} exists and kmgr did not write it; remove it, choose another name, or add --force to replace it`);
}

/** Writes `data` to `file` (0600, atomically) and remembers it as this home's. `what` names it in errors. */
export async function writeOutFile(paths: HomePaths, file: string, data: Uint8Array | string, what: string): Promise<void> {
  const abs = resolve(file);
  try {
    await writeFileAtomic(abs, data, 0o600);
  } catch (e) {
    throw new KmgrError('output_failed', `${what} could not be written to ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  // Remembering is best effort: without it, the next --out to this file asks for --force.
  try {
    const written = await loadWritten(paths);
    written[abs] = identity(await lstat(abs));
    await writeFileAtomic(recordPath(paths), JSON.stringify({ v: 1, files: written }, null, 2) + '\n');
  } catch {
    /* the key is written; only the record is missing */
  }
}
