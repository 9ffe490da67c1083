// Real kmgr agents for tests: started like any kmgr command (no terminal), and
// always killed at teardown, whatever the test did to them.
import type { Test } from 'tap';
import { kmgr, type KmgrOptions, type RunResult } from './cli.js';

/** `kmgr agent ARGS` for a home. */
export function agent(args: string[], o: KmgrOptions): Promise<RunResult> {
  return kmgr(['agent', ...args], o);
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
