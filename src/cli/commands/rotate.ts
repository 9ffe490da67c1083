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

interface RotateOptions extends PassphraseSource {
  type?: KeyType;
}

export async function run(g: GlobalOptions, name: string, o: RotateOptions): Promise<number> {
  const paths = homePaths(g.home);
  const { session, partner } = await openForPartner(paths, name, o);
  const current = await api.status(session, partner.id);
  // Another device may have rotated already: go one past whatever is newest.
  const keyVersion = Math.max(current.keyVersion, partner.highWater) + 1;
  const type = o.type ?? current.alg;
  const key = generateTransactionKey(type);
  const keyId = 'k_' + toB64url(randomBytes(16));
  const blob = await session.keys.sealBlob({ personId: session.config.personId, partnerId: partner.id, keyId, alg: type, keyVersion, partnerName: name }, key.secret, name);
  const publicKey = publicKeyPem(key) ?? null;
  wipe(key.secret);
  const binding = publicKey ? await signedBinding(session, { partnerId: partner.id, keyId, alg: type, publicKey, keyVersion, expiresAt: current.expiresAt }) : null;
  const status = await api.rotate(session, partner.id, { keyId, alg: type, keyVersion, blob: toB64(blob), binding });
  partner.key = { keyId, alg: type, version: keyVersion, publicKey, registeredAt: status.registeredAt };
  partner.highWater = keyVersion;
  await savePartnerEntry(paths, partner);
  if (g.json) printJson({ partner: name, partnerId: partner.id, keyId, type, keyVersion, publicKey });
  else if (publicKey) print(publicKey);
  else info(`Rotated ${name} to ${type} key ${keyId} (v${keyVersion}).`);
  return EXIT.OK;
}
