// kmgr init: make the management key (Fig. 5), seal it in the keystore, enrol at the server (Fig. 17).
import { readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { generateSecrets } from '../../crypto/keystore.js';
import { fingerprint, managementKeyId, signerFromSeed } from '../../crypto/sign.js';
import { toB64url } from '../../crypto/bytes.js';
import { ConfigError, KmgrError, UsageError } from '../../protocol/errors.js';
import { PersonInfo } from '../../protocol/messages.js';
import { ensurePrivateDir, writeFileAtomic } from '../../io/atomic-file.js';
import { homePaths } from '../../client/home.js';
import { exists, keepOldIdentity } from '../../client/files.js';
import { readPassphrase } from '../../client/passphrase.js';
import { writeKeystore } from '../../client/keystore-file.js';
import { saveConfig } from '../../client/config.js';
import { savePartners } from '../../client/partners.js';
import { signedRequest } from '../../client/http.js';
import { print, printJson } from '../output.js';
import { DEVICE_LABEL } from '../../protocol/sigbase.js';
import { hostname } from 'node:os';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';

interface InitOptions {
  server: string;
  ca?: string;
  force?: boolean;
  kdfCost: number;
  partners: 'local' | 'server';
  device?: string;
  passphraseFile?: string;
  passphraseFd?: string;
}

function checkServerUrl(s: string): string {
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
    try {
      caPem = await readFile(o.ca, 'utf8');
      new X509Certificate(caPem);
    } catch (e) {
      throw new ConfigError(`--ca ${o.ca} is not a readable PEM certificate (${(e as NodeJS.ErrnoException).code ?? 'not a certificate'})`);
    }
  }
  const device = o.device ?? defaultDeviceLabel();
  if (!DEVICE_LABEL.test(device)) throw new UsageError('--device takes 1-40 letters, digits, ".", "_", "@" or "-", starting with a letter or digit');
  const passphrase = await readPassphrase(o, 'New passphrase for the keystore: ', true);
  const secrets = generateSecrets();
  const signer = signerFromSeed(secrets.signingSeed);
  const keyId = managementKeyId(signer.publicKey);

  // Enrol first: if the server cannot be reached, nothing local has changed.
  const { body: person } = await signedRequest(
    { server, ca: caPem },
    { keyId, signer, device },
    'POST',
    '/v1/persons',
    { alg: 'ed25519', publicKey: toB64url(signer.publicKey) },
    PersonInfo,
  );
  if (person.keyId !== keyId || person.alg !== 'ed25519') throw new KmgrError('integrity', 'the server enrolled a different key than the one sent');
  // The person ID goes into every sealed key's associated data: the server must name
  // the same person when asked under our own signature, not just in one reply.
  const { body: me } = await signedRequest({ server, ca: caPem }, { keyId, signer, device }, 'GET', '/v1/persons/me', undefined, PersonInfo);
  if (me.personId !== person.personId || me.keyId !== keyId) {
    throw new KmgrError('integrity', `the server enrolled this key as ${person.personId} but says it belongs to ${me.personId}; nothing was saved`);
  }

  await ensurePrivateDir(paths.dir);
  if (o.force) await keepOldIdentity(paths);
  if (caPem !== undefined) await writeFileAtomic(paths.ca, caPem);
  await writeKeystore(paths, passphrase, secrets, o.kdfCost);
  passphrase.fill(0);
  const fp = fingerprint(signer.publicKey);
  await saveConfig(paths, {
    v: 1,
    server,
    ca: caPem !== undefined ? 'ca.pem' : null,
    personId: person.personId,
    keyId,
    fingerprint: fp,
    createdAt: new Date().toISOString(),
    device,
    partners: o.partners,
  });
  // A new identity starts with an empty index (with --force, the old one is kept beside it).
  if (o.force || !(await exists(paths.partners))) await savePartners(paths, { v: 1, partners: [] });
  if (g.json) printJson({ personId: person.personId, keyId, fingerprint: fp, server, home: paths.dir, device, partners: o.partners });
  else {
    print(`Initialised ${paths.dir}`);
    print(`  personal ID:  ${person.personId}`);
    print(`  server:       ${server}`);
    print(`  fingerprint:  ${fp}`);
    print(`  device:       ${device}`);
    print(`  partners:     kept ${o.partners === 'server' ? 'on the server' : 'in this home directory'}`);
  }
  return EXIT.OK;
}

/** This machine's name, cut to what a device label allows. */
export function defaultDeviceLabel(): string {
  const h = hostname().split('.')[0]!.replace(/[^A-Za-z0-9._@-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 40);
  return DEVICE_LABEL.test(h) ? h : 'primary';
}
