// kmgr notices: what the server has to tell the owner (expired and expiring
// keys, limits reached or passed, refused attempts).
import { homePaths } from '../../client/home.js';
import { openSession } from '../session.js';
import { loadPartners } from '../../client/partners.js';
import { api } from '../../client/api.js';
import { print, printJson, printRow } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';
import type { PassphraseSource } from '../../client/passphrase.js';

interface NoticesOptions extends PassphraseSource {
  ack?: boolean;
  all?: boolean;
}

export async function run(g: GlobalOptions, o: NoticesOptions): Promise<number> {
  const paths = homePaths(g.home);
  const session = await openSession(paths, o);
  const idx = await loadPartners(paths);
  const nameOf = new Map(idx.partners.map((p) => [p.id, p.name]));
  const list = await api.notices(session, !o.all);
  const unread = list.filter((n) => !n.read).map((n) => n.id);
  const acknowledged = o.ack && unread.length > 0 ? await api.ack(session, unread) : 0;
  // The server names partners by ID only; put the owner's names back.
  const withNames = list.map((n) => ({ ...n, partner: nameOf.get(n.partnerId) ?? null, message: n.message.replace(n.partnerId, nameOf.get(n.partnerId) ?? n.partnerId) }));
  if (g.json) printJson({ notices: withNames, acknowledged });
  else {
    if (withNames.length === 0) print(o.all ? 'No notices.' : 'No unread notices.');
    for (const n of withNames) printRow([n.at, n.kind, `${n.read ? '' : '(new) '}${n.message}`]);
    if (o.ack && acknowledged > 0) print(`Marked ${acknowledged} notice(s) read.`);
  }
  return EXIT.OK;
}
