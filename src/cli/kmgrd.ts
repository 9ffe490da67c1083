// kmgrd: the key server's command line.
import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { hostname } from 'node:os';
import type { MailConfig } from '../server/delivery/mail.js';
import { UsageError } from '../protocol/errors.js';
import { reportError } from './errors.js';
import { addExamples, KMGRD_EXAMPLES } from './help-examples.js';
import { SerialQueue } from '../io/serial-queue.js';
import { EXIT } from './exit-codes.js';
import { parseDuration, parseTime } from './parse.js';
import { version } from '../io/version.js';
import { DEFAULT_RATE_PER_ADDRESS, DEFAULT_RATE_PER_KEY } from '../server/defaults.js';

export const DEFAULT_DATA = process.env.KMGRD_DATA ?? './kmgr-data';

function parseListen(s: string, flag = '--listen'): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`${flag} must be HOST:PORT (for example 127.0.0.1:8443), not ${s}`);
  return { host: (m[1] ?? m[2])!, port };
}

export async function main(argv: string[]): Promise<number> {
  let json = argv.includes('--json');
  const program = new Command('kmgrd')
    .description('kmgr key server: stores sealed keys, counts and limits every use')
    .version(version())
    .exitOverride()
    .configureOutput({ outputError: () => undefined });
  let result: Promise<number> = Promise.resolve(EXIT.OK);

  const serveCmd = program
    .command('serve')
    .description('serve the HTTPS API until SIGTERM or SIGINT')
    .option('--data <dir>', 'data directory (LevelDB, TLS material, admin socket)', DEFAULT_DATA)
    .addOption(databaseUrlOption())
    .option('--db-pool-size <n>', 'PostgreSQL connections this node keeps at most', parseRate('--db-pool-size', 'a number of connections, 1 to 1000'), 10)
    .option('--db-statement-timeout <duration>', 'longest one PostgreSQL statement may run: 5s, 500ms', '5s')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8443')
    .option('--tls-cert <file>', 'PEM certificate (default: self-signed, made in DIR/tls on first start)')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option('--tz <zone>', 'time zone for per-day/week/month limits', 'UTC')
    .option('--rate-per-address <n>', 'requests per second allowed per client address, bursts of twice that (0: unlimited)', parseRate('--rate-per-address'), DEFAULT_RATE_PER_ADDRESS)
    .option('--rate-per-key <n>', 'requests per second allowed per management key (0: unlimited)', parseRate('--rate-per-key'), DEFAULT_RATE_PER_KEY)
    .option('--public-url <url>', 'a URL clients reach this server by, behind a proxy or load balancer (repeatable; the --listen address and the certificate names are always accepted)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--verify-per-address <n>', 'POST /v1/verify questions per second per client address, bursts of twice that (0: unlimited)', parseRate('--verify-per-address'), 10)
    .option('--enrol-per-address <n>', 'enrolments per minute per client address, IPv6 per /64 (0: unlimited)', parseRate('--enrol-per-address', 'a whole number of enrolments per minute (0 for unlimited)'), 10)
    .option('--max-connections-per-address <n>', 'connections held at once per client address, IPv6 per /64; raise it behind a proxy (0: unlimited)', parseRate('--max-connections-per-address', 'a whole number of connections (0 for unlimited)'), 256)
    .option('--verify-threads <n>', 'worker threads verifying request signatures (0: on the main thread)', parseRate('--verify-threads', 'a number of threads, 0 to 16'), 1)
    .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug']).default('info'))
    .option('--cache-keys <n>', 'key records (and as many persons) kept in memory at most; least recently used are evicted', parseRate('--cache-keys', 'a whole number of entries, at least 1'), 50_000)
    .option('--metrics-listen <host:port>', 'serve Prometheus metrics over plain HTTP at http://HOST:PORT/metrics (off by default), e.g. 127.0.0.1:9464')
    .option('--audit-log <file>', 'append one JSON line per request to FILE before answering it; a request that cannot be logged fails (SIGHUP reopens FILE)')
    .option('--audit-key-file <file>', 'HMAC key (at least 32 bytes, mode 0600) pseudonymising person and partner IDs in the audit log; make one with: openssl rand -hex 32')
    .addHelpText('after', '\nSignals: SIGTERM/SIGINT drain and stop; SIGHUP reloads the TLS certificate and key and reopens the audit log.\n\nExample:\n  kmgrd serve --data /var/lib/kmgrd --listen 0.0.0.0:8443 --metrics-listen 127.0.0.1:9464 \\\n    --audit-log /var/log/kmgrd/audit.jsonl --audit-key-file /etc/kmgrd/audit.key\n')
    .action((o: ServeOptions) => {
      result = serve(o);
    });
  withDeliveryOptions(serveCmd, '');

  const checkCmd = program
    .command('check-terms')
    .description('record notices for expired and soon-expiring keys; print one line per new finding (for cron)')
    .option('--data <dir>', 'data directory', DEFAULT_DATA)
    .addOption(databaseUrlOption())
    .option('--warn-before <duration>', 'warn this long before a key expires: 14d, 48h, 2w', '14d')
    .option('--at <time>', 'report what a check at this date-time (with a zone) would find; records and delivers nothing')
    .option('--all', 'print every current finding, not only those new since the last run')
    .option('--tz <zone>', 'time zone, when no daemon runs', 'UTC')
    .option('--json', 'print the findings as JSON')
    .action((o: { data: string; databaseUrl?: string; warnBefore: string; at?: string; all?: boolean; tz: string; json?: boolean; smtp?: string; sendmail?: string; mailFrom: string; webhooks: 'https' | 'any' }) => {
      json = Boolean(o.json);
      const warnBefore = parseDuration('--warn-before', o.warnBefore);
      const at = o.at === undefined ? undefined : parseTime('--at', o.at);
      const mail = mailConfig(o);
      result = import('./kmgrd/check-terms.js').then((m) =>
        m.run({
          data: o.data,
          ...(o.databaseUrl ? { databaseUrl: o.databaseUrl } : {}),
          warnBefore,
          tz: o.tz,
          webhooks: o.webhooks,
          ...(mail ? { mail } : {}),
          ...(at !== undefined ? { at } : {}),
          ...(o.all ? { all: true } : {}),
          ...(o.json ? { json: true } : {}),
        }),
      );
    });

  withDeliveryOptions(checkCmd, 'when no daemon runs: ');

  const partner = program.command('partner').description("manage the operator's shared partners, which every person can add by name");
  partner
    .command('add <name>')
    .description('add a shared partner; kmgrd assigns its ID')
    .option('--data <dir>', 'data directory', DEFAULT_DATA)
    .addOption(databaseUrlOption())
    .option('--name <text>', 'display name, e.g. "Bank A"')
    .option('--app-server <name>', 'application server name')
    .option('--business <text>', 'business contents')
    .option('--json', 'print the record as JSON')
    .action((name: string, o: { data: string; databaseUrl?: string; name?: string; appServer?: string; business?: string; json?: boolean }) => {
      result = import('./kmgrd/partner.js').then((m) => m.add({ ...o, tz: 'UTC' }, name));
    });
  partner
    .command('list')
    .description('list the shared partners')
    .option('--data <dir>', 'data directory', DEFAULT_DATA)
    .addOption(databaseUrlOption())
    .option('--json', 'print JSON')
    .action((o: { data: string; databaseUrl?: string; json?: boolean }) => {
      result = import('./kmgrd/partner.js').then((m) => m.list({ ...o, tz: 'UTC' }));
    });

  program
    .command('migrate')
    .description('copy a stopped LevelDB deployment (--data) into an empty PostgreSQL database and check the counts')
    .option('--data <dir>', 'data directory of the LevelDB deployment', DEFAULT_DATA)
    .addOption(databaseUrlOption())
    .option('--json', 'print what was copied as JSON')
    .action((o: { data: string; databaseUrl?: string; json?: boolean }) => {
      json = Boolean(o.json);
      result = import('./kmgrd/migrate.js').then((m) => m.run(o));
    });

  program
    .command('check-db')
    .description('read the whole database and report every inconsistency; exit 0 only when clean, 1 with findings')
    .option('--data <dir>', 'data directory', DEFAULT_DATA)
    .addOption(databaseUrlOption())
    .option('--json', 'print the report as JSON')
    .action((o: { data: string; databaseUrl?: string; json?: boolean }) => {
      result = import('./kmgrd/check-db.js').then((m) => m.run(o));
    });

  program
    .command('backup')
    .description('write a consistent, checksummed snapshot of the database to FILE (mode 0600), while kmgrd serve runs or not')
    .option('--data <dir>', 'data directory', DEFAULT_DATA)
    .addOption(databaseUrlOption())
    .requiredOption('--out <file>', 'the backup file to write (replaced atomically)')
    .option('--json', 'print the summary as JSON')
    .action((o: { data: string; databaseUrl?: string; out: string; json?: boolean }) => {
      json = Boolean(o.json);
      result = import('./kmgrd/backup.js').then((m) => m.backup(o));
    });
  program
    .command('restore <file>')
    .description('verify a backup and restore it into a new, empty data directory or PostgreSQL database; every key owner gets a notice')
    .option('--data <dir>', 'the new data directory (must not exist or be empty); required without --database-url')
    .addOption(databaseUrlOption())
    .option('--json', 'print the summary as JSON')
    .action((file: string, o: { data?: string; databaseUrl?: string; json?: boolean }) => {
      json = Boolean(o.json);
      result = import('./kmgrd/backup.js').then((m) => m.restore(file, o));
    });

  addExamples(program, KMGRD_EXAMPLES);
  if (argv.length === 0) {
    process.stderr.write(program.helpInformation());
    return EXIT.USAGE;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return await result;
  } catch (e) {
    return reportError(e, 'kmgrd', json);
  }
}

interface ServeOptions {
  data: string;
  databaseUrl?: string;
  dbPoolSize: number;
  dbStatementTimeout: string;
  listen: string;
  tlsCert?: string;
  tlsKey?: string;
  tz: string;
  logLevel: string;
  ratePerAddress: number;
  ratePerKey: number;
  verifyThreads: number;
  cacheKeys: number;
  metricsListen?: string;
  auditLog?: string;
  auditKeyFile?: string;
  publicUrl: string[];
  maxConnectionsPerAddress: number;
  verifyPerAddress: number;
  enrolPerAddress: number;
  smtp?: string;
  sendmail?: string;
  mailFrom: string;
  webhooks: 'https' | 'any';
}

export function mailConfig(o: { smtp?: string; sendmail?: string; mailFrom: string }): MailConfig | undefined {
  if (o.smtp && o.sendmail) throw new UsageError('give --smtp or --sendmail, not both');
  if (o.smtp) {
    const { host, port } = parseListen(o.smtp, '--smtp');
    return { from: o.mailFrom, smtp: { host, port } };
  }
  return o.sendmail ? { from: o.mailFrom, sendmail: o.sendmail } : undefined;
}

/** How notices leave the server: the same options for serve and for check-terms without a daemon. */
function withDeliveryOptions(c: Command, when: string): void {
  c.option('--smtp <host:port>', `${when}deliver notices by e-mail through this SMTP relay`)
    .option('--sendmail <path>', `${when}deliver notices by e-mail through this sendmail program`)
    .option('--mail-from <address>', 'sender address of notice e-mails', `kmgrd@${hostname()}`)
    .addOption(new Option('--webhooks <which>', `${when}which webhook URLs to call: https to public addresses only, or any http(s) URL`).choices(['https', 'any']).default('https'));
}

/** One spelling for every command that opens the database. The URL may carry a password: prefer the environment to argv. */
function databaseUrlOption(): Option {
  return new Option('--database-url <url>', 'store everything in PostgreSQL (postgres://USER@HOST:PORT/DB) instead of LevelDB in --data').env('KMGRD_DATABASE_URL');
}

/** 500ms, 5s, 2m: a timeout, which cron-style durations (14d) are too coarse for. */
function parseShortDuration(flag: string, v: string): number {
  const m = /^(\d{1,7})(ms|s|m)$/.exec(v);
  const ms = m ? Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 's' ? 1000 : 60_000) : 0;
  if (!m || ms < 1 || ms > 3_600_000) throw new UsageError(`${flag} takes a duration like 500ms, 5s or 1m (at most 60m), not ${JSON.stringify(v)}`);
  return ms;
}

function parseRate(flag: string, what = 'a whole number of requests per second (0 for unlimited)'): (v: string) => number {
  return (v) => {
    if (!/^\d{1,7}$/.test(v)) throw new UsageError(`${flag} takes ${what}, not ${JSON.stringify(v)}`);
    return Number(v);
  };
}

async function serve(o: ServeOptions): Promise<number> {
  const { host, port } = parseListen(o.listen);
  const mail = mailConfig(o);
  const metricsListen = o.metricsListen === undefined ? undefined : parseListen(o.metricsListen, '--metrics-listen');
  const statementTimeout = parseShortDuration('--db-statement-timeout', o.dbStatementTimeout);
  if (o.dbPoolSize < 1 || o.dbPoolSize > 1000) throw new UsageError('--db-pool-size takes a number of connections, 1 to 1000');
  const { startDaemon } = await import('../server/daemon.js');
  const daemon = await startDaemon({
    dataDir: resolve(o.data),
    ...(o.databaseUrl ? { databaseUrl: o.databaseUrl, dbPoolSize: o.dbPoolSize, dbStatementTimeoutMs: statementTimeout } : {}),
    host,
    port,
    ...(o.tlsCert ? { tlsCert: o.tlsCert } : {}),
    ...(o.tlsKey ? { tlsKey: o.tlsKey } : {}),
    tz: o.tz,
    logLevel: o.logLevel,
    ratePerAddress: o.ratePerAddress,
    ratePerKey: o.ratePerKey,
    verifyThreads: Math.min(o.verifyThreads, 16),
    publicUrls: o.publicUrl,
    maxConnectionsPerAddress: o.maxConnectionsPerAddress,
    verifyPerAddress: o.verifyPerAddress,
    enrolPerAddressPerMinute: o.enrolPerAddress,
    webhooks: o.webhooks,
    ...(mail ? { mail } : {}),
    ...(metricsListen ? { metricsListen } : {}),
    cacheKeys: Math.max(1, o.cacheKeys),
    ...(o.auditLog !== undefined ? { auditLog: resolve(o.auditLog) } : {}),
    ...(o.auditKeyFile !== undefined ? { auditKeyFile: resolve(o.auditKeyFile) } : {}),
  });
  // SIGHUP is for reloading (logrotate, certificate renewal), never for dying; reloads run one at a time.
  const reloads = new SerialQueue();
  const onHup = (): void => {
    daemon.log.info({ signal: 'SIGHUP' }, 'reloading TLS certificate and audit log');
    reloads.run(() => daemon.reload()).catch(() => undefined);
  };
  process.on('SIGHUP', onHup);
  await new Promise<void>((done) => {
    const stop = (signal: string): void => {
      process.off('SIGHUP', onHup);
      daemon.log.info({ signal }, 'stopping: finishing in-flight requests');
      void daemon.stop().then(done);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return EXIT.OK;
}
