// kmgrd check-terms: run from cron. Prints one line per new finding, so cron
// mails exactly what changed since the last run; recording is idempotent.
import type { CheckReport } from '../../server/check-terms.js';
import { info, print, printJson, warn } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { admin } from '../../server/operator/admin-client.js';
import type { MailConfig } from '../../server/delivery/mail.js';

export interface CheckTermsOptions {
  data: string;
  databaseUrl?: string;
  warnBefore: number; // ms
  at?: number;
  all?: boolean;
  json?: boolean;
  tz: string;
  mail?: MailConfig;
  webhooks: 'https' | 'any';
}

export async function run(o: CheckTermsOptions): Promise<number> {
  const { result: report, via } = await admin<CheckReport>(
    o.data,
    { op: 'check-terms', warnMs: o.warnBefore, ...(o.at !== undefined ? { at: o.at } : {}) },
    o.tz,
    // No daemon to deliver later: one delivery pass now; what fails stays queued for the next run or the daemon.
    async (storage) => {
      if (o.at !== undefined) return; // --at only reports: nothing recorded, nothing delivered
      const { Deliverer } = await import('../../server/delivery/deliverer.js');
      const { makeLogger } = await import('../../server/logger.js');
      const log = makeLogger('error', process.stderr);
      try {
        await new Deliverer(storage, { ...(o.mail ? { mail: o.mail } : {}), webhooks: o.webhooks, clock: Date.now, log, skipUnconfigured: true }).runOnce();
      } catch (e) {
        // The findings are recorded; failing to deliver must not keep them from cron's mail.
        warn(`notices were recorded but not delivered: ${(e as Error).message}`);
      }
    },
    o.databaseUrl,
  );
  const shown = o.all ? report.findings : report.findings.filter((f) => f.isNew);
  if (!report.recorded) info(`as of ${report.at}: a report only, nothing was recorded`);
  if (o.json) printJson({ at: report.at, recorded: report.recorded, via, findings: shown });
  else for (const f of shown) print(`${f.kind}\t${f.personId}\t${f.partnerId}\tv${f.keyVersion}\t${f.expiresAt}\t${f.message}`);
  return EXIT.OK;
}
