// kmgr list: partners and their keys, from the local index (no passphrase needed).
import { homePaths } from '../../client/home.js';
import { loadPartners } from '../../client/partners.js';
import { print, printJson, printRow } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { partnerView } from './partner.js';
import type { GlobalOptions } from '../options.js';

export async function run(g: GlobalOptions): Promise<number> {
  const idx = await loadPartners(homePaths(g.home));
  if (g.json) {
    printJson({ partners: idx.partners.map(partnerView) });
    return EXIT.OK;
  }
  if (idx.partners.length === 0) {
    print('No partners yet (kmgr register NAME).');
    return EXIT.OK;
  }
  print('PARTNER\tTYPE\tVERSION\tKEY ID\tREGISTERED');
  for (const p of idx.partners) {
    printRow(p.key ? [p.name, p.key.alg, `v${p.key.version}`, p.key.keyId, p.key.registeredAt] : [p.name, '-', '-', '-', '-']);
  }
  return EXIT.OK;
}
