// Which events become notices for the key's owner (paragraphs 31-34), each
// with a dedupe key so that the same fact is recorded once, however often the
// check runs or the key is asked for.
import type { KeyTerms, LimitName, Uses, Verdict } from './judge.js';

/** restored: the server's database was restored from a backup, so later uses are missing (kmgrd restore). */
export type NoticeKind = 'expired' | 'expiring' | 'limit_reached' | 'limit_passed' | 'refused_attempt' | 'restored';

export interface NoticeDraft {
  kind: NoticeKind;
  dedupe: string;
  message: string;
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
export function noticesForTerm(partner: string, keyVersion: number, t: KeyTerms, nowMs: number, warnMs: number): NoticeDraft[] {
  if (t.expiresAt === null) return [];
  const when = new Date(t.expiresAt).toISOString();
  if (nowMs >= t.expiresAt) return [{ kind: 'expired', dedupe: `expired!v${keyVersion}!${t.expiresAt}`, message: `${partner} (v${keyVersion}) expired at ${when}` }];
  if (t.expiresAt - nowMs <= warnMs) {
    return [{ kind: 'expiring', dedupe: `expiring!v${keyVersion}!${t.expiresAt}`, message: `${partner} (v${keyVersion}) expires at ${when}` }];
  }
  return [];
}
