// What one judged use does to a key record, shared by every backend: the
// judgement itself is src/terms/judge.ts; this applies its verdict to the
// record and says what to write (the history entry, the notices). A backend
// calls it while it holds the record exclusively (LevelDB: within one tick;
// PostgreSQL: with the row locked FOR UPDATE), so check and count are one step.
import { randomBytes } from 'node:crypto';
import { judgeUse, type Verdict } from '../terms/judge.js';
import { noticesForUse, type NoticeDraft } from '../terms/notices.js';
import { noticeId } from './keys.js';
import type { FetchOutcome, HistoryRecord, KeyRecord, Notice, UseAttempt } from './types.js';

/** Verify questions recorded per key and minute; more are answered but not recorded (a flood must not bury the history). */
export const VERIFY_RECORDS_PER_MINUTE = 60;

export interface AppliedUse {
  verdict: Verdict;
  hist: HistoryRecord;
  drafts: NoticeDraft[];
}

/** Judges one use against `rec` and counts it in `rec` (mutated). */
export function applyUse(rec: KeyRecord, attempt: UseAttempt, tz: string): AppliedUse {
  const verdict = judgeUse(rec, rec.uses, attempt.at, tz);
  rec.uses = verdict.uses;
  rec.historySeq += 1;
  if (verdict.serve) rec.lastUsedAt = attempt.at;
  const hist: HistoryRecord = {
    seq: rec.historySeq,
    at: attempt.at,
    keyVersion: rec.keyVersion,
    result: !verdict.serve ? 'refused' : verdict.overLimit.length > 0 ? 'served_over_limit' : 'served',
    ...(verdict.serve ? (verdict.overLimit.length > 0 ? { overLimit: verdict.overLimit } : {}) : { code: verdict.code }),
    remoteAddress: attempt.remoteAddress,
    request: attempt.request,
  };
  return { verdict, hist, drafts: noticesForUse(rec.partnerId, rec.keyVersion, rec, verdict) };
}

/** The answer to one use, from the record as it stood right after the use. */
export function useOutcome(verdict: Verdict, snapshot: KeyRecord, blob: Uint8Array): FetchOutcome {
  if (!verdict.serve) return { served: false, record: snapshot, code: verdict.code, message: verdict.message };
  return { served: true, record: snapshot, blob, overLimit: verdict.overLimit };
}

export const snapshotOf = (rec: KeyRecord): KeyRecord => ({ ...rec, uses: { ...rec.uses } });

/** A new, unread notice for the owner of a key. */
export function newNotice(k: { personId: string; partnerId: string; keyVersion: number }, d: NoticeDraft, at: number): Notice {
  return {
    id: noticeId(at, randomBytes(4).toString('hex')),
    at,
    personId: k.personId,
    partnerId: k.partnerId,
    keyVersion: k.keyVersion,
    kind: d.kind,
    message: d.message,
    read: false,
  };
}
