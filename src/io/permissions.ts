// The one judgement of who may touch a path kmgr trusts: its state files and
// their directory (threat 12), the agent's socket and its directory, kmgrd's
// data directory and key files. Each caller words its own refusal; what counts
// as "ours" and "private" is decided here only.
import { lstatSync, statSync, type Stats } from 'node:fs';
import { lstat, stat } from 'node:fs/promises';

/**
 * How a path is looked at; every caller says which, and why.
 *
 * - 'lstat' judges the name itself, never what it points at. Where the name
 *   could be replaced by someone else (the agent's socket and its directory
 *   under $XDG_RUNTIME_DIR or a home), a symbolic link put in its place would
 *   lend the check the owner and mode of its target (a private directory of
 *   the user's) while the connection goes through the link to a socket the
 *   planter listens on. lstat sees the link, which is refused.
 * - 'stat' follows a link and judges the target. For state files in a
 *   directory that is itself checked (nobody else can write it, so nobody
 *   else can have made a link there) and for files the user names (a CA file),
 *   a link the user made (dotfiles, a shared CA) is honoured.
 */
type Look = 'stat' | 'lstat';

interface AccessRule {
  look: Look;
  /** Mode bits nobody but the owner may hold: 0o077 private, 0o022 written by nobody else. */
  deny: number;
  /**
   * Who may own the path: 'self' the user running kmgr; 'self-or-root' also root
   * (a CA file of the system's); 'any' when the mode alone matters, as for a file
   * that only its owner can have made so (its owner is checked with its directory).
   */
  owner: 'self' | 'self-or-root' | 'any';
  /** The kind the path must be; any other is refused as 'kind'. */
  kind?: 'file' | 'directory' | 'socket';
}

type AccessProblem = 'kind' | 'owner' | 'mode';

interface Access {
  st: Stats;
  /** The first thing wrong, in the order kind, owner, mode; undefined when the path may be trusted. */
  problem: AccessProblem | undefined;
  /** The permission bits, for messages (0o755). */
  mode: number;
}

/** Looks at `path` as the rule says and judges it. A path that does not exist throws the system error (ENOENT). */
export async function checkAccess(path: string, rule: AccessRule): Promise<Access> {
  return judge(rule.look === 'lstat' ? await lstat(path) : await stat(path), rule);
}

/** checkAccess for the agent's synchronous start-up and its clients' connect path. */
export function checkAccessSync(path: string, rule: AccessRule): Access {
  return judge(rule.look === 'lstat' ? lstatSync(path) : statSync(path), rule);
}

function judge(st: Stats, rule: AccessRule): Access {
  return { st, problem: problemOf(st, rule), mode: st.mode & 0o777 };
}

function problemOf(st: Stats, rule: AccessRule): AccessProblem | undefined {
  if (rule.kind === 'file' && !st.isFile()) return 'kind';
  if (rule.kind === 'directory' && !st.isDirectory()) return 'kind';
  if (rule.kind === 'socket' && !st.isSocket()) return 'kind';
  // Where there are no user ids (Windows) there is no owner to judge.
  if (rule.owner !== 'any' && typeof process.getuid === 'function' && st.uid !== process.getuid() && !(rule.owner === 'self-or-root' && st.uid === 0)) return 'owner';
  if ((st.mode & rule.deny) !== 0) return 'mode';
  return undefined;
}
