// kmgr rotate NAME: a new transaction key for the partner under the same terms,
// one version up. The client's high-water mark moves with it, so the server
// can never hand back an older version (threat 5).
import { generateTransactionKey, publicKeyPem, type KeyType } from '../../crypto/txkey.js';
import { randomBytes } from '../../crypto/random.js';
import { toB64, toB64url, wipe } from '../../crypto/bytes.js';
import { homePaths } from '../../client/home.js';
import { openForPartner } from '../session.js';
import { savePartnerEntry } from '../../client/partners.js';
import { api } from '../../client/api.js';
import { signedBinding } from '../../client/binding.js';
import { info, print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';
import type { PassphraseSource } from '../../client/passphrase.js';
import { IntegrityError } from '../../protocol/errors.js';

/** How many rotations another device may have made that this client has not seen. */
const MAX_VERSION_JUMP = 1000;
/** The highest version partners.json holds (src/client/partners.ts). */
const MAX_KEY_VERSION = 1_000_000_000;

interface RotateOptions extends PassphraseSource {
  type?: KeyType;
}

export async function run(g: GlobalOptions, name: string, o: RotateOptions): Promise<number> {
  const paths = homePaths(g.home);
  const { session, partner } = await openForPartner(paths, name, o);
  const current = await api.status(session, partner.id);
  // Another device may have rotated already: go one past whatever is newest. But the
  // server's number is only its word: a status claiming version 1e9 must not push this
  // client's high-water mark out of range (every later command would then fail) or
  // make every version a real rotation reaches look like a rollback.
  if (current.keyVersion > partner.highWater + MAX_VERSION_JUMP || current.keyVersion >= MAX_KEY_VERSION) {
    throw new IntegrityError(
      `the server says ${name} is at key version ${current.keyVersion}, far past version ${partner.highWater} that this client knows; refusing to rotate on its word (kmgr fetch ${name} first if another device rotated it)`,
    );
  }
  const keyVersion = Math.max(current.keyVersion, partner.highWater) + 1;
  const type = o.type ?? current.alg;
  const key = generateTransactionKey(type);
  const keyId = 'k_' + toB64url(randomBytes(16));
  const blob = await session.keys.sealBlob({ personId: session.config.personId, partnerId: partner.id, keyId, alg: type, keyVersion, partnerName: name }, key.secret, name);
  const publicKey = publicKeyPem(key) ?? null;
  wipe(key.secret);
  const binding = publicKey ? await signedBinding(session, { partnerId: partner.id, keyId, alg: type, publicKey, keyVersion, expiresAt: current.expiresAt, locked: current.inhibited }) : null;
  const status = await api.rotate(session, partner.id, { keyId, alg: type, keyVersion, blob: toB64(blob), binding });
  if (status.keyVersion !== keyVersion || status.keyId !== keyId) {
    throw new IntegrityError(`the server answered the rotation of ${name} with key ${status.keyId} v${status.keyVersion}, not the key ${keyId} v${keyVersion} it was sent`);
  }
  partner.key = { keyId, alg: type, version: keyVersion, publicKey, registeredAt: status.registeredAt };
  partner.highWater = keyVersion;
  await savePartnerEntry(paths, partner);
  if (g.json) printJson({ partner: name, partnerId: partner.id, keyId, type, keyVersion, publicKey });
  else if (publicKey) print(publicKey);
  else info(`Rotated ${name} to ${type} key ${keyId} (v${keyVersion}).`);
  return EXIT.OK;
}
