// kmgrd migrate: one store's records copied into another, empty one, through
// the store-independent backup records (backup-format.ts), then read back
// from the target and counted again. A copy that lost or doubled anything (a
// use, a history entry, a notice) is refused rather than served from.
import { IntegrityError } from '../protocol/errors.js';
import type { BackupRecord, Storage } from './types.js';

export interface CopyReport {
  persons: number;
  keys: number;
  /** Uses counted in all keys together. */
  uses: number;
  history: number;
  notices: number;
  partners: number;
  pending: number;
}

const empty = (): CopyReport => ({ persons: 0, keys: 0, uses: 0, history: 0, notices: 0, partners: 0, pending: 0 });

function count(c: CopyReport, r: BackupRecord): void {
  if (r.t === 'person') c.persons++;
  else if (r.t === 'key') {
    c.keys++;
    c.uses += r.key.uses.total;
  } else if (r.t === 'history') c.history++;
  else if (r.t === 'notice') c.notices++;
  else if (r.t === 'partner') c.partners++;
  else if (r.t === 'pending') c.pending++;
}

export async function copyStore(from: Storage, to: Storage): Promise<CopyReport> {
  const copied = empty();
  async function* counted(): AsyncGenerator<BackupRecord> {
    for await (const r of from.exportRecords()) {
      count(copied, r);
      yield r;
    }
  }
  await to.importRecords(counted());
  const found = empty();
  for await (const r of to.exportRecords()) count(found, r);
  const differ = (Object.keys(copied) as Array<keyof CopyReport>).filter((k) => copied[k] !== found[k]);
  if (differ.length > 0) {
    throw new IntegrityError(`the copy does not hold what the source held (${differ.map((k) => `${k}: ${copied[k]} copied, ${found[k]} found`).join('; ')}); do not serve from it`);
  }
  return copied;
}
