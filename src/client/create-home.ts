// A new home (Fig. 5, Fig. 17): a new management key, enrolled at the server, then
// sealed in the keystore beside the config and an empty partner index. `kmgr init`
// checks what the user typed and reads the passphrase; this does the rest.
import { generateSecrets, type ManagementSecrets } from '../crypto/keystore.js';
import { fingerprint, managementKeyId, signerFromSeed } from '../crypto/sign.js';
import { toB64url } from '../crypto/bytes.js';
import { KmgrError } from '../protocol/errors.js';
import { PersonInfo } from '../protocol/messages.js';
import { writeFileAtomic } from '../io/atomic-file.js';
import { ensureOwnDir } from '../io/own-dir.js';
import { isHomeEntry, type HomePaths } from './home.js';
import { exists, keepOldIdentity } from './files.js';
import { writeKeystore } from './keystore-file.js';
import { saveConfig } from './config.js';
import { savePartners } from './partners.js';
import { signedRequest } from './http.js';

export interface HomeRequest {
  /** The server's origin, https://host[:port], already checked. */
  server: string;
  /** The certificate to trust for it, when not the system's roots. */
  caPem?: string | undefined;
  /** The caller keeps and wipes it. */
  passphrase: Uint8Array;
  /** scrypt cost, log2(N), within the keystore's floor and ceiling. */
  kdfCost: number;
  device: string;
  partners: 'local' | 'server';
  /** Replace an existing identity (the old files are kept beside it). */
  force?: boolean | undefined;
}

export interface NewHome {
  personId: string;
  keyId: string;
  fingerprint: string;
  /** The secrets just sealed in the keystore; the caller owns them. */
  secrets: ManagementSecrets;
}

/**
 * The home directory, made or checked (see ensureOwnDir); `note` is told when it was
 * tightened (the command line says so on stderr).
 */
export async function ownHome(dir: string, note: (text: string) => void): Promise<void> {
  const tightened = await ensureOwnDir(dir, 'the kmgr home', isHomeEntry);
  if (tightened) note(tightened);
}

export async function createHome(paths: HomePaths, o: HomeRequest, note: (text: string) => void): Promise<NewHome> {
  const secrets = generateSecrets();
  const signer = signerFromSeed(secrets.signingSeed);
  const keyId = managementKeyId(signer.publicKey);
  const endpoint = { server: o.server, ca: o.caPem };
  const id = { keyId, signer, device: o.device };

  // Enrol first: if the server cannot be reached, nothing local has changed.
  const { body: person } = await signedRequest(endpoint, id, 'POST', '/v1/persons', { alg: 'ed25519', publicKey: toB64url(signer.publicKey) }, PersonInfo);
  if (person.keyId !== keyId || person.alg !== 'ed25519') throw new KmgrError('integrity', 'the server enrolled a different key than the one sent');
  // The person ID goes into every sealed key's associated data: the server must name
  // the same person when asked under our own signature, not just in one reply.
  const { body: me } = await signedRequest(endpoint, id, 'GET', '/v1/persons/me', undefined, PersonInfo);
  if (me.personId !== person.personId || me.keyId !== keyId) {
    throw new KmgrError('integrity', `the server enrolled this key as ${person.personId} but says it belongs to ${me.personId}; nothing was saved`);
  }

  await ownHome(paths.dir, note);
  if (o.force) await keepOldIdentity(paths);
  if (o.caPem !== undefined) await writeFileAtomic(paths.ca, o.caPem);
  await writeKeystore(paths, o.passphrase, secrets, o.kdfCost);
  const fp = fingerprint(signer.publicKey);
  await saveConfig(paths, {
    v: 1,
    server: o.server,
    ca: o.caPem !== undefined ? 'ca.pem' : null,
    personId: person.personId,
    keyId,
    fingerprint: fp,
    createdAt: new Date().toISOString(),
    device: o.device,
    partners: o.partners,
  });
  // A new identity starts with an empty index (with --force, the old one is kept beside it).
  if (o.force || !(await exists(paths.partners))) await savePartners(paths, { v: 1, partners: [] });
  return { personId: person.personId, keyId, fingerprint: fp, secrets };
}
