// kmgr recovery-kit / kmgr recover: an offline way back when the passphrase is
// forgotten or the keystore lost. The kit file holds the management key sealed
// under a recovery code printed once; keep the two apart. The server never
// holds anything that could recover the key. A rekey makes older kits useless:
// the key they hold is refused from then on.
import { resolve } from 'node:path';
import { newTransferCode } from '../../crypto/transfer.js';
import { openRecoveryKit, parseRecoveryKit, sealRecoveryKit } from '../../crypto/recovery.js';
import { fromB64, fromUtf8, toB64, utf8 } from '../../crypto/bytes.js';
import { fingerprint, managementKeyId, signerFromSeed } from '../../crypto/sign.js';
import { ConfigError, IntegrityError, KmgrError, UsageError } from '../../protocol/errors.js';
import { DeviceView, PersonInfo } from '../../protocol/messages.js';
import { homePaths } from '../../client/home.js';
import { refuseIfRekeyPending } from '../../client/rekey.js';
import { ClientConfig, loadConfig, saveConfig } from '../../client/config.js';
import { keepOldIdentity, readIfExists } from '../../client/files.js';
import { endpointFor } from '../../client/session.js';
import { signedRequest } from '../../client/http.js';
import { loadPartners, savePartners, type PartnerIndex } from '../../client/partners.js';
import { readPassphrase, promptTty, type PassphraseSource } from '../../client/passphrase.js';
import { unlockKeystore, writeKeystore } from '../../client/keystore-file.js';
import { ensurePrivateDir, writeFileAtomic } from '../../io/atomic-file.js';
import { info, print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';
import { readForNewHome } from '../new-home.js';

interface KitPayload {
  v: 1;
  signingSeed: string;
  wrapKey: string;
  config: ClientConfig;
  ca: string | null;
  /** The partner index as it was when the kit was made (the blobs' associated data names partners). */
  partners: PartnerIndex;
}

export async function makeKit(g: GlobalOptions, o: PassphraseSource & { out: string; codeOut?: string }): Promise<number> {
  if (o.codeOut !== undefined && resolve(o.codeOut) === resolve(o.out)) throw new UsageError('--code-out must name another file than --out: the kit and its code are kept apart');
  const paths = homePaths(g.home);
  await refuseIfRekeyPending(paths, 'making a recovery kit');
  const config = await loadConfig(paths);
  const ep = await endpointFor(paths, config);
  const passphrase = await readPassphrase(o, `Passphrase for ${paths.keystore}: `);
  const secrets = await unlockKeystore(paths, passphrase);
  passphrase.fill(0);
  if (fingerprint(signerFromSeed(secrets.signingSeed).publicKey) !== config.fingerprint) throw new IntegrityError(`${paths.config} names a different management key than the keystore`);
  const payload: KitPayload = { v: 1, signingSeed: toB64(secrets.signingSeed), wrapKey: toB64(secrets.wrapKey), config, ca: ep.ca ?? null, partners: await loadPartners(paths) };
  const code = newTransferCode();
  const createdAt = new Date().toISOString();
  const kit = sealRecoveryKit(code, { personId: config.personId, server: config.server, keyId: config.keyId, fingerprint: config.fingerprint, createdAt }, utf8(JSON.stringify(payload)));
  secrets.signingSeed.fill(0);
  secrets.wrapKey.fill(0);
  await writeFileAtomic(o.out, JSON.stringify(kit, null, 2) + '\n', 0o600);
  if (o.codeOut !== undefined) await writeFileAtomic(o.codeOut, code + '\n', 0o600);
  if (g.json) printJson({ out: o.out, codeOut: o.codeOut ?? null, personId: config.personId, keyId: config.keyId, fingerprint: config.fingerprint, createdAt });
  else print(`Recovery kit for ${config.personId} (${config.fingerprint}) written to ${o.out}.`);
  // The code is never in --json output nor on stdout: it goes to the terminal (stderr) once, or to --code-out.
  if (o.codeOut === undefined) {
    info(`Recovery code (write it down and keep it apart from the kit; it is shown only now):\n\n    ${code}\n`);
  }
  info('A rekey (kmgr rekey, kmgr device revoke) makes this kit useless; make a new one after each.');
  return EXIT.OK;
}

interface RecoverOptions extends PassphraseSource {
  codeFile?: string;
  label?: string;
  force?: boolean;
  kdfCost: number;
}

export async function recover(g: GlobalOptions, file: string, o: RecoverOptions): Promise<number> {
  const paths = homePaths(g.home);
  const { label, doc } = await readForNewHome(paths, o, file, 'kmgr recovery kit');
  const kit = parseRecoveryKit(doc);
  const code = o.codeFile !== undefined ? ((await readIfExists(o.codeFile)) ?? '').trim() : await promptTty('Recovery code: ');
  if (o.codeFile !== undefined && code === '') throw new ConfigError(`cannot read the recovery code from ${o.codeFile}`);
  const payload = JSON.parse(fromUtf8(openRecoveryKit(code, kit))) as KitPayload;
  const seed = fromB64(payload.signingSeed);
  const wrapKey = fromB64(payload.wrapKey);
  const config = ClientConfig(payload.config, 'kit.config');
  if (
    payload.v !== 1 || !seed || seed.length !== 32 || !wrapKey || wrapKey.length !== 32 ||
    fingerprint(signerFromSeed(seed).publicKey) !== kit.fingerprint || managementKeyId(signerFromSeed(seed).publicKey) !== kit.keyId ||
    config.personId !== kit.personId || config.server !== kit.server || config.fingerprint !== kit.fingerprint
  ) {
    throw new IntegrityError('the recovery kit is inconsistent');
  }
  // Ask the server before anything is written: a kit from before a rekey holds a key it refuses.
  const signer = signerFromSeed(seed);
  const ep = { server: config.server, ca: payload.ca ?? undefined };
  const id = { keyId: config.keyId, signer, device: label };
  try {
    await signedRequest(ep, id, 'GET', '/v1/persons/me', undefined, PersonInfo);
  } catch (e) {
    if (e instanceof KmgrError && e.code === 'key_replaced') {
      throw new KmgrError('key_replaced', `this recovery kit (made ${kit.createdAt}) holds a management key that a later rekey replaced; the server refuses it. Use a kit made after the last rekey`);
    }
    throw e;
  }
  const passphrase = await readPassphrase(o, 'New passphrase for this home\'s keystore: ', true);
  await signedRequest(ep, id, 'POST', '/v1/devices', { label, exportId: null }, DeviceView);
  await ensurePrivateDir(paths.dir);
  if (o.force) await keepOldIdentity(paths);
  if (payload.ca !== null) await writeFileAtomic(paths.ca, payload.ca);
  await writeKeystore(paths, passphrase, { signingSeed: seed, wrapKey }, o.kdfCost);
  passphrase.fill(0);
  await saveConfig(paths, { ...config, ca: payload.ca !== null ? 'ca.pem' : null, device: label, createdAt: new Date().toISOString() });
  await savePartners(paths, payload.partners);
  if (g.json) printJson({ personId: config.personId, fingerprint: config.fingerprint, device: label, home: paths.dir, kitCreatedAt: kit.createdAt });
  else {
    print(`Recovered ${config.personId} (${config.fingerprint}) as device ${label} in ${paths.dir}.`);
    info('The kit holds the partner index as it was when it was made; partners added since are not in it (with --partners server they come from the server).');
  }
  return EXIT.OK;
}
