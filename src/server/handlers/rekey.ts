// Management-key rotation (kmgr rekey): hand out every blob for re-wrapping,
// then switch the person to the new key in one step. The server never sees a
// key in the clear; it checks that the switch is whole (every key it holds,
// each at its current version, nothing more) and signed by both keys.
import { parseJson } from '../../protocol/schema.js';
import { RekeyPrepareRequest, RekeyRequest, type RekeyExport } from '../../protocol/messages.js';
import { AuthError, UsageError } from '../../protocol/errors.js';
import { fromB64, toB64 } from '../../crypto/bytes.js';
import { verifySuccession } from '../../crypto/succession.js';
import { samePublicKey } from '../../crypto/binding.js';
import { checkBinding } from '../binding-check.js';
import { personView } from '../views.js';
import type { PersonRecord, RekeyedKey } from '../../store/types.js';
import type { Handler } from '../context.js';

const text = (ctx: { body: Uint8Array }): string => new TextDecoder().decode(ctx.body);

/** POST /v1/rekey/prepare: every key with its blob, locked and expired ones too. Not a use; recorded in each history. */
export const rekeyPrepare: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  parseJson(text(ctx), RekeyPrepareRequest);
  const keys = await ctx.deps.storage.rekeyExport(person.personId, { at: ctx.now, nonce: auth.claim, remoteAddress: ctx.remoteAddress, request: auth.signed });
  const body: RekeyExport = {
    personId: person.personId,
    keyId: person.keyId,
    keys: keys.map(({ record, blob }) => ({
      partnerId: record.partnerId,
      keyId: record.keyId,
      alg: record.alg as RekeyExport['keys'][number]['alg'],
      keyVersion: record.keyVersion,
      blob: toB64(blob),
      binding: record.binding ?? null,
      locked: record.inhibited,
    })),
  };
  ctx.deps.log.info({ personId: person.personId, keys: keys.length }, 'rekey: blobs handed out for re-wrapping');
  return { status: 200, body };
};

/** POST /v1/rekey: the switch. Signed by the current (old) key; the succession statement is signed by both. */
export const rekey: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  const body = parseJson(text(ctx), RekeyRequest);
  const s = body.succession.statement;
  const oldSig = fromB64(body.succession.signature);
  const newSig = fromB64(body.succession.newSignature);
  if (s.personId !== person.personId || s.oldKeyId !== person.keyId || s.oldPublicKey !== person.publicKey) {
    throw new UsageError('the succession statement does not name this person and their current key', 'bad_request');
  }
  if (s.newKeyId === s.oldKeyId) throw new UsageError('the new management key is the old one', 'bad_request');
  if (!oldSig || !newSig || !verifySuccession(s, oldSig, newSig)) {
    throw new AuthError('auth_bad_signature', 'the succession statement is not signed by both the old and the new management key');
  }
  if (await ctx.deps.storage.personByKeyId(s.newKeyId)) throw new UsageError('the new management key is already enrolled', 'bad_request');
  const next: PersonRecord = { ...person, keyId: s.newKeyId, publicKey: s.newPublicKey, succession: body.succession };
  const keys: RekeyedKey[] = [];
  for (const k of body.keys) {
    const blob = fromB64(k.blob);
    if (!blob) throw new UsageError('blob is not valid base64', 'bad_request');
    if (k.binding) {
      const current = await ctx.deps.storage.getKey(person.personId, k.partnerId);
      // A binding must describe the stored key under the new owner key; set mismatches are the storage's to refuse.
      if (current) {
        checkBinding(k.binding, next, { partnerId: k.partnerId, keyId: current.keyId, alg: current.alg, keyVersion: k.keyVersion });
        if (current.publicKey && !samePublicKey(k.binding.statement.publicKey, current.publicKey)) {
          throw new UsageError(`the binding statement for ${k.partnerId} names another public key`, 'bad_request');
        }
        // Hygiene, as for kmgr lock/unlock: a new statement must say whether the key is locked as it is.
        if (k.binding.statement.locked !== undefined && k.binding.statement.locked !== current.inhibited) {
          throw new UsageError(`the binding statement for ${k.partnerId} says the key is ${k.binding.statement.locked ? 'locked' : 'usable'}, but it is ${current.inhibited ? 'locked' : 'usable'}`, 'bad_request');
        }
      }
    }
    keys.push({ partnerId: k.partnerId, keyVersion: k.keyVersion, blob, binding: k.binding });
  }
  await ctx.deps.storage.rekey(
    person.personId,
    { oldKeyId: person.keyId, person: next, keys, revokeDevices: body.revokeDevices, at: ctx.now, remoteAddress: ctx.remoteAddress, request: auth.signed },
    auth.claim,
  );
  ctx.deps.log.info({ personId: person.personId, oldKeyId: person.keyId, keyId: next.keyId, keys: keys.length, revoked: body.revokeDevices.length }, 'management key replaced');
  return { status: 200, body: personView(next) };
};
