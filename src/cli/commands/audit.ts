// kmgr audit [NAME]: uses of our keys that this client did not make, and any
// history record the server could not have got from us. Exit 1 if any.
import { checkNotWritableByOthers, readIfExists } from '../../client/files.js';
import { homePaths } from '../../client/home.js';
import type { Session } from '../../client/session.js';
import { openForPartner, openSession } from '../session.js';
import { loadPartners, type PartnerEntry } from '../../client/partners.js';
import { api } from '../../client/api.js';
import { auditHistory, missingUses, type AuditLine, type ServedUse } from '../../client/audit.js';
import { publicKeyObject } from '../../crypto/sign.js';
import { KmgrError } from '../../protocol/errors.js';
import { printJson, printLine } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';
import type { PassphraseSource } from '../../client/passphrase.js';
import type { FetchLogEntry, SentLogEntry } from '../../client/fetch-log.js';

/** The lines of a JSON-lines log; a torn line (a crash mid-write: that fetch never printed its key) is skipped. */
async function readLog(path: string): Promise<Array<Partial<FetchLogEntry & SentLogEntry>>> {
  // Checked as every state file is: whoever could write a log could hide or invent uses.
  const text = await readIfExists(path);
  if (text === undefined) return [];
  await checkNotWritableByOthers(path);
  const out: Array<Partial<FetchLogEntry & SentLogEntry>> = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      const e = JSON.parse(line) as unknown;
      if (e !== null && typeof e === 'object' && typeof (e as { nonce?: unknown }).nonce === 'string') out.push(e);
    } catch {
      // torn
    }
  }
  return out;
}

const nonceSet = (lines: Array<{ nonce?: string }>): Set<string> => new Set(lines.map((l) => l.nonce!));

export async function run(g: GlobalOptions, name: string | undefined, o: PassphraseSource): Promise<number> {
  const paths = homePaths(g.home);
  let session: Session;
  let partners: PartnerEntry[];
  if (name !== undefined) {
    const opened = await openForPartner(paths, name, o);
    session = opened.session;
    partners = [opened.partner];
  } else {
    session = await openSession(paths, o);
    partners = session.config.partners === 'server' ? await allServerPartners(session) : (await loadPartners(paths)).partners.filter((p) => p.key);
  }
  const pub = publicKeyObject(session.publicKey);
  const fetchLog = await readLog(paths.fetchLog);
  const sentLog = await readLog(paths.sentLog);
  const outcome = (o: SentLogEntry['outcome']): Set<string> => nonceSet(sentLog.filter((l) => l.outcome === o));
  const ours = {
    opened: nonceSet([...fetchLog, ...sentLog.filter((l) => l.outcome === 'served')]),
    sent: nonceSet(sentLog),
    refused: outcome('refused'),
    unanswered: outcome('unanswered'),
    rejected: outcome('rejected'),
  };
  // The uses this client was served, by partner: each must be in the server's history.
  const servedTo = (partnerId: string): ServedUse[] =>
    [...fetchLog, ...sentLog.filter((l) => l.outcome === 'served')]
      .filter((l) => l.partnerId === partnerId && typeof l.keyVersion === 'number' && (l.server === undefined || l.server === session.config.server))
      .map((l) => ({ nonce: l.nonce!, keyVersion: l.keyVersion!, at: String(l.at ?? '') }));
  const report: Array<{
    partner: string; uses: number; ours: number; unfinished: number; counted: number; findings: AuditLine[]; countMismatch: boolean;
    missing: Array<ServedUse & { why: string }>;
  }> = [];
  for (const p of partners) {
    let history;
    try {
      history = await api.history(session, p.id, {});
    } catch (e) {
      // A partner on the server's list with no key registered has nothing to audit.
      if (name === undefined && e instanceof KmgrError && e.code === 'unknown_key') continue;
      throw e;
    }
    let lines = auditHistory(history, p.id, session.config.keyId, pub, ours);
    // The counter of the current version must match the history's served uses of it.
    // A use between the two reads would look like a mismatch: read both again before saying so.
    let status = await api.status(session, p.id);
    const servedAt = (ls: AuditLine[], version: number): number => ls.filter((l) => l.result !== 'refused' && l.keyVersion === version).length;
    if (status.uses.total !== servedAt(lines, status.keyVersion)) {
      lines = auditHistory(await api.history(session, p.id, {}), p.id, session.config.keyId, pub, ours);
      status = await api.status(session, p.id);
    }
    const uses = lines.filter((l) => l.result !== 'refused');
    const counted = status.uses.total;
    const servedNow = servedAt(lines, status.keyVersion);
    report.push({
      partner: p.name,
      uses: uses.length,
      ours: uses.filter((l) => l.verdict === 'ours').length,
      unfinished: uses.filter((l) => l.verdict === 'unfinished').length,
      counted,
      countMismatch: counted !== servedNow,
      findings: lines.filter((l) => l.verdict === 'forged' || l.verdict === 'undelivered' || (l.verdict === 'not_ours' && l.result !== 'refused')),
      missing: missingUses(history, servedTo(p.id)),
    });
  }
  const total = report.reduce((n, r) => n + r.findings.length + (r.countMismatch ? 1 : 0) + (r.missing.length > 0 ? 1 : 0), 0);
  if (g.json) printJson({ clean: total === 0, partners: report });
  else {
    for (const r of report) {
      const extra = r.unfinished > 0 ? `, ${r.unfinished} sent by it whose reply never arrived` : '';
      printLine(`${r.partner}: ${r.uses} use(s) on the server, ${r.ours} made by this client${extra}`);
      if (r.countMismatch) printLine(`  COUNT   the server counts ${r.counted} use(s) of the current version, but its history shows a different number`);
      if (r.missing.length > 0) {
        printLine(`  MISSING the server's history lacks ${r.missing.length} of this client's uses (a damaged or restored server, or a hidden use)`);
        for (const m of r.missing) printLine(`          ${m.at} v${m.keyVersion} nonce ${m.nonce}: ${m.why}`);
      }
      for (const f of r.findings) {
        printLine(
          f.verdict === 'forged'
            ? `  FORGED  ${f.at} v${f.keyVersion} #${f.seq}: ${f.why} (the server's record did not come from this key)`
            : f.verdict === 'undelivered'
            ? `  NO KEY  ${f.at} v${f.keyVersion} #${f.seq}: ${f.why}`
            : `  OTHER   ${f.at} v${f.keyVersion} #${f.seq} from ${f.remoteAddress}${f.device ? ` (device ${f.device})` : ''}: signed by your management key, not made by this client`,
        );
      }
    }
    const unfinished = report.reduce((n, r) => n + r.unfinished, 0);
    printLine(
      total > 0 ? `Audit found ${total} problem(s): uses this client did not make, or records that do not hold up.`
      : unfinished > 0 ? `Audit clean: every use was made by this client (${unfinished} of them never got their reply).`
      : 'Audit clean: every use was made by this client.',
    );
  }
  return total === 0 ? EXIT.OK : EXIT.FINDINGS;
}

async function allServerPartners(session: Session): Promise<PartnerEntry[]> {
  const { listServerPartners, entryFromView } = await import('../../client/server-partners.js');
  return (await listServerPartners(session)).map(entryFromView);
}
