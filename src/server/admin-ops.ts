// Operator operations, run by the daemon for its admin socket or directly on
// the database when no daemon runs. Requests are validated like HTTP bodies.
import { int, obj, oneOf, optional, nullable, str, type Infer } from '../protocol/schema.js';
import { PARTNER_NAME } from '../protocol/messages.js';
import { UsageError } from '../protocol/errors.js';
import type { IntegrityReport, PartnerRecord, Storage } from '../store/types.js';
import { checkTerms, type CheckReport } from './check-terms.js';
import { writeBackup, type BackupSummary } from '../store/backup-format.js';

const CheckTermsRequest = obj({
  op: oneOf(['check-terms'] as const),
  warnMs: int({ min: 0, max: 10 * 365 * 86_400_000 }),
  at: optional(int({ min: 0, max: 8.64e15 })),
});
const text = optional(nullable(str({ max: 200 })));
const PartnerAddRequest = obj({
  op: oneOf(['partner-add'] as const),
  name: str({ max: 64, pattern: PARTNER_NAME, name: 'partner name' }),
  displayName: text,
  appServer: text,
  business: text,
});
const PartnerListRequest = obj({ op: oneOf(['partner-list'] as const) });
const CheckDbRequest = obj({ op: oneOf(['check-db'] as const) });
const BackupRequest = obj({ op: oneOf(['backup'] as const), out: str({ max: 4096, pattern: /^\//, name: 'absolute backup path' }) });

export type AdminRequest = Infer<typeof CheckTermsRequest> | Infer<typeof PartnerAddRequest> | Infer<typeof PartnerListRequest> | Infer<typeof CheckDbRequest> | Infer<typeof BackupRequest>;

export async function runAdmin(storage: Storage, raw: unknown, now: number): Promise<CheckReport | PartnerRecord | PartnerRecord[] | IntegrityReport | BackupSummary> {
  const op = (raw as { op?: unknown } | null)?.op;
  if (op === 'check-terms') {
    const r = CheckTermsRequest(raw, 'admin');
    // A notice says what happened; one recorded for a time that is not now would be false
    // (a key "expired" a month early) and, deduplicated, would suppress the real one.
    return checkTerms(storage, r.at ?? now, r.warnMs, r.at === undefined);
  }
  if (op === 'partner-add') {
    const r = PartnerAddRequest(raw, 'admin');
    return storage.addSharedPartner(r.name, { displayName: r.displayName ?? null, appServer: r.appServer ?? null, business: r.business ?? null }, now);
  }
  if (op === 'partner-list') {
    PartnerListRequest(raw, 'admin');
    return storage.listSharedPartners();
  }
  if (op === 'backup') {
    const r = BackupRequest(raw, 'admin');
    return writeBackup(storage, r.out, now);
  }
  if (op === 'check-db') {
    CheckDbRequest(raw, 'admin');
    return storage.checkIntegrity();
  }
  throw new UsageError('unknown admin operation');
}
