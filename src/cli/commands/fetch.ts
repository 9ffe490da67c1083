// kmgr fetch: the transaction judgement unit (Fig. 7). Asks the server for the
// sealed key with a signed request, opens it locally against the context this
// client asked for, and prints it. Nothing reaches stdout unless every check passed.
import type { BlobContext } from '../../crypto/blob.js';
import { formatTransactionKey, rawTransactionKey, type OutputFormat, type TransactionKey } from '../../crypto/txkey.js';
import { fromB64, wipe } from '../../crypto/bytes.js';
import { createPrivateKey } from 'node:crypto';
import { IntegrityError, KmgrError, NotFoundError, UsageError } from '../../protocol/errors.js';
import type { FetchResponse } from '../../protocol/messages.js';
import { homePaths } from '../../client/home.js';
import { savePartnerEntry, type PartnerEntry } from '../../client/partners.js';
import type { ClientConfig } from '../../client/config.js';
import { openForPartner } from '../../client/session.js';
import { api } from '../../client/api.js';
import { appendFetchLog, appendSentLog } from '../../client/fetch-log.js';
import { newNonce } from '../../client/http.js';
import { flushStdout, warn } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../kmgr.js';

interface FetchOptions {
  format?: OutputFormat;
  force?: boolean;
  passphraseFile?: string;
  passphraseFd?: string;
}

const WARN_WINDOW_MS = 14 * 86_400_000;

export async function run(g: GlobalOptions, name: string, o: FetchOptions): Promise<number> {
  const paths = homePaths(g.home);
  // Before anything is counted: key material never goes to a terminal unless forced (threat 13).
  if (process.stdout.isTTY && !o.force) {
    throw new KmgrError('terminal_refused', 'refusing to print a private key to a terminal; pipe it to a program or use --force');
  }
  const noPem = (): UsageError => new UsageError('aes256 keys have no PEM form; use --format jwk, raw, hex or base64');
  // Checked before the request whenever we can, so a typo costs no counted use (and no connection).
  const check = (p: PartnerEntry, config: ClientConfig): void => {
    if (p.key?.alg === 'aes256' && o.format === 'pem') throw noPem();
    // With the partner index on the server a fresh device may know no key yet: then the reply names it,
    // and only a blob we sealed ourselves for this person and partner can open under that name.
    if (!p.key && config.partners !== 'server') throw new NotFoundError('unknown_key', `no key is registered for ${name} (kmgr register ${name})`);
  };
  const { session, partner } = await openForPartner(paths, name, o, { check, preconnect: true });
  const known = partner.key;
  const nonce = newNonce();
  await appendSentLog(paths, { at: new Date().toISOString(), partner: name, partnerId: partner.id, nonce });
  let sent;
  try {
    sent = await api.fetch(session, partner.id, nonce);
  } catch (e) {
    // A refusal is remembered against the nonce: a server that later counts this request
    // as a use is caught by the audit.
    if (e instanceof KmgrError && e.kind === 'refused') {
      await appendSentLog(paths, { at: new Date().toISOString(), partner: name, partnerId: partner.id, nonce, outcome: 'refused' }).catch(() => undefined);
    }
    throw e;
  }
  const { body: reply, params } = sent;
  // At the version we know, the server must name the key we know (threat 1); the AD check below
  // would catch a swapped blob, but the reply's other fields must not steer us either.
  if (known && reply.keyVersion === known.version && (reply.keyId !== known.keyId || reply.alg !== known.alg)) {
    throw new IntegrityError(`the server named key ${reply.keyId} (${reply.alg}) for ${name}, but version ${known.version} is ${known.keyId} (${known.alg})`);
  }
  const format: OutputFormat = o.format ?? (reply.alg === 'aes256' ? 'base64' : 'pem');
  if (reply.alg === 'aes256' && format === 'pem') throw noPem();

  // Rollback (threat 5): never accept a version older than the newest seen.
  if (reply.keyVersion < partner.highWater) {
    throw new IntegrityError(`the server sent key version ${reply.keyVersion} for ${name}, older than version ${partner.highWater} already seen (rollback)`, 'rollback');
  }
  // The associated data comes from what we asked for and what we know (threat 1).
  // A newer version than we know can only open if we sealed it ourselves.
  const ctx: BlobContext =
    known && reply.keyVersion === known.version
      ? { personId: session.config.personId, partnerId: partner.id, keyId: known.keyId, alg: known.alg, keyVersion: known.version, partnerName: name }
      : { personId: session.config.personId, partnerId: partner.id, keyId: reply.keyId, alg: reply.alg, keyVersion: reply.keyVersion, partnerName: name };
  const blob = fromB64(reply.blob);
  if (!blob) throw new IntegrityError('the server sent a blob that is not base64');
  const secret = await session.keys.openBlob(ctx, blob, name);
  const key: TransactionKey = { type: ctx.alg as TransactionKey['type'], secret };
  checkKeyShape(key);

  if (reply.keyVersion > partner.highWater) {
    partner.highWater = reply.keyVersion;
    partner.key = { keyId: reply.keyId, alg: reply.alg, version: reply.keyVersion, publicKey: null, registeredAt: reply.status.registeredAt };
    await savePartnerEntry(paths, partner);
  }
  await appendFetchLog(paths, {
    at: new Date().toISOString(),
    partner: name,
    partnerId: partner.id,
    keyId: ctx.keyId,
    keyVersion: ctx.keyVersion,
    nonce: params.nonce,
    server: session.config.server,
  });
  warnAboutTerms(name, reply);

  if (format === 'raw') {
    const raw = rawTransactionKey(key);
    process.stdout.write(raw);
    await flushStdout();
    wipe(raw);
  } else {
    process.stdout.write(formatTransactionKey(key, format));
    await flushStdout();
  }
  wipe(secret);
  return EXIT.OK;
}

/** Defence in depth: an opened blob must hold a key of the type it claims. */
function checkKeyShape(k: TransactionKey): void {
  if (k.type === 'aes256') {
    if (k.secret.length !== 32) throw new IntegrityError('the opened aes256 key has the wrong length');
    return;
  }
  try {
    const obj = createPrivateKey({ key: Buffer.from(k.secret), format: 'der', type: 'pkcs8' });
    const t = obj.asymmetricKeyType;
    const curve = obj.asymmetricKeyDetails?.namedCurve;
    const ok =
      (k.type === 'ed25519' && t === 'ed25519') ||
      (k.type === 'x25519' && t === 'x25519') ||
      (k.type === 'p256' && t === 'ec' && curve === 'prime256v1') ||
      (k.type === 'secp256k1' && t === 'ec' && curve === 'secp256k1');
    if (!ok) throw new Error('type mismatch');
  } catch {
    throw new IntegrityError(`the opened key is not a valid ${k.type} private key`);
  }
}

/** Paragraph 17: the client warns before a key runs out. */
function warnAboutTerms(name: string, r: FetchResponse): void {
  const s = r.status;
  if (r.overLimit && r.overLimit.length > 0) warn(`${name}: served past its ${r.overLimit.join(', ')} limit (policy notify); the overuse is recorded`);
  if (s.expiresAt !== null) {
    const left = Date.parse(s.expiresAt) - Date.now();
    if (left < WARN_WINDOW_MS) warn(`${name}: the key expires at ${s.expiresAt} (in ${Math.max(0, Math.ceil(left / 86_400_000))} days)`);
  }
  for (const k of ['total', 'day', 'week', 'month'] as const) {
    const max = s.limits[k];
    if (max !== null && s.uses[k] < max && max - s.uses[k] <= Math.max(1, Math.floor(max / 10))) {
      warn(`${name}: ${max - s.uses[k]} use(s) left of its ${k === 'total' ? 'total' : `per-${k}`} limit of ${max}`);
    }
  }
}
