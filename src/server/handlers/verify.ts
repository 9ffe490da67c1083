// POST /v1/verify (third embodiment, Fig. 11): an application server asks
// whether a public key is person X's current key for partner Y. Unsigned: the
// asker holds no management key. The answer carries the owner's binding
// statement so a careful verifier need not trust us (threat 4).
import { parseJson } from '../../protocol/schema.js';
import { VerifyRequest, type VerifyResponse, type VerifyResult } from '../../protocol/messages.js';
import { samePublicKey } from '../../crypto/binding.js';
import type { Handler } from '../context.js';

export const verify: Handler = async (ctx) => {
  const body = parseJson(new TextDecoder().decode(ctx.body), VerifyRequest);
  const { storage } = ctx.deps;
  const rec = await storage.getKey(body.personId, body.partnerId);
  // One answer for a stranger's probe, whether or not the key exists: no such person,
  // partner or key, and a public key that is not (and never was) the owner's key for
  // this partner, all read "unknown", without the owner's binding, and without waiting
  // on a write. Only an asker who already holds the key (current or replaced) learns
  // more. Otherwise anyone who knows a person's ID could map which partners they have.
  const none: VerifyResponse = { result: 'unknown', keyVersion: null, ownerPublicKey: null, binding: null };
  if (!rec || !rec.publicKey || !rec.binding) return { status: 200, body: none };
  let result: VerifyResult;
  if (samePublicKey(body.publicKey, rec.publicKey)) {
    result = rec.inhibited ? 'locked' : rec.expiresAt !== null && ctx.now >= rec.expiresAt ? 'expired' : 'match';
  } else {
    result = (rec.previousPublicKeys ?? []).some((p) => samePublicKey(body.publicKey, p)) ? 'rotated' : 'mismatch';
  }
  if (result === 'mismatch') {
    // The owner still sees the question in the history; the asker is not kept waiting for it.
    void storage.recordVerify(body.personId, body.partnerId, { at: ctx.now, result, requester: body.requester, remoteAddress: ctx.remoteAddress })
      .catch((e: unknown) => ctx.deps.log.error({ err: (e as Error).message }, 'recording a verify question failed'));
    return { status: 200, body: none };
  }
  await storage.recordVerify(body.personId, body.partnerId, { at: ctx.now, result, requester: body.requester, remoteAddress: ctx.remoteAddress });
  const person = await storage.personByPersonId(body.personId);
  const reply: VerifyResponse = {
    result,
    keyVersion: rec.keyVersion,
    ownerPublicKey: person?.publicKey ?? null,
    binding: rec.binding,
  };
  return { status: 200, body: reply };
};
