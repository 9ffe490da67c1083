// kmgr partner add|list|show|rm|push: the business partner index (Fig. 16),
// in this home directory or, chosen at init, on the server (Fig. 10).
import { ensurePrivateDir } from '../../io/atomic-file.js';
import { KmgrError, UsageError } from '../../protocol/errors.js';
import { homePaths, type HomePaths } from '../../client/home.js';
import { loadConfig, saveConfig } from '../../client/config.js';
import { exists } from '../../client/files.js';
import { openSession } from '../session.js';
import { addServerPartner, entryFromView, listServerPartners, removeServerPartner } from '../../client/server-partners.js';
import { checkPartnerName, findPartner, loadPartners, newPartner, requirePartner, savePartnerEntry, updatePartners, type PartnerEntry, type PartnerIndex } from '../../client/partners.js';
import type { PassphraseSource } from '../../client/passphrase.js';
import { print, printJson, printLine, printRow } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';

interface AddOptions extends PassphraseSource {
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

async function onServer(paths: HomePaths): Promise<boolean> {
  return (await exists(paths.config)) && (await loadConfig(paths)).partners === 'server';
}

/** The server's list, with what this device knows of each key merged in. */
async function serverIndex(paths: HomePaths, src: PassphraseSource): Promise<{ idx: PartnerIndex; list: PartnerEntry[]; session: Awaited<ReturnType<typeof openSession>> }> {
  const session = await openSession(paths, src);
  const idx = await loadPartners(paths);
  const list = (await listServerPartners(session)).map((v) => {
    const cached = idx.partners.find((p) => p.id === v.partnerId);
    return { ...entryFromView(v), key: cached?.key ?? null, highWater: cached?.highWater ?? 0 };
  });
  return { idx, list, session };
}

export async function add(g: GlobalOptions, name: string, o: AddOptions): Promise<number> {
  const paths = homePaths(g.home);
  checkPartnerName(name);
  const meta = {
    ...(o.name !== undefined ? { displayName: o.name } : {}),
    ...(o.appServer !== undefined ? { appServer: o.appServer } : {}),
    ...(o.business !== undefined ? { business: o.business } : {}),
  };
  const idx = await loadPartners(paths);
  if (findPartner(idx, name)) throw new KmgrError('key_exists', `partner ${name} already exists`);
  let p: PartnerEntry;
  if (await onServer(paths)) {
    const session = await openSession(paths, o);
    p = entryFromView(await addServerPartner(session, { name, ...meta }));
  } else p = newPartner(name, meta);
  await ensurePrivateDir(paths.dir);
  await savePartnerEntry(paths, p);
  if (g.json) printJson(partnerView(p));
  else print(`Added partner ${name} (ID ${p.id})`);
  return EXIT.OK;
}

export async function list(g: GlobalOptions, o: PassphraseSource): Promise<number> {
  const paths = homePaths(g.home);
  const partners = (await onServer(paths)) ? (await serverIndex(paths, o)).list : (await loadPartners(paths)).partners;
  if (g.json) printJson({ partners: partners.map(partnerView) });
  else if (partners.length === 0) print('No partners yet (kmgr partner add NAME, or kmgr register NAME).');
  else for (const p of partners) printRow([p.name, p.displayName ?? '', p.appServer ?? '', p.business ?? '']);
  return EXIT.OK;
}

export async function show(g: GlobalOptions, name: string, o: PassphraseSource): Promise<number> {
  const paths = homePaths(g.home);
  checkPartnerName(name);
  const p = (await onServer(paths))
    ? requirePartner({ v: 1, partners: (await serverIndex(paths, o)).list }, name)
    : requirePartner(await loadPartners(paths), name);
  if (g.json) printJson(partnerView(p));
  else {
    printLine(`name:        ${p.name}`);
    printLine(`partner ID:  ${p.id}`);
    printLine(`display:     ${p.displayName ?? '-'}`);
    printLine(`app server:  ${p.appServer ?? '-'}`);
    printLine(`business:    ${p.business ?? '-'}`);
    printLine(`key:         ${p.key ? `${p.key.alg} ${p.key.keyId} v${p.key.version}, registered ${p.key.registeredAt}` : 'none known to this device'}`);
  }
  return EXIT.OK;
}

export async function rm(g: GlobalOptions, name: string, o: PassphraseSource & { force?: boolean }): Promise<number> {
  const paths = homePaths(g.home);
  checkPartnerName(name);
  const server = await onServer(paths);
  const idx = await loadPartners(paths);
  const local = findPartner(idx, name);
  if (!server) requirePartner(idx, name);
  if (local?.key && !o.force) {
    throw new KmgrError('key_exists', `partner ${name} has a registered key; removing it forgets how to fetch it (use --force to remove anyway)`);
  }
  if (server) await removeServerPartner(await openSession(paths, o), name);
  await updatePartners(paths, (fresh) => {
    fresh.partners = fresh.partners.filter((x) => x.name !== name);
  });
  if (g.json) printJson({ removed: name });
  else print(`Removed partner ${name}`);
  return EXIT.OK;
}

/** Moves a local index to the server once, keeping each partner's ID (the sealed keys are bound to it). */
export async function push(g: GlobalOptions, o: PassphraseSource): Promise<number> {
  const paths = homePaths(g.home);
  const config = await loadConfig(paths);
  if (config.partners === 'server') throw new UsageError('the partner index is already on the server');
  const session = await openSession(paths, o);
  const idx = await loadPartners(paths);
  const already = new Set((await listServerPartners(session)).map((p) => p.partnerId));
  let moved = 0;
  for (const p of idx.partners) {
    if (already.has(p.id)) continue; // an earlier, interrupted push got this far
    await addServerPartner(session, {
      name: p.name,
      partnerId: p.id,
      ...(p.displayName !== null ? { displayName: p.displayName } : {}),
      ...(p.appServer !== null ? { appServer: p.appServer } : {}),
      ...(p.business !== null ? { business: p.business } : {}),
    });
    moved++;
  }
  await saveConfig(paths, { ...config, partners: 'server' });
  if (g.json) printJson({ moved, total: idx.partners.length });
  else print(`Moved ${moved} partner(s) to the server; the index now lives there for every device.`);
  return EXIT.OK;
}
