// kmgr audit [NAME]: uses of our keys that this client did not make, and any
// history record the server could not have got from us. Exit 1 if any.
import { readFile } from 'node:fs/promises';
import { homePaths } from '../../client/home.js';
import { openSession } from '../../client/session.js';
import { loadPartners, requirePartner } from '../../client/partners.js';
import { api } from '../../client/api.js';
import { auditHistory, type AuditLine } from '../../client/audit.js';
import { publicKeyObject } from '../../crypto/sign.js';
import { print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../kmgr.js';
import type { PassphraseSource } from '../../client/passphrase.js';
import type { FetchLogEntry } from '../../client/fetch-log.js';

async function ourNonces(path: string): Promise<Set<string>> {
  let text = '';
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return new Set();
  }
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      out.add((JSON.parse(line) as FetchLogEntry).nonce);
    } catch {
      // A torn last line after a crash: that fetch never printed its key.
    }
  }
  return out;
}

export async function run(g: GlobalOptions, name: string | undefined, o: PassphraseSource): Promise<number> {
  const paths = homePaths(g.home);
  const idx = await loadPartners(paths);
  const partners = name !== undefined ? [requirePartner(idx, name)] : idx.partners.filter((p) => p.key);
  const session = await openSession(paths, o);
  const pub = publicKeyObject(session.publicKey);
  const nonces = await ourNonces(paths.fetchLog);
  const report: Array<{ partner: string; uses: number; ours: number; findings: AuditLine[] }> = [];
  for (const p of partners) {
    const history = await api.history(session, p.id, {});
    const lines = auditHistory(history, p.id, session.config.keyId, pub, nonces);
    const counted = lines.filter((l) => l.result !== 'refused' || l.verdict === 'forged');
    report.push({
      partner: p.name,
      uses: lines.filter((l) => l.result !== 'refused').length,
      ours: lines.filter((l) => l.result !== 'refused' && l.verdict === 'ours').length,
      findings: counted.filter((l) => l.verdict !== 'ours'),
    });
  }
  const total = report.reduce((n, r) => n + r.findings.length, 0);
  if (g.json) printJson({ clean: total === 0, partners: report });
  else {
    for (const r of report) {
      print(`${r.partner}: ${r.uses} use(s) on the server, ${r.ours} made by this client`);
      for (const f of r.findings) {
        print(
          f.verdict === 'forged'
            ? `  FORGED  ${f.at} v${f.keyVersion} #${f.seq}: ${f.why} (the server's record did not come from this key)`
            : `  OTHER   ${f.at} v${f.keyVersion} #${f.seq} from ${f.remoteAddress}${f.device ? ` (device ${f.device})` : ""}: signed by your management key, not made by this client`,
        );
      }
    }
    print(total === 0 ? 'Audit clean: every use was made by this client.' : `Audit found ${total} use(s) this client did not make.`);
  }
  return total === 0 ? EXIT.OK : EXIT.FINDINGS;
}
