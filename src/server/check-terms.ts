// The terms verification unit's periodic part (Fig. 8): find expired and
// soon-expiring keys, record each finding once as a notice for its owner.
import type { Storage, TermsFinding } from '../store/types.js';

export interface CheckReport {
  at: string;
  /** False for a check at another time (--at): findings reported, nothing recorded or delivered. */
  recorded: boolean;
  findings: Array<Omit<TermsFinding, 'expiresAt'> & { expiresAt: string }>;
}

export async function checkTerms(storage: Storage, atMs: number, warnMs: number, record = true): Promise<CheckReport> {
  const findings = await storage.checkTerms(atMs, warnMs, record);
  return {
    at: new Date(atMs).toISOString(),
    recorded: record,
    findings: findings.map((f) => ({ ...f, expiresAt: new Date(f.expiresAt).toISOString() })),
  };
}
