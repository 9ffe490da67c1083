// kmgrd backup and kmgrd restore: the summaries they print (src/server/operator/backup.ts does the work).
import * as op from '../../server/operator/backup.js';
import { print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';

/** Through the running daemon (a snapshot of its live database), else on the database directly. */
export async function backup(o: { data: string; databaseUrl?: string; out: string; json?: boolean }): Promise<number> {
  const summary = await op.backup(o);
  if (o.json) printJson(summary);
  else print(`Backed up ${summary.records} records (snapshot ${summary.takenAt}, ${summary.bytes} bytes, sha256 ${summary.sha256}) to ${summary.file}`);
  return EXIT.OK;
}

export async function restore(file: string, o: { data?: string; databaseUrl?: string; json?: boolean }): Promise<number> {
  const r = await op.restore(file, o);
  if (o.json) printJson({ ...r.target, snapshotId: r.header.snapshotId, takenAt: r.header.takenAt, records: r.records, keysNoticed: r.noticed });
  else {
    print(`Restored ${r.records} records into ${r.where} from the snapshot taken at ${r.header.takenAt}.`);
    print(`Uses after ${r.header.takenAt} are missing: the owners of ${r.noticed} key${r.noticed === 1 ? '' : 's'} were sent a notice saying so.`);
  }
  return EXIT.OK;
}
