import { randomBytes } from 'node:crypto';
import { parseJson } from '../../protocol/schema.js';
import { EnrolRequest } from '../../protocol/messages.js';
import { AuthError } from '../../protocol/errors.js';
import { fromB64url } from '../../crypto/bytes.js';
import { managementKeyId, publicKeyObject } from '../../crypto/sign.js';
import { personView } from '../views.js';
import type { Handler } from '../context.js';

/** POST /v1/persons: enrol a management public key (Fig. 17). The request is signed by that key: proof of possession. */
export const enrol: Handler = async (ctx) => {
  const body = parseJson(new TextDecoder().decode(ctx.body), EnrolRequest);
  const raw = fromB64url(body.publicKey);
  if (!raw || raw.length !== 32) throw new AuthError('auth_malformed', 'publicKey is not a 32-byte Ed25519 key');
  let key;
  try {
    key = publicKeyObject(raw);
  } catch {
    throw new AuthError('auth_malformed', 'publicKey is not a valid Ed25519 key');
  }
  const keyId = managementKeyId(raw);
  const auth = await ctx.withKey(keyId, { raw, obj: key });
  if (auth.params.keyid !== keyId) throw new AuthError('auth_bad_signature', 'the enrolment must be signed by the key being enrolled');
  const person = {
    personId: 'p_' + randomBytes(16).toString('base64url').slice(0, 22),
    keyId,
    alg: 'ed25519' as const,
    publicKey: body.publicKey,
    createdAt: ctx.now,
  };
  await ctx.deps.storage.enrol(person, auth.claim);
  // The enrolling device is the person's first device (kmgr device list).
  if (auth.signed.device !== '') {
    await ctx.deps.storage.addDevice(person.personId, { label: auth.signed.device, addedAt: ctx.now, lastUsedAt: ctx.now, lastKeyId: keyId, via: 'init', revokedAt: null }, null, ctx.now, null);
  }
  ctx.deps.log.info({ personId: person.personId, keyId }, 'person enrolled');
  return { status: 201, body: personView(person) };
};

/** GET /v1/persons/me */
export const whoami: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  await ctx.deps.storage.persistNonce(auth.claim);
  return { status: 200, body: personView(person) };
};
