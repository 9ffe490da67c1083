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
 * opened. not_ours: signed by the management key, not by this client. forged:
 * the server's record could not have come from this key, or counts one signed
 * request twice.
 */
export type AuditVerdict = 'ours' | 'unfinished' | 'not_ours' | 'other_device' | 'forged';

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

export function checkSignedUse(h: HistoryEntry, partnerId: string, keyId: string | OwnerKeys, publicKey?: KeyObject): string | undefined {
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
  ours: { opened: Set<string>; sent: Set<string>; refused?: Set<string> },
  /** The person's other devices (label -> revoked at, ms, or null): their uses are told apart from an unknown holder's. */
  otherDevices?: Map<string, number | null>,
): AuditLine[] {
  const seen = new Set<string>();
  // Verify entries record an application server's question, rekey entries a re-wrapping: neither is a use.
  return history.filter((h) => h.result !== 'verify' && h.result !== 'rekey').map((h) => {
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
    let verdict: AuditVerdict = ours.opened.has(nonce) ? 'ours' : ours.sent.has(nonce) ? 'unfinished' : 'not_ours';
    // Labels are self-declared: this tells the owner's devices apart, it does not prove who signed (see kmgr(1)).
    const revokedAt = otherDevices?.get(base.device);
    if (verdict === 'not_ours' && revokedAt !== undefined && (revokedAt === null || Date.parse(h.at) < revokedAt)) verdict = 'other_device';
    return { ...base, verdict: verdict as AuditVerdict };
  });
}
