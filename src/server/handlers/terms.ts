// Changing a key after registration: terms, the permit/inhibit flag (1508), rotation.
import { parseJson } from '../../protocol/schema.js';
import { KeyPatchRequest, RotateRequest } from '../../protocol/messages.js';
import { NotFoundError, UsageError } from '../../protocol/errors.js';
import { samePublicKey } from '../../crypto/binding.js';
import { fromB64 } from '../../crypto/bytes.js';
import { keyStatusView } from '../views.js';
import { checkBinding } from '../binding-check.js';
import { SSH_TYPES } from './keys.js';
import type { KeyPatch } from '../../store/types.js';
import type { Handler, RequestContext } from '../context.js';

const text = (ctx: RequestContext): string => new TextDecoder().decode(ctx.body);

/** PATCH /v1/keys/{partnerId} */
export const patchKey: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  const body = parseJson(text(ctx), KeyPatchRequest);
  if (Object.keys(body).length === 0) throw new UsageError('nothing to change: give at least one field', 'bad_request');
  const { binding, ...fields } = body;
  const patch: KeyPatch = { ...fields } as KeyPatch;
  if (body.ssh === true) {
    const current = await ctx.deps.storage.getKey(person.personId, ctx.params.partnerId!);
    if (current && !SSH_TYPES.has(current.alg)) throw new UsageError(`ssh is for ed25519 and p256 keys, not ${current.alg}`, 'bad_request');
  }
  if (body.expiresAt !== undefined) patch.expiresAt = body.expiresAt === null ? null : Date.parse(body.expiresAt);
  if (binding) {
    const current = await ctx.deps.storage.getKey(person.personId, ctx.params.partnerId!);
    if (!current) throw new NotFoundError('unknown_key', `no key is registered for partner ${ctx.params.partnerId}`);
    checkBinding(binding, person, { partnerId: current.partnerId, keyId: current.keyId, alg: current.alg, keyVersion: current.keyVersion });
    if (current.publicKey && !samePublicKey(binding.statement.publicKey, current.publicKey)) {
      throw new UsageError('the binding statement names another public key', 'bad_request');
    }
    // Hygiene, as checkBinding: a statement must say what the key will be.
    const lockedAfter = body.inhibited ?? current.inhibited;
    const expiresAfter = body.expiresAt !== undefined ? body.expiresAt : current.expiresAt === null ? null : new Date(current.expiresAt).toISOString();
    if (binding.statement.locked !== undefined && binding.statement.locked !== lockedAfter) {
      throw new UsageError(`the binding statement says the key is ${binding.statement.locked ? 'locked' : 'usable'}, but it will be ${lockedAfter ? 'locked' : 'usable'}`, 'bad_request');
    }
    if (binding.statement.expiresAt !== expiresAfter && (binding.statement.expiresAt === null || expiresAfter === null || Date.parse(binding.statement.expiresAt) !== Date.parse(expiresAfter))) {
      throw new UsageError('the binding statement names another valid term than the key will have', 'bad_request');
    }
    patch.binding = binding;
    patch.publicKey = binding.statement.publicKey;
  }
  const rec = await ctx.deps.storage.updateKey(person.personId, ctx.params.partnerId!, patch, auth.claim);
  ctx.deps.log.info({ personId: person.personId, partnerId: rec.partnerId, fields: Object.keys(body) }, 'key terms changed');
  return { status: 200, body: keyStatusView(rec, ctx.now, ctx.deps.tz) };
};

/** POST /v1/keys/{partnerId}/rotate */
export const rotateKey: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  const body = parseJson(text(ctx), RotateRequest);
  const blob = fromB64(body.blob);
  if (!blob) throw new UsageError('blob is not valid base64', 'bad_request');
  if (body.binding) checkBinding(body.binding, person, { partnerId: ctx.params.partnerId!, keyId: body.keyId, alg: body.alg, keyVersion: body.keyVersion });
  const rec = await ctx.deps.storage.rotateKey(
    person.personId,
    ctx.params.partnerId!,
    {
      keyId: body.keyId,
      alg: body.alg,
      keyVersion: body.keyVersion,
      blob,
      at: ctx.now,
      publicKey: body.binding?.statement.publicKey ?? null,
      binding: body.binding ?? null,
    },
    auth.claim,
  );
  ctx.deps.log.info({ personId: person.personId, partnerId: rec.partnerId, keyVersion: rec.keyVersion }, 'key rotated');
  return { status: 200, body: keyStatusView(rec, ctx.now, ctx.deps.tz) };
};
