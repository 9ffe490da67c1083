// Which events become notices for the key's owner (paragraphs 31-34), each
// with a dedupe key so that the same fact is recorded once, however often the
// check runs or the key is asked for.
import type { KeyTerms, LimitName, Uses, Verdict } from './judge.js';

/** restored: the server's database was restored from a backup, so later uses are missing (kmgrd restore). */
export type NoticeKind = 'expired' | 'expiring' | 'limit_reached' | 'limit_passed' | 'refused_attempt' | 'restored' | 'certificate_expired' | 'certificate_expiring';

export interface NoticeDraft {
  kind: NoticeKind;
  dedupe: string;
  message: string;
  /** For findings of the terms check: the instant that expires (the key's term, or its certificate's notAfter). */
  expiresAt?: number;
}

/** The certificate chain kept beside a key, as far as the terms check needs it. */
interface CertificateTerm {
  keyVersion: number;
  leaf: { subject: string; notBefore: number; notAfter: number; fingerprint: string };
}

/**
 * A certificate is noticed as expiring once two thirds of its lifetime have
 * passed (when renewal is due by common practice: ACME clients renew at 2/3)
 * or within the warning window, whichever comes first; and as expired after
 * its notAfter. A chain left over from an earlier key version is ignored.
 */
function noticesForCertificate(partner: string, keyVersion: number, c: CertificateTerm | null | undefined, nowMs: number, warnMs: number): NoticeDraft[] {
  if (!c || c.keyVersion !== keyVersion) return [];
  const { notBefore, notAfter, fingerprint, subject } = c.leaf;
  const when = new Date(notAfter).toISOString();
  const id = `v${keyVersion}!${fingerprint}`;
  if (nowMs >= notAfter) {
    return [{ kind: 'certificate_expired', dedupe: `cert-expired!${id}`, message: `the certificate of ${partner} (v${keyVersion}, ${subject}) expired at ${when}`, expiresAt: notAfter }];
  }
  const renewAt = notBefore + ((notAfter - notBefore) * 2) / 3;
  if (nowMs >= renewAt || notAfter - nowMs <= warnMs) {
    return [{ kind: 'certificate_expiring', dedupe: `cert-expiring!${id}`, message: `the certificate of ${partner} (v${keyVersion}, ${subject}) expires at ${when}: renew it (kmgr csr ${partner})`, expiresAt: notAfter }];
  }
  return [];
}

/**
 * The instants by which a store's expiry index must hand a key to the terms
 * check: the key's own expiry and, for a certificate meant for this version,
 * its renewal point (two thirds of its lifetime, never after its notAfter).
 * A check reading entries up to now + warning window then finds every notice
 * noticesForTerm can give, and reads no key that has none coming.
 */
export function termInstants(keyVersion: number, t: { expiresAt: number | null; certificates?: CertificateTerm | null }): number[] {
  const out: number[] = [];
  if (t.expiresAt !== null) out.push(t.expiresAt);
  const c = t.certificates;
  if (c && c.keyVersion === keyVersion) {
    const renewAt = Math.floor(c.leaf.notBefore + ((c.leaf.notAfter - c.leaf.notBefore) * 2) / 3);
    if (!out.includes(renewAt)) out.push(renewAt);
  }
  return out;
}

const LIMIT_FIELD: Record<LimitName, keyof KeyTerms> = { total: 'maxUses', day: 'maxPerDay', week: 'maxPerWeek', month: 'maxPerMonth' };
const LIMIT_WORDS: Record<LimitName, string> = { total: 'total', day: 'daily', week: 'weekly', month: 'monthly' };

function bucket(u: Uses, l: LimitName): string {
  return l === 'total' ? 'all' : u.periods[l];
}

/** Notices caused by one judged use of a key. */
export function noticesForUse(partner: string, keyVersion: number, t: KeyTerms, v: Verdict): NoticeDraft[] {
  const out: NoticeDraft[] = [];
  if (!v.serve) {
    out.push({
      kind: 'refused_attempt',
      dedupe: `refused!v${keyVersion}!${v.code}!${v.uses.periods.day}`,
      message: `a use of ${partner} (v${keyVersion}) was refused: ${v.message}`,
    });
    return out;
  }
  for (const l of ['total', 'day', 'week', 'month'] as const) {
    const max = t[LIMIT_FIELD[l]] as number | null;
    if (max === null) continue;
    if (v.uses[l] === max) {
      out.push({ kind: 'limit_reached', dedupe: `reached!v${keyVersion}!${l}!${bucket(v.uses, l)}`, message: `${partner} (v${keyVersion}) reached its ${LIMIT_WORDS[l]} limit of ${max} uses` });
    } else if (v.uses[l] > max) {
      out.push({ kind: 'limit_passed', dedupe: `passed!v${keyVersion}!${l}!${bucket(v.uses, l)}`, message: `${partner} (v${keyVersion}) was used past its ${LIMIT_WORDS[l]} limit of ${max} (policy notify)` });
    }
  }
  return out;
}

/** Notices from the periodic terms check (Fig. 8): expired, or expiring within the warning window. */
export function noticesForTerm(partner: string, keyVersion: number, t: KeyTerms & { certificates?: CertificateTerm | null }, nowMs: number, warnMs: number): NoticeDraft[] {
  // Every storage backend's terms check calls this with the key record, so certificates kept on it are noticed everywhere.
  const certs = noticesForCertificate(partner, keyVersion, t.certificates, nowMs, warnMs);
  return [...keyTermNotices(partner, keyVersion, t, nowMs, warnMs), ...certs];
}

function keyTermNotices(partner: string, keyVersion: number, t: KeyTerms, nowMs: number, warnMs: number): NoticeDraft[] {
  if (t.expiresAt === null) return [];
  const when = new Date(t.expiresAt).toISOString();
  if (nowMs >= t.expiresAt) return [{ kind: 'expired', dedupe: `expired!v${keyVersion}!${t.expiresAt}`, message: `${partner} (v${keyVersion}) expired at ${when}` }];
  if (t.expiresAt - nowMs <= warnMs) {
    return [{ kind: 'expiring', dedupe: `expiring!v${keyVersion}!${t.expiresAt}`, message: `${partner} (v${keyVersion}) expires at ${when}` }];
  }
  return [];
}
