// check-terms on PostgreSQL: reads only the keys whose earliest term instant
// (keys.term_at, indexed) is due, judges them with the shared rules, and
// records each finding once. The notice_dedupe row decides what is new, also
// against a run on another node at the same moment.
import { newNotice, termsFinding } from '../apply-use.js';
import { noticesForTerm } from '../../terms/notices.js';
import type { KeyRecord, TermsFinding } from '../types.js';
import type { Tx } from './db.js';
import { recordNotices, type NoticeToRecord } from './notices.js';

export async function checkTerms(c: Tx, nowMs: number, warnMs: number, record: boolean): Promise<{ findings: TermsFinding[]; recorded: NoticeToRecord[] }> {
  const r = await c.query<{ rec: KeyRecord; seen: string[] }>(
    `SELECT k.rec, coalesce(array_agg(d.dedupe) FILTER (WHERE d.dedupe IS NOT NULL), '{}') AS seen
     FROM keys k LEFT JOIN notice_dedupe d ON d.person_id = k.person_id AND d.partner_id = k.partner_id
     WHERE k.term_at <= $1
     GROUP BY k.person_id, k.partner_id, k.rec
     ORDER BY k.person_id, k.partner_id`,
    [nowMs + warnMs],
  );
  const findings: Array<{ finding: TermsFinding; id: string }> = [];
  const toRecord: NoticeToRecord[] = [];
  for (const { rec, seen } of r.rows) {
    // A retired key has no term left to warn about (its term_at is NULL; this guards older rows).
    if (rec.retiredAt) continue;
    const noticed = new Set(seen);
    for (const d of noticesForTerm(rec.partnerId, rec.keyVersion, rec, nowMs, warnMs)) {
      const notice = newNotice(rec, d, nowMs);
      if (!noticed.has(d.dedupe)) toRecord.push({ dedupe: d.dedupe, notice });
      findings.push({ finding: termsFinding(rec, d, !noticed.has(d.dedupe)), id: notice.id });
    }
  }
  // With record false (a look at another instant) nothing is written; isNew says "would be new".
  if (!record) return { findings: findings.map((f) => f.finding), recorded: [] };
  const ids = await recordNotices(c, toRecord);
  return {
    // The dedupe rows decide what is new, also against a run on another node at the same moment.
    findings: findings.map(({ finding, id }) => ({ ...finding, isNew: finding.isNew && ids.has(id) })),
    recorded: toRecord.filter((x) => ids.has(x.notice.id)),
  };
}
