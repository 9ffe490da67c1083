// Query strings of list endpoints: only the named parameters, and a page size
// with a default and a ceiling, so no request can ask for an unbounded reply.
import { UsageError } from '../protocol/errors.js';

export function queryParams(query: string, allowed: string[]): URLSearchParams {
  const q = new URLSearchParams(query);
  for (const k of q.keys()) if (!allowed.includes(k)) throw new UsageError(`unknown query parameter ${k}`, 'bad_request');
  return q;
}

export function pageLimit(q: URLSearchParams, dflt: number, max: number): number {
  const text = q.get('limit');
  if (text === null) return dflt;
  if (!/^\d{1,7}$/.test(text) || Number(text) < 1 || Number(text) > max) throw new UsageError(`limit must be a whole number from 1 to ${max}`, 'bad_request');
  return Number(text);
}
