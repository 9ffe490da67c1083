// kmgrd migrate: moves a stopped LevelDB deployment into an empty PostgreSQL
// database, then compares the counts of what was copied with the source. The
// LevelDB data stays as it was.
import { resolve } from 'node:path';
import { print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { UsageError } from '../../protocol/errors.js';

export async function run(o: { data: string; databaseUrl?: string; json?: boolean }): Promise<number> {
  if (!o.databaseUrl) throw new UsageError('kmgrd migrate needs --database-url (or KMGRD_DATABASE_URL): the PostgreSQL database to copy into');
  const { isDatabaseUrl, openStorage } = await import('../../store/open.js');
  if (!isDatabaseUrl(o.databaseUrl)) throw new UsageError('--database-url must be a postgres:// or postgresql:// URL');
  const { copyStore } = await import('../../store/copy.js');
  // LevelDB's lock refuses a running daemon's database: the copy is of one stopped moment.
  const from = await openStorage({ dataDir: resolve(o.data), tz: 'UTC', clock: Date.now, createIfMissing: false });
  let report;
  try {
    const to = await openStorage({ dataDir: '', databaseUrl: o.databaseUrl, tz: 'UTC', clock: Date.now, statementTimeoutMs: 3_600_000 });
    try {
      report = await copyStore(from, to);
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
  if (o.json) printJson({ copied: report, checked: true });
  else {
    print(`Copied ${report.persons} persons, ${report.keys} keys (${report.uses} uses, ${report.history} history records), ${report.notices} notices, ${report.partners} partners, ${report.pending} pending deliveries.`);
    print('Counts checked: PostgreSQL holds exactly what the LevelDB database held. Start kmgrd with --database-url now.');
  }
  return EXIT.OK;
}
