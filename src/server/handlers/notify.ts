// GET and PUT /v1/notify: a person's delivery settings and their latest delivery attempts.
import { parseJson } from '../../protocol/schema.js';
import { NotifySettingsRequest, type NotifyView } from '../../protocol/messages.js';
import type { Storage } from '../../store/types.js';
import { fromB64 } from '../../crypto/bytes.js';
import { UsageError } from '../../protocol/errors.js';
import type { Handler } from '../context.js';

async function view(storage: Storage, personId: string): Promise<NotifyView> {
  const s = await storage.getNotifySettings(personId);
  const log = await storage.deliveryLog(personId, 20);
  return {
    // The secret is never sent back: the owner has it.
    webhook: s.webhook ? { url: s.webhook.url } : null,
    email: s.email,
    deliveries: log.map((e) => ({ ...e, at: new Date(e.at).toISOString() })),
  };
}

export const getNotify: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  await ctx.deps.storage.persistNonce(auth.claim);
  return { status: 200, body: await view(ctx.deps.storage, person.personId) };
};

export const putNotify: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  const body = parseJson(new TextDecoder().decode(ctx.body), NotifySettingsRequest);
  if (body.webhook && fromB64(body.webhook.secret)?.length !== 32) throw new UsageError('webhook.secret must be 32 bytes, base64', 'bad_request');
  const current = await ctx.deps.storage.getNotifySettings(person.personId);
  const next = { webhook: body.webhook === undefined ? current.webhook : body.webhook, email: body.email === undefined ? current.email : body.email };
  await ctx.deps.storage.setNotifySettings(person.personId, next, auth.claim);
  return { status: 200, body: await view(ctx.deps.storage, person.personId) };
};
