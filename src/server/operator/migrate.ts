// kmgrd migrate, the storage side: a stopped LevelDB deployment copied into an
// empty PostgreSQL database and counted again there (src/store/copy.ts). The
// LevelDB data stays as it was.
import { resolve } from 'node:path';
import { UsageError } from '../../protocol/errors.js';
import { isDatabaseUrl, OPERATOR_STATEMENT_TIMEOUT_MS, openStorage } from '../../store/open.js';
import { copyStore, type CopyReport } from '../../store/copy.js';

export async function migrate(o: { data: string; databaseUrl: string }): Promise<CopyReport> {
  if (!isDatabaseUrl(o.databaseUrl)) throw new UsageError('--database-url must be a postgres:// or postgresql:// URL');
  // LevelDB's lock refuses a running daemon's database: the copy is of one stopped moment.
  const from = await openStorage({ dataDir: resolve(o.data), tz: 'UTC', clock: Date.now, createIfMissing: false });
  try {
    const to = await openStorage({ dataDir: '', databaseUrl: o.databaseUrl, tz: 'UTC', clock: Date.now, statementTimeoutMs: OPERATOR_STATEMENT_TIMEOUT_MS });
    try {
      return await copyStore(from, to);
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
}
