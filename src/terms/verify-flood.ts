// How many verify questions about one key are written to its history. Anyone
// may ask whether a public key belongs to a person (Fig. 14), unauthenticated,
// so a flood of questions must neither bury the owner's history nor fill the
// disk: at most this many a minute are recorded per key; the rest are answered
// but not recorded.
export const VERIFY_RECORDS_PER_MINUTE = 60;

/** The minute a verify question at `at` (ms) is counted in. */
export const verifyMinute = (at: number): number => Math.floor(at / 60_000);

/** Whether one more question in the window { minute, count } is recorded; the window as it then stands. */
export function recordVerifyIn(window: { minute: number; count: number }, at: number): { record: boolean; window: { minute: number; count: number } } {
  const minute = verifyMinute(at);
  const count = window.minute === minute ? window.count : 0;
  if (count >= VERIFY_RECORDS_PER_MINUTE) return { record: false, window: { minute, count } };
  return { record: true, window: { minute, count: count + 1 } };
}
