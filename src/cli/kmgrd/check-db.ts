// kmgrd check-db: reads the whole database and reports every inconsistency,
// exit 0 only when clean. Through the running daemon when there is one (its
// files are then live; they were checked when it started), else on the files:
// first LevelDB's own files, without opening them, then every record.
import { join, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { adminSocketPath } from '../../server/admin.js';
import { fileFindings } from '../../store/level-open.js';
import { LevelStorage } from '../../store/level-storage.js';
import { openStorage } from '../../store/open.js';
import { readMarker } from '../../store/marker.js';
import type { IntegrityReport } from '../../store/types.js';
import { ConfigError, KmgrError } from '../../protocol/errors.js';
import { print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { askDaemon } from './admin-client.js';

async function direct(dataDir: string): Promise<IntegrityReport & { checked: 'files' | 'files+records' }> {
  const dbDir = join(dataDir, 'db');
  let marker;
  try {
    marker = readMarker(dataDir);
  } catch (e) {
    return { findings: [{ where: 'marker', problem: (e as Error).message }], records: 0, checked: 'files' };
  }
  if (!marker && !existsSync(dbDir)) throw new ConfigError(`there is no kmgrd database at ${dataDir} (check --data)`);
  const files = existsSync(dbDir) ? fileFindings(dbDir) : [{ file: '', problem: 'is missing' }];
  // Damaged files are not opened: LevelDB would drop or rewrite what it cannot read.
  if (files.length > 0) return { findings: files.map((f) => ({ where: `file ${join(dbDir, f.file)}`, problem: f.problem })), records: 0, checked: 'files' };
  let storage: LevelStorage;
  try {
    storage = await LevelStorage.open(dbDir, { tz: 'UTC', clock: Date.now, createIfMissing: false });
  } catch (e) {
    if (e instanceof KmgrError && e.code === 'storage_damaged') return { findings: [{ where: 'database', problem: e.message }], records: 0, checked: 'files' };
    throw e;
  }
  try {
    return { ...(await storage.checkIntegrity()), checked: 'files+records' };
  } finally {
    await storage.close();
  }
}

/** PostgreSQL keeps its own files whole: what is checked is how the tables agree. */
async function inDatabase(databaseUrl: string): Promise<IntegrityReport & { checked: 'records' }> {
  const storage = await openStorage({ dataDir: '', databaseUrl, tz: 'UTC', clock: Date.now, createIfMissing: false });
  try {
    return { ...(await storage.checkIntegrity()), checked: 'records' };
  } finally {
    await storage.close();
  }
}

export async function run(o: { data: string; databaseUrl?: string; json?: boolean }): Promise<number> {
  const dataDir = resolve(o.data);
  const viaDaemon = o.databaseUrl ? undefined : await askDaemon(adminSocketPath(dataDir), { op: 'check-db' });
  const report = o.databaseUrl ? await inDatabase(o.databaseUrl) : viaDaemon ? { ...(viaDaemon.reply as IntegrityReport), checked: 'records' as const } : await direct(dataDir);
  const via = viaDaemon ? 'daemon' : 'database';
  const owners = [...new Set(report.findings.flatMap((f) => (f.personId ? [f.personId] : [])))];
  if (o.json) printJson({ ok: report.findings.length === 0, via, checked: report.checked, records: report.records, findings: report.findings, affectedOwners: owners });
  else {
    for (const f of report.findings) print(`${f.where}: ${f.problem}`);
    if (report.findings.length === 0) print(`The database is consistent (${report.records} records; checked ${report.checked.replace('+', ' and ')}${viaDaemon ? ', through the running daemon' : ''}).`);
    else print(`${report.findings.length} problem${report.findings.length > 1 ? 's' : ''} found${owners.length ? ` affecting ${owners.length} owner${owners.length > 1 ? 's' : ''}` : ''}: see "Recovering a damaged database" in kmgrd(8).`);
  }
  return report.findings.length === 0 ? EXIT.OK : EXIT.FINDINGS;
}
