// Request deadlines as a person writes them: seconds, from 0.1 to 3600. Shared
// by `kmgr --timeout` and KMGR_TIMEOUT so both accept exactly the same words.
const TIMEOUT_RE = /^\d{1,4}(?:\.\d{1,3})?$/;

/** Milliseconds, or undefined if `v` is not a number of seconds from 0.1 to 3600. */
export function parseTimeoutSeconds(v: string): number | undefined {
  if (!TIMEOUT_RE.test(v)) return undefined;
  const ms = Math.round(Number(v) * 1000);
  return ms >= 100 && ms <= 3_600_000 ? ms : undefined;
}
