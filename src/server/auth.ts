// Authenticates a request by its management-key signature (Figs. 12-14, threat 8).
import type { IncomingMessage } from 'node:http';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { AuthError } from '../protocol/errors.js';
import {
  DEVICE_HEADER, DEVICE_LABEL, MAX_LIFETIME_SECONDS, MAX_SKEW_SECONDS, parseContentDigest, parseSignature, parseSignatureInput, signatureBase, SIG_LABEL,
  type SignatureParams,
} from '../protocol/sigbase.js';
import { sha256 } from '../crypto/hash.js';
import { equalBytes, fromB64, utf8 } from '../crypto/bytes.js';
import { TAG_REQUEST, verifySignature } from '../crypto/sign.js';
import type { NonceClaim, SignedRequestRecord } from '../store/types.js';
import type { Verifier } from './verify-pool.js';

export interface Authenticated {
  params: SignatureParams;
  claim: NonceClaim;
  signed: SignedRequestRecord;
}

const header = (req: IncomingMessage, name: string): string | undefined => {
  const v = req.headers[name];
  return typeof v === 'string' ? v : undefined;
};

/**
 * Checks everything but the nonce: headers, digest, time window, signature.
 * `keyFor` returns the verification key for a key ID, or undefined if unknown.
 * The caller claims the nonce after this succeeds, so an unsigned request can
 * never burn somebody's nonce.
 */
/** A management public key: raw bytes (for a verifier thread) and a cached KeyObject (for inline use). */
export interface VerifyKey {
  raw: Uint8Array;
  obj: KeyObject;
}

let dummy: VerifyKey | undefined;
/** A verification key whose private half was thrown away. */
function nobodysKey(): VerifyKey {
  if (!dummy) {
    const { publicKey } = generateKeyPairSync('ed25519');
    const raw = new Uint8Array(publicKey.export({ format: 'der', type: 'spki' }).subarray(-32));
    dummy = { raw, obj: publicKey };
  }
  return dummy;
}

export async function authenticate(
  req: IncomingMessage,
  path: string,
  query: string,
  body: Uint8Array,
  nowMs: number,
  keyFor: (keyId: string) => Promise<VerifyKey | undefined>,
  verifier?: Verifier,
): Promise<Authenticated> {
  const input = header(req, 'signature-input');
  const sig = header(req, 'signature');
  const digest = header(req, 'content-digest');
  const authority = header(req, 'host');
  if (!input || !sig || !digest || !authority) {
    throw new AuthError('auth_missing', 'the request is not signed (Signature, Signature-Input, Content-Digest and Host are required)');
  }
  const device = header(req, DEVICE_HEADER) ?? '';
  if (device !== '' && !DEVICE_LABEL.test(device)) throw new AuthError('auth_malformed', 'the Kmgr-Device header is not a valid device label');
  const params = parseSignatureInput(input);
  const sigB64 = parseSignature(sig);
  const digestB64 = parseContentDigest(digest);
  if (!params || !sigB64 || !digestB64) throw new AuthError('auth_malformed', 'the request signature headers do not follow the kmgr profile');
  const claimed = fromB64(digestB64);
  if (!claimed || !equalBytes(claimed, sha256(body))) throw new AuthError('auth_bad_signature', 'the body does not match its Content-Digest');
  const now = Math.floor(nowMs / 1000);
  if (
    params.expires <= params.created ||
    params.expires - params.created > MAX_LIFETIME_SECONDS ||
    Math.abs(now - params.created) > MAX_SKEW_SECONDS ||
    now >= params.expires
  ) {
    throw new AuthError('auth_stale', 'the request signature is outside its time window (check this machine\'s clock)');
  }
  // An unknown key ID is refused exactly as a known one with a bad signature, after the
  // same verification work (against a key nobody holds): otherwise anyone could probe
  // which management keys are enrolled here.
  const known = await keyFor(params.keyid);
  const key = known ?? nobodysKey();
  const base = signatureBase({ method: req.method ?? '', authority, path, query, contentDigest: digest, device }, params);
  const signature = fromB64(sigB64);
  const payload = utf8(base);
  const ok = signature !== undefined && (verifier ? await verifier.verify(key.raw, payload, signature) : verifySignature(key.obj, TAG_REQUEST, payload, signature));
  if (!ok || !known) {
    throw new AuthError('auth_bad_signature', 'the request signature does not verify (or its key is not enrolled at this server)');
  }
  return {
    params,
    // Keep the nonce a little past the signature's expiry: after that the time check refuses it anyway.
    claim: { keyId: params.keyid, nonce: params.nonce, expiresAt: (params.expires + MAX_SKEW_SECONDS) * 1000 },
    signed: {
      method: req.method ?? '',
      authority,
      path: path + (query === '' ? '' : query),
      contentDigest: digest,
      device,
      signatureInput: input.slice(SIG_LABEL.length + 1),
      signature: sigB64,
    },
  };
}
