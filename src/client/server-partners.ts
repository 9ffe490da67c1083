// The partner index on the server (second embodiment, Figs. 2, 10, 16). The
// local partners.json stays as this device's cache: what it knows of each
// key and the newest version it has seen (its rollback high-water mark).
import { NotFoundError } from '../protocol/errors.js';
import { PartnerList, PartnerView, type AddPartnerRequest } from '../protocol/messages.js';
import { signedRequest } from './http.js';
import { findPartner, savePartnerEntry, type PartnerEntry, type PartnerIndex } from './partners.js';
import type { Endpoint, Identity } from './http.js';
import type { HomePaths } from './home.js';

/** What these calls need of a session: a structural type, so that this module does not import the session that imports it. */
interface Session {
  endpoint: Endpoint;
  identity: Identity;
  paths: HomePaths;
}

export async function listServerPartners(s: Session): Promise<PartnerView[]> {
  return (await signedRequest(s.endpoint, s.identity, 'GET', '/v1/partners', undefined, PartnerList)).body.partners;
}

export async function addServerPartner(s: Session, req: AddPartnerRequest): Promise<PartnerView> {
  return (await signedRequest(s.endpoint, s.identity, 'POST', '/v1/partners', req, PartnerView)).body;
}

export async function removeServerPartner(s: Session, name: string): Promise<void> {
  await signedRequest(s.endpoint, s.identity, 'DELETE', `/v1/partners/${encodeURIComponent(name)}`, undefined, (v) => v);
}

export function entryFromView(v: PartnerView): PartnerEntry {
  return { id: v.partnerId, name: v.name, displayName: v.displayName, appServer: v.appServer, business: v.business, key: null, highWater: 0 };
}

/** Finds a partner in the server's list and caches it locally. */
export async function resolveServerPartner(s: Session, idx: PartnerIndex, name: string): Promise<PartnerEntry> {
  const local = findPartner(idx, name);
  if (local) return local;
  const found = (await listServerPartners(s)).find((p) => p.name === name);
  if (!found) throw new NotFoundError('unknown_partner', `unknown partner ${name} (see kmgr partner list)`);
  const entry = entryFromView(found);
  idx.partners.push(entry);
  await savePartnerEntry(s.paths, entry);
  return entry;
}

/** register's Fig. 10 step 1003: find the partner on the server, or add it there (a shared one if the operator has it). */
export async function ensureServerPartner(
  s: Session,
  idx: PartnerIndex,
  name: string,
  meta: { displayName?: string; appServer?: string; business?: string },
): Promise<{ entry: PartnerEntry }> {
  const local = findPartner(idx, name);
  if (local) return { entry: local };
  const existing = (await listServerPartners(s)).find((p) => p.name === name);
  const view = existing ?? (await addServerPartner(s, { name, ...meta }));
  return { entry: entryFromView(view) };
}
