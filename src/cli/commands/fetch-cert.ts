// kmgr fetch NAME --format pem-chain | p12: the key together with the
// certificate chain kept beside it. The chain is read (and checked) before the
// key is fetched, so a key without a certificate costs no counted use; after
// the fetch the leaf is checked against the public key the opened private key
// derives, so the file never pairs a key with someone else's certificate.
import { createPrivateKey } from 'node:crypto';
import { homePaths } from '../../client/home.js';
import { api } from '../../client/api.js';
import { checkedChain, publicOfPrivatePem } from '../../client/certificates.js';
import { fetchChecks, fetchWith } from '../../client/fetch.js';
import { readPassphrase } from '../../client/passphrase.js';
import { toPem } from '../../crypto/certs.js';
import { samePublicKey } from '../../crypto/binding.js';
import { IntegrityError, KmgrError, UsageError } from '../../protocol/errors.js';
import { info, printJson, warn } from '../output.js';
import { checkOutFile, writeOutFile } from '../out-file.js';
import { finishStdout, requireOpenStdout, writeStdout } from '../stdout.js';
import { EXIT } from '../exit-codes.js';
import { openForPartner } from '../session.js';
import type { GlobalOptions } from '../options.js';
import type { PassphraseSource } from '../../client/passphrase.js';

type ChainFormat = 'pem-chain' | 'p12';

interface ChainFetchOptions extends PassphraseSource {
  format: ChainFormat;
  out?: string;
  force?: boolean;
  p12PassphraseFile?: string;
  p12PassphraseFd?: string;
}

/** The PKCS#12 file's own passphrase: never the keystore's, which must not travel with the file. */
async function p12Passphrase(o: ChainFetchOptions): Promise<Uint8Array> {
  try {
    return await readPassphrase({ passphraseFile: o.p12PassphraseFile, passphraseFd: o.p12PassphraseFd }, 'Passphrase for the PKCS#12 file: ', true, 'KMGR_P12_PASSPHRASE');
  } catch (e) {
    if (e instanceof KmgrError) {
      const m = e.message.replace(/--passphrase-(file|fd)/g, '--p12-passphrase-$1').replace('no terminal to ask for the passphrase on', 'no terminal to ask for the PKCS#12 passphrase on');
      throw new KmgrError(e.code, m, e.details);
    }
    throw e;
  }
}

export async function run(g: GlobalOptions, name: string, o: ChainFetchOptions): Promise<number> {
  const paths = homePaths(g.home);
  // The one --out of fetch (src/cli/out-file.ts): checked before any use is counted.
  if (o.out !== undefined) await checkOutFile(paths, o.out, o.force);
  else {
    if (process.stdout.isTTY && !o.force) {
      throw new KmgrError('terminal_refused', `refusing to print a private key to a terminal; use --out FILE, pipe it to a program or use --force`);
    }
    requireOpenStdout('the key');
  }
  if (o.format !== 'p12' && (o.p12PassphraseFile !== undefined || o.p12PassphraseFd !== undefined)) throw new UsageError('--p12-passphrase-file and --p12-passphrase-fd go with --format p12');
  const pass = o.format === 'p12' ? await p12Passphrase(o) : undefined;
  try {
    const { session, partner } = await openForPartner(paths, name, o, fetchChecks(name, 'pem'));
    const status = await api.status(session, partner.id);
    const chain = await checkedChain(session, partner, name, status);
    const result = await fetchWith(paths, session, partner, name, 'pem');
    for (const w of result.warnings) warn(w);
    const keyPem = Buffer.from(result.bytes).toString('utf8');
    result.bytes.fill(0);
    if (!samePublicKey(publicOfPrivatePem(keyPem), chain[0]!.publicKey.export({ type: 'spki', format: 'pem' }) as string)) {
      throw new IntegrityError(`the certificate kept for ${name} does not certify the key the server sent`);
    }
    let bytes: Uint8Array;
    if (o.format === 'pem-chain') bytes = Buffer.from(keyPem + chain.map(toPem).join(''), 'utf8');
    else {
      const { makePkcs12 } = await import('../../client/p12.js');
      const der = new Uint8Array(createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'der' }));
      try {
        bytes = await makePkcs12(der, chain.map((c) => new Uint8Array(c.raw)), pass!, name);
      } finally {
        der.fill(0);
      }
    }
    const lost = 'the key (its use is counted)';
    try {
      if (o.out !== undefined) {
        await writeOutFile(paths, o.out, bytes, lost);
        if (g.json) printJson({ partner: name, format: o.format, file: o.out });
        else info(`Wrote ${name}'s key and ${chain.length} certificate(s) to ${o.out} (${o.format}, mode 0600).`);
      } else {
        writeStdout(bytes);
      }
      await finishStdout(g.json && o.out !== undefined ? 'the result' : lost);
    } finally {
      bytes.fill(0);
    }
    return EXIT.OK;
  } finally {
    pass?.fill(0);
  }
}
