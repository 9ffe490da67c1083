// kmgr passwd: re-seal the keystore under a new passphrase. The file is
// replaced atomically, so a crash leaves the old file (old passphrase) or the
// new one (new passphrase), never neither (threat 12).
import { homePaths } from '../../client/home.js';
import { checkNewPassphrase, readPassphrase, type PassphraseSource } from '../../client/passphrase.js';
import { unlockAsking, writeKeystore } from '../../client/keystore-file.js';
import { parseKeystore } from '../../crypto/keystore.js';
import { readJsonFile } from '../../client/files.js';
import { print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';

interface PasswdOptions extends PassphraseSource {
  newPassphraseFile?: string;
  newPassphraseFd?: string;
  kdfCost?: number;
  allowWeakPassphrase?: boolean;
}

export async function run(g: GlobalOptions, o: PasswdOptions): Promise<number> {
  const paths = homePaths(g.home);
  const secrets = await unlockAsking(paths, o, `Current passphrase for ${paths.keystore}: `);
  const next = await readPassphrase(
    { ...(o.newPassphraseFile !== undefined ? { passphraseFile: o.newPassphraseFile } : {}), ...(o.newPassphraseFd !== undefined ? { passphraseFd: o.newPassphraseFd } : {}) },
    'New passphrase: ',
    true,
    'KMGR_NEW_PASSPHRASE',
  );
  try {
    checkNewPassphrase(next, o.allowWeakPassphrase);
  } catch (e) {
    next.fill(0);
    throw e;
  }
  const logN = o.kdfCost ?? parseKeystore(await readJsonFile(paths.keystore)).params.logN;
  await writeKeystore(paths, next, secrets, logN);
  next.fill(0);
  secrets.signingSeed.fill(0);
  secrets.wrapKey.fill(0);
  if (g.json) printJson({ changed: true, keystore: paths.keystore });
  else print(`Passphrase changed for ${paths.keystore}.`);
  return EXIT.OK;
}
