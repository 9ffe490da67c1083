// Typed calls to the key server's /v1 API, one per endpoint the CLI uses.
import {
  AckResponse, CertificatesView, FetchResponse, HistoryList, KeyList, KEYS_MAX_LIMIT, KeyStatus, NoticeList, NOTICES_MAX_LIMIT, type HistoryEntry,
  type KeyPatchRequest, type RotateRequest, type SignedBinding, type Terms,
} from '../protocol/messages.js';
import { signedRequest, type Sent } from './http.js';
import { IntegrityError, UsageError } from '../protocol/errors.js';
import type { Session } from './session.js';

/** The most history entries one command reads (about 70 MB of typical entries). */
export const HISTORY_CLIENT_MAX = 100_000;
const NOTICES_CLIENT_MAX = 100_000;
const KEYS_CLIENT_MAX = 100_000;

const k = (partnerId: string): string => `/v1/keys/${encodeURIComponent(partnerId)}`;

export const api = {
  register: (s: Session, partnerId: string, body: { keyId: string; alg: string; keyVersion: number; blob: string; terms: Terms; binding: SignedBinding | null; ssh?: boolean }) =>
    signedRequest(s.endpoint, s.identity, 'PUT', k(partnerId), body, KeyStatus).then((r) => r.body),
  fetch: (s: Session, partnerId: string, nonce?: string): Promise<Sent<FetchResponse>> =>
    signedRequest(s.endpoint, s.identity, 'POST', `${k(partnerId)}/fetch`, {}, FetchResponse, nonce),
  retire: (s: Session, partnerId: string) => signedRequest(s.endpoint, s.identity, 'DELETE', k(partnerId), undefined, KeyStatus).then((r) => r.body),
  /** Every key, in partner ID order, paged; bounded like history (a server cannot make us read without end). */
  list: async (s: Session): Promise<KeyStatus[]> => {
    const out: KeyStatus[] = [];
    let after: string | null | undefined;
    for (;;) {
      const qs = new URLSearchParams({ limit: String(KEYS_MAX_LIMIT) });
      if (after) qs.set('after', after);
      const body = (await signedRequest(s.endpoint, s.identity, 'GET', `/v1/keys?${qs.toString()}`, undefined, KeyList)).body;
      out.push(...body.keys);
      if (!body.next || body.keys.length === 0) return out;
      if (after && body.next <= after) throw new IntegrityError('the server sent a key page that does not move forward');
      if (out.length >= KEYS_CLIENT_MAX) throw new UsageError(`there are more than ${KEYS_CLIENT_MAX} keys`);
      after = body.next;
    }
  },
  status: (s: Session, partnerId: string) => signedRequest(s.endpoint, s.identity, 'GET', k(partnerId), undefined, KeyStatus).then((r) => r.body),
  patch: (s: Session, partnerId: string, body: KeyPatchRequest) =>
    signedRequest(s.endpoint, s.identity, 'PATCH', k(partnerId), body, KeyStatus).then((r) => r.body),
  rotate: (s: Session, partnerId: string, body: RotateRequest) =>
    signedRequest(s.endpoint, s.identity, 'POST', `${k(partnerId)}/rotate`, body, KeyStatus).then((r) => r.body),
  /**
   * Newest first, fetched in pages of 1000 so a long history never needs one huge reply.
   * A hostile server must not be able to page us forever or fill memory: every page goes
   * strictly back in time, no entry may claim a sequence number beyond the key's own
   * counter (read after the first page, so a use in between is no false alarm), and at most
   * HISTORY_CLIENT_MAX entries are read in all.
   */
  history: async (s: Session, partnerId: string, q: { since?: string; limit?: number; pageSize?: number }): Promise<HistoryEntry[]> => {
    const out: HistoryEntry[] = [];
    const cap = Math.min(q.limit ?? HISTORY_CLIENT_MAX, HISTORY_CLIENT_MAX);
    let before: number | undefined;
    let maxSeq: number | undefined;
    for (;;) {
      const want = Math.min(q.pageSize ?? 1000, cap - out.length);
      if (want <= 0) {
        if (q.limit !== undefined && q.limit <= HISTORY_CLIENT_MAX) return out;
        throw new UsageError(`the history of this key has more than ${HISTORY_CLIENT_MAX} entries; narrow it with --since or --limit`);
      }
      const qs = new URLSearchParams();
      if (q.since !== undefined) qs.set('since', q.since);
      qs.set('limit', String(want));
      if (before !== undefined) qs.set('before', String(before));
      const page = (await signedRequest(s.endpoint, s.identity, 'GET', `${k(partnerId)}/history?${qs.toString()}`, undefined, HistoryList)).body.history;
      if (page.length > want) throw new IntegrityError(`the server sent ${page.length} history entries when ${want} were asked for`);
      // Each page must go strictly backwards: a server ignoring `before` must not keep us paging forever.
      let prev = before ?? Infinity;
      for (const h of page) {
        if (h.seq >= prev) throw new IntegrityError('the server sent a history page that does not go back in time');
        prev = h.seq;
      }
      if (maxSeq === undefined && page.length > 0) {
        // The key's counter bounds every sequence number, and so how many entries there can be.
        maxSeq = (await api.status(s, partnerId)).historySeq ?? Number.MAX_SAFE_INTEGER;
      }
      if (maxSeq !== undefined && page.length > 0 && page[0]!.seq > maxSeq) {
        throw new IntegrityError(`the server sent history entry ${page[0]!.seq}, beyond the key's counter (${maxSeq})`);
      }
      out.push(...page);
      const last = page[page.length - 1]?.seq;
      if (page.length < want || last === undefined || last <= 1) return out;
      before = last;
    }
  },
  putCertificates: (s: Session, partnerId: string, body: { keyVersion: number; certificates: string[] }) =>
    signedRequest(s.endpoint, s.identity, 'PUT', `${k(partnerId)}/certificates`, body, KeyStatus).then((r) => r.body),
  certificates: (s: Session, partnerId: string) =>
    signedRequest(s.endpoint, s.identity, 'GET', `${k(partnerId)}/certificates`, undefined, CertificatesView).then((r) => r.body),
  /** Newest first, paged; bounded like history (a server cannot make us read without end). */
  notices: async (s: Session, unreadOnly: boolean) => {
    const out: NoticeList['notices'] = [];
    let before: string | null | undefined;
    for (;;) {
      const qs = new URLSearchParams();
      if (unreadOnly) qs.set('unread', 'true');
      qs.set('limit', String(NOTICES_MAX_LIMIT));
      if (before) qs.set('before', before);
      const body = (await signedRequest(s.endpoint, s.identity, 'GET', `/v1/notices?${qs.toString()}`, undefined, NoticeList)).body;
      out.push(...body.notices);
      if (!body.next || body.notices.length === 0) return out;
      if (before && body.next >= before) throw new IntegrityError('the server sent a notice page that does not go back in time');
      if (out.length >= NOTICES_CLIENT_MAX) throw new UsageError(`there are more than ${NOTICES_CLIENT_MAX} notices; acknowledge some (kmgr notices --ack) first`);
      before = body.next;
    }
  },
  ack: (s: Session, ids: string[]) => signedRequest(s.endpoint, s.identity, 'POST', '/v1/notices/ack', { ids }, AckResponse).then((r) => r.body.acknowledged),
};
