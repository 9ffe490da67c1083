// keystore.json on disk: refused when others can read it; written atomically.
import { openKeystore, sealKeystore, type KeystoreFile, type ManagementSecrets } from '../crypto/keystore.js';
import { writeFileAtomic } from '../io/atomic-file.js';
import { checkPrivateMode, parseJsonFile, readIfExists } from './files.js';
import { ConfigError } from '../protocol/errors.js';
import type { HomePaths } from './home.js';

export async function unlockKeystore(paths: HomePaths, passphrase: Uint8Array): Promise<ManagementSecrets> {
  const text = await readIfExists(paths.keystore);
  if (text === undefined) throw new ConfigError(`no keystore at ${paths.keystore}; run kmgr init`, 'not_initialised');
  await checkPrivateMode(paths.keystore);
  return openKeystore(passphrase, parseJsonFile(text, paths.keystore));
}

export async function writeKeystore(paths: HomePaths, passphrase: Uint8Array, secrets: ManagementSecrets, logN?: number): Promise<void> {
  const file: KeystoreFile = await sealKeystore(passphrase, secrets, logN);
  await writeFileAtomic(paths.keystore, JSON.stringify(file, null, 2) + '\n');
}
