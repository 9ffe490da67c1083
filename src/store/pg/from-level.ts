// kmgrd migrate: a LevelDB deployment copied into an empty PostgreSQL database.
import { join } from 'node:path';
import { dumpLevel } from '../level-dump.js';
import { makePool, storageError } from './db.js';
import { importDump, type ImportReport } from './import.js';
import { migrate } from './schema.js';

export async function migrateLevelToPg(dataDir: string, url: string): Promise<ImportReport> {
  const dump = await dumpLevel(join(dataDir, 'db'));
  const pool = makePool({ url, poolSize: 2, statementTimeoutMs: 600_000 }, () => undefined);
  try {
    const c = await pool.connect().catch((e: unknown) => {
      throw storageError(e);
    });
    try {
      await migrate(c);
    } catch (e) {
      throw storageError(e);
    } finally {
      c.release();
    }
    return await importDump(pool, dump);
  } finally {
    await pool.end();
  }
}
