// What one judged use does to a key record, shared by every backend: the
// judgement itself is src/terms/judge.ts; this applies its verdict to the
// record and says what to write (the history entry, the notices). A backend
// calls it while it holds the record exclusively (LevelDB: within one tick;
// PostgreSQL: with the row locked FOR UPDATE), so check and count are one step.
import { randomBytes } from 'node:crypto';
import { KmgrError, NotFoundError } from '../protocol/errors.js';
import { judgeUse, type Verdict } from '../terms/judge.js';
import { periodsAt } from '../terms/periods.js';
import { noticesForUse, type NoticeDraft } from '../terms/notices.js';
import { noticeId } from './keys.js';
import type { FetchOutcome, HistoryRecord, KeyRecord, Notice, RekeyedKey, TermsFinding, UseAttempt } from './types.js';

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

/** A new, unread notice for the owner of a key: the one place a notice is made (fetches, check-terms, restores, on both backends). */
export function newNotice(k: { personId: string; partnerId: string; keyVersion: number }, d: Pick<NoticeDraft, 'kind' | 'message'>, at: number): Notice {
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

/** No key to use: never registered, or retired (the message says when). */
export function noKey(partnerId: string, rec: KeyRecord | undefined): NotFoundError {
  return rec?.retiredAt
    ? new NotFoundError('unknown_key', `the key for partner ${partnerId} (v${rec.keyVersion}) was retired at ${new Date(rec.retiredAt).toISOString()}`)
    : new NotFoundError('unknown_key', `no key is registered for partner ${partnerId}`);
}

/** A rotation's new version: counts start afresh under the same terms, the history continues. */
export function rotated(rec: KeyRecord, next: { keyVersion: number; keyId: string; alg: string; at: number; publicKey?: string | null; binding?: KeyRecord['binding'] }, tz: string): void {
  const previous = [...(rec.previousPublicKeys ?? []), ...(rec.publicKey ? [rec.publicKey] : [])];
  Object.assign(rec, {
    publicKey: next.publicKey ?? null,
    binding: next.binding ?? null,
    previousPublicKeys: previous,
    keyId: next.keyId,
    alg: next.alg,
    keyVersion: next.keyVersion,
    registeredAt: next.at,
    uses: { total: 0, day: 0, week: 0, month: 0, periods: periodsAt(next.at, tz) },
    lastUsedAt: null,
  });
}

/** A history entry that records no use: a retirement, a rekey export or re-wrap. Advances the key's sequence. */
export function eventEntry(rec: KeyRecord, e: Omit<HistoryRecord, 'seq' | 'keyVersion'>): HistoryRecord {
  rec.historySeq += 1;
  const { at, ...rest } = e;
  return { seq: rec.historySeq, at, keyVersion: rec.keyVersion, ...rest };
}

/** What check-terms reports of one drafted notice about a key. */
export function termsFinding(rec: KeyRecord, d: NoticeDraft, isNew: boolean): TermsFinding {
  return {
    personId: rec.personId,
    partnerId: rec.partnerId,
    keyVersion: rec.keyVersion,
    kind: d.kind as TermsFinding['kind'],
    expiresAt: d.expiresAt ?? rec.expiresAt!,
    message: d.message,
    isNew,
  };
}

/**
 * A rekey must re-wrap exactly the keys the store holds (live ones, by partner), each at its
 * current version; anything else is refused before a byte changes (rekey_mismatch,
 * version_conflict). Returns the re-wrapped key for each partner.
 */
export function matchRekey(held: Map<string, KeyRecord>, keys: RekeyedKey[]): Map<string, RekeyedKey> {
  const given = new Map<string, RekeyedKey>();
  for (const key of keys) {
    if (given.has(key.partnerId)) throw new KmgrError('rekey_mismatch', `the rekey names partner ${key.partnerId} twice`);
    given.set(key.partnerId, key);
  }
  const missing = [...held.keys()].filter((p) => !given.has(p));
  const extra = [...given.keys()].filter((p) => !held.has(p));
  if (missing.length > 0 || extra.length > 0) {
    throw new KmgrError('rekey_mismatch', `the rekey does not re-wrap exactly the keys held here (${missing.length} missing, ${extra.length} not held); nothing was changed`, { missing, extra });
  }
  const stale = [...held.values()].filter((r) => given.get(r.partnerId)!.keyVersion !== r.keyVersion);
  if (stale.length > 0) {
    const p = stale[0]!;
    throw new KmgrError('version_conflict', `the key of ${p.partnerId} is at version ${p.keyVersion}, not ${given.get(p.partnerId)!.keyVersion}; nothing was changed`, {
      partners: stale.map((r) => r.partnerId),
    });
  }
  return given;
}
