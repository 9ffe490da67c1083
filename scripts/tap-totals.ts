// Reading one tap test file's output, for npm test's runner (run-tests.ts): its counts and what it skipped.

/** Counts as tap prints them in a file's last line, `# { total: 12, pass: 11, fail: 1 }`. */
export type Totals = Record<'total' | 'pass' | 'fail' | 'skip' | 'todo', number>;

export const zero = (): Totals => ({ total: 0, pass: 0, fail: 0, skip: 0, todo: 0 });

/** The counts from a file's TAP output, or undefined when it never printed them (it crashed or was killed). */
export function totalsOf(tap: string): Totals | undefined {
  const line = [...tap.matchAll(/^# \{ total: .*\}$/gm)].pop()?.[0];
  if (line === undefined) return undefined;
  const t = zero();
  for (const [, k, v] of line.matchAll(/(\w+): (\d+)/g)) if (k! in t) t[k as keyof Totals] = Number(v);
  return t;
}

/** The lines saying what was skipped or left to do, and why, so a skip is seen in the log. */
export function skipsIn(tap: string): string[] {
  return tap.split('\n').filter((l) => /^\s*ok \d+ - .*# (SKIP|TODO)/i.test(l));
}
