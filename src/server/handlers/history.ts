// The use history (paragraph 34) and the owner's notices.
import { parseJson } from '../../protocol/schema.js';
import { AckRequest, HISTORY_MAX_LIMIT } from '../../protocol/messages.js';
import { UsageError } from '../../protocol/errors.js';
import { historyView, noticeView } from '../views.js';
import type { Handler } from '../context.js';

function queryParams(query: string, allowed: string[]): URLSearchParams {
  const q = new URLSearchParams(query);
  for (const k of q.keys()) if (!allowed.includes(k)) throw new UsageError(`unknown query parameter ${k}`, 'bad_request');
  return q;
}

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
  const limitText = q.get('limit') ?? String(HISTORY_MAX_LIMIT);
  if (!/^\d{1,6}$/.test(limitText) || Number(limitText) < 1 || Number(limitText) > HISTORY_MAX_LIMIT) {
    throw new UsageError(`limit must be a whole number from 1 to ${HISTORY_MAX_LIMIT}`, 'bad_request');
  }
  await ctx.deps.storage.persistNonce(auth.claim);
  const records = await ctx.deps.storage.history(person.personId, ctx.params.partnerId!, {
    ...(since !== undefined ? { since } : {}),
    ...(beforeText !== null ? { before: Number(beforeText) } : {}),
    limit: Number(limitText),
  });
  return { status: 200, body: { history: records.map(historyView) } };
};

/** GET /v1/notices?unread=true */
export const notices: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  const q = queryParams(ctx.query, ['unread']);
  const unread = q.get('unread');
  if (unread !== null && unread !== 'true' && unread !== 'false') throw new UsageError('unread must be true or false', 'bad_request');
  await ctx.deps.storage.persistNonce(auth.claim);
  const list = await ctx.deps.storage.listNotices(person.personId, { unreadOnly: unread === 'true' });
  return { status: 200, body: { notices: list.map(noticeView) } };
};

/** POST /v1/notices/ack */
export const ackNotices: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  const body = parseJson(new TextDecoder().decode(ctx.body), AckRequest);
  const n = await ctx.deps.storage.ackNotices(person.personId, body.ids, auth.claim);
  return { status: 200, body: { acknowledged: n } };
};
