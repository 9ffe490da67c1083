// kmgrd check-terms: run from cron. Reaches the running daemon over its admin
// socket, or opens the database itself when no daemon runs. Prints one line
// per new finding, so cron mails exactly what changed since the last run.
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { adminSocketPath, type AdminRequest } from '../../server/admin.js';
import { checkTerms, type CheckReport } from '../../server/check-terms.js';
import { LevelStorage } from '../../store/level-storage.js';
import { UnavailableError } from '../../protocol/errors.js';
import { print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';

export interface CheckTermsOptions {
  data: string;
  warnBefore: number; // ms
  at?: number;
  all?: boolean;
  json?: boolean;
  tz: string;
}

function askDaemon(socket: string, req: AdminRequest): Promise<CheckReport | undefined> {
  return new Promise((done, fail) => {
    const sock = connect(socket);
    let buf = '';
    sock.setEncoding('utf8');
    sock.setTimeout(120_000, () => sock.destroy(new Error('the daemon did not answer on its admin socket')));
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (c: string) => (buf += c));
    sock.on('end', () => {
      try {
        const reply = JSON.parse(buf) as CheckReport | { error: string };
        if ('error' in reply) fail(new UnavailableError(`the daemon refused check-terms: ${reply.error}`));
        else done(reply);
      } catch {
        fail(new UnavailableError('the daemon sent an unreadable answer on its admin socket'));
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      // No daemon: the caller opens the database itself.
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') done(undefined);
      else fail(new UnavailableError(`cannot use the admin socket ${socket}: ${e.message}`));
    });
  });
}

export async function run(o: CheckTermsOptions): Promise<number> {
  const dataDir = resolve(o.data);
  const req: AdminRequest = { op: 'check-terms', warnMs: o.warnBefore, ...(o.at !== undefined ? { at: o.at } : {}) };
  let report = await askDaemon(adminSocketPath(dataDir), req);
  let via = 'daemon';
  if (!report) {
    via = 'database';
    const storage = await LevelStorage.open(join(dataDir, 'db'), { tz: o.tz, clock: Date.now });
    try {
      report = await checkTerms(storage, o.at ?? Date.now(), o.warnBefore);
    } finally {
      await storage.close();
    }
  }
  const shown = o.all ? report.findings : report.findings.filter((f) => f.isNew);
  if (o.json) printJson({ at: report.at, via, findings: shown });
  else for (const f of shown) print(`${f.kind}\t${f.personId}\t${f.partnerId}\tv${f.keyVersion}\t${f.expiresAt}\t${f.message}`);
  return EXIT.OK;
}
