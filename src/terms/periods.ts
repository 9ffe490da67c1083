// Calendar periods for the per-day, per-week and per-month counters (Fig. 15,
// 1505-1507). Computed from the clock at each use in one configured zone, so
// there is no reset job to miss (threat 11). Weeks are ISO weeks, from Monday.

export interface Periods {
  day: string; // 2026-11-27
  week: string; // 2026-W48
  month: string; // 2026-11
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: tz, year: 'numeric', month: 'numeric', day: 'numeric', hourCycle: 'h23' });
    formatters.set(tz, f);
  }
  return f;
}

/** Throws RangeError for a zone name the runtime does not know. */
export function checkTimeZone(tz: string): void {
  formatter(tz);
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');
const DAY_MS = 86_400_000;

/** The local calendar date of an instant in a zone. */
export function localDate(atMs: number, tz: string): { y: number; m: number; d: number } {
  let y = 0, m = 0, d = 0;
  for (const p of formatter(tz).formatToParts(atMs)) {
    if (p.type === 'year') y = Number(p.value);
    else if (p.type === 'month') m = Number(p.value);
    else if (p.type === 'day') d = Number(p.value);
  }
  return { y, m, d };
}

/** ISO 8601 week-numbering year and week of a calendar date. */
export function isoWeek(y: number, m: number, d: number): { year: number; week: number } {
  const date = Date.UTC(y, m - 1, d);
  const dow = (new Date(date).getUTCDay() + 6) % 7; // Monday = 0
  const thursday = date + (3 - dow) * DAY_MS; // the week belongs to the year of its Thursday
  const year = new Date(thursday).getUTCFullYear();
  return { year, week: 1 + Math.floor((thursday - Date.UTC(year, 0, 1)) / (7 * DAY_MS)) };
}

// Every zone's offset is a whole number of minutes, so a day, week or month
// never begins inside a minute: the periods of one minute can be remembered.
// This is on every fetch's path, and Intl formatting costs ~15 µs a call.
let cached: { tz: string; minute: number; periods: Periods } | undefined;

export function periodsAt(atMs: number, tz: string): Periods {
  const minute = Math.floor(atMs / 60_000);
  if (cached && cached.minute === minute && cached.tz === tz) return cached.periods;
  const periods = computePeriods(atMs, tz);
  cached = { tz, minute, periods };
  return periods;
}

function computePeriods(atMs: number, tz: string): Periods {
  const { y, m, d } = localDate(atMs, tz);
  const w = isoWeek(y, m, d);
  return { day: `${pad(y, 4)}-${pad(m)}-${pad(d)}`, week: `${pad(w.year, 4)}-W${pad(w.week)}`, month: `${pad(y, 4)}-${pad(m)}` };
}
