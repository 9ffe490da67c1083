// How kmgr words counts and times for people, on both sides: "1 day", "3 days",
// "in 10 minutes", never "in 1 days" or "0 days" for something an hour away.

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** A time ahead in the largest unit that still says something: minutes under 2 hours, hours under 2 days, else days. */
export function timeAhead(ms: number): string {
  if (ms <= 0) return 'now';
  const minutes = Math.ceil(ms / 60_000);
  if (minutes < 120) return `in ${plural(minutes, 'minute')}`;
  const hours = Math.round(ms / 3_600_000);
  if (hours < 48) return `in ${plural(hours, 'hour')}`;
  return `in ${plural(Math.round(ms / 86_400_000), 'day')}`;
}

const PER: Record<'total' | 'day' | 'week' | 'month', string> = { total: 'total', day: 'per-day', week: 'per-week', month: 'per-month' };
export const limitName = (k: keyof typeof PER): string => PER[k];
