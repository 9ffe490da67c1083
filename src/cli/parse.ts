// Parsers for command-line values; each failure is one clear sentence (exit 64).
import { UsageError } from '../protocol/errors.js';
import { MAX_COUNT } from '../protocol/messages.js';

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
const UNITS: Record<string, number> = { m: 60_000, h: 3_600_000, d: DAY, w: 7 * DAY };

/** "90d", "12h", "2w", "30m" to milliseconds. */
export function parseDuration(flag: string, v: string): number {
  const m = /^(\d{1,6})([mhdw])$/.exec(v);
  if (!m || Number(m[1]) === 0) throw new UsageError(`${flag} takes a duration like 90d, 12h, 2w or 30m, not ${JSON.stringify(v)}`);
  return Number(m[1]) * UNITS[m[2]!]!;
}

/** A date (YYYY-MM-DD, meaning 00:00 UTC) or a date-time with a zone; undefined if neither. */
export function parseInstant(v: string): { at: number; dateOnly: boolean } | undefined {
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
