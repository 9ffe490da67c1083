// Time for tests whose counters roll over on the calendar.

/**
 * A time zone in which it is now between noon and 1 pm, for a test server that counts uses
 * across several requests: per-day, week and month counters roll over at local midnight, so in
 * this zone the next rollover is at least eleven hours away and the test cannot straddle one,
 * whatever the time of day it runs (no waiting out the end of a UTC day). Etc/GMT-K is UTC+K.
 */
export function zoneAtNoon(now: number = Date.now()): string {
  const k = 12 - new Date(now).getUTCHours(); // 12 .. -11
  return k === 0 ? 'Etc/GMT' : k > 0 ? `Etc/GMT-${k}` : `Etc/GMT+${-k}`;
}
