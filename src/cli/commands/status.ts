// kmgr status NAME: the key's index record (Fig. 15) as the server keeps it.
import { homePaths } from '../../client/home.js';
import { openForPartner } from '../session.js';
import { api } from '../../client/api.js';
import type { KeyStatus } from '../../protocol/messages.js';
import { print, printJson, printLine } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { validityText } from './cert.js';
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
    ssh: s.ssh ?? false,
    certificate: s.certificate ?? null,
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
  printLine(`partner:     ${name} (${s.partnerId})`);
  printLine(`key:         ${s.alg} ${s.keyId} v${s.keyVersion}, registered ${s.registeredAt}`);
  printLine(`state:       ${s.retiredAt ? `RETIRED at ${s.retiredAt} (kmgr register ${name} makes a new key)` : s.inhibited ? 'LOCKED (use inhibited)' : 'permitted'}`);
  printLine(`valid until: ${s.expiresAt ?? 'no expiry'}`);
  printLine(`uses:        total ${s.uses.total} of ${lim(s.limits.total)}`);
  printLine(`             today ${s.uses.day} of ${lim(s.limits.day)}, this week ${s.uses.week} of ${lim(s.limits.week)}, this month ${s.uses.month} of ${lim(s.limits.month)}`);
  printLine(`on limit:    ${s.onLimit === 'deny' ? 'deny further uses' : 'serve and notify'}`);
  printLine(`last used:   ${s.lastUsedAt ?? 'never'}`);
  if (s.ssh) printLine(`ssh:         offered by kmgr agent start --ssh`);
  if (s.certificate) {
    printLine(`certificate: ${s.certificate.subject} (issuer ${s.certificate.issuer})`);
    printLine(`             valid ${validityText(s.certificate.notBefore, s.certificate.notAfter)}`);
  }
  // Several lines (PEM); print keeps newlines and cleans everything else.
  if (s.publicKey) print(`public key:\n${s.publicKey.trimEnd()}`);
  else if (s.alg === 'aes256') printLine('public key:  none (symmetric key)');
}

export async function run(g: GlobalOptions, name: string, o: PassphraseSource): Promise<number> {
  const { session, partner } = await openForPartner(homePaths(g.home), name, o);
  const s = withLocalPublicKey(await api.status(session, partner.id), partner);
  if (g.json) printJson(statusJson(name, s));
  else printStatus(name, s);
  return EXIT.OK;
}
