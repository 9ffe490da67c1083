// Crash-safe file replacement (threat 12): write a temp file in the same
// directory, fsync it, rename it over the target, fsync the directory. A crash
// at any point leaves either the old file or the new one, never a torn one.
import { open, rename, unlink, mkdir, stat, chmod } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, basename, join } from 'node:path';

export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await fsyncDir(dir);
}

export async function fsyncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** Creates a private directory (0700), tightening an existing one we own. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await stat(dir);
  if ((st.mode & 0o077) !== 0) await chmod(dir, 0o700);
}

/** Appends one line and fsyncs it, for logs that must survive a crash. */
export async function appendLineDurable(path: string, line: string, mode = 0o600): Promise<void> {
  let created = false;
  let fh;
  try {
    fh = await open(path, 'ax', mode);
    created = true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    fh = await open(path, 'a', mode);
  }
  try {
    await fh.appendFile(line.endsWith('\n') ? line : line + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
  // A new file's name is only durable once its directory is.
  if (created) await fsyncDir(dirname(path));
}
