// The terms verification unit's periodic part (Fig. 8): find expired and
// soon-expiring keys, record each finding once as a notice for its owner.
import type { Storage, TermsFinding } from '../store/types.js';

export interface CheckReport {
  at: string;
  findings: Array<Omit<TermsFinding, 'expiresAt'> & { expiresAt: string }>;
}

export async function checkTerms(storage: Storage, atMs: number, warnMs: number): Promise<CheckReport> {
  const findings = await storage.checkTerms(atMs, warnMs);
  return {
    at: new Date(atMs).toISOString(),
    findings: findings.map((f) => ({ ...f, expiresAt: new Date(f.expiresAt).toISOString() })),
  };
}
