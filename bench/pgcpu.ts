// CPU time PostgreSQL spends for the benchmark's database: the sum over the
// backends connected to it, read from /proc (Linux, the server on this machine).
// Backends that appear during a run count from zero; the pool keeps its
// connections for longer than a run, so few come and go.
import { readFileSync } from 'node:fs';
import { backendPids, databaseName } from '../src/store/pg/databases.js';

export type PgCpuSample = Map<number, number>;

function procCpuUs(pid: number): number | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10_000; // utime + stime, in 10 ms ticks
  } catch {
    return undefined;
  }
}

export async function samplePgCpu(adminUrl: string, dbUrl: string): Promise<PgCpuSample | undefined> {
  try {
    const out: PgCpuSample = new Map();
    for (const pid of await backendPids(adminUrl, databaseName(dbUrl))) {
      const us = procCpuUs(pid);
      if (us !== undefined) out.set(pid, us);
    }
    return out.size > 0 ? out : undefined; // not on this machine (or not readable): unknown
  } catch {
    return undefined;
  }
}

export function pgCpuBetween(a: PgCpuSample | undefined, b: PgCpuSample | undefined): number {
  if (!a || !b) return NaN;
  let us = 0;
  for (const [pid, t] of b) us += t - (a.get(pid) ?? 0);
  return us;
}
