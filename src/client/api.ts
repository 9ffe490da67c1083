// Typed calls to the key server's /v1 API, one per endpoint the CLI uses.
import {
  AckResponse, CertificatesView, FetchResponse, HistoryList, KeyList, KeyStatus, NoticeList, type HistoryEntry,
  type KeyPatchRequest, type RotateRequest, type SignedBinding, type Terms,
} from '../protocol/messages.js';
import { signedRequest, type Sent } from './http.js';
import { IntegrityError } from '../protocol/errors.js';
import type { Session } from './session.js';

const k = (partnerId: string): string => `/v1/keys/${encodeURIComponent(partnerId)}`;

export const api = {
  register: (s: Session, partnerId: string, body: { keyId: string; alg: string; keyVersion: number; blob: string; terms: Terms; binding: SignedBinding | null; ssh?: boolean }) =>
    signedRequest(s.endpoint, s.identity, 'PUT', k(partnerId), body, KeyStatus).then((r) => r.body),
  fetch: (s: Session, partnerId: string, nonce?: string): Promise<Sent<FetchResponse>> =>
    signedRequest(s.endpoint, s.identity, 'POST', `${k(partnerId)}/fetch`, {}, FetchResponse, nonce),
  list: (s: Session) => signedRequest(s.endpoint, s.identity, 'GET', '/v1/keys', undefined, KeyList).then((r) => r.body.keys),
  status: (s: Session, partnerId: string) => signedRequest(s.endpoint, s.identity, 'GET', k(partnerId), undefined, KeyStatus).then((r) => r.body),
  patch: (s: Session, partnerId: string, body: KeyPatchRequest) =>
    signedRequest(s.endpoint, s.identity, 'PATCH', k(partnerId), body, KeyStatus).then((r) => r.body),
  rotate: (s: Session, partnerId: string, body: RotateRequest) =>
    signedRequest(s.endpoint, s.identity, 'POST', `${k(partnerId)}/rotate`, body, KeyStatus).then((r) => r.body),
  /** Newest first, fetched in pages of 1000 so a long history never needs one huge reply. */
  history: async (s: Session, partnerId: string, q: { since?: string; limit?: number }): Promise<HistoryEntry[]> => {
    const out: HistoryEntry[] = [];
    let before: number | undefined;
    for (;;) {
      const want = Math.min(1000, (q.limit ?? Infinity) - out.length);
      if (want <= 0) return out;
      const qs = new URLSearchParams();
      if (q.since !== undefined) qs.set('since', q.since);
      qs.set('limit', String(want));
      if (before !== undefined) qs.set('before', String(before));
      const page = (await signedRequest(s.endpoint, s.identity, 'GET', `${k(partnerId)}/history?${qs.toString()}`, undefined, HistoryList)).body.history;
      // Each page must go strictly backwards: a server ignoring `before` must not keep us paging forever.
      const last = page[page.length - 1]?.seq;
      if (before !== undefined && page.some((h) => h.seq >= before!)) throw new IntegrityError('the server sent a history page that does not go back in time');
      out.push(...page);
      if (page.length < want || last === undefined) return out;
      before = last;
    }
  },
  putCertificates: (s: Session, partnerId: string, body: { keyVersion: number; certificates: string[] }) =>
    signedRequest(s.endpoint, s.identity, 'PUT', `${k(partnerId)}/certificates`, body, KeyStatus).then((r) => r.body),
  certificates: (s: Session, partnerId: string) =>
    signedRequest(s.endpoint, s.identity, 'GET', `${k(partnerId)}/certificates`, undefined, CertificatesView).then((r) => r.body),
  notices: (s: Session, unreadOnly: boolean) =>
    signedRequest(s.endpoint, s.identity, 'GET', `/v1/notices${unreadOnly ? '?unread=true' : ''}`, undefined, NoticeList).then((r) => r.body.notices),
  ack: (s: Session, ids: string[]) => signedRequest(s.endpoint, s.identity, 'POST', '/v1/notices/ack', { ids }, AckResponse).then((r) => r.body.acknowledged),
};
