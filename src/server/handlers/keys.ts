import { parseJson } from '../../protocol/schema.js';
import { FetchRequest, RegisterRequest, type FetchResponse } from '../../protocol/messages.js';
import { KmgrError, NotFoundError, UsageError } from '../../protocol/errors.js';
import { fromB64, toB64 } from '../../crypto/bytes.js';
import { keyStatusView } from '../views.js';
import { checkBinding } from '../binding-check.js';
import { periodsAt } from '../../terms/periods.js';
import type { KeyRecord } from '../../store/types.js';
import type { Handler, RequestContext } from '../context.js';

/** Key types an SSH agent can offer (OpenSSH's ssh-ed25519 and ecdsa-sha2-nistp256). */
export const SSH_TYPES: ReadonlySet<string> = new Set(['ed25519', 'p256']);

const text = (ctx: RequestContext): string => new TextDecoder().decode(ctx.body);
const partnerOf = (ctx: RequestContext): string => ctx.params.partnerId!;

/** PUT /v1/keys/{partnerId}: register a sealed transaction key with its terms (Fig. 6). */
export const registerKey: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  const body = parseJson(text(ctx), RegisterRequest);
  const blob = fromB64(body.blob);
  if (!blob) throw new UsageError('blob is not valid base64', 'bad_request');
  const expiresAt = body.terms.expiresAt === null ? null : Date.parse(body.terms.expiresAt);
  if (body.binding) checkBinding(body.binding, person, { partnerId: partnerOf(ctx), keyId: body.keyId, alg: body.alg, keyVersion: body.keyVersion });
  if (expiresAt !== null && expiresAt <= ctx.now) throw new UsageError('terms.expiresAt is in the past', 'bad_request');
  if (body.ssh && !SSH_TYPES.has(body.alg)) throw new UsageError(`ssh is for ed25519 and p256 keys, not ${body.alg}`, 'bad_request');
  const record: KeyRecord = {
    personId: person.personId,
    partnerId: partnerOf(ctx),
    keyId: body.keyId,
    alg: body.alg,
    keyVersion: body.keyVersion,
    registeredAt: ctx.now,
    inhibited: false,
    expiresAt,
    maxUses: body.terms.maxUses,
    maxPerDay: body.terms.maxPerDay,
    maxPerWeek: body.terms.maxPerWeek,
    maxPerMonth: body.terms.maxPerMonth,
    onLimit: body.terms.onLimit,
    uses: { total: 0, day: 0, week: 0, month: 0, periods: periodsAt(ctx.now, ctx.deps.tz) },
    lastUsedAt: null,
    historySeq: 0,
    publicKey: body.binding?.statement.publicKey ?? null,
    binding: body.binding ?? null,
    previousPublicKeys: [],
    ssh: body.ssh ?? false,
  };
  await ctx.deps.storage.registerKey(record, blob, auth.claim);
  ctx.deps.log.info({ personId: person.personId, partnerId: record.partnerId, keyId: record.keyId, alg: record.alg }, 'key registered');
  return { status: 201, body: keyStatusView(record, ctx.now, ctx.deps.tz) };
};

/** GET /v1/keys */
export const listKeys: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  await ctx.deps.storage.persistNonce(auth.claim);
  const keys = await ctx.deps.storage.listKeys(person.personId);
  return { status: 200, body: { keys: keys.map((k) => keyStatusView(k, ctx.now, ctx.deps.tz)) } };
};

/** GET /v1/keys/{partnerId} */
export const keyStatus: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  await ctx.deps.storage.persistNonce(auth.claim);
  const rec = await ctx.deps.storage.getKey(person.personId, partnerOf(ctx));
  if (!rec) throw new NotFoundError('unknown_key', `no key is registered for partner ${partnerOf(ctx)}`);
  return { status: 200, body: keyStatusView(rec, ctx.now, ctx.deps.tz) };
};

/**
 * POST /v1/keys/{partnerId}/fetch (Figs. 7 and 9): the use is judged, counted,
 * recorded and made durable before the blob leaves (threats 9 and 10).
 */
export const fetchKey: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  parseJson(text(ctx), FetchRequest);
  const out = await ctx.deps.storage.fetchKey(person.personId, partnerOf(ctx), {
    at: ctx.now,
    nonce: auth.claim,
    remoteAddress: ctx.remoteAddress,
    request: auth.signed,
  });
  const status = keyStatusView(out.record, ctx.now, ctx.deps.tz);
  if (!out.served) {
    ctx.deps.log.info({ personId: person.personId, partnerId: out.record.partnerId, code: out.code }, 'fetch refused');
    throw new KmgrError(out.code, out.message, { status });
  }
  const body: FetchResponse = {
    keyId: out.record.keyId,
    alg: status.alg,
    keyVersion: out.record.keyVersion,
    blob: toB64(out.blob),
    ...(out.overLimit.length > 0 ? { overLimit: out.overLimit } : {}),
    status,
  };
  return { status: 200, body };
};
