// kmgr retire NAME: the end of a key's life. The server destroys the sealed
// key (nobody, the owner included, can fetch it again), keeps its record and
// history, shown as retired, and the name can be registered anew (one version
// up, so the rollback mark still holds). Asked at a terminal; --yes in scripts.
import { homePaths } from '../../client/home.js';
import { openForPartner } from '../session.js';
import { api } from '../../client/api.js';
import { updatePartners } from '../../client/partners.js';
import { NotFoundError } from '../../protocol/errors.js';
import type { PassphraseSource } from '../../client/passphrase.js';
import { confirm } from '../confirm.js';
import { info, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { statusJson } from './status.js';
import type { GlobalOptions } from '../options.js';

export async function run(g: GlobalOptions, name: string, o: PassphraseSource & { yes?: boolean }): Promise<number> {
  const paths = homePaths(g.home);
  const { session, partner } = await openForPartner(paths, name, o);
  const current = await api.status(session, partner.id);
  if (current.retiredAt) throw new NotFoundError('unknown_key', `${name}'s key (v${current.keyVersion}) was retired at ${current.retiredAt} already`);
  await confirm(
    `Retire ${name}'s ${current.alg} key v${current.keyVersion} (${current.uses.total} uses)? The server destroys it: it can never be fetched again.`,
    `retiring ${name}'s key`,
    o.yes,
  );
  const s = await api.retire(session, partner.id);
  // The index forgets the key but keeps the partner and its high-water mark: a new key is one version up.
  await updatePartners(paths, (idx) => {
    const p = idx.partners.find((x) => x.id === partner.id);
    if (p) {
      p.highWater = Math.max(p.highWater, s.keyVersion);
      p.key = null;
    }
  });
  if (g.json) printJson(statusJson(name, s));
  else info(`Retired ${name}'s key v${s.keyVersion}; its history stays (kmgr history ${name}), and kmgr register ${name} makes a new key.`);
  return EXIT.OK;
}
