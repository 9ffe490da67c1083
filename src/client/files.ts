// Reading the client's private files, with the checks ssh makes on its keys.
import { copyFile, open, rename, stat } from 'node:fs/promises';
import { checkAccess } from '../io/permissions.js';
import { constants as fsConstants } from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError, IntegrityError, KmgrError } from '../protocol/errors.js';
import type { Schema } from '../protocol/schema.js';

/** Bigger than any state file kmgr writes: a file past it is not ours. */
const MAX_STATE_FILE = 256 << 20;

/**
 * A state file's text, or undefined if there is none. Only a regular file is
 * read: opened without blocking and checked first, so that a FIFO (which
 * would block the command forever) or a device such as /dev/zero (endless) put
 * in a file's place is a clear error at once.
 */
export async function readIfExists(path: string): Promise<string | undefined> {
  let fh;
  try {
    fh = await open(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError(`cannot read ${path}: ${(e as Error).message}`).because(e);
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) {
      // What reading it would have said, kept as the cause.
      throw new ConfigError(`cannot read ${path}: it is a directory`).because(Object.assign(new Error(`EISDIR: illegal operation on a directory, read`), { code: 'EISDIR' }));
    }
    if (!st.isFile()) throw new ConfigError(`${path} is not a regular file (a FIFO or device stands in its place); move it away`);
    if (st.size > MAX_STATE_FILE) throw new ConfigError(`${path} is ${st.size} bytes, far larger than any file kmgr writes; move it away`);
    return await fh.readFile('utf8');
  } catch (e) {
    if (e instanceof KmgrError) throw e;
    throw new ConfigError(`cannot read ${path}: ${(e as Error).message}`).because(e);
  } finally {
    await fh.close();
  }
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Refuses a secret file that group or others may read or write (threat 12).
 * stat, following a link: the file's directory is checked with the config, so
 * only the user can have put a link there. Its owner is judged with that directory.
 */
export async function checkPrivateMode(path: string): Promise<void> {
  const a = await checkAccess(path, { look: 'stat', deny: 0o077, owner: 'any' });
  if (a.problem) {
    throw new ConfigError(
      `${path} is accessible by others (mode ${a.mode.toString(8)}); run chmod 600 on it`,
      'unsafe_permissions',
    );
  }
}

/**
 * The one reader of a JSON state file: its value, or undefined if there is
 * none. Read as readIfExists reads (a FIFO or device in its place is refused);
 * a file that is not JSON is an integrity error naming it (exit 65), never a
 * crash. `trust`, when given, runs once the file is found and before its
 * contents are believed (a file others could write is refused unparsed).
 */
export async function readJsonFile(path: string, o: { trust?: (path: string) => Promise<void> } = {}): Promise<unknown> {
  const text = await readIfExists(path);
  if (text === undefined) return undefined;
  await o.trust?.(path);
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new IntegrityError(`${path} is not valid JSON (damaged or edited)`).because(e);
  }
}

/**
 * A JSON state file validated by its schema; a file that does not fit is a
 * configuration error naming the file (exit 78), never a crash.
 */
export async function loadJsonFile<T>(path: string, schema: Schema<T>, what: string): Promise<T | undefined> {
  const v = await readJsonFile(path, { trust: (p) => checkNotWritableByOthers(p) });
  if (v === undefined) return undefined;
  try {
    return schema(v, what);
  } catch (e) {
    if (e instanceof KmgrError && e.code === 'bad_request') throw new ConfigError(`${path} is invalid: ${e.message}`).because(e);
    throw e;
  }
}

/**
 * The state files and their directory must not be writable by anyone else
 * (threat 12): another user could reset a rollback high-water mark, point the
 * config at another server, or plant an agent socket.
 */
export async function checkNotWritableByOthers(path: string, o: { rootMayOwn?: boolean } = {}): Promise<void> {
  for (const p of [dirname(path), path]) {
    // stat, following links: the directory is judged first, and once nobody else can
    // write it nobody else can have planted a link in it; a link the user made is honoured.
    // A CA file outside the home may be the system's (root's); still nobody else may write it.
    const a = await checkAccess(p, { look: 'stat', deny: 0o022, owner: o.rootMayOwn ? 'self-or-root' : 'self' });
    if (a.problem === 'owner') throw new ConfigError(`${p} belongs to another user`, 'unsafe_permissions');
    if (a.problem === 'mode') {
      throw new ConfigError(`${p} is writable by others (mode ${a.mode.toString(8)}); run chmod go-w on it`, 'unsafe_permissions');
    }
  }
}

/**
 * Before --force replaces an identity: copies of the keystore, config and
 * partner index are kept beside them (keys wrapped by the old management key
 * stay recoverable), and the logs are moved aside. Copies, not renames, so
 * that a crash before the new files are written leaves the old ones working.
 */
export async function keepOldIdentity(paths: { keystore: string; config: string; partners: string; fetchLog: string; sentLog: string }): Promise<void> {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  for (const f of [paths.keystore, paths.config, paths.partners]) {
    if (await exists(f)) await copyFile(f, `${f}.old-${stamp}`, fsConstants.COPYFILE_EXCL);
  }
  for (const f of [paths.fetchLog, paths.sentLog]) if (await exists(f)) await rename(f, `${f}.old-${stamp}`);
}
