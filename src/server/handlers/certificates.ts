// The certificate chain kept beside a key (the seed: "the key management server
// may store and manage an electronic certificate as well as the key").
// Certificates are public, so they live on the key record, outside the sealed
// blob, and are stored through updateKey like any other change to the record.
// The server refuses a chain whose leaf certifies another key than the one the
// owner registered, or that does not link: a verifier or a renewal notice
// should never be about someone else's certificate.
import { parseJson } from '../../protocol/schema.js';
import { CertificatesRequest, type CertificatesView } from '../../protocol/messages.js';
import { KmgrError, NotFoundError } from '../../protocol/errors.js';
import { buildChain, parsePemCertificates, summarize, toPem } from '../../crypto/certs.js';
import { currentCertificates, keyStatusView } from '../views.js';
import type { StoredCertificates } from '../../store/types.js';
import type { Handler, RequestContext } from '../context.js';

const text = (ctx: RequestContext): string => new TextDecoder().decode(ctx.body);

/** PUT /v1/keys/{partnerId}/certificates */
export const putCertificates: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  const body = parseJson(text(ctx), CertificatesRequest);
  const partnerId = ctx.params.partnerId!;
  const rec = await ctx.deps.storage.getKey(person.personId, partnerId);
  if (!rec) throw new NotFoundError('unknown_key', `no key is registered for partner ${partnerId}`);
  if (body.keyVersion !== rec.keyVersion) {
    throw new KmgrError('version_conflict', `the key of ${partnerId} is at version ${rec.keyVersion}, not ${body.keyVersion}`);
  }
  let stored: StoredCertificates | null = null;
  if (body.certificates.length > 0) {
    if (!rec.publicKey) throw new KmgrError('key_type_unsupported', `the key of ${partnerId} has no registered public key to certify`);
    const chain = buildChain(parsePemCertificates(body.certificates.join('\n'), 'certificates'), rec.publicKey);
    const leaf = summarize(chain[0]!);
    stored = {
      keyVersion: rec.keyVersion,
      chain: chain.map(toPem),
      leaf: { subject: leaf.subject, issuer: leaf.issuer, serial: leaf.serial, notBefore: Date.parse(leaf.notBefore), notAfter: Date.parse(leaf.notAfter), fingerprint: leaf.fingerprint },
    };
  }
  const updated = await ctx.deps.storage.updateKey(person.personId, partnerId, { certificates: stored }, auth.claim);
  ctx.deps.log.info({ personId: person.personId, partnerId, certificates: stored?.chain.length ?? 0 }, 'certificates stored');
  return { status: 200, body: keyStatusView(updated, ctx.now, ctx.deps.tz) };
};

/** GET /v1/keys/{partnerId}/certificates */
export const getCertificates: Handler = async (ctx) => {
  const { person, auth } = await ctx.person();
  await ctx.deps.storage.persistNonce(auth.claim);
  const partnerId = ctx.params.partnerId!;
  const rec = await ctx.deps.storage.getKey(person.personId, partnerId);
  if (!rec) throw new NotFoundError('unknown_key', `no key is registered for partner ${partnerId}`);
  const body: CertificatesView = { keyVersion: rec.keyVersion, certificates: currentCertificates(rec)?.chain ?? [] };
  return { status: 200, body };
};
