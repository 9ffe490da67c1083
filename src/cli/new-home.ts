// What `kmgr recover` and `kmgr device import` check before they make a home
// from a file: a valid device label, no keystore to overwrite unless forced,
// and a file that reads as JSON. Both refuse before asking for any code.
import { readFile } from 'node:fs/promises';
import { ConfigError, IntegrityError, KmgrError, UsageError } from '../protocol/errors.js';
import { DEVICE_LABEL } from '../protocol/sigbase.js';
import { exists } from '../client/files.js';
import type { HomePaths } from '../client/home.js';
import { defaultDeviceLabel } from './commands/init.js';

/** `what`: the kind of file, for the error ("kmgr recovery kit", "kmgr device export"). */
export async function readForNewHome(paths: HomePaths, o: { label?: string; force?: boolean }, file: string, what: string): Promise<{ label: string; doc: unknown }> {
  const label = o.label ?? defaultDeviceLabel();
  if (!DEVICE_LABEL.test(label)) throw new UsageError('--label takes 1-40 letters, digits, ".", "_", "@" or "-", starting with a letter or digit');
  if (!o.force && (await exists(paths.keystore))) {
    throw new KmgrError('keystore_exists', `a keystore already exists at ${paths.keystore}; use --force to replace it (the old one is kept)`);
  }
  try {
    return { label, doc: JSON.parse(await readFile(file, 'utf8')) };
  } catch (e) {
    throw (e as NodeJS.ErrnoException).code ? new ConfigError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code}`) : new IntegrityError(`${file} is not a ${what}`);
  }
}
