// Unit tests for src/terms (threat 11): calendar periods in a configured zone,
// and the terms verification unit, with injected instants (no real clock).
import t from 'tap';
import { periodsAt, isoWeek, localDate, checkTimeZone, type Periods } from '../src/terms/periods.js';
import { judgeUse, usesAt, type KeyTerms, type Uses, type Verdict, type LimitName } from '../src/terms/judge.js';
import { mulberry32 } from './support/index.js';

const at = (iso: string): number => {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new Error(`bad test date ${iso}`);
  return ms;
};
const DAY = 86_400_000;
const HOUR = 3_600_000;
const MIN = 60_000;

const randInt = (rng: () => number, lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1));

const TERMS: KeyTerms = {
  inhibited: false,
  expiresAt: null,
  maxUses: null,
  maxPerDay: null,
  maxPerWeek: null,
  maxPerMonth: null,
  onLimit: 'deny',
};
const fresh = (atMs: number, tz: string): Uses => ({ total: 0, day: 0, week: 0, month: 0, periods: periodsAt(atMs, tz) });
const counts = (u: Uses): [number, number, number, number] => [u.total, u.day, u.week, u.month];

/** Applies judgeUse at each instant in turn, carrying the counters; returns the verdicts. */
function useAt(terms: KeyTerms, tz: string, times: number[], start?: Uses): { verdicts: Verdict[]; uses: Uses } {
  let uses = start ?? fresh(times[0]!, tz);
  const verdicts: Verdict[] = [];
  for (const ms of times) {
    const v = judgeUse(terms, uses, ms, tz);
    verdicts.push(v);
    uses = v.uses;
  }
  return { verdicts, uses };
}
const summary = (v: Verdict): string => (v.serve ? `serve[${v.overLimit.join(',')}]` : v.code);

// ---------------------------------------------------------------- independent calendar model

/** ISO week by the ordinal-date method (Wikipedia), not the Thursday method src uses. */
function isoWeekIndependent(y: number, m: number, d: number): { year: number; week: number } {
  const leap = (yy: number): boolean => (yy % 4 === 0 && yy % 100 !== 0) || yy % 400 === 0;
  const cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
  const ordinal = cum[m - 1]! + d + (m > 2 && leap(y) ? 1 : 0);
  const days = Math.floor(Date.UTC(y, m - 1, d) / DAY);
  const wd = (((days + 3) % 7) + 7) % 7 + 1; // 1970-01-01 was a Thursday (4)
  const p = (yy: number): number => (yy + Math.floor(yy / 4) - Math.floor(yy / 100) + Math.floor(yy / 400)) % 7;
  const weeksIn = (yy: number): number => (p(yy) === 4 || p(yy - 1) === 3 ? 53 : 52);
  const w = Math.floor((ordinal - wd + 10) / 7);
  if (w < 1) return { year: y - 1, week: weeksIn(y - 1) };
  if (w > weeksIn(y)) return { year: y + 1, week: 1 };
  return { year: y, week: w };
}

/** UTC offset (ms) of a zone at an instant, from hand-written rules. */
type OffsetRule = (utcMs: number) => number;
const fixedOffset = (hours: number): OffsetRule => () => hours * HOUR;
/** US rule since 2007: DST from the second Sunday of March 02:00 local to the first Sunday of November 02:00 local. */
const newYorkOffset: OffsetRule = (ms) => {
  const y = new Date(ms).getUTCFullYear();
  const sunday = (month0: number, n: number): number => {
    const first = new Date(Date.UTC(y, month0, 1)).getUTCDay();
    return 1 + ((7 - first) % 7) + 7 * (n - 1);
  };
  const start = Date.UTC(y, 2, sunday(2, 2), 7); // 02:00 EST
  const end = Date.UTC(y, 10, sunday(10, 1), 6); // 02:00 EDT
  return ms >= start && ms < end ? -4 * HOUR : -5 * HOUR;
};

interface Buckets {
  day: number; // local days since the epoch
  week: number; // Monday-based weeks since the epoch
  month: number; // year * 12 + month index
  label: Periods;
}
/** Buckets by arithmetic on a UTC-shifted instant: floor division for days and weeks, Date for the month. */
function bucketsOf(ms: number, rule: OffsetRule): Buckets {
  const local = ms + rule(ms);
  const day = Math.floor(local / DAY);
  const week = Math.floor((day + 3) / 7); // day 0 (Thu) is in week 0; day 4 (Mon 1970-01-05) starts week 1
  const d = new Date(local);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth() + 1;
  const dd = d.getUTCDate();
  const iw = isoWeekIndependent(y, m, dd);
  const p2 = (n: number): string => String(n).padStart(2, '0');
  return {
    day,
    week,
    month: y * 12 + (m - 1),
    label: { day: `${y}-${p2(m)}-${p2(dd)}`, week: `${iw.year}-W${p2(iw.week)}`, month: `${y}-${p2(m)}` },
  };
}

// ---------------------------------------------------------------- periods

t.test('isoWeek agrees with an independent algorithm for every day 2000-2040', async (t) => {
  const bad: string[] = [];
  let n = 0;
  for (let ms = Date.UTC(2000, 0, 1); ms <= Date.UTC(2040, 11, 31); ms += DAY) {
    const d = new Date(ms);
    const [y, m, dd] = [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate()];
    const a = isoWeek(y, m, dd);
    const b = isoWeekIndependent(y, m, dd);
    n++;
    if (a.year !== b.year || a.week !== b.week) bad.push(`${y}-${m}-${dd}: ${a.year}-W${a.week} vs ${b.year}-W${b.week}`);
  }
  t.equal(n, 14976, 'every day checked');
  t.same(bad.slice(0, 10), [], 'no disagreement');
  // Known answers (Python's date.isocalendar).
  const known: Array<[number, number, number, number, number]> = [
    [2026, 12, 31, 2026, 53], [2027, 1, 1, 2026, 53], [2027, 1, 3, 2026, 53], [2027, 1, 4, 2027, 1],
    [2024, 12, 29, 2024, 52], [2024, 12, 30, 2025, 1], [2028, 2, 29, 2028, 9], [2020, 12, 31, 2020, 53],
    [2021, 1, 3, 2020, 53], [2021, 1, 4, 2021, 1], [2008, 12, 29, 2009, 1], [2010, 1, 3, 2009, 53],
  ];
  for (const [y, m, d, wy, w] of known) t.same(isoWeek(y, m, d), { year: wy, week: w }, `${y}-${m}-${d} is ${wy}-W${w}`);
});

t.test('UTC: day, ISO week, month and year rollover', async (t) => {
  t.same(periodsAt(at('2026-12-31T23:59:59Z'), 'UTC'), { day: '2026-12-31', week: '2026-W53', month: '2026-12' });
  t.same(periodsAt(at('2026-12-31T23:59:59.999Z'), 'UTC'), { day: '2026-12-31', week: '2026-W53', month: '2026-12' });
  t.same(periodsAt(at('2027-01-01T00:00:00Z'), 'UTC'), { day: '2027-01-01', week: '2026-W53', month: '2027-01' }, '2027-01-01 is in 2026-W53');
  t.same(periodsAt(at('2027-01-03T23:59:59.999Z'), 'UTC'), { day: '2027-01-03', week: '2026-W53', month: '2027-01' });
  t.same(periodsAt(at('2027-01-04T00:00:00Z'), 'UTC'), { day: '2027-01-04', week: '2027-W01', month: '2027-01' }, 'Monday starts 2027-W01');
  t.same(periodsAt(at('2024-12-29T12:00:00Z'), 'UTC'), { day: '2024-12-29', week: '2024-W52', month: '2024-12' });
  t.same(periodsAt(at('2024-12-30T00:00:00Z'), 'UTC'), { day: '2024-12-30', week: '2025-W01', month: '2024-12' }, '2024-12-30 is 2025-W01');
  t.same(periodsAt(at('2026-11-27T10:00:00Z'), 'UTC'), { day: '2026-11-27', week: '2026-W48', month: '2026-11' }, 'the example in periods.ts');
  t.equal(periodsAt(at('2026-03-01T00:00:00Z') - 1, 'UTC').day, '2026-02-28', 'Feb 2026 has 28 days');
  t.equal(periodsAt(at('2026-03-01T00:00:00Z'), 'UTC').day, '2026-03-01');
  t.equal(periodsAt(at('2026-01-05T00:00:00Z') - 1, 'UTC').week, '2026-W01');
  t.equal(periodsAt(at('2026-01-05T00:00:00Z'), 'UTC').week, '2026-W02', 'weeks start on Monday 00:00');
});

t.test('leap days', async (t) => {
  t.same(periodsAt(at('2028-02-28T23:59:59.999Z'), 'UTC'), { day: '2028-02-28', week: '2028-W09', month: '2028-02' });
  t.same(periodsAt(at('2028-02-29T00:00:00Z'), 'UTC'), { day: '2028-02-29', week: '2028-W09', month: '2028-02' }, 'leap day');
  t.same(periodsAt(at('2028-02-29T23:59:59.999Z'), 'UTC'), { day: '2028-02-29', week: '2028-W09', month: '2028-02' });
  t.same(periodsAt(at('2028-03-01T00:00:00Z'), 'UTC'), { day: '2028-03-01', week: '2028-W09', month: '2028-03' });
  t.equal(periodsAt(at('2100-03-01T00:00:00Z') - 1, 'UTC').day, '2100-02-28', '2100 is not a leap year');
  t.equal(periodsAt(at('2000-03-01T00:00:00Z') - 1, 'UTC').day, '2000-02-29', '2000 is a leap year');
  t.same(periodsAt(at('2028-02-29T10:00:00Z'), 'Asia/Tokyo'), { day: '2028-02-29', week: '2028-W09', month: '2028-02' });
  t.equal(periodsAt(at('2028-02-29T15:00:00Z'), 'Asia/Tokyo').day, '2028-03-01', 'Tokyo reaches March 9 hours earlier');
});

t.test('month lengths: the last millisecond of each month and the first of the next', async (t) => {
  for (const year of [2026, 2027, 2028]) {
    const lengths = [31, year % 4 === 0 ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    for (let m = 0; m < 12; m++) {
      const next = Date.UTC(year, m + 1, 1);
      const last = periodsAt(next - 1, 'UTC');
      const mm = String(m + 1).padStart(2, '0');
      t.equal(last.day, `${year}-${mm}-${lengths[m]}`, `${year}-${mm} has ${lengths[m]} days`);
      t.equal(last.month, `${year}-${mm}`);
      const first = periodsAt(next, 'UTC');
      const ny = m === 11 ? year + 1 : year;
      const nm = String(((m + 1) % 12) + 1).padStart(2, '0');
      t.equal(first.month, `${ny}-${nm}`, `${ny}-${nm} starts at ${new Date(next).toISOString()}`);
      t.equal(first.day, `${ny}-${nm}-01`);
    }
  }
});

t.test('fixed-offset zone: Asia/Tokyo (UTC+9)', async (t) => {
  t.same(periodsAt(at('2026-12-31T14:59:59.999Z'), 'Asia/Tokyo'), { day: '2026-12-31', week: '2026-W53', month: '2026-12' });
  t.same(periodsAt(at('2026-12-31T15:00:00Z'), 'Asia/Tokyo'), { day: '2027-01-01', week: '2026-W53', month: '2027-01' }, 'Tokyo new year at 15:00Z');
  t.equal(periodsAt(at('2027-01-03T15:00:00Z'), 'Asia/Tokyo').week, '2027-W01', 'Tokyo Monday starts at Sunday 15:00Z');
  t.equal(periodsAt(at('2027-01-03T15:00:00Z'), 'UTC').week, '2026-W53', 'while UTC is still in the old week');
  t.same(localDate(at('2026-06-30T15:00:00Z'), 'Asia/Tokyo'), { y: 2026, m: 7, d: 1 });
});

t.test('DST: America/New_York', async (t) => {
  const ny = (iso: string): Periods => periodsAt(at(iso), 'America/New_York');
  // Spring forward, Sunday 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z). The local day is 23 hours long.
  t.equal(ny('2026-03-08T03:30:00Z').day, '2026-03-07', 'a use at 03:30Z is still the previous local day');
  t.equal(periodsAt(at('2026-03-08T03:30:00Z'), 'UTC').day, '2026-03-08', '(while in UTC it is already the 8th)');
  t.equal(ny('2026-03-08T04:59:59.999Z').day, '2026-03-07', 'last ms of 03-07 EST');
  t.equal(ny('2026-03-08T05:00:00Z').day, '2026-03-08', 'local midnight 03-08 is 05:00Z (EST)');
  t.equal(ny('2026-03-08T07:00:00Z').day, '2026-03-08', 'the DST jump stays inside the day');
  t.equal(ny('2026-03-09T03:59:59.999Z').day, '2026-03-08');
  t.same(ny('2026-03-09T04:00:00Z'), { day: '2026-03-09', week: '2026-W11', month: '2026-03' }, 'local midnight 03-09 is 04:00Z (EDT), and a new ISO week');
  t.equal(ny('2026-03-09T03:59:59.999Z').week, '2026-W10');
  t.equal(periodsAt(at('2026-03-09T00:30:00Z'), 'UTC').week, '2026-W11', 'UTC is in the new week 3.5 hours earlier');
  // Fall back, Sunday 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z). The local day is 25 hours long.
  t.equal(ny('2026-11-01T03:59:59.999Z').day, '2026-10-31');
  t.same(ny('2026-11-01T04:00:00Z'), { day: '2026-11-01', week: '2026-W44', month: '2026-11' }, 'local midnight 11-01 is 04:00Z (EDT): new day and month');
  t.equal(ny('2026-10-31T23:00:00Z').month, '2026-10', 'Halloween evening is still October locally');
  t.equal(periodsAt(at('2026-11-01T00:30:00Z'), 'UTC').month, '2026-11', '(in UTC it is November)');
  t.equal(ny('2026-11-02T04:59:59.999Z').day, '2026-11-01', 'the 25-hour day runs to 05:00Z');
  t.same(ny('2026-11-02T05:00:00Z'), { day: '2026-11-02', week: '2026-W45', month: '2026-11' }, 'local midnight 11-02 is 05:00Z (EST)');
  // New year in New York.
  t.same(ny('2027-01-01T04:59:59.999Z'), { day: '2026-12-31', week: '2026-W53', month: '2026-12' });
  t.same(ny('2027-01-01T05:00:00Z'), { day: '2027-01-01', week: '2026-W53', month: '2027-01' });
});

t.test('DST: Europe/Berlin', async (t) => {
  const be = (iso: string): Periods => periodsAt(at(iso), 'Europe/Berlin');
  // Spring forward, Sunday 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z).
  t.equal(be('2026-03-28T22:59:59.999Z').day, '2026-03-28');
  t.equal(be('2026-03-28T23:00:00Z').day, '2026-03-29', 'local midnight 03-29 is 23:00Z the day before (CET)');
  t.equal(be('2026-03-29T21:59:59.999Z').day, '2026-03-29');
  t.same(be('2026-03-29T22:00:00Z'), { day: '2026-03-30', week: '2026-W14', month: '2026-03' }, 'local midnight 03-30 is 22:00Z (CEST), and a new ISO week');
  t.equal(be('2026-03-29T21:59:59.999Z').week, '2026-W13');
  t.equal(periodsAt(at('2026-03-29T22:00:00Z'), 'UTC').week, '2026-W13', 'UTC is still in the old week');
  // Fall back, Sunday 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z).
  t.equal(be('2026-10-24T21:59:59.999Z').day, '2026-10-24');
  t.equal(be('2026-10-24T22:00:00Z').day, '2026-10-25', 'local midnight 10-25 is 22:00Z (CEST)');
  t.equal(be('2026-10-25T22:59:59.999Z').day, '2026-10-25', 'the 25-hour day');
  t.equal(be('2026-10-25T23:00:00Z').day, '2026-10-26', 'local midnight 10-26 is 23:00Z (CET)');
  t.equal(be('2026-10-31T22:59:59.999Z').month, '2026-10');
  t.equal(be('2026-10-31T23:00:00Z').month, '2026-11', 'November starts at 23:00Z on 10-31 (CET)');
});

t.test('unknown zones are refused', async (t) => {
  t.doesNotThrow(() => checkTimeZone('UTC'));
  t.doesNotThrow(() => checkTimeZone('Europe/Berlin'));
  t.throws(() => checkTimeZone('Mars/Olympus_Mons'), RangeError);
  t.throws(() => periodsAt(0, 'Not/AZone'), RangeError);
});

// ---------------------------------------------------------------- judgeUse

t.test('judgeUse: inhibited and expired', async (t) => {
  const now = at('2026-06-15T12:00:00Z');
  const u: Uses = { ...fresh(now, 'UTC'), total: 5, day: 2, week: 3, month: 4 };
  const v1 = judgeUse({ ...TERMS, inhibited: true }, u, now, 'UTC');
  t.equal(summary(v1), 'terms_inhibited');
  t.same(counts(v1.uses), [5, 2, 3, 4], 'a refusal does not count');
  const v1b = judgeUse({ ...TERMS, inhibited: true, onLimit: 'notify' }, u, now, 'UTC');
  t.equal(summary(v1b), 'terms_inhibited', 'notify does not override an inhibited key');
  t.equal(summary(judgeUse({ ...TERMS, inhibited: true, expiresAt: now - 1 }, u, now, 'UTC')), 'terms_inhibited', 'inhibited is reported before expiry');

  const exp = at('2026-07-01T00:00:00Z');
  const terms = { ...TERMS, expiresAt: exp };
  t.equal(summary(judgeUse(terms, u, exp - 1, 'UTC')), 'serve[]', 'one ms before expiresAt: served');
  const v2 = judgeUse(terms, u, exp, 'UTC');
  t.equal(summary(v2), 'terms_expired', 'at == expiresAt: expired');
  t.same(counts(v2.uses), [5, 0, 0, 0], 'refusal: counts unchanged (day/week/month rolled to the new periods)');
  t.equal(summary(judgeUse(terms, u, exp + 1, 'UTC')), 'terms_expired');
  t.equal(summary(judgeUse({ ...terms, onLimit: 'notify' }, u, exp + DAY, 'UTC')), 'terms_expired', 'notify does not serve an expired key');
  t.equal(summary(judgeUse({ ...terms, expiresAt: 0 }, u, now, 'UTC')), 'terms_expired', 'expiresAt 0 (epoch) is a real expiry, not "none"');
  if (!v2.serve) t.match(v2.message, /2026-07-01T00:00:00\.000Z/, 'message names the expiry');
});

t.test('judgeUse: no limits serves and counts', async (t) => {
  const t0 = at('2026-06-15T12:00:00Z');
  const { verdicts, uses } = useAt(TERMS, 'UTC', [t0, t0 + 1, t0 + HOUR]);
  t.same(verdicts.map(summary), ['serve[]', 'serve[]', 'serve[]']);
  t.same(counts(uses), [3, 3, 3, 3]);
  t.same(uses.periods, periodsAt(t0, 'UTC'));
});

const LIMIT_CASES: Array<{ field: 'maxUses' | 'maxPerDay' | 'maxPerWeek' | 'maxPerMonth'; name: LimitName; code: string }> = [
  { field: 'maxUses', name: 'total', code: 'terms_max_uses' },
  { field: 'maxPerDay', name: 'day', code: 'terms_max_per_day' },
  { field: 'maxPerWeek', name: 'week', code: 'terms_max_per_week' },
  { field: 'maxPerMonth', name: 'month', code: 'terms_max_per_month' },
];

t.test('judgeUse: each limit refuses at exactly the limit under deny, serves with overLimit under notify', async (t) => {
  // Wednesday mid-month, uses a minute apart: all inside one day, week and month.
  const t0 = at('2026-06-17T08:00:00Z');
  for (const { field, name, code } of LIMIT_CASES) {
    for (const max of [0, 1, 3]) {
      const times = Array.from({ length: max + 2 }, (_, i) => t0 + i * MIN);
      const deny = useAt({ ...TERMS, [field]: max, onLimit: 'deny' }, 'UTC', times);
      const wantDeny = [...Array(max).fill('serve[]'), code, code];
      t.same(deny.verdicts.map(summary), wantDeny, `${field}=${max} deny: ${max} served, then ${code}`);
      t.same(counts(deny.uses), [max, max, max, max], `${field}=${max} deny: counters stop at the limit`);
      const last = deny.verdicts[deny.verdicts.length - 1]!;
      if (!last.serve) t.match(last.message, String(max), 'message names the limit');

      const notify = useAt({ ...TERMS, [field]: max, onLimit: 'notify' }, 'UTC', times);
      const wantNotify = [...Array(max).fill('serve[]'), `serve[${name}]`, `serve[${name}]`];
      t.same(notify.verdicts.map(summary), wantNotify, `${field}=${max} notify: served, over the limit flagged as ${name}`);
      t.same(counts(notify.uses), [max + 2, max + 2, max + 2, max + 2], `${field}=${max} notify: every use counted`);
    }
  }
});

t.test('judgeUse: several limits at once', async (t) => {
  const t0 = at('2026-06-17T08:00:00Z');
  const all = { ...TERMS, maxUses: 2, maxPerDay: 2, maxPerWeek: 2, maxPerMonth: 2 };
  const times = [t0, t0 + 1, t0 + 2];
  t.same(useAt({ ...all, onLimit: 'notify' }, 'UTC', times).verdicts.map(summary), ['serve[]', 'serve[]', 'serve[total,day,week,month]']);
  const d = useAt(all, 'UTC', times).verdicts;
  t.equal(d[2]!.serve, false, 'deny refuses');
  t.equal(summary(d[2]!), 'terms_max_uses', 'the lifetime limit is named first');
  const some = { ...TERMS, maxPerDay: 5, maxPerWeek: 1, maxPerMonth: 1, onLimit: 'notify' as const };
  t.same(useAt(some, 'UTC', times).verdicts.map(summary), ['serve[]', 'serve[week,month]', 'serve[week,month]'], 'only the limits reached are listed');
});

t.test('judgeUse: counters roll to zero in a new period', async (t) => {
  const tz = 'UTC';
  const u: Uses = { total: 10, day: 4, week: 7, month: 9, periods: periodsAt(at('2026-06-17T08:00:00Z'), tz) };
  t.same(counts(usesAt(u, at('2026-06-17T23:59:59.999Z'), tz)), [10, 4, 7, 9], 'same day: nothing rolls');
  t.same(counts(usesAt(u, at('2026-06-18T00:00:00Z'), tz)), [10, 0, 7, 9], 'next day: day rolls');
  t.same(counts(usesAt(u, at('2026-06-22T00:00:00Z'), tz)), [10, 0, 0, 9], 'next Monday: day and week roll');
  t.same(counts(usesAt(u, at('2026-07-01T00:00:00Z'), tz)), [10, 0, 0, 0], 'next month: all periods roll, total never does');
  t.same(usesAt(u, at('2026-07-01T00:00:00Z'), tz).periods, { day: '2026-07-01', week: '2026-W27', month: '2026-07' });
  t.same(counts(usesAt(u, at('2027-06-17T08:00:00Z'), tz)), [10, 0, 0, 0], 'same date a year later: a different period');
  // Month rolls inside a week: Tue 2026-06-30 -> Wed 2026-07-01.
  const u2: Uses = { total: 3, day: 3, week: 3, month: 3, periods: periodsAt(at('2026-06-30T12:00:00Z'), tz) };
  t.same(counts(usesAt(u2, at('2026-07-01T12:00:00Z'), tz)), [3, 0, 3, 0], 'new month, same week');
  // Year rolls inside ISO week 2026-W53.
  const u3: Uses = { total: 3, day: 3, week: 3, month: 3, periods: periodsAt(at('2026-12-31T12:00:00Z'), tz) };
  t.same(counts(usesAt(u3, at('2027-01-01T12:00:00Z'), tz)), [3, 0, 3, 0], '2026-12-31 -> 2027-01-01: day and month roll, week (2026-W53) does not');
});

t.test('judgeUse: the next day allows the per-day maximum again', async (t) => {
  const terms = { ...TERMS, maxPerDay: 3 };
  const d1 = at('2026-06-17T20:00:00Z');
  const d2 = at('2026-06-18T00:00:00Z');
  const times = [d1, d1 + 1, d1 + 2, d1 + 3, at('2026-06-17T23:59:59.999Z'), d2, d2 + 1, d2 + 2, d2 + 3];
  const { verdicts, uses } = useAt(terms, 'UTC', times);
  t.same(verdicts.map(summary), [
    'serve[]', 'serve[]', 'serve[]', 'terms_max_per_day', 'terms_max_per_day',
    'serve[]', 'serve[]', 'serve[]', 'terms_max_per_day',
  ]);
  t.same(counts(uses), [6, 3, 6, 6]);
});

t.test('judgeUse: the zone decides the day (New York across its DST change)', async (t) => {
  const terms = { ...TERMS, maxPerDay: 1 };
  // 04:30Z and 05:30Z on 2026-03-08: the same UTC day, different New York days (midnight EST is 05:00Z).
  const times = [at('2026-03-08T04:30:00Z'), at('2026-03-08T05:30:00Z')];
  t.same(useAt(terms, 'UTC', times).verdicts.map(summary), ['serve[]', 'terms_max_per_day'], 'UTC: one day');
  t.same(useAt(terms, 'America/New_York', times).verdicts.map(summary), ['serve[]', 'serve[]'], 'New York: two days');
  // 03:30Z and 04:30Z on 2026-03-09: after spring-forward local midnight is 04:00Z.
  const times2 = [at('2026-03-09T03:30:00Z'), at('2026-03-09T04:30:00Z')];
  t.same(useAt(terms, 'America/New_York', times2).verdicts.map(summary), ['serve[]', 'serve[]'], 'EDT midnight at 04:00Z');
  t.same(useAt(terms, 'UTC', times2).verdicts.map(summary), ['serve[]', 'terms_max_per_day']);
  // Weekly limit across the year end: Mon 2026-12-28 and Sun 2027-01-03 are both in 2026-W53.
  const wk = { ...TERMS, maxPerWeek: 1, maxPerMonth: 1 };
  t.same(useAt(wk, 'UTC', [at('2026-12-28T10:00:00Z'), at('2027-01-03T10:00:00Z')]).verdicts.map(summary),
    ['serve[]', 'terms_max_per_week'], 'the ISO week spans the new year');
  t.same(useAt(wk, 'UTC', [at('2026-12-28T10:00:00Z'), at('2027-01-04T00:00:00Z')]).verdicts.map(summary),
    ['serve[]', 'serve[]'], 'Monday 2027-01-04 is a new week and the month has rolled');
});

// ---------------------------------------------------------------- model-based

interface ModelUse {
  ms: number;
  b: Buckets;
}

t.test('model-based: random use sequences over two years against an independent model', async (t) => {
  const zones: Array<[string, OffsetRule]> = [
    ['UTC', fixedOffset(0)],
    ['Asia/Tokyo', fixedOffset(9)],
    ['America/New_York', newYorkOffset],
  ];
  const codeOf: Record<LimitName, string> = { total: 'terms_max_uses', day: 'terms_max_per_day', week: 'terms_max_per_week', month: 'terms_max_per_month' };
  const refusals: Record<string, number> = {};
  const overs: Record<string, number> = {};
  let totalCases = 0;
  let seed = 1;
  for (const [tz, rule] of zones) {
    for (const policy of ['deny', 'notify'] as const) {
      for (let rep = 0; rep < 3; rep++) {
        const rng = mulberry32(0x5eed + seed++);
        const terms: KeyTerms = {
          inhibited: false,
          expiresAt: null,
          maxUses: rng() < 0.7 ? randInt(rng, 150, 500) : null,
          maxPerDay: rng() < 0.8 ? randInt(rng, 1, 4) : null,
          maxPerWeek: rng() < 0.8 ? randInt(rng, 3, 12) : null,
          maxPerMonth: rng() < 0.8 ? randInt(rng, 8, 40) : null,
          onLimit: policy,
        };
        const label = `${tz} ${policy} #${rep} ${JSON.stringify({ u: terms.maxUses, d: terms.maxPerDay, w: terms.maxPerWeek, m: terms.maxPerMonth })}`;
        const start = at('2026-01-01T00:00:00Z') + randInt(rng, 0, 30 * DAY);
        const end = start + 730 * DAY;
        const served: ModelUse[] = [];
        let uses = fresh(start, tz);
        let ms = start;
        const mismatches: string[] = [];
        let n = 0;
        while (ms < end) {
          // Next instant: mostly short gaps, some long ones, some right at a local midnight.
          const r = rng();
          let next: number;
          if (r < 0.5) next = ms + randInt(rng, 1, 4 * HOUR);
          else if (r < 0.8) next = ms + randInt(rng, 4 * HOUR, 3 * DAY);
          else if (r < 0.9) next = ms + randInt(rng, 3 * DAY, 12 * DAY);
          else {
            const local = ms + rule(ms);
            const midnight = (Math.floor(local / DAY) + randInt(rng, 1, 2)) * DAY - rule(ms);
            next = midnight + randInt(rng, -2, 2);
          }
          if (next <= ms) next = ms + 1;
          ms = next;
          n++;

          const b = bucketsOf(ms, rule);
          const model = {
            total: served.length,
            day: served.filter((s) => s.b.day === b.day).length,
            week: served.filter((s) => s.b.week === b.week).length,
            month: served.filter((s) => s.b.month === b.month).length,
          };
          const reached: LimitName[] = [];
          if (terms.maxUses !== null && model.total >= terms.maxUses) reached.push('total');
          if (terms.maxPerDay !== null && model.day >= terms.maxPerDay) reached.push('day');
          if (terms.maxPerWeek !== null && model.week >= terms.maxPerWeek) reached.push('week');
          if (terms.maxPerMonth !== null && model.month >= terms.maxPerMonth) reached.push('month');
          const modelServes = policy === 'notify' || reached.length === 0;

          const v = judgeUse(terms, uses, ms, tz);
          const iso = new Date(ms).toISOString();
          const p = periodsAt(ms, tz);
          if (p.day !== b.label.day || p.week !== b.label.week || p.month !== b.label.month) {
            mismatches.push(`${iso}: periods ${JSON.stringify(p)} vs model ${JSON.stringify(b.label)}`);
          }
          if (v.serve !== modelServes) {
            mismatches.push(`${iso}: judge ${summary(v)} vs model ${modelServes ? 'serve' : 'refuse'} ${JSON.stringify(model)}`);
          } else if (v.serve) {
            if (v.overLimit.join(',') !== reached.join(',')) mismatches.push(`${iso}: overLimit ${v.overLimit} vs ${reached}`);
            const want = [model.total + 1, model.day + 1, model.week + 1, model.month + 1];
            if (counts(v.uses).join() !== want.join()) mismatches.push(`${iso}: counts ${counts(v.uses)} vs ${want}`);
            for (const o of reached) overs[o] = (overs[o] ?? 0) + 1;
            served.push({ ms, b });
          } else {
            if (v.code !== codeOf[reached[0]!]) mismatches.push(`${iso}: code ${v.code} vs ${codeOf[reached[0]!]}`);
            const want = [model.total, model.day, model.week, model.month];
            if (counts(v.uses).join() !== want.join()) mismatches.push(`${iso}: refused counts ${counts(v.uses)} vs ${want}`);
            refusals[v.code] = (refusals[v.code] ?? 0) + 1;
          }
          uses = v.uses;
        }
        totalCases += n;
        t.same(mismatches.slice(0, 5), [], `${label}: ${n} uses, ${served.length} served, judge agrees with the model`);
      }
    }
  }
  t.ok(totalCases > 5000, `${totalCases} uses judged in all`);
  for (const code of Object.values(codeOf)) t.ok((refusals[code] ?? 0) > 0, `deny runs refused with ${code} (${refusals[code] ?? 0} times)`);
  for (const name of ['total', 'day', 'week', 'month']) t.ok((overs[name] ?? 0) > 0, `notify runs flagged ${name} (${overs[name] ?? 0} times)`);
});
