// Partners on the server (second embodiment, Figs. 2, 10 and 16). A person's
// list is theirs alone: every call is signed and scoped to the signer.
import { parseJson } from '../../protocol/schema.js';
import { AddPartnerRequest, type PartnerView } from '../../protocol/messages.js';
import { NotFoundError } from '../../protocol/errors.js';
import type { PartnerRecord } from '../../store/types.js';
import type { Handler } from '../context.js';

function partnerView(p: PartnerRecord): PartnerView {
  return { partnerId: p.partnerId, name: p.name, displayName: p.displayName, appServer: p.appServer, business: p.business, shared: p.owner === null };
}

/** GET /v1/partners */
export const listPartners: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  await ctx.deps.storage.persistNonce(auth.claim);
  const list = await ctx.deps.storage.listPersonPartners(person.personId);
  return { status: 200, body: { partners: list.map(partnerView) } };
};

/** POST /v1/partners (Fig. 10, step 1003): search the shared directory, else add a private partner. */
export const addPartner: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  const body = parseJson(new TextDecoder().decode(ctx.body), AddPartnerRequest);
  await ctx.deps.storage.persistNonce(auth.claim);
  const rec = await ctx.deps.storage.addPersonPartner(
    person.personId,
    body.name,
    { displayName: body.displayName ?? null, appServer: body.appServer ?? null, business: body.business ?? null },
    ctx.now,
    body.partnerId,
  );
  return { status: 201, body: partnerView({ ...rec, name: body.name }) };
};

/** DELETE /v1/partners/{partnerName} */
export const removePartner: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  await ctx.deps.storage.persistNonce(auth.claim);
  const name = ctx.params.partnerName!;
  if (!(await ctx.deps.storage.removePersonPartner(person.personId, name))) throw new NotFoundError('unknown_partner', `partner ${name} is not in your list`);
  return { status: 200, body: { removed: name } };
};

/** GET /v1/directory/{partnerName}: the operator's shared partners are public, so verifiers can name them. */
export const directory: Handler = async (ctx) => {
  const p = await ctx.deps.storage.sharedPartner(ctx.params.partnerName!);
  if (!p) throw new NotFoundError('unknown_partner', `no shared partner is named ${ctx.params.partnerName}`);
  return { status: 200, body: partnerView(p) };
};
