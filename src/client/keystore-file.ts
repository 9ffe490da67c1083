// keystore.json on disk: refused when others can read it; written atomically.
import { openKeystore, sealKeystore, type KeystoreFile, type ManagementSecrets } from '../crypto/keystore.js';
import { writeFileAtomic } from '../io/atomic-file.js';
import { checkPrivateMode, readJsonFile } from './files.js';
import { ConfigError, KmgrError } from '../protocol/errors.js';
import { fromPrompt, readPassphrase, type PassphraseSource } from './passphrase.js';
import type { HomePaths } from './home.js';

export async function unlockKeystore(paths: HomePaths, passphrase: Uint8Array): Promise<ManagementSecrets> {
  const doc = await readJsonFile(paths.keystore, { trust: checkPrivateMode });
  if (doc === undefined) throw new ConfigError(`no keystore at ${paths.keystore}; run kmgr init`, 'not_initialised');
  return openKeystore(passphrase, doc);
}

export async function writeKeystore(paths: HomePaths, passphrase: Uint8Array, secrets: ManagementSecrets, logN?: number): Promise<void> {
  const file: KeystoreFile = await sealKeystore(passphrase, secrets, logN);
  await writeFileAtomic(paths.keystore, JSON.stringify(file, null, 2) + '\n');
}

/**
 * Asks for the passphrase and unlocks: at a terminal, three tries (as sudo and
 * ssh give), and an "unlocking…" line while the KDF runs (a second or more at
 * high cost, which otherwise looks like a hang). From a file, descriptor or
 * the environment a wrong passphrase is final: retrying cannot change it.
 */
export async function unlockAsking(paths: HomePaths, src: PassphraseSource, prompt = `Passphrase for ${paths.keystore}: `): Promise<ManagementSecrets> {
  const asking = fromPrompt(src);
  for (let attempt = 1; ; attempt++) {
    const passphrase = await readPassphrase(src, prompt);
    const show = process.stderr.isTTY === true;
    if (show) process.stderr.write('unlocking…');
    try {
      return await unlockKeystore(paths, passphrase);
    } catch (e) {
      if (!(asking && attempt < 3 && e instanceof KmgrError && e.code === 'wrong_passphrase')) throw e;
      if (show) process.stderr.write('\r\x1b[K');
      process.stderr.write('Wrong passphrase, try again.\n');
    } finally {
      passphrase.fill(0);
      if (show) process.stderr.write('\r\x1b[K');
    }
  }
}
