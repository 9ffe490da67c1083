// Storage records as the wire shows them.
import type { CertificateInfo, HistoryEntry, KeyStatus, NoticeView, PersonInfo } from '../protocol/messages.js';
import type { HistoryRecord, KeyRecord, Notice, PersonRecord, StoredCertificates } from '../store/types.js';
import { usesAt } from '../terms/judge.js';

const iso = (ms: number): string => new Date(ms).toISOString();
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms));

export function personView(p: PersonRecord): PersonInfo {
  return { personId: p.personId, keyId: p.keyId, alg: p.alg, createdAt: iso(p.createdAt) };
}

/** Counters are shown as they stand now: yesterday's day count reads zero today. */
export function keyStatusView(r: KeyRecord, nowMs: number, tz: string): KeyStatus {
  const u = usesAt(r.uses, nowMs, tz);
  return {
    partnerId: r.partnerId,
    keyId: r.keyId,
    alg: r.alg as KeyStatus['alg'],
    keyVersion: r.keyVersion,
    registeredAt: iso(r.registeredAt),
    inhibited: r.inhibited,
    expiresAt: isoOrNull(r.expiresAt),
    onLimit: r.onLimit,
    uses: { total: u.total, day: u.day, week: u.week, month: u.month },
    limits: { total: r.maxUses, day: r.maxPerDay, week: r.maxPerWeek, month: r.maxPerMonth },
    lastUsedAt: isoOrNull(r.lastUsedAt),
    publicKey: r.publicKey ?? null,
    ssh: r.ssh ?? false,
    certificate: currentCertificates(r) ? certificateInfo(currentCertificates(r)!) : null,
  };
}

/** The chain kept for the key's current version; one left from an earlier version is not shown. */
export function currentCertificates(r: KeyRecord): StoredCertificates | undefined {
  return r.certificates && r.certificates.keyVersion === r.keyVersion ? r.certificates : undefined;
}

function certificateInfo(c: StoredCertificates): CertificateInfo {
  const l = c.leaf;
  return { subject: l.subject, issuer: l.issuer, serial: l.serial, notBefore: iso(l.notBefore), notAfter: iso(l.notAfter), fingerprint: l.fingerprint };
}

export function historyView(h: HistoryRecord): HistoryEntry {
  return {
    seq: h.seq,
    at: iso(h.at),
    keyVersion: h.keyVersion,
    result: h.result,
    code: h.code ?? null,
    overLimit: h.overLimit ?? null,
    remoteAddress: h.remoteAddress,
    requester: h.requester ?? null,
    request: h.request ? { ...h.request } : null,
  };
}

export function noticeView(n: Notice): NoticeView {
  return { id: n.id, at: iso(n.at), partnerId: n.partnerId, keyVersion: n.keyVersion, kind: n.kind, message: n.message, read: n.read };
}
