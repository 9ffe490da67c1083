// kmgr status NAME: the key's index record (Fig. 15) as the server keeps it.
import { homePaths } from '../../client/home.js';
import { openForPartner } from '../session.js';
import { api } from '../../client/api.js';
import type { KeyStatus } from '../../protocol/messages.js';
import { print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';
import type { PassphraseSource } from '../../client/passphrase.js';

export function statusJson(name: string, s: KeyStatus): Record<string, unknown> {
  return {
    partner: name,
    partnerId: s.partnerId,
    keyId: s.keyId,
    type: s.alg,
    keyVersion: s.keyVersion,
    registeredAt: s.registeredAt,
    uses: s.uses,
    limits: s.limits,
    onLimit: s.onLimit,
    expiresAt: s.expiresAt,
    inhibited: s.inhibited,
    lastUsedAt: s.lastUsedAt,
  };
}

const lim = (n: number | null): string => (n === null ? 'no limit' : String(n));

export function printStatus(name: string, s: KeyStatus): void {
  print(`partner:     ${name} (${s.partnerId})`);
  print(`key:         ${s.alg} ${s.keyId} v${s.keyVersion}, registered ${s.registeredAt}`);
  print(`state:       ${s.inhibited ? 'LOCKED (use inhibited)' : 'permitted'}`);
  print(`valid until: ${s.expiresAt ?? 'no expiry'}`);
  print(`uses:        total ${s.uses.total} of ${lim(s.limits.total)}`);
  print(`             today ${s.uses.day} of ${lim(s.limits.day)}, this week ${s.uses.week} of ${lim(s.limits.week)}, this month ${s.uses.month} of ${lim(s.limits.month)}`);
  print(`on limit:    ${s.onLimit === 'deny' ? 'deny further uses' : 'serve and notify'}`);
  print(`last used:   ${s.lastUsedAt ?? 'never'}`);
}

export async function run(g: GlobalOptions, name: string, o: PassphraseSource): Promise<number> {
  const { session, partner } = await openForPartner(homePaths(g.home), name, o);
  const s = await api.status(session, partner.id);
  if (g.json) printJson(statusJson(name, s));
  else printStatus(name, s);
  return EXIT.OK;
}
