// Fetching one transaction key (the transaction judgement unit, Fig. 7): ask
// the server for the sealed key with a signed request, open it against the
// context this client asked for, and hand back the formatted key. Shared by
// `kmgr fetch` and the agent's fetch operation; nothing is returned unless
// every check passed.
import type { BlobContext } from '../crypto/blob.js';
import { formatTransactionKey, rawTransactionKey, type OutputFormat, type TransactionKey } from '../crypto/txkey.js';
import { fromB64, utf8, wipe } from '../crypto/bytes.js';
import { createPrivateKey } from 'node:crypto';
import { IntegrityError, KmgrError, NotFoundError, UsageError } from '../protocol/errors.js';
import type { FetchResponse } from '../protocol/messages.js';
import { savePartnerEntry, type PartnerEntry } from './partners.js';
import type { ClientConfig } from './config.js';
import type { HomePaths } from './home.js';
import type { Session } from './session.js';
import { api } from './api.js';
import { appendFetchLog, appendSentLog, checkLogFiles } from './fetch-log.js';
import { newNonce } from './http.js';

export interface FetchResult {
  /** The key as the format asked for; the caller writes it and wipes it. */
  bytes: Uint8Array;
  /** Paragraph 17: the key runs out soon, or was served past a limit. */
  warnings: string[];
}

const WARN_WINDOW_MS = 14 * 86_400_000;

const noPem = (): UsageError => new UsageError('aes256 keys have no PEM form; use --format jwk, raw, hex or base64');

/**
 * The checks that need only the local index, made before any passphrase,
 * connection or request, so a typo costs no counted use.
 */
export function fetchChecks(name: string, requested: OutputFormat | undefined): (p: PartnerEntry, config: ClientConfig) => void {
  return (p, config) => {
    if (p.key?.alg === 'aes256' && requested === 'pem') throw noPem();
    // With the partner index on the server a fresh device may know no key yet: then the reply names it,
    // and only a blob we sealed ourselves for this person and partner can open under that name.
    if (!p.key && config.partners !== 'server') throw new NotFoundError('unknown_key', `no key is registered for ${name} (kmgr register ${name})`);
  };
}

export async function fetchWith(paths: HomePaths, session: Session, partner: PartnerEntry, name: string, requested: OutputFormat | undefined): Promise<FetchResult> {
  const nonce = newNonce();
  await checkLogFiles(paths);
  await appendSentLog(paths, { at: new Date().toISOString(), partner: name, partnerId: partner.id, nonce });
  let sent;
  try {
    sent = await api.fetch(session, partner.id, nonce);
  } catch (e) {
    // Every request sent and not answered with a key is remembered against its nonce, as
    // what happened: an error reply of any kind (429, 503, 401, a malformed reply), or no
    // answer at all. A server that counts it as a use anyway is caught by the audit.
    const outcome = sentOutcome(e);
    if (outcome) await appendSentLog(paths, { at: new Date().toISOString(), partner: name, partnerId: partner.id, nonce, outcome }).catch(() => undefined);
    throw e;
  }
  try {
    return await openReply(paths, session, partner, name, requested, sent);
  } catch (e) {
    // A reply that failed its checks (a swapped or altered blob, a rollback) delivered no key either.
    // (Only integrity failures: a local failure after a good reply is not the server's doing.)
    if (e instanceof KmgrError && e.kind === 'integrity') {
      await appendSentLog(paths, { at: new Date().toISOString(), partner: name, partnerId: partner.id, nonce, outcome: 'rejected' }).catch(() => undefined);
    }
    throw e;
  }
}

/** refused: the server answered, not with a key. unanswered: sent, no answer. undefined: never sent. */
function sentOutcome(e: unknown): 'refused' | 'unanswered' | undefined {
  const maybeCounted = e instanceof KmgrError ? e.details?.maybeCounted : undefined;
  if (maybeCounted === undefined) return 'refused';
  return maybeCounted === true ? 'unanswered' : undefined;
}

async function openReply(
  paths: HomePaths,
  session: Session,
  partner: PartnerEntry,
  name: string,
  requested: OutputFormat | undefined,
  sent: Awaited<ReturnType<typeof api.fetch>>,
): Promise<FetchResult> {
  const known = partner.key;
  const { body: reply, params } = sent;
  // At the version we know, the server must name the key we know (threat 1); the AD check below
  // would catch a swapped blob, but the reply's other fields must not steer us either.
  if (known && reply.keyVersion === known.version && (reply.keyId !== known.keyId || reply.alg !== known.alg)) {
    throw new IntegrityError(`the server named key ${reply.keyId} (${reply.alg}) for ${name}, but version ${known.version} is ${known.keyId} (${known.alg})`);
  }
  const format: OutputFormat = requested ?? (reply.alg === 'aes256' ? 'base64' : 'pem');
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

  // From here the server has served and counted this use, and the key passed every check: a local
  // failure (a full disk for the fetch log, a stale partners.json lock) must not withhold it.
  const local: string[] = [];
  if (reply.keyVersion > partner.highWater) {
    partner.highWater = reply.keyVersion;
    partner.key = { keyId: reply.keyId, alg: reply.alg, version: reply.keyVersion, publicKey: null, registeredAt: reply.status.registeredAt };
    await savePartnerEntry(paths, partner).catch((e: unknown) => local.push(`the new key version ${reply.keyVersion} could not be saved to partners.json (${(e as Error).message})`));
  }
  await appendFetchLog(paths, {
    at: new Date().toISOString(),
    partner: name,
    partnerId: partner.id,
    keyId: ctx.keyId,
    keyVersion: ctx.keyVersion,
    nonce: params.nonce,
    server: session.config.server,
  }).catch((e: unknown) => local.push(`the fetch log could not be written (${(e as Error).message}); its nonce is in the sent log`));
  const localWarnings = local.map((w) => `${name}: the server counted this use and the key is delivered, but ${w}`);
  try {
    const bytes = format === 'raw' ? rawTransactionKey(key) : utf8(formatTransactionKey(key, format));
    return { bytes, warnings: [...localWarnings, ...termWarnings(name, reply)] };
  } finally {
    wipe(secret);
  }

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
function termWarnings(name: string, r: FetchResponse): string[] {
  const out: string[] = [];
  const warn = (w: string): number => out.push(w);
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
  return out;
}
