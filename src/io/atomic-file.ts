// Crash-safe file replacement (threat 12): write a temp file in the same
// directory, fsync it, rename it over the target, fsync the directory. A crash
// at any point leaves either the old file or the new one, never a torn one.
import { open, rename, unlink, mkdir, chmod, readdir } from 'node:fs/promises';
import { checkAccess } from './permissions.js';
import { randomBytes } from 'node:crypto';
import { dirname, basename, join } from 'node:path';

/** Whether a process of this id runs (EPERM: it runs, as someone else). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporary files a killed writer left beside `path`: each names
 * its writer's process id, and one whose writer is gone is never renamed.
 * A live writer's file is left alone, so concurrent writers are safe.
 */
async function removeStaleTemps(path: string): Promise<void> {
  const dir = dirname(path);
  const prefix = `.${basename(path)}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const n of names) {
    if (!n.startsWith(prefix) || !n.endsWith('.tmp')) continue;
    const m = /^(\d+)\.[0-9a-f]+\.tmp$/.exec(n.slice(prefix.length));
    if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) await unlink(join(dir, n)).catch(() => undefined);
  }
}

export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const dir = dirname(path);
  await removeStaleTemps(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
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

/**
 * Creates a private directory (0700), tightening an existing one. stat, following
 * a link: the directory is named by the user (--data, --home), who may link it.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if ((await checkAccess(dir, { look: 'stat', deny: 0o077, owner: 'any' })).problem) await chmod(dir, 0o700);
}

/**
 * Appends one whole line: O_APPEND and a single write, so concurrent writers
 * never interleave within a line. If an earlier write was cut short (a full
 * disk) and left the file without its final newline, the newline comes first:
 * a torn line never swallows the next one.
 */
export async function appendLine(path: string, line: string, o: { mode?: number; sync?: boolean } = {}): Promise<void> {
  let created = false;
  let fh;
  try {
    fh = await open(path, 'ax+', o.mode ?? 0o600);
    created = true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    // a+: O_APPEND for the write, and readable for the check of the last byte.
    fh = await open(path, 'a+', o.mode ?? 0o600);
  }
  try {
    let text = line.endsWith('\n') ? line : line + '\n';
    const { size } = await fh.stat();
    if (size > 0) {
      const last = Buffer.alloc(1);
      await fh.read(last, 0, 1, size - 1);
      if (last[0] !== 0x0a) text = '\n' + text;
    }
    const buf = Buffer.from(text, 'utf8');
    const { bytesWritten } = await fh.write(buf);
    if (bytesWritten !== buf.length) throw Object.assign(new Error(`short write to ${path} (${bytesWritten} of ${buf.length} bytes; is the disk full?)`), { code: 'ENOSPC' });
    if (o.sync) await fh.sync();
  } finally {
    await fh.close();
  }
  // A new file's name is only durable once its directory is.
  if (created && o.sync) await fsyncDir(dirname(path));
}

/** Appends one line and fsyncs it, for logs that must survive a crash. */
export async function appendLineDurable(path: string, line: string, mode = 0o600): Promise<void> {
  return appendLine(path, line, { mode, sync: true });
}
