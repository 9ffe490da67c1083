// kmgrd migrate: moves a stopped LevelDB deployment into an empty PostgreSQL
// database and checks the counts (src/server/operator/migrate.ts does the copy).
import { print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { UsageError } from '../../protocol/errors.js';

export async function run(o: { data: string; databaseUrl?: string; json?: boolean }): Promise<number> {
  if (!o.databaseUrl) throw new UsageError('kmgrd migrate needs --database-url (or KMGRD_DATABASE_URL): the PostgreSQL database to copy into');
  const { migrate } = await import('../../server/operator/migrate.js');
  const report = await migrate({ data: o.data, databaseUrl: o.databaseUrl });
  if (o.json) printJson({ copied: report, checked: true });
  else {
    print(`Copied ${report.persons} persons, ${report.keys} keys (${report.uses} uses, ${report.history} history records), ${report.notices} notices, ${report.partners} partners, ${report.pending} pending deliveries.`);
    print('Counts checked: PostgreSQL holds exactly what the LevelDB database held. Start kmgrd with --database-url now.');
  }
  return EXIT.OK;
}
