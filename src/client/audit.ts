// The audit (paragraph 35): compare the server's history of a key with this
// client's own fetch log. Every counted use must carry a fetch request signed
// by our management key: the server cannot invent one. A signed use that is
// not in our log was made by another holder of the management key (a copied
// keystore, a second device).
import type { KeyObject } from 'node:crypto';
import { fromB64, utf8 } from '../crypto/bytes.js';
import { TAG_REQUEST, verifySignature } from '../crypto/sign.js';
import { parseSignatureInput, signatureBase, SIG_LABEL } from '../protocol/sigbase.js';
import type { HistoryEntry } from '../protocol/messages.js';

/**
 * ours: in this client's fetch log. unfinished: sent by this client, reply never
 * opened (the process ended first). undelivered: counted, though this client
 * got no key for it (no answer, or a reply that failed its checks). not_ours:
 * signed by the management key, not by this client. forged: the server's record
 * could not have come from this key, counts one signed request twice, or counts
 * a request it refused to this client.
 */
type AuditVerdict = 'ours' | 'unfinished' | 'undelivered' | 'not_ours' | 'other_device' | 'forged';

/** What this client's sent log says became of its requests that brought no key (see fetch-log.ts). */
interface OurRequests {
  opened: Set<string>;
  sent: Set<string>;
  refused?: Set<string>;
  unanswered?: Set<string>;
  rejected?: Set<string>;
}

export interface AuditLine {
  seq: number;
  at: string;
  result: HistoryEntry['result'];
  keyVersion: number;
  remoteAddress: string;
  device: string;
  verdict: AuditVerdict;
  why?: string;
}

/** Whether a history record is a genuine fetch of this partner's key, signed by our key. */
/** The management keys whose signatures count as the owner's: the current one, and those a rekey replaced. */
export type OwnerKeys = Map<string, KeyObject>;

function checkSignedUse(h: HistoryEntry, partnerId: string, keyId: string | OwnerKeys, publicKey?: KeyObject): string | undefined {
  const keys: OwnerKeys = typeof keyId === 'string' ? new Map([[keyId, publicKey!]]) : keyId;
  const r = h.request;
  if (!r) return 'it carries no signed request';
  const params = parseSignatureInput(`${SIG_LABEL}=${r.signatureInput}`);
  if (!params) return 'its signature parameters are malformed';
  const signer = keys.get(params.keyid);
  if (!signer) return 'it was signed by another key';
  const q = r.path.indexOf('?');
  const path = q < 0 ? r.path : r.path.slice(0, q);
  const query = q < 0 ? '' : r.path.slice(q);
  // A signed status or history request must not pass for a use.
  if (r.method !== 'POST' || path !== `/v1/keys/${partnerId}/fetch`) return 'the signed request is not a fetch of this key';
  const sig = fromB64(r.signature);
  const base = signatureBase({ method: r.method, authority: r.authority, path, query, contentDigest: r.contentDigest, device: r.device }, params);
  if (!sig || !verifySignature(signer, TAG_REQUEST, utf8(base), sig)) return 'its signature does not verify';
  const at = Date.parse(h.at) / 1000;
  if (Math.abs(at - params.created) > 300) return 'it was recorded far from the time it was signed';
  return undefined;
}

export function auditHistory(
  history: HistoryEntry[],
  partnerId: string,
  keyId: string | OwnerKeys,
  publicKey: KeyObject | undefined,
  ours: OurRequests,
  /** The person's other devices (label -> revoked at, ms, or null): their uses are told apart from an unknown holder's. */
  otherDevices?: Map<string, number | null>,
): AuditLine[] {
  const seen = new Set<string>();
  // Verify entries record an application server's question, a retired entry the owner's retirement,
  // rekey entries a re-wrapping: none is a use.
  return history.filter((h) => h.result !== 'verify' && h.result !== 'retired' && h.result !== 'rekey').map((h) => {
    const base = { seq: h.seq, at: h.at, result: h.result, keyVersion: h.keyVersion, remoteAddress: h.remoteAddress, device: h.request?.device ?? '' };
    const why = checkSignedUse(h, partnerId, keyId, publicKey);
    if (why) return { ...base, verdict: 'forged' as const, why };
    const nonce = parseSignatureInput(`${SIG_LABEL}=${h.request!.signatureInput}`)!.nonce;
    // The server refuses a nonce twice (threat 8), so one signed request counted twice was invented.
    if (seen.has(nonce)) return { ...base, verdict: 'forged' as const, why: 'the same signed request is counted twice' };
    seen.add(nonce);
    if (h.result !== 'refused' && ours.refused?.has(nonce)) {
      return { ...base, verdict: 'forged' as const, why: 'the server refused this request, yet counts it as a use' };
    }
    if (h.result !== 'refused' && !ours.opened.has(nonce)) {
      if (ours.rejected?.has(nonce)) return { ...base, verdict: 'undelivered' as const, why: 'this client rejected the reply (it failed its checks), yet the server counts it as a use' };
      if (ours.unanswered?.has(nonce)) return { ...base, verdict: 'undelivered' as const, why: 'this client got no answer (a timeout or a dropped connection), yet the server counts it as a use' };
    }
    let verdict: AuditVerdict = ours.opened.has(nonce) ? 'ours' : ours.sent.has(nonce) ? 'unfinished' : 'not_ours';
    // Labels are self-declared: this tells the owner's devices apart, it does not prove who signed (see kmgr(1)).
    const revokedAt = otherDevices?.get(base.device);
    if (verdict === 'not_ours' && revokedAt !== undefined && (revokedAt === null || Date.parse(h.at) < revokedAt)) verdict = 'other_device';
    return { ...base, verdict: verdict as AuditVerdict };
  });
}

/** A use this client was served: its nonce and the key version it opened. */
export interface ServedUse {
  nonce: string;
  keyVersion: number;
  at: string;
}

/**
 * The other direction (a damaged log, a restore that rolled counters back, a
 * server hiding a use from both counter and history): every use this client
 * was served must be in the server's history, with the same nonce, as a use of
 * the same key version. Returns those that are not.
 */
export function missingUses(history: HistoryEntry[], served: ServedUse[]): Array<ServedUse & { why: string }> {
  const inHistory = new Map<string, number>();
  for (const h of history) {
    if (h.result === 'verify' || h.result === 'rekey' || h.result === 'refused' || !h.request) continue;
    const p = parseSignatureInput(`${SIG_LABEL}=${h.request.signatureInput}`);
    if (p) inHistory.set(p.nonce, h.keyVersion);
  }
  const out: Array<ServedUse & { why: string }> = [];
  for (const u of served) {
    const v = inHistory.get(u.nonce);
    if (v === undefined) out.push({ ...u, why: 'not in the history' });
    else if (v !== u.keyVersion) out.push({ ...u, why: `recorded as a use of version ${v}, not ${u.keyVersion}` });
  }
  return out;
}
