// kmgr device export|import: set up a second device with the same management
// key (paragraphs 6 and 8: one key, any device). The export is sealed under a
// one-time code printed once; the new device sets its own passphrase.
import { readFile } from 'node:fs/promises';
import { sealTransfer, openTransfer, newTransferCode } from '../../crypto/transfer.js';
import { fromB64, toB64, utf8, fromUtf8 } from '../../crypto/bytes.js';
import { fingerprint, signerFromSeed } from '../../crypto/sign.js';
import { ConfigError, IntegrityError, KmgrError, UsageError } from '../../protocol/errors.js';
import { DEVICE_LABEL } from '../../protocol/sigbase.js';
import { homePaths } from '../../client/home.js';
import { ClientConfig, loadConfig, saveConfig } from '../../client/config.js';
import { exists, keepOldIdentity, readIfExists } from '../../client/files.js';
import { endpointFor } from '../../client/session.js';
import { loadPartners, savePartners, type PartnerIndex } from '../../client/partners.js';
import { readPassphrase, promptTty, type PassphraseSource } from '../../client/passphrase.js';
import { unlockKeystore, writeKeystore } from '../../client/keystore-file.js';
import { ensurePrivateDir, writeFileAtomic } from '../../io/atomic-file.js';
import { info, print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { defaultDeviceLabel } from './init.js';
import type { GlobalOptions } from '../options.js';

interface Payload {
  v: 1;
  signingSeed: string;
  wrapKey: string;
  config: ClientConfig;
  ca: string | null;
  partners: PartnerIndex;
}

export async function exportDevice(g: GlobalOptions, o: PassphraseSource & { out?: string }): Promise<number> {
  if (o.out === undefined && process.stdout.isTTY) {
    throw new KmgrError('terminal_refused', 'refusing to print a device export to a terminal; use --out FILE or redirect stdout');
  }
  const paths = homePaths(g.home);
  const config = await loadConfig(paths);
  const ep = await endpointFor(paths, config);
  const passphrase = await readPassphrase(o, `Passphrase for ${paths.keystore}: `);
  const secrets = await unlockKeystore(paths, passphrase);
  const payload: Payload = {
    v: 1,
    signingSeed: toB64(secrets.signingSeed),
    wrapKey: toB64(secrets.wrapKey),
    config,
    ca: ep.ca ?? null,
    partners: await loadPartners(paths),
  };
  const code = newTransferCode();
  const file = JSON.stringify(sealTransfer(code, utf8(JSON.stringify(payload)))) + '\n';
  if (o.out !== undefined) await writeFileAtomic(o.out, file, 0o600);
  else process.stdout.write(file);
  // The code goes to the terminal (stderr), never into the file's stream.
  if (g.json && o.out !== undefined) printJson({ out: o.out, code });
  else info(`One-time code (type it on the other device; it is shown only now):\n\n    ${code}\n`);
  return EXIT.OK;
}

interface ImportOptions extends PassphraseSource {
  codeFile?: string;
  label?: string;
  force?: boolean;
  kdfCost: number;
}

export async function importDevice(g: GlobalOptions, file: string, o: ImportOptions): Promise<number> {
  const paths = homePaths(g.home);
  const label = o.label ?? defaultDeviceLabel();
  if (!DEVICE_LABEL.test(label)) throw new UsageError('--label takes 1-40 letters, digits, ".", "_", "@" or "-", starting with a letter or digit');
  if (!o.force && (await exists(paths.keystore))) {
    throw new KmgrError('keystore_exists', `a keystore already exists at ${paths.keystore}; use --force to replace it (the old one is kept)`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw (e as NodeJS.ErrnoException).code ? new ConfigError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code}`) : new IntegrityError(`${file} is not a kmgr device export`);
  }
  const code = o.codeFile !== undefined ? ((await readIfExists(o.codeFile)) ?? '').trim() : await promptTty('One-time code: ');
  if (o.codeFile !== undefined && code === '') throw new ConfigError(`cannot read the one-time code from ${o.codeFile}`);
  const payload = JSON.parse(fromUtf8(openTransfer(code, doc))) as Payload;
  const seed = fromB64(payload.signingSeed);
  const wrapKey = fromB64(payload.wrapKey);
  const config = ClientConfig(payload.config, 'export.config');
  if (!seed || seed.length !== 32 || !wrapKey || wrapKey.length !== 32 || fingerprint(signerFromSeed(seed).publicKey) !== config.fingerprint) {
    throw new IntegrityError('the device export is inconsistent');
  }
  const passphrase = await readPassphrase(o, 'New passphrase for this device\'s keystore: ', true);
  await ensurePrivateDir(paths.dir);
  if (o.force) await keepOldIdentity(paths);
  if (payload.ca !== null) await writeFileAtomic(paths.ca, payload.ca);
  await writeKeystore(paths, passphrase, { signingSeed: seed, wrapKey }, o.kdfCost);
  passphrase.fill(0);
  await saveConfig(paths, { ...config, ca: payload.ca !== null ? 'ca.pem' : null, device: label, createdAt: new Date().toISOString() });
  await savePartners(paths, payload.partners);
  if (g.json) printJson({ personId: config.personId, fingerprint: config.fingerprint, device: label, home: paths.dir });
  else print(`Imported ${config.personId} (${config.fingerprint}) as device ${label} in ${paths.dir}`);
  return EXIT.OK;
}
