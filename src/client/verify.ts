// Checking a verify answer without trusting the server (threat 4): the owner's
// binding statement must be signed by the management key whose fingerprint the
// verifier pinned, name this person, partner and public key, be within its
// term, and be no older than the newest version this verifier has seen.
import { fromB64, fromB64url } from '../crypto/bytes.js';
import { fingerprint, publicKeyObject } from '../crypto/sign.js';
import { samePublicKey, verifyBinding } from '../crypto/binding.js';
import { IntegrityError } from '../protocol/errors.js';
import { verifySuccession } from '../crypto/succession.js';
import type { VerifyResponse } from '../protocol/messages.js';

/** The newest statement a verifier has seen for a person and partner. */
export interface Seen {
  version: number;
  issuedAt?: string;
}

interface VerifyOutcome {
  verified: boolean;
  /** Why not, in a few words; undefined when verified. */
  reason?: string;
  keyVersion: number | null;
  /** The statement's issue time, when the answer carried a valid one. */
  issuedAt?: string;
  /** Set when the pinned key was replaced (kmgr rekey) and its own signed statement led to the current one. */
  followed?: { from: string; to: string; issuedAt: string };
}

/** Why "unknown": the server does not say which of these it is. */
export const UNKNOWN_REASON = "the server knows no such key: no such person, no key for this partner, or this public key is not the person's key for it (the server gives outsiders one answer for all of these)";

export function checkVerifyAnswer(
  r: VerifyResponse,
  ask: { personId: string; partnerId: string; publicKey: string; owner: string; newestSeen: Seen; now: number },
): VerifyOutcome {
  // "unknown" is the one answer a stranger gets for no such person, partner or key, and for a
  // public key that is not the owner's (the server tells an outsider nothing more).
  if (r.result === 'unknown') return { verified: false, reason: UNKNOWN_REASON, keyVersion: null };
  // Older servers told an unknown person apart; this one does not.
  if (r.result === 'unknown_person') return { verified: false, reason: `the server knows no person ${ask.personId}`, keyVersion: null };
  // Sent only to an asker who holds the retired key; it withholds trust, so needs no statement.
  if (r.result === 'retired') return { verified: false, reason: 'the owner retired the key for this partner', keyVersion: null };
  const lying = (why: string): never => {
    throw new IntegrityError(`the server's answer does not hold up: ${why}`);
  };
  if (!r.ownerPublicKey || !r.binding) return lying('it carries no signed binding statement');
  const owner = fromB64url(r.ownerPublicKey);
  if (!owner) return lying('the owner\'s key is malformed');
  let followed: VerifyOutcome['followed'];
  if (fingerprint(owner) !== ask.owner) {
    // After a rekey: follow one statement signed by the pinned key naming the current one, and no more
    // (a key two rekeys old must be re-pinned, so an old stolen key cannot lead down a long chain).
    const su = r.succession;
    const st = su?.statement;
    const oldRaw = st ? fromB64url(st.oldPublicKey) : undefined;
    const oldSig = su ? fromB64(su.signature) : undefined;
    const newSig = su ? fromB64(su.newSignature) : undefined;
    const follows =
      st !== undefined && oldRaw !== undefined && oldSig !== undefined && newSig !== undefined &&
      fingerprint(oldRaw) === ask.owner && st.newPublicKey === r.ownerPublicKey && st.personId === ask.personId && verifySuccession(st, oldSig, newSig);
    if (!follows) return lying(`the owner's key is not the pinned ${ask.owner}, and no statement signed by it names the new one`);
    followed = { from: ask.owner, to: fingerprint(owner), issuedAt: st.issuedAt };
  }
  const s = r.binding.statement;
  const sig = fromB64(r.binding.signature);
  if (!sig || !verifyBinding(publicKeyObject(owner), s, sig)) return lying('the binding statement is not signed by the owner');
  if (s.personId !== ask.personId || s.partnerId !== ask.partnerId) return lying('the binding statement is for another person or partner');
  if (s.keyVersion < ask.newestSeen.version) {
    return lying(`the binding statement is for version ${s.keyVersion}, older than version ${ask.newestSeen.version} already seen (replay)`);
  }
  // At the same version, an older statement (one the owner replaced, say with a shorter term) is a replay too.
  if (s.keyVersion === ask.newestSeen.version && ask.newestSeen.issuedAt !== undefined && s.issuedAt < ask.newestSeen.issuedAt) {
    return lying(`the binding statement was issued at ${s.issuedAt}, before the one already seen (${ask.newestSeen.issuedAt}): a replay`);
  }
  const same = samePublicKey(s.publicKey, ask.publicKey);
  const inTerm = s.expiresAt === null || ask.now < Date.parse(s.expiresAt);
  if (r.result === 'match') {
    if (!same) return lying('it says "match" for a public key the owner did not sign');
    if (s.locked === true) return lying('it says "match" for a key the owner\'s statement says is locked');
    if (!inTerm) return lying(`it says "match" for a key whose term ended at ${s.expiresAt}`);
    return { verified: true, keyVersion: s.keyVersion, issuedAt: s.issuedAt, ...(followed ? { followed } : {}) };
  }
  if (same && (r.result === 'mismatch' || r.result === 'rotated')) {
    // An honest server cannot send the statement naming this very key and call it another.
    // "expired" and "locked" only withhold trust, and the owner can shorten a term or lock a key at the server: taken at its word.
    return lying(`it says "${r.result}" for the key the owner's current statement names`);
  }
  const reasons: Record<string, string> = {
    mismatch: 'the public key is not the owner\'s key for this partner',
    rotated: 'the public key was replaced by a newer version',
    expired: 'the key is past its valid term',
    locked: 'the owner has locked the key',
  };
  return { verified: false, reason: reasons[r.result] ?? r.result, keyVersion: s.keyVersion, issuedAt: s.issuedAt, ...(followed ? { followed } : {}) };
}
