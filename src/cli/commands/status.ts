// kmgr status NAME: the key's index record (Fig. 15) as the server keeps it.
import { homePaths } from '../../client/home.js';
import { openForPartner } from '../session.js';
import { api } from '../../client/api.js';
import type { KeyStatus } from '../../protocol/messages.js';
import { print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';
import type { PassphraseSource } from '../../client/passphrase.js';
import type { PartnerEntry } from '../../client/partners.js';

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
    publicKey: s.publicKey,
    retiredAt: s.retiredAt ?? null,
  };
}

/**
 * The public key as this client registered it, where the index has it for the
 * version the server names: the copy we made ourselves beats the server's word.
 */
export function withLocalPublicKey(s: KeyStatus, p: PartnerEntry): KeyStatus {
  const local = p.key && p.key.version === s.keyVersion && p.key.keyId === s.keyId ? p.key.publicKey : null;
  return local ? { ...s, publicKey: local } : s;
}

const lim = (n: number | null): string => (n === null ? 'no limit' : String(n));

export function printStatus(name: string, s: KeyStatus): void {
  print(`partner:     ${name} (${s.partnerId})`);
  print(`key:         ${s.alg} ${s.keyId} v${s.keyVersion}, registered ${s.registeredAt}`);
  print(`state:       ${s.retiredAt ? `RETIRED at ${s.retiredAt} (kmgr register ${name} makes a new key)` : s.inhibited ? 'LOCKED (use inhibited)' : 'permitted'}`);
  print(`valid until: ${s.expiresAt ?? 'no expiry'}`);
  print(`uses:        total ${s.uses.total} of ${lim(s.limits.total)}`);
  print(`             today ${s.uses.day} of ${lim(s.limits.day)}, this week ${s.uses.week} of ${lim(s.limits.week)}, this month ${s.uses.month} of ${lim(s.limits.month)}`);
  print(`on limit:    ${s.onLimit === 'deny' ? 'deny further uses' : 'serve and notify'}`);
  print(`last used:   ${s.lastUsedAt ?? 'never'}`);
  if (s.publicKey) print(`public key:\n${s.publicKey.trimEnd()}`);
  else if (s.alg === 'aes256') print('public key:  none (symmetric key)');
}

export async function run(g: GlobalOptions, name: string, o: PassphraseSource): Promise<number> {
  const { session, partner } = await openForPartner(homePaths(g.home), name, o);
  const s = withLocalPublicKey(await api.status(session, partner.id), partner);
  if (g.json) printJson(statusJson(name, s));
  else printStatus(name, s);
  return EXIT.OK;
}
