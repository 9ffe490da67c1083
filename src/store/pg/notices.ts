// Recording notices in PostgreSQL: the fact's dedupe row, the notice and its
// pending delivery in one statement. The dedupe row's primary key decides
// which of several nodes (or several check-terms runs) records a fact: the
// others' inserts do nothing, so each fact becomes one notice, delivered once.
import type { Tx } from './db.js';
import { pendingKey } from '../keys.js';
import type { Notice } from '../types.js';

export interface NoticeToRecord {
  dedupe: string;
  notice: Notice;
}

export const RECORD_NOTICES = `
WITH e AS (
  SELECT x->>'dedupe' AS dedupe, x->'notice' AS notice, x->>'pendingKey' AS pkey
  FROM jsonb_array_elements($1::jsonb) AS x
), d AS (
  INSERT INTO notice_dedupe (person_id, partner_id, dedupe, notice_id)
  SELECT notice->>'personId', notice->>'partnerId', dedupe, notice->>'id' FROM e
  ON CONFLICT DO NOTHING
  RETURNING notice_id
), n AS (
  INSERT INTO notices (person_id, id, rec)
  SELECT notice->>'personId', notice->>'id', notice FROM e WHERE notice->>'id' IN (SELECT notice_id FROM d)
), p AS (
  INSERT INTO pending (key, person_id, due_at, rec)
  SELECT pkey, notice->>'personId', 0,
         jsonb_build_object('key', pkey, 'personId', notice->>'personId', 'notice', notice, 'channels', '{}'::jsonb)
  FROM e WHERE notice->>'id' IN (SELECT notice_id FROM d)
)
SELECT notice_id FROM d`;

/** The statement's one parameter: the notices as a JSON array, each fact once. */
export function noticesJson(list: NoticeToRecord[]): string {
  const seen = new Set<string>();
  const items = [];
  for (const x of list) {
    const k = `${x.notice.personId}!${x.notice.partnerId}!${x.dedupe}`;
    if (seen.has(k)) continue;
    seen.add(k);
    items.push({ dedupe: x.dedupe, notice: x.notice, pendingKey: pendingKey(x.notice.id, x.notice.personId) });
  }
  return JSON.stringify(items);
}

/** Records the notices whose facts are not yet recorded; returns the IDs of those it recorded. */
export async function recordNotices(c: Tx, list: NoticeToRecord[]): Promise<Set<string>> {
  if (list.length === 0) return new Set();
  const r = await c.query<{ notice_id: string }>({ name: 'kmgr_record_notices', text: RECORD_NOTICES, values: [noticesJson(list)] });
  return new Set(r.rows.map((x) => x.notice_id));
}
