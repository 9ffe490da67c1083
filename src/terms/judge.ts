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

/** Counters as they stand at `atMs`: a counter whose period has passed reads zero. */
export function usesAt(u: Uses, atMs: number, tz: string): Uses {
  const p = periodsAt(atMs, tz);
  return {
    total: u.total,
    day: p.day === u.periods.day ? u.day : 0,
    week: p.week === u.periods.week ? u.week : 0,
    month: p.month === u.periods.month ? u.month : 0,
    periods: p,
  };
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
