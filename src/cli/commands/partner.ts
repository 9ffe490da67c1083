// kmgr partner add|list|show|rm: the local business partner index (Fig. 16).
import { ensurePrivateDir } from '../../io/atomic-file.js';
import { KmgrError } from '../../protocol/errors.js';
import { homePaths } from '../../client/home.js';
import { checkPartnerName, findPartner, loadPartners, newPartner, requirePartner, savePartners, type PartnerEntry } from '../../client/partners.js';
import { print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../kmgr.js';

interface AddOptions {
  name?: string;
  appServer?: string;
  business?: string;
}

export function partnerView(p: PartnerEntry): Record<string, unknown> {
  return {
    name: p.name,
    partnerId: p.id,
    displayName: p.displayName,
    appServer: p.appServer,
    business: p.business,
    key: p.key ? { keyId: p.key.keyId, type: p.key.alg, version: p.key.version, registeredAt: p.key.registeredAt } : null,
  };
}

export async function add(g: GlobalOptions, name: string, o: AddOptions): Promise<number> {
  const paths = homePaths(g.home);
  checkPartnerName(name);
  const idx = await loadPartners(paths);
  if (findPartner(idx, name)) throw new KmgrError('key_exists', `partner ${name} already exists`);
  const p = newPartner(name, { ...(o.name !== undefined ? { displayName: o.name } : {}), ...o });
  idx.partners.push(p);
  await ensurePrivateDir(paths.dir);
  await savePartners(paths, idx);
  if (g.json) printJson(partnerView(p));
  else print(`Added partner ${name} (ID ${p.id})`);
  return EXIT.OK;
}

export async function list(g: GlobalOptions): Promise<number> {
  const idx = await loadPartners(homePaths(g.home));
  if (g.json) printJson({ partners: idx.partners.map(partnerView) });
  else if (idx.partners.length === 0) print('No partners yet (kmgr partner add NAME, or kmgr register NAME).');
  else for (const p of idx.partners) print(`${p.name}\t${p.displayName ?? ''}\t${p.appServer ?? ''}\t${p.business ?? ''}`);
  return EXIT.OK;
}

export async function show(g: GlobalOptions, name: string): Promise<number> {
  const p = requirePartner(await loadPartners(homePaths(g.home)), name);
  if (g.json) printJson(partnerView(p));
  else {
    print(`name:        ${p.name}`);
    print(`partner ID:  ${p.id}`);
    print(`display:     ${p.displayName ?? '-'}`);
    print(`app server:  ${p.appServer ?? '-'}`);
    print(`business:    ${p.business ?? '-'}`);
    print(`key:         ${p.key ? `${p.key.alg} ${p.key.keyId} v${p.key.version}, registered ${p.key.registeredAt}` : 'none'}`);
  }
  return EXIT.OK;
}

export async function rm(g: GlobalOptions, name: string, o: { force?: boolean }): Promise<number> {
  const paths = homePaths(g.home);
  const idx = await loadPartners(paths);
  const p = requirePartner(idx, name);
  if (p.key && !o.force) {
    throw new KmgrError('key_exists', `partner ${name} has a registered key; removing it forgets how to fetch it (use --force to remove anyway)`);
  }
  idx.partners = idx.partners.filter((x) => x !== p);
  await savePartners(paths, idx);
  if (g.json) printJson({ removed: name });
  else print(`Removed partner ${name}`);
  return EXIT.OK;
}
