// kmgr pubkey NAME: the public half of a partner's key again, at no cost: it
// is not a fetch, so nothing is counted and no private key is opened. The copy
// this client made at register/rotate is used when the index has it (no
// passphrase, no server); otherwise the server's, which it keeps beside the
// owner's signed binding statement.
import { createPublicKey } from 'node:crypto';
import { homePaths } from '../../client/home.js';
import { NotFoundError, UsageError } from '../../protocol/errors.js';
import type { PassphraseSource } from '../../client/passphrase.js';
import { print, printJson, warn } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';

interface PubkeyOptions extends PassphraseSource {
  format?: 'pem' | 'ssh' | 'jwk';
}

export async function run(g: GlobalOptions, name: string, o: PubkeyOptions): Promise<number> {
  const paths = homePaths(g.home);
  const { loadConfig } = await import('../../client/config.js');
  const { loadPartners, requirePartner } = await import('../../client/partners.js');
  const config = await loadConfig(paths);
  const idx = await loadPartners(paths);
  // With a local index an unknown name is 66 here; with the index on the server, the server decides.
  const entry = config.partners === 'server' ? idx.partners.find((p) => p.name === name) : requirePartner(idx, name);
  let pem = entry?.key?.publicKey ?? null;
  let alg = entry?.key?.alg;
  if (!pem) {
    if (alg === 'aes256') throw new UsageError(`${name}'s key is aes256, which has no public key`);
    const [{ openForPartner }, { api }] = await Promise.all([import('../session.js'), import('../../client/api.js')]);
    const { session, partner } = await openForPartner(paths, name, o);
    const s = await api.status(session, partner.id);
    if (s.alg === 'aes256') throw new UsageError(`${name}'s key is aes256, which has no public key`);
    if (!s.publicKey) throw new NotFoundError('unknown_key', `the server holds no public key for ${name} (v${s.keyVersion}); kmgr fetch ${name} | openssl pkey -pubout derives it, at the cost of one use`);
    pem = s.publicKey;
    alg = s.alg;
    warn(`${name}: this public key is the server's copy (this device did not register v${s.keyVersion}); kmgr verify checks it against your signed binding`);
  }
  const key = createPublicKey(pem);
  const format = o.format ?? 'pem';
  const text =
    format === 'pem' ? pem
    : format === 'jwk' ? JSON.stringify(key.export({ format: 'jwk' })) + '\n'
    : (await import('../../crypto/openssh.js')).sshPublicKey(alg!, key, `kmgr:${name}`);
  if (g.json) printJson({ partner: name, type: alg, format, publicKey: text });
  else print(text);
  return EXIT.OK;
}
