// kmgr status NAME: the key's index record (Fig. 15) as the server keeps it.
import { homePaths } from '../../client/home.js';
import { openForPartner } from '../session.js';
import { api } from '../../client/api.js';
import type { KeyStatus } from '../../protocol/messages.js';
import { printJson, printLine } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { validityText } from './cert.js';
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
    ssh: s.ssh ?? false,
    certificate: s.certificate ?? null,
  };
}

const lim = (n: number | null): string => (n === null ? 'no limit' : String(n));

export function printStatus(name: string, s: KeyStatus): void {
  printLine(`partner:     ${name} (${s.partnerId})`);
  printLine(`key:         ${s.alg} ${s.keyId} v${s.keyVersion}, registered ${s.registeredAt}`);
  printLine(`state:       ${s.inhibited ? 'LOCKED (use inhibited)' : 'permitted'}`);
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
}

export async function run(g: GlobalOptions, name: string, o: PassphraseSource): Promise<number> {
  const { session, partner } = await openForPartner(homePaths(g.home), name, o);
  const s = await api.status(session, partner.id);
  if (g.json) printJson(statusJson(name, s));
  else printStatus(name, s);
  return EXIT.OK;
}
