// kmgr rekey on the client: a new management key, every transaction key
// re-wrapped under it with the same associated data, every binding statement
// re-signed, and the server switched in one step.
//
// Crash safety: the new keystore (sealed under the same passphrase) is written
// to rekey-pending.json before anything changes at the server. Killed at any
// point, the person has the old key (server not switched) or the new one (in
// the pending file, or already in keystore.json) working for every key, and
// running rekey again finishes: it asks the server which key it accepts.
//
// A hostile server (threat 1, 5): the blobs it hands out are checked against
// this client's own partner index and opened with the associated data this
// client builds; a hidden, added or rolled-back key stops the rekey before
// the switch, and the server itself accepts the switch only for exactly the
// set it holds, each at its current version.
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { generateSecrets, openKeystore, parseKeystore, sealKeystore, type KeystoreFile, type ManagementSecrets } from '../crypto/keystore.js';
import { fingerprint, managementKeyId, publicKeyObject, signerFromSeed, TAG_BINDING, type Signer } from '../crypto/sign.js';
import { openBlob, sealBlob, type BlobContext } from '../crypto/blob.js';
import { bindingBytes, samePublicKey, verifyBinding, type BindingStatement } from '../crypto/binding.js';
import { signSuccession, type SuccessionStatement } from '../crypto/succession.js';
import { publicKeyPem, type TransactionKey } from '../crypto/txkey.js';
import { fromB64, toB64, toB64url, wipe } from '../crypto/bytes.js';
import { IntegrityError, KmgrError, UsageError } from '../protocol/errors.js';
import { PersonInfo, RekeyExport, type RekeyRequest, type SignedBinding } from '../protocol/messages.js';
import { writeFileAtomic } from '../io/atomic-file.js';
import { loadConfig, saveConfig, type ClientConfig } from './config.js';
import { endpointFor, sessionWithKeys, type Session } from './session.js';
import { signedRequest } from './http.js';
import { loadPartners, type PartnerIndex } from './partners.js';
import { listServerPartners } from './server-partners.js';
import { readJsonFile } from './files.js';
import type { HomePaths } from './home.js';

const PENDING_FORMAT = 'kmgr-rekey-pending';

interface PendingRekey {
  format: typeof PENDING_FORMAT;
  v: 1;
  startedAt: string;
  oldKeyId: string;
  /** Raw Ed25519, base64url: kept for the audit of uses the old key signed. */
  oldPublicKey: string;
  newKeyId: string;
  revokeDevices: string[];
  /** The new management key, sealed under the same passphrase as keystore.json. */
  keystore: KeystoreFile;
}

const pendingPath = (paths: HomePaths): string => join(paths.dir, 'rekey-pending.json');

async function readPending(paths: HomePaths): Promise<PendingRekey | undefined> {
  const d = (await readJsonFile(pendingPath(paths))) as Partial<PendingRekey> | undefined;
  if (d === undefined) return undefined;
  if (d.format !== PENDING_FORMAT || d.v !== 1 || typeof d.oldKeyId !== 'string' || typeof d.oldPublicKey !== 'string' || typeof d.newKeyId !== 'string' || !Array.isArray(d.revokeDevices)) {
    throw new IntegrityError(`${pendingPath(paths)} is not a kmgr pending rekey`);
  }
  parseKeystore(d.keystore);
  return d as PendingRekey;
}

/** Exporting or saving the key mid-rekey would hand out a key about to be replaced (or already replaced). */
export async function refuseIfRekeyPending(paths: HomePaths, what: string): Promise<void> {
  const p = await readPending(paths);
  if (p) throw new UsageError(`a rekey started at ${p.startedAt} is not finished; run kmgr rekey to finish it before ${what}`);
}

export type Failpoint = (name: 'pending-written' | 'prepared' | 'switched' | 'keystore-written' | 'config-written') => void;

export interface RekeyOutcome {
  oldKeyId: string;
  keyId: string;
  fingerprint: string;
  /** Keys re-wrapped now; null when this run only finished a switch made earlier. */
  rekeyed: number | null;
  revoked: string[];
}

function sessionFor(paths: HomePaths, config: ClientConfig, ep: Session['endpoint'], secrets: ManagementSecrets): Promise<Session> {
  const signer = signerFromSeed(secrets.signingSeed);
  const c = { ...config, keyId: managementKeyId(signer.publicKey), fingerprint: fingerprint(signer.publicKey) };
  return sessionWithKeys(paths, c, ep, signer, () => secrets.wrapKey, secrets);
}

/** Whether the server accepts this session's key: true, false (replaced or unknown), or an error for anything else. */
async function accepted(s: Session): Promise<boolean> {
  try {
    await signedRequest(s.endpoint, s.identity, 'GET', '/v1/persons/me', undefined, PersonInfo);
    return true;
  } catch (e) {
    // A key the server does not know is refused as a bad signature (so strangers cannot probe which keys are
    // enrolled); a correctly signed request refused that way means the key is not, or no longer, accepted.
    if (e instanceof KmgrError && (e.code === 'key_replaced' || e.code === 'unknown_person' || e.code === 'auth_bad_signature')) return false;
    throw e;
  }
}

export async function rekeyHome(
  paths: HomePaths,
  passphrase: Uint8Array,
  o: { revokeDevices: string[]; failpoint?: Failpoint; unlock: (p: Uint8Array) => Promise<ManagementSecrets> },
): Promise<RekeyOutcome> {
  const fail: Failpoint = o.failpoint ?? (() => undefined);
  const config = await loadConfig(paths);
  const ep = await endpointFor(paths, config);
  const current = await o.unlock(passphrase);
  let pending = await readPending(paths);
  const createdNow = pending === undefined;
  if (pending && o.revokeDevices.length > 0 && pending.revokeDevices.join('\n') !== o.revokeDevices.join('\n')) {
    throw new UsageError(`a rekey started at ${pending.startedAt} is not finished; run kmgr rekey to finish it first`);
  }
  if (!pending) {
    const curFp = fingerprint(signerFromSeed(current.signingSeed).publicKey);
    if (curFp !== config.fingerprint) throw new IntegrityError(`${paths.config} names a different management key than the keystore`);
    const next = generateSecrets();
    const logN = parseKeystore(await readJsonFile(paths.keystore)).params.logN;
    pending = {
      format: PENDING_FORMAT,
      v: 1,
      startedAt: new Date().toISOString(),
      oldKeyId: config.keyId,
      oldPublicKey: toB64url(signerFromSeed(current.signingSeed).publicKey),
      newKeyId: managementKeyId(signerFromSeed(next.signingSeed).publicKey),
      revokeDevices: o.revokeDevices,
      keystore: await sealKeystore(passphrase, next, logN),
    };
    // Written (atomically, fsynced) before the server hears of the new key: from the switch on, this file is the only copy.
    await writeFileAtomic(pendingPath(paths), JSON.stringify(pending, null, 2) + '\n');
    fail('pending-written');
  }
  const next = await openKeystore(passphrase, pending.keystore);
  const nextSigner = signerFromSeed(next.signingSeed);
  const newKeyId = managementKeyId(nextSigner.publicKey);
  if (newKeyId !== pending.newKeyId) throw new IntegrityError(`${pendingPath(paths)} does not hold the key it names`);
  const curSigner = signerFromSeed(current.signingSeed);
  const localDone = managementKeyId(curSigner.publicKey) === newKeyId;
  const newSession = await sessionFor(paths, config, ep, next);
  let rekeyed: number | null = null;
  if (!localDone && !(await accepted(newSession))) {
    const oldSession = await sessionFor(paths, config, ep, current);
    if (!(await accepted(oldSession))) {
      throw new KmgrError('key_replaced', 'the server accepts neither this keystore\'s management key nor the pending new one; was the key replaced from another device? (import a fresh export there: kmgr device export)');
    }
    let body: RekeyRequest;
    try {
      const exp = (await signedRequest(oldSession.endpoint, oldSession.identity, 'POST', '/v1/rekey/prepare', {}, RekeyExport)).body;
      fail('prepared');
      const idx = await loadPartners(paths);
      const names = config.partners === 'server' ? new Map((await listServerPartners(oldSession)).map((p) => [p.partnerId, p.name])) : undefined;
      const keys = rewrap(exp, idx, names, config.personId, config.keyId, current, curSigner, next, nextSigner);
      const statement: SuccessionStatement = {
        personId: config.personId,
        oldKeyId: config.keyId,
        oldPublicKey: toB64url(curSigner.publicKey),
        newKeyId,
        newPublicKey: toB64url(nextSigner.publicKey),
        issuedAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      };
      body = {
        succession: { statement, signature: toB64(signSuccession(curSigner, statement)), newSignature: toB64(signSuccession(nextSigner, statement)) },
        keys,
        revokeDevices: pending.revokeDevices,
      };
    } catch (e) {
      // Made by this run, the new key was never sent in a switch: it is not needed, and a stopped
      // rekey leaves the home as it was. A pending file from an earlier run is kept whatever the
      // server says now (a lying server must not talk us into deleting the only copy of the new key).
      if (createdNow) await unlink(pendingPath(paths)).catch(() => undefined);
      throw e;
    }
    const person = (await signedRequest(oldSession.endpoint, oldSession.identity, 'POST', '/v1/rekey', body, PersonInfo)).body;
    if (person.keyId !== newKeyId) throw new IntegrityError('the server switched to a different key than the one sent');
    rekeyed = body.keys.length;
    fail('switched');
  }
  // The switch is made: the new keystore takes the old one's place, then the config names it.
  if (!localDone) await writeFileAtomic(paths.keystore, JSON.stringify(pending.keystore, null, 2) + '\n');
  fail('keystore-written');
  const newFp = fingerprint(nextSigner.publicKey);
  if (config.keyId !== newKeyId || config.fingerprint !== newFp) {
    const previousKeys = [...(config.previousKeys ?? []).filter((k) => k.keyId !== pending.oldKeyId), { keyId: pending.oldKeyId, publicKey: pending.oldPublicKey }];
    await saveConfig(paths, { ...config, keyId: newKeyId, fingerprint: newFp, previousKeys });
  }
  fail('config-written');
  await unlink(pendingPath(paths)).catch(() => undefined);
  wipe(current.signingSeed);
  wipe(current.wrapKey);
  return { oldKeyId: pending.oldKeyId, keyId: newKeyId, fingerprint: newFp, rekeyed, revoked: pending.revokeDevices };
}

/**
 * Opens every blob the server handed out with the context this client knows,
 * re-seals it under the new wrapping key with the same context, and re-signs
 * its binding statement with the new key. Throws before anything is sent if
 * the server's set differs from what this client knows.
 */
export function rewrap(
  exp: RekeyExport,
  idx: PartnerIndex,
  serverNames: Map<string, string> | undefined,
  personId: string,
  keyId: string,
  current: ManagementSecrets,
  curSigner: Signer,
  next: ManagementSecrets,
  nextSigner: Signer,
): RekeyRequest['keys'] {
  const stop = (why: string): never => {
    throw new IntegrityError(`${why}; the rekey stopped before changing anything`);
  };
  if (exp.personId !== personId || exp.keyId !== keyId) stop('the server answered for another person or key');
  const byId = new Map(exp.keys.map((k) => [k.partnerId, k]));
  if (byId.size !== exp.keys.length) stop('the server listed one partner twice');
  for (const p of idx.partners) {
    if (p.key && !byId.has(p.id)) stop(`the server did not hand out the key of ${p.name} (version ${p.key.version}), which this client knows`);
  }
  const oldOwner = publicKeyObject(curSigner.publicKey);
  const out: RekeyRequest['keys'] = [];
  for (const k of exp.keys) {
    const local = idx.partners.find((p) => p.id === k.partnerId);
    const name = local?.name ?? serverNames?.get(k.partnerId);
    if (name === undefined) stop(`the server handed out a key for partner ID ${k.partnerId}, which this client does not know`);
    if (local && k.keyVersion < local.highWater) stop(`the server handed out version ${k.keyVersion} of ${name}, older than version ${local.highWater} already seen (rollback)`);
    const known = local?.key && local.key.version === k.keyVersion ? local.key : undefined;
    if (known && (known.keyId !== k.keyId || known.alg !== k.alg)) stop(`the server named key ${k.keyId} (${k.alg}) for ${name}, but version ${known.version} is ${known.keyId} (${known.alg})`);
    const ctx: BlobContext = { personId, partnerId: k.partnerId, keyId: k.keyId, alg: k.alg, keyVersion: k.keyVersion, partnerName: name! };
    const blob = fromB64(k.blob) ?? stop(`the blob of ${name} is not base64`);
    let secret: Uint8Array;
    try {
      secret = openBlob(current.wrapKey, ctx, blob);
    } catch {
      return stop(`the key of ${name} does not open under this management key (altered, swapped or not ours)`);
    }
    try {
      const binding = k.binding ? resign(k.binding, ctx, { type: k.alg, secret }, k.locked, oldOwner, nextSigner, name!) : null;
      out.push({ partnerId: k.partnerId, keyVersion: k.keyVersion, blob: toB64(sealBlob(next.wrapKey, ctx, secret)), binding });
    } finally {
      wipe(secret);
    }
  }
  return out;
}

/** A binding statement re-signed by the new key: the old one must be the owner's, for this key, naming the public half of what the blob holds. */
function resign(b: SignedBinding, ctx: BlobContext, key: TransactionKey, locked: boolean, oldOwner: ReturnType<typeof publicKeyObject>, nextSigner: Signer, name: string): SignedBinding {
  const s = b.statement;
  const sig = fromB64(b.signature);
  const pub = publicKeyPem(key);
  const ok =
    sig !== undefined &&
    verifyBinding(oldOwner, s, sig) &&
    s.personId === ctx.personId && s.partnerId === ctx.partnerId && s.keyId === ctx.keyId && s.alg === ctx.alg && s.keyVersion === ctx.keyVersion &&
    pub !== undefined && samePublicKey(s.publicKey, pub);
  if (!ok) throw new IntegrityError(`the binding statement of ${name} is not the owner's statement for this key; the rekey stopped before changing anything`);
  // Lock and unlock issue a new statement saying `locked`: one that says otherwise than the server means the server lies about the lock.
  if (s.locked !== undefined && s.locked !== locked) {
    throw new IntegrityError(`the server says ${name} is ${locked ? 'locked' : 'usable'}, but the owner's latest statement says ${s.locked ? 'locked' : 'usable'}; the rekey stopped before changing anything`);
  }
  // Re-signed in the current format: it always says whether the key is locked (see BindingStatement.locked).
  const statement: BindingStatement = { ...s, issuedAt: new Date().toISOString(), locked };
  return { statement: statement as SignedBinding['statement'], signature: toB64(nextSigner.sign(TAG_BINDING, bindingBytes(statement))) };
}
