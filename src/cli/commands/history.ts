// kmgr history NAME: every use and refused attempt, newest first.
import { homePaths } from '../../client/home.js';
import { openForPartner } from '../session.js';
import { api } from '../../client/api.js';
import { print, printJson, printRow } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { parseTime } from '../parse.js';
import type { GlobalOptions } from '../options.js';
import type { PassphraseSource } from '../../client/passphrase.js';

interface HistoryOptions extends PassphraseSource {
  since?: string;
  limit?: number;
}

export async function run(g: GlobalOptions, name: string, o: HistoryOptions): Promise<number> {
  const since = o.since === undefined ? undefined : new Date(parseTime('--since', o.since)).toISOString();
  const { session, partner } = await openForPartner(homePaths(g.home), name, o);
  const list = await api.history(session, partner.id, { ...(since ? { since } : {}), ...(o.limit ? { limit: o.limit } : {}) });
  if (g.json) {
    printJson({
      partner: name,
      history: list.map((h) => ({
        seq: h.seq,
        at: h.at,
        result: h.result,
        code: h.code,
        overLimit: h.overLimit,
        keyVersion: h.keyVersion,
        remoteAddress: h.remoteAddress,
        device: h.request?.device || null,
        requester: h.requester,
      })),
    });
    return EXIT.OK;
  }
  if (list.length === 0) print(`No uses of ${name}${since ? ` since ${since}` : ''}.`);
  for (const h of list) {
    const what =
      h.result === 'verify' ? `verify question from ${h.requester}: ${h.code}`
      : h.result === 'refused' ? `refused (${h.code})`
      : h.result === 'served_over_limit' ? `served past ${h.overLimit?.join(', ')} limit`
      : 'served';
    const device = h.request?.device ? ` device ${h.request.device}` : '';
    printRow([h.at, `v${h.keyVersion}`, what, `from ${h.remoteAddress}${device}`]);
  }
  return EXIT.OK;
}
