// Parsers for command-line values; each failure is one clear sentence (exit 64).
import { UsageError } from '../protocol/errors.js';
import { MAX_COUNT } from '../protocol/messages.js';
import { plural } from '../protocol/words.js';
import { parseTimeoutSeconds } from '../protocol/timeout.js';

export function parseCount(flag: string): (v: string) => number {
  return (v) => {
    if (!/^\d{1,10}$/.test(v) || Number(v) < 1 || Number(v) > MAX_COUNT) {
      throw new UsageError(`${flag} takes a whole number from 1 to ${MAX_COUNT}, not ${JSON.stringify(v)}`);
    }
    return Number(v);
  };
}

/** Like parseCount, but "none" removes the limit. (commander turns a parsed null into '', so "none" stays a word.) */
export function parseLimit(flag: string): (v: string) => number | 'none' {
  const count = parseCount(flag);
  return (v) => (v === 'none' ? 'none' : count(v));
}

const DAY = 86_400_000;
const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: DAY, w: 7 * DAY };

/** "90 seconds" or "7 days", for messages. */
function describeDuration(ms: number): string {
  for (const [n, word] of [[7 * DAY, 'week'], [DAY, 'day'], [3_600_000, 'hour'], [60_000, 'minute'], [1_000, 'second']] as const) {
    if (ms >= n && ms % n === 0) return plural(ms / n, word);
  }
  return `${ms} ms`;
}

/**
 * The one parser for every duration option (--valid-for, --ttl, --warn-before,
 * --timeout): a whole number and a unit, s, m, h, d or w (90s, 15m, 12h, 90d,
 * 2w). Each refusal says what is wrong with the value, not just the format.
 */
export function parseDuration(flag: string, v: string, range: { min?: number; max?: number } = {}): number {
  const min = range.min ?? 1_000;
  const max = range.max ?? 100 * 365 * DAY;
  const bad = (why: string): UsageError => new UsageError(`${flag} ${JSON.stringify(v)}: ${why}`);
  const m = /^(\d+)([a-zA-Z]*)$/.exec(v.trim());
  if (v.trim() === '') throw bad('empty; give a duration such as 15m, 12h, 90d or 2w');
  if (!m) {
    if (/^-/.test(v)) throw bad('a duration cannot be negative');
    if (/^\d*\.\d+/.test(v)) throw bad('use a whole number with a smaller unit (90m, not 1.5h)');
    throw bad('not a duration; give a whole number and a unit: s, m, h, d or w (15m, 12h, 90d, 2w)');
  }
  const unit = m[2]!;
  if (unit === '') throw bad(`the number needs a unit: ${m[1]}s, ${m[1]}m, ${m[1]}h, ${m[1]}d or ${m[1]}w`);
  const scale = UNITS[unit];
  if (scale === undefined) throw bad(`unknown unit "${unit}"; use s (seconds), m (minutes), h (hours), d (days) or w (weeks)`);
  const ms = Number(m[1]) * scale;
  if (ms === 0) throw bad('zero is not a duration');
  if (ms < min) throw bad(`shorter than the least allowed, ${describeDuration(min)}`);
  if (ms > max || !Number.isSafeInteger(ms)) throw bad(`longer than the most allowed, ${describeDuration(max)}`);
  return ms;
}

/**
 * --timeout: a bare number is seconds, as KMGR_TIMEOUT takes it (0.1 to 3600,
 * decimals allowed: 30, 2.5); anything else goes through the one duration
 * parser (90s, 2m, 1h), so its refusals say the same as every other duration's.
 */
export function parseTimeout(v: string): number {
  const seconds = parseTimeoutSeconds(v.trim());
  if (seconds !== undefined) return seconds;
  if (/^\d+(?:\.\d+)?$/.test(v.trim())) throw new UsageError(`--timeout ${JSON.stringify(v)}: a number of seconds must be from 0.1 to 3600`);
  return parseDuration('--timeout', v, { min: 1_000, max: 3_600_000 });
}

/** A date (YYYY-MM-DD, meaning 00:00 UTC) or a date-time with a zone; undefined if neither. */
function parseInstant(v: string): { at: number; dateOnly: boolean } | undefined {
  if (/^\d{4}-\d{2}-\d{2}$/.test(v)) {
    const t = Date.parse(`${v}T00:00:00Z`);
    if (Number.isNaN(t) || new Date(t).toISOString().slice(0, 10) !== v) return undefined;
    return { at: t, dateOnly: true };
  }
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/.test(v)) {
    const t = Date.parse(v);
    if (!Number.isNaN(t)) return { at: t, dateOnly: false };
  }
  return undefined;
}

/**
 * --expires: a date (YYYY-MM-DD, valid through the end of that day, UTC) or a
 * date-time with a zone (2027-06-30T17:00:00Z, 2027-06-30T17:00+02:00).
 */
export function parseExpiry(v: string, flag = '--expires'): number {
  const p = parseInstant(v);
  if (!p) throw new UsageError(`${flag} takes a date (2027-06-30) or a date-time with a zone (2027-06-30T17:00:00Z), not ${JSON.stringify(v)}`);
  return p.dateOnly ? p.at + DAY : p.at;
}

export function parseTime(flag: string, v: string): number {
  const p = parseInstant(v);
  if (!p) throw new UsageError(`${flag} takes a date (2027-06-30) or a date-time with a zone (2027-06-30T17:00:00Z), not ${JSON.stringify(v)}`);
  return p.at;
}
