// kmgr register: generate or import a transaction key, seal it with the
// management key and register it with its use terms (Figs. 5 and 6; src/client/register.ts).
import { readInputFile } from '../input-file.js';
import { generateTransactionKey, importTransactionKey, type KeyType, type TransactionKey } from '../../crypto/txkey.js';
import { UsageError } from '../../protocol/errors.js';
import type { Terms } from '../../protocol/messages.js';
import { homePaths } from '../../client/home.js';
import { checkPartnerName } from '../../client/partners.js';
import { partnerForNewKey, registerKey } from '../../client/register.js';
import { openSession } from '../session.js';
import { parseDuration, parseExpiry } from '../parse.js';
import { info, print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { checkOutFile, writeOutFile } from '../out-file.js';
import { statusJson, withLocalPublicKey } from './status.js';
import type { GlobalOptions } from '../options.js';

interface RegisterOptions {
  type?: KeyType;
  import?: string;
  expires?: string;
  validFor?: string;
  maxUses?: number;
  maxPerDay?: number;
  maxPerWeek?: number;
  maxPerMonth?: number;
  onLimit: 'deny' | 'notify';
  name?: string;
  appServer?: string;
  business?: string;
  out?: string;
  force?: boolean;
  passphraseFile?: string;
  passphraseFd?: string;
  ssh?: boolean;
}

/** The use terms the options give (also how tests that register in-process state them). */
export function termsFrom(o: Pick<RegisterOptions, 'expires' | 'validFor' | 'maxUses' | 'maxPerDay' | 'maxPerWeek' | 'maxPerMonth' | 'onLimit'>, now: number): Terms {
  if (o.expires !== undefined && o.validFor !== undefined) throw new UsageError('give --expires or --valid-for, not both');
  const expiresAt = o.expires !== undefined ? parseExpiry(o.expires) : o.validFor !== undefined ? now + parseDuration('--valid-for', o.validFor) : null;
  if (expiresAt !== null && expiresAt <= now) throw new UsageError('--expires is in the past');
  return {
    expiresAt: expiresAt === null ? null : new Date(expiresAt).toISOString(),
    maxUses: o.maxUses ?? null,
    maxPerDay: o.maxPerDay ?? null,
    maxPerWeek: o.maxPerWeek ?? null,
    maxPerMonth: o.maxPerMonth ?? null,
    onLimit: o.onLimit,
  };
}

export async function run(g: GlobalOptions, name: string, o: RegisterOptions): Promise<number> {
  const paths = homePaths(g.home);
  checkPartnerName(name);
  // Everything the user typed is checked before the passphrase is asked for.
  const terms = termsFrom(o, Date.now());
  if (o.ssh && o.type !== undefined && o.type !== 'ed25519' && o.type !== 'p256') throw new UsageError(`--ssh takes ed25519 or p256 keys, not ${o.type}`);
  let importText: string | undefined;
  if (o.import !== undefined) {
    importText = await readInputFile(o.import, 'the key file');
  }
  if (o.out !== undefined) await checkOutFile(paths, o.out, o.force);
  await partnerForNewKey(paths, name);
  const key: TransactionKey =
    importText !== undefined ? importTransactionKey(importText, o.type) : generateTransactionKey(o.type ?? 'ed25519');
  if (o.ssh && key.type !== 'ed25519' && key.type !== 'p256') throw new UsageError(`--ssh takes ed25519 or p256 keys; the imported key is ${key.type}`);

  const session = await openSession(paths, o);
  const meta = {
    ...(o.name !== undefined ? { displayName: o.name } : {}),
    ...(o.appServer !== undefined ? { appServer: o.appServer } : {}),
    ...(o.business !== undefined ? { business: o.business } : {}),
  };
  const { status, partner, publicKey } = await registerKey(session, name, key, { terms, meta, ssh: o.ssh });

  if (o.out !== undefined && publicKey) await writeOutFile(paths, o.out, publicKey, 'the public key');
  if (g.json) {
    printJson(statusJson(name, withLocalPublicKey(status, partner)));
  } else if (publicKey && o.out === undefined) {
    print(publicKey);
  } else if (publicKey) {
    info(`Registered ${key.type} key ${partner.key?.keyId ?? status.keyId} for ${name}; its public key is in ${o.out}.`);
  } else {
    info(`Registered ${key.type} key ${partner.key?.keyId ?? status.keyId} for ${name}; symmetric keys have no public key.`);
  }
  return EXIT.OK;
}
