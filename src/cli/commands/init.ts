// kmgr init: make the management key (Fig. 5), seal it in the keystore, enrol at the server (Fig. 17).
import { readInputFile } from '../input-file.js';
import { X509Certificate } from 'node:crypto';
import { ConfigError, KmgrError, UsageError } from '../../protocol/errors.js';
import { homePaths } from '../../client/home.js';
import { exists } from '../../client/files.js';
import { checkNewPassphrase, readPassphrase } from '../../client/passphrase.js';
import { createHome, ownHome as ownHomeDir } from '../../client/create-home.js';
import { info, print, printJson } from '../output.js';
import { DEVICE_LABEL } from '../../protocol/sigbase.js';
import { hostname } from 'node:os';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';

interface InitOptions {
  allowWeakPassphrase?: boolean;
  server: string;
  ca?: string;
  force?: boolean;
  kdfCost: number;
  partners: 'local' | 'server';
  device?: string;
  passphraseFile?: string;
  passphraseFd?: string;
}

export function checkServerUrl(s: string): string {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new UsageError(`--server must be a URL like https://127.0.0.1:8443, not ${JSON.stringify(s)}`);
  }
  if (u.protocol !== 'https:') throw new UsageError('--server must use https://');
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash || u.username || u.password) {
    throw new UsageError('--server must be just https://host[:port], without a path, query or credentials');
  }
  return u.origin;
}

export async function run(g: GlobalOptions, o: InitOptions): Promise<number> {
  const paths = homePaths(g.home);
  const server = checkServerUrl(o.server);
  if (!o.force && (await exists(paths.keystore))) {
    throw new KmgrError('keystore_exists', `a keystore already exists at ${paths.keystore}; use --force to replace it (the old one is kept)`);
  }
  let caPem: string | undefined;
  if (o.ca !== undefined) {
    caPem = await readInputFile(o.ca, 'the certificate');
    try {
      new X509Certificate(caPem);
    } catch {
      throw new ConfigError(`--ca ${o.ca} is not a PEM certificate`);
    }
  }
  // An existing directory is checked before anything is enrolled: a refusal leaves nothing behind.
  if (await exists(paths.dir)) await ownHome(paths.dir);
  const device = o.device ?? defaultDeviceLabel();
  if (!DEVICE_LABEL.test(device)) throw new UsageError('--device takes 1-40 letters, digits, ".", "_", "@" or "-", starting with a letter or digit');
  const passphrase = await readPassphrase(o, 'New passphrase for the keystore: ', true);
  try {
    checkNewPassphrase(passphrase, o.allowWeakPassphrase);
  } catch (e) {
    passphrase.fill(0);
    throw e;
  }
  let made;
  try {
    made = await createHome(paths, { server, caPem, passphrase, kdfCost: o.kdfCost, device, partners: o.partners, force: o.force }, info);
  } finally {
    passphrase.fill(0);
  }
  const { personId, keyId, fingerprint: fp } = made;
  made.secrets.signingSeed.fill(0);
  made.secrets.wrapKey.fill(0);
  if (g.json) printJson({ personId, keyId, fingerprint: fp, server, home: paths.dir, device, partners: o.partners });
  else {
    print(`Initialised ${paths.dir}`);
    print(`  personal ID:  ${personId}`);
    print(`  server:       ${server}`);
    print(`  fingerprint:  ${fp}`);
    print(`  device:       ${device}`);
    print(`  partners:     kept ${o.partners === 'server' ? 'on the server' : 'in this home directory'}`);
  }
  return EXIT.OK;
}

/** The home directory, made or checked; says so on stderr when it tightened it. */
export function ownHome(dir: string): Promise<void> {
  return ownHomeDir(dir, info);
}

/** This machine's name, cut to what a device label allows. */
export function defaultDeviceLabel(): string {
  const h = hostname().split('.')[0]!.replace(/[^A-Za-z0-9._@-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 40);
  return DEVICE_LABEL.test(h) ? h : 'primary';
}
