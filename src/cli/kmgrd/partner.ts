// kmgrd partner add|list: the operator's shared partners, which every person
// on this server can add to their list by name (Fig. 10, step 1003).
import type { PartnerRecord } from '../../server/operator/admin-client.js';
import { print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { admin } from '../../server/operator/admin-client.js';

/** The same shape as the API's partner view, not the storage record. */
const view = (p: PartnerRecord): Record<string, unknown> => ({
  partnerId: p.partnerId,
  name: p.name,
  displayName: p.displayName,
  appServer: p.appServer,
  business: p.business,
  createdAt: new Date(p.createdAt).toISOString(),
});

export async function add(o: { data: string; databaseUrl?: string; tz: string; json?: boolean; name?: string; appServer?: string; business?: string }, name: string): Promise<number> {
  const { result } = await admin<PartnerRecord>(
    o.data,
    { op: 'partner-add', name, displayName: o.name ?? null, appServer: o.appServer ?? null, business: o.business ?? null },
    o.tz,
    undefined,
    o.databaseUrl,
  );
  if (o.json) printJson(view(result));
  else print(`Added shared partner ${result.name} (ID ${result.partnerId})`);
  return EXIT.OK;
}

export async function list(o: { data: string; databaseUrl?: string; tz: string; json?: boolean }): Promise<number> {
  const { result } = await admin<PartnerRecord[]>(o.data, { op: 'partner-list' }, o.tz, undefined, o.databaseUrl);
  if (o.json) printJson({ partners: result.map(view) });
  else if (result.length === 0) print('No shared partners (kmgrd partner add NAME).');
  else for (const p of result) print(`${p.name}\t${p.partnerId}\t${p.displayName ?? ''}\t${p.appServer ?? ''}\t${p.business ?? ''}`);
  return EXIT.OK;
}
