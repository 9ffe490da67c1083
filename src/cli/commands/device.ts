// kmgr device export|import: set up a second device with the same management
// key (paragraphs 6 and 8: one key, any device). The export is sealed under a
// one-time code printed once; the new device sets its own passphrase.
import { sealTransfer, openTransfer, newTransferCode } from '../../crypto/transfer.js';
import { fromB64, toB64, toB64url, utf8, fromUtf8 } from '../../crypto/bytes.js';
import { fingerprint, signerFromSeed } from '../../crypto/sign.js';
import { ConfigError, IntegrityError, KmgrError, NotFoundError, UsageError } from '../../protocol/errors.js';
import { DEVICE_LABEL } from '../../protocol/sigbase.js';
import { homePaths } from '../../client/home.js';
import { refuseIfRekeyPending } from '../../client/rekey.js';
import { ClientConfig, loadConfig, saveConfig } from '../../client/config.js';
import { keepOldIdentity, readIfExists } from '../../client/files.js';
import { endpointFor, sessionWithKeys } from '../../client/session.js';
import { signedRequest } from '../../client/http.js';
import { randomBytes } from '../../crypto/random.js';
import { DeviceExportView, DeviceList, DeviceView } from '../../protocol/messages.js';
import type { RekeyOutcome } from '../../client/rekey.js';
import { openSession } from '../session.js';
import { loadPartners, savePartners, type PartnerIndex } from '../../client/partners.js';
import { readPassphrase, promptTty, type PassphraseSource } from '../../client/passphrase.js';
import { unlockAsking, unlockKeystore, writeKeystore } from '../../client/keystore-file.js';
import { writeFileAtomic } from '../../io/atomic-file.js';
import { ownHome } from './init.js';
import { info, print, printJson, printLine } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { writeStdout } from '../stdout.js';
import type { GlobalOptions } from '../options.js';
import { readForNewHome } from '../new-home.js';

interface Payload {
  /** 2: with an exportId the server accepts for one import. */
  v: 2;
  exportId: string;
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
  await refuseIfRekeyPending(paths, 'exporting the key');
  const config = await loadConfig(paths);
  const ep = await endpointFor(paths, config);
  const secrets = await unlockAsking(paths, o);
  // The server is told of the export first, and accepts one import of it within a day: the code is one-time in fact.
  const exportId = toB64url(randomBytes(16));
  const session = await sessionWithKeys(paths, config, ep, signerFromSeed(secrets.signingSeed), () => secrets.wrapKey, secrets);
  const announced = (await signedRequest(session.endpoint, session.identity, 'POST', '/v1/devices/exports', { exportId }, DeviceExportView)).body;
  const payload: Payload = {
    v: 2,
    exportId,
    signingSeed: toB64(secrets.signingSeed),
    wrapKey: toB64(secrets.wrapKey),
    config,
    ca: ep.ca ?? null,
    partners: await loadPartners(paths),
  };
  const code = newTransferCode();
  const file = JSON.stringify(sealTransfer(code, utf8(JSON.stringify(payload)))) + '\n';
  if (o.out !== undefined) await writeFileAtomic(o.out, file, 0o600);
  else writeStdout(file);
  // The code goes to the terminal (stderr), never into the file's stream.
  if (g.json && o.out !== undefined) printJson({ out: o.out, code, expiresAt: announced.expiresAt });
  else info(`One-time code (type it on the other device; it is shown only now):\n\n    ${code}\n\nThe server accepts one import of this export, until ${announced.expiresAt}.`);
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
  const { label, doc } = await readForNewHome(paths, o, file, 'kmgr device export');
  const code = o.codeFile !== undefined ? ((await readIfExists(o.codeFile)) ?? '').trim() : await promptTty('One-time code: ', 'one-time code entry');
  if (o.codeFile !== undefined && code === '') throw new ConfigError(`cannot read the one-time code from ${o.codeFile}`);
  const payload = JSON.parse(fromUtf8(openTransfer(code, doc))) as Payload;
  if (payload.v !== 2 || typeof payload.exportId !== 'string') {
    throw new IntegrityError('this device export was made by an older kmgr, which the server cannot hold to one import; make a new one with kmgr device export');
  }
  const seed = fromB64(payload.signingSeed);
  const wrapKey = fromB64(payload.wrapKey);
  const config = ClientConfig(payload.config, 'export.config');
  if (!seed || seed.length !== 32 || !wrapKey || wrapKey.length !== 32 || fingerprint(signerFromSeed(seed).publicKey) !== config.fingerprint) {
    throw new IntegrityError('the device export is inconsistent');
  }
  // The server accepts one import per export (and refuses an expired one) before anything is written here.
  const signer = signerFromSeed(seed);
  const ep = { server: config.server, ca: payload.ca ?? undefined };
  await signedRequest(ep, { keyId: config.keyId, signer, device: label }, 'POST', '/v1/devices', { label, exportId: payload.exportId }, DeviceView);
  const passphrase = await readPassphrase(o, 'New passphrase for this device\'s keystore: ', true);
  await ownHome(paths.dir);
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

/** kmgr device list: this person's devices, when each was added and last used, and whether it holds the current key. */
export async function listDevices(g: GlobalOptions, o: PassphraseSource): Promise<number> {
  const paths = homePaths(g.home);
  const session = await openSession(paths, o);
  const devices = (await signedRequest(session.endpoint, session.identity, 'GET', '/v1/devices', undefined, DeviceList)).body.devices;
  const self = session.config.device ?? '';
  if (g.json) {
    printJson({ devices: devices.map((d) => ({ ...d, thisDevice: d.label === self })) });
    return EXIT.OK;
  }
  if (devices.length === 0) print('No devices are registered (homes made before kmgr 0.2 register on their next device import).');
  for (const d of devices) {
    const state = d.revokedAt !== null ? `revoked ${d.revokedAt}` : d.current ? 'current key' : 'old key: needs a fresh device export';
    printLine(`${d.label === self ? '*' : ' '} ${d.label.padEnd(20)} added ${d.addedAt}  last used ${d.lastUsedAt ?? 'never'}  via ${d.via}  (${state})`);
  }
  return EXIT.OK;
}

/**
 * kmgr device revoke LABEL: cut one device off. Labels are self-declared, so
 * the cut is a rekey: a new management key the revoked device never sees, every
 * blob re-wrapped under it, the label refused in the same step. See kmgr(1).
 */
export async function revokeDevice(g: GlobalOptions, label: string, o: PassphraseSource): Promise<number> {
  if (!DEVICE_LABEL.test(label)) throw new UsageError(`${JSON.stringify(label)} is not a device label`);
  const paths = homePaths(g.home);
  const config = await loadConfig(paths);
  if (config.device === label) throw new UsageError(`${label} is this device; revoke it from another device`);
  // One passphrase read serves both the device check and the rekey (a --passphrase-fd can be read once).
  const passphrase = await readPassphrase(o, `Passphrase for ${paths.keystore}: `);
  let devices: DeviceView[];
  let out: RekeyOutcome;
  try {
    const secrets = await unlockKeystore(paths, passphrase);
    const session = await sessionWithKeys(paths, config, await endpointFor(paths, config), signerFromSeed(secrets.signingSeed), () => secrets.wrapKey, secrets);
    devices = (await signedRequest(session.endpoint, session.identity, 'GET', '/v1/devices', undefined, DeviceList)).body.devices;
    const d = devices.find((x) => x.label === label);
    if (!d) throw new NotFoundError('not_found', `this person has no device labelled ${label} (see kmgr device list); a device set up before device lists existed is cut off, with every other device, by kmgr rekey`);
    if (d.revokedAt !== null) throw new KmgrError('device_revoked', `the device ${label} was already revoked at ${d.revokedAt}`);
    const { rekeyAndReport } = await import('./rekey.js');
    out = await rekeyAndReport(g, o, [label], passphrase);
  } finally {
    passphrase.fill(0);
  }
  const others = devices.filter((x) => x.label !== label && x.label !== config.device && x.revokedAt === null).map((x) => x.label);
  if (g.json) printJson({ revoked: label, keyId: out.keyId, fingerprint: out.fingerprint, rekeyed: out.rekeyed, needFreshExport: others });
  else {
    print(`Revoked ${label}: its requests are refused, and the new management key ${out.fingerprint} re-wraps every key, so nothing it holds opens what is served from now on.`);
    if (others.length > 0) info(`These devices hold the old key and need a fresh export (kmgr device export, then kmgr device import --force there): ${others.join(', ')}`);
    info('Recovery kits made before now no longer work: make a new one with kmgr recovery-kit --out FILE.');
  }
  return EXIT.OK;
}
