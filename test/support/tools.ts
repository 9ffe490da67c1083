// Outside programs some tests drive; each test that needs one skips itself without it.
// Asked once per process, and only when a test asks (not at import, so a test that
// needs none of them starts no probe).
import { spawnSync } from 'node:child_process';

const probed = new Map<string, boolean>();
function probe(name: string, cmd: string, args: string[]): boolean {
  let ok = probed.get(name);
  if (ok === undefined) {
    ok = spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
    probed.set(name, ok);
  }
  return ok;
}

export const hasOpenssl = (): boolean => probe('openssl', 'openssl', ['version']);

/** util-linux script(1), for running kmgr under a pseudo-terminal. */
export const hasScript = (): boolean => probe('script', 'script', ['--version']);

/** python3 with pty and os.waitstatus_to_exitcode, for the PTY relay (see pty.ts). */
export const hasPyPty = (): boolean =>
  process.platform === 'linux' && probe('python3-pty', 'python3', ['-c', 'import os, pty; os.waitstatus_to_exitcode']);
