// kmgrd migrate: moves a LevelDB deployment into PostgreSQL, then compares the
// counts of what was copied with the source. The LevelDB data stays as it was.
import { resolve } from 'node:path';
import { print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { UsageError } from '../../protocol/errors.js';

export async function run(o: { data: string; databaseUrl?: string; json?: boolean }): Promise<number> {
  if (!o.databaseUrl) throw new UsageError('kmgrd migrate needs --database-url (or KMGRD_DATABASE_URL): the PostgreSQL database to copy into');
  const { isDatabaseUrl } = await import('../../store/open.js');
  if (!isDatabaseUrl(o.databaseUrl)) throw new UsageError('--database-url must be a postgres:// or postgresql:// URL');
  const { migrateLevelToPg } = await import('../../store/pg/from-level.js');
  const report = await migrateLevelToPg(resolve(o.data), o.databaseUrl);
  if (o.json) printJson({ copied: report, checked: true });
  else {
    print(`Copied ${report.persons} persons, ${report.keys} keys (${report.uses} uses, ${report.history} history records), ${report.notices} notices, ${report.partners} partners, ${report.pending} pending deliveries.`);
    print('Counts checked: PostgreSQL holds exactly what the LevelDB database held. Start kmgrd with --database-url now.');
  }
  return EXIT.OK;
}
