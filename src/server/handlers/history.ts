// The use history (paragraph 34) and the owner's notices.
import { parseJson } from '../../protocol/schema.js';
import { AckRequest, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT, NOTICES_DEFAULT_LIMIT, NOTICES_MAX_LIMIT } from '../../protocol/messages.js';
import { pageLimit, queryParams } from '../query.js';
import { UsageError } from '../../protocol/errors.js';
import { historyView, noticeView } from '../views.js';
import type { Handler } from '../context.js';


/** GET /v1/keys/{partnerId}/history?since=ISO&limit=N&before=SEQ (newest first; before pages back) */
export const history: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  const q = queryParams(ctx.query, ['since', 'limit', 'before']);
  const beforeText = q.get('before');
  if (beforeText !== null && !/^[1-9]\d{0,14}$/.test(beforeText)) throw new UsageError('before must be a history sequence number', 'bad_request');
  const sinceText = q.get('since');
  const since = sinceText === null ? undefined : Date.parse(sinceText);
  // A real instant only: 2027-02-31 would otherwise roll over to March.
  if (since !== undefined && (Number.isNaN(since) || !/^\d{4}-\d{2}-\d{2}T/.test(sinceText!) || new Date(since).toISOString().slice(0, 10) !== sinceText!.slice(0, 10))) {
    throw new UsageError('since must be an ISO 8601 timestamp naming a real date', 'bad_request');
  }
  const limit = pageLimit(q, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT);
  await ctx.deps.storage.persistNonce(auth.claim);
  const records = await ctx.deps.storage.history(person.personId, ctx.params.partnerId!, {
    ...(since !== undefined ? { since } : {}),
    ...(beforeText !== null ? { before: Number(beforeText) } : {}),
    limit,
  });
  return { status: 200, body: { history: records.map(historyView) } };
};

/** GET /v1/notices?unread=true&limit=N&before=NOTICE_ID (newest first; `next` is the cursor for older ones) */
export const notices: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  const q = queryParams(ctx.query, ['unread', 'limit', 'before']);
  const unread = q.get('unread');
  if (unread !== null && unread !== 'true' && unread !== 'false') throw new UsageError('unread must be true or false', 'bad_request');
  const limit = pageLimit(q, NOTICES_DEFAULT_LIMIT, NOTICES_MAX_LIMIT);
  const before = q.get('before');
  if (before !== null && !/^\d{15}-[0-9a-f]{8}$/.test(before)) throw new UsageError('before must be a notice ID', 'bad_request');
  await ctx.deps.storage.persistNonce(auth.claim);
  const list = await ctx.deps.storage.listNotices(person.personId, { unreadOnly: unread === 'true', ...(before !== null ? { before } : {}), limit: limit + 1 });
  const page = list.slice(0, limit);
  const next = list.length > limit ? page[page.length - 1]!.id : null;
  return { status: 200, body: { notices: page.map(noticeView), next } };
};

/** POST /v1/notices/ack */
export const ackNotices: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  const body = parseJson(new TextDecoder().decode(ctx.body), AckRequest);
  const n = await ctx.deps.storage.ackNotices(person.personId, body.ids, auth.claim);
  return { status: 200, body: { acknowledged: n } };
};
