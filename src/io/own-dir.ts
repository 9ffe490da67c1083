// A directory kmgr is told to use (kmgrd's --data, kmgr's --home): made 0700
// when it does not exist; when it does, kmgr changes its permissions only if it
// is the user's own and holds nothing but kmgr's files. Silently chmod-ing
// /srv/shared (1777, other users' files) to 0700 would break everyone else's
// work and still leave a directory others could have planted files in.
import { chmod, mkdir, readdir } from 'node:fs/promises';
import { checkAccess } from './permissions.js';
import { ConfigError } from '../protocol/errors.js';

/**
 * `ours`: which entry names are kmgr's own in this directory. Returns a
 * sentence to show when the directory was tightened, else undefined.
 */
export async function ensureOwnDir(dir: string, what: string, ours: (name: string) => boolean): Promise<string | undefined> {
  let a;
  try {
    // stat, following a link: the user names this directory and may link it; what it points at is judged.
    a = await checkAccess(dir, { look: 'stat', deny: 0o077, owner: 'self', kind: 'directory' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new ConfigError(`cannot use ${dir} as ${what}: ${(e as NodeJS.ErrnoException).code}`);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return undefined;
  }
  if (a.problem === 'kind') throw new ConfigError(`${dir} is not a directory; ${what} must be one`);
  if (a.problem === 'owner') {
    throw new ConfigError(`${dir} belongs to another user; kmgr needs a directory of its own for ${what}`, 'unsafe_permissions');
  }
  if (a.problem === undefined) return undefined;
  const mode = a.st.mode & 0o7777;
  const others = (await readdir(dir)).filter((n) => !ours(n));
  if (others.length > 0) {
    throw new ConfigError(
      `${dir} (mode ${mode.toString(8)}) holds files that are not kmgr's (${others.slice(0, 3).join(', ')}${others.length > 3 ? ', ...' : ''}) and others can ${mode & 0o022 ? 'write to' : 'read'} it; kmgr will not change its permissions; give ${what} a directory of its own, such as ${dir}/kmgr`,
      'unsafe_permissions',
    );
  }
  if (mode & 0o022 && (await readdir(dir)).length > 0) {
    throw new ConfigError(`${dir} is writable by others (mode ${mode.toString(8)}), who could have replaced kmgr's files in it; check them, then run chmod 700 on it`, 'unsafe_permissions');
  }
  await chmod(dir, 0o700);
  return `made ${dir} private (mode ${mode.toString(8)} -> 700): it is ${what}`;
}
