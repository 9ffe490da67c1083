// Helpers for tests that run real kmgr agents: started detached from any
// terminal, and always killed at teardown.
import type { Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { kmgr, type RunResult } from './helpers.js';

/** kmgr, detached (no controlling terminal), with a clean environment plus KMGR_HOME and env. */
export function runNode(args: string[], o: { home: string; env?: Record<string, string>; timeoutMs?: number }): Promise<RunResult> {
  return kmgr(args, { ...o, detached: true, extraCa: false });
}

/** `kmgr agent ARGS` for a home. */
export function agent(args: string[], o: { home: string; env?: Record<string, string>; timeoutMs?: number }): Promise<RunResult> {
  return runNode(['agent', ...args], o);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Kills pid (SIGKILL, also if stopped) at teardown, if it is still there. */
export function reap(t: Test, pid: number): void {
  t.teardown(() => {
    if (!isAlive(pid)) return;
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  });
}

/** `kmgr agent start` with the passphrase from pp; the agent is reaped at teardown. */
export async function startAgent(t: Test, home: string, pp: string, extra: string[] = [], env?: Record<string, string>): Promise<{ pid: number; socket: string; r: RunResult }> {
  const r = await agent(['start', '--passphrase-file', pp, ...extra], { home, ...(env ? { env } : {}) });
  if (r.code !== 0) throw new Error(`agent start failed (${r.code}): ${r.stderr}`);
  const socket = r.stdout.trim();
  const s = await agent(['status', '--json'], { home, ...(env ? { env } : {}) });
  const pid = (JSON.parse(s.stdout) as { pid: number }).pid;
  reap(t, pid);
  return { pid, socket, r };
}

export const HAVE_PY_PTY =
  process.platform === 'linux' && spawnSync('python3', ['-c', 'import os, pty; os.waitstatus_to_exitcode'], { stdio: 'ignore' }).status === 0;

/**
 * A python3 program that runs argv[1:] on a new pseudo-terminal, relays the
 * terminal to stdout and stdin to the terminal, and prints "__EXIT__ N" when
 * the program exits (then keeps relaying for what it left on the terminal,
 * such as an agent's --confirm prompts).
 */
export const PTY_RELAY = [
  'import os, pty, sys, select',
  'pid, fd = pty.fork()',
  'if pid == 0:',
  '    os.execv(sys.argv[1], sys.argv[1:])',
  'done = False',
  'while True:',
  '    if not done:',
  '        w, st = os.waitpid(pid, os.WNOHANG)',
  '        if w:',
  '            done = True',
  '            os.write(1, ("\\n__EXIT__ %d\\n" % os.waitstatus_to_exitcode(st)).encode())',
  '    r, _, _ = select.select([fd, 0], [], [], 0.1)',
  '    if fd in r:',
  '        try:',
  '            data = os.read(fd, 4096)',
  '        except OSError:',
  '            break',
  '        if not data:',
  '            break',
  '        os.write(1, data)',
  '    if 0 in r:',
  '        data = os.read(0, 4096)',
  '        if not data:',
  '            break',
  '        os.write(fd, data)',
].join('\n');
