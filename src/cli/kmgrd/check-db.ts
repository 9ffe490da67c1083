// kmgrd check-db: reports every inconsistency in the database, exit 0 only
// when clean (src/server/operator/check-db.ts does the reading).
import { checkDb } from '../../server/operator/check-db.js';
import { print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';

export async function run(o: { data: string; databaseUrl?: string; json?: boolean }): Promise<number> {
  const report = await checkDb(o);
  const via = report.via;
  const viaDaemon = via === 'daemon';
  const owners = [...new Set(report.findings.flatMap((f) => (f.personId ? [f.personId] : [])))];
  if (o.json) printJson({ ok: report.findings.length === 0, via, checked: report.checked, records: report.records, findings: report.findings, affectedOwners: owners });
  else {
    for (const f of report.findings) print(`${f.where}: ${f.problem}`);
    if (report.findings.length === 0) print(`The database is consistent (${report.records} records; checked ${report.checked.replace('+', ' and ')}${viaDaemon ? ', through the running daemon' : ''}).`);
    else print(`${report.findings.length} problem${report.findings.length > 1 ? 's' : ''} found${owners.length ? ` affecting ${owners.length} owner${owners.length > 1 ? 's' : ''}` : ''}: see "Recovering a damaged database" in kmgrd(8).`);
  }
  return report.findings.length === 0 ? EXIT.OK : EXIT.FINDINGS;
}
