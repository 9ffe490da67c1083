// The terms verification unit (Figs. 8 and 9): decides whether one more use of
// a key is allowed, and what its counters become. Pure: the store calls it
// while it holds the key's record, so check and count are one step (threat 9).
import { periodsAt, type Periods } from './periods.js';

export interface Uses {
  total: number;
  day: number;
  week: number;
  month: number;
  /** The periods the day/week/month counters belong to. */
  periods: Periods;
}

export interface KeyTerms {
  inhibited: boolean;
  expiresAt: number | null; // epoch ms; the key is valid strictly before it
  maxUses: number | null;
  maxPerDay: number | null;
  maxPerWeek: number | null;
  maxPerMonth: number | null;
  onLimit: 'deny' | 'notify';
}

export type LimitName = 'total' | 'day' | 'week' | 'month';
export type RefusalCode = 'terms_inhibited' | 'terms_expired' | 'terms_max_uses' | 'terms_max_per_day' | 'terms_max_per_week' | 'terms_max_per_month';

export type Verdict =
  | { serve: true; overLimit: LimitName[]; uses: Uses }
  | { serve: false; code: RefusalCode; message: string; uses: Uses };

/**
 * Counters as they stand at `atMs`: a counter whose period has passed reads
 * zero. Periods only move forward (threat: a clock stepped back across
 * midnight must not restart today's count): a time that falls in an earlier
 * period than the counter's is counted in the counter's own period. Period
 * names sort in time order (2026-11-27, 2026-W48, 2026-11), so comparing them
 * as strings is comparing them in time.
 */
export function usesAt(u: Uses, atMs: number, tz: string): Uses {
  const p = periodsAt(atMs, tz);
  const day = p.day > u.periods.day ? { n: 0, at: p.day } : { n: u.day, at: u.periods.day };
  const week = p.week > u.periods.week ? { n: 0, at: p.week } : { n: u.week, at: u.periods.week };
  const month = p.month > u.periods.month ? { n: 0, at: p.month } : { n: u.month, at: u.periods.month };
  return { total: u.total, day: day.n, week: week.n, month: month.n, periods: { day: day.at, week: week.at, month: month.at } };
}

const LIMITS: ReadonlyArray<[LimitName, keyof KeyTerms, RefusalCode, string]> = [
  ['total', 'maxUses', 'terms_max_uses', 'its maximum number of uses'],
  ['day', 'maxPerDay', 'terms_max_per_day', 'its maximum uses for today'],
  ['week', 'maxPerWeek', 'terms_max_per_week', 'its maximum uses for this week'],
  ['month', 'maxPerMonth', 'terms_max_per_month', 'its maximum uses for this month'],
];

export function judgeUse(t: KeyTerms, u: Uses, atMs: number, tz: string): Verdict {
  const now = usesAt(u, atMs, tz);
  if (t.inhibited) return { serve: false, code: 'terms_inhibited', message: 'the key is locked (use inhibited)', uses: now };
  if (t.expiresAt !== null && atMs >= t.expiresAt) {
    return { serve: false, code: 'terms_expired', message: `the key expired at ${new Date(t.expiresAt).toISOString()}`, uses: now };
  }
  const over: LimitName[] = [];
  for (const [name, field, code, what] of LIMITS) {
    const max = t[field] as number | null;
    if (max !== null && now[name] + 1 > max) {
      if (t.onLimit === 'deny') return { serve: false, code, message: `the key has reached ${what} (${max})`, uses: now };
      over.push(name);
    }
  }
  return {
    serve: true,
    overLimit: over,
    uses: { total: now.total + 1, day: now.day + 1, week: now.week + 1, month: now.month + 1, periods: now.periods },
  };
}
