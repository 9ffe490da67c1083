// Starts kmgrd: data directory, TLS, storage, HTTPS. Used by `kmgrd serve` and by tests.
import { resolve } from 'node:path';
import type { DestinationStream } from 'pino';
import { ensureOwnDir } from '../io/own-dir.js';
import { openStorage } from '../store/open.js';
import type { Storage } from '../store/types.js';
import { OWN_NAMES, checkNewDataDir } from '../store/marker.js';
import { checkTimeZone } from '../terms/periods.js';
import { ConfigError } from '../protocol/errors.js';
import { DEFAULT_RATE_PER_ADDRESS, DEFAULT_RATE_PER_KEY } from './defaults.js';
import { createApp, listen } from './app.js';
import { makeLogger, type Logger } from './logger.js';
import { loadTls } from './tls/files.js';
import { startAdminSocket } from './admin.js';
import { workerVerifier } from './verify-pool.js';
import { Deliverer } from './delivery/deliverer.js';
import type { MailConfig } from './delivery/mail.js';
import { createSecureContext } from 'node:tls';
import { existsSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { Metrics } from './metrics.js';
import { startMetricsServer } from './metrics-server.js';
import { AuditLog, readAuditKey } from './audit-log.js';
import { Authorities, certificateNames } from './authorities.js';


export interface DaemonOptions {
  dataDir: string;
  host: string;
  port: number;
  tlsCert?: string;
  tlsKey?: string;
  tz: string;
  logLevel: string;
  /** Requests per second per client address (0: unlimited). */
  ratePerAddress?: number;
  /** Requests per second per management key (0: unlimited). */
  ratePerKey?: number;
  clock?: () => number;
  logDest?: DestinationStream;
  /** Threads verifying request signatures; 0 verifies on the main thread. Default: 1. */
  verifyThreads?: number;
  /** E-mail for notices: an SMTP relay or sendmail, and the sender address. */
  mail?: MailConfig;
  /** Which webhook URLs the daemon calls. Default: https only. */
  webhooks?: 'https' | 'any';
  /** How often queued notices are delivered (ms). Default 1000. */
  deliverEveryMs?: number;
  /** Key records (and persons, and verification keys) kept in memory at most. Default DEFAULT_CACHE_KEYS. */
  cacheKeys?: number;
  /** Serve Prometheus metrics at http://HOST:PORT/metrics. */
  metricsListen?: { host: string; port: number };
  /** Append one JSON line per request here, with IDs HMAC'd under the key in auditKeyFile. */
  auditLog?: string;
  auditKeyFile?: string;
  /** postgres://... : keep everything in PostgreSQL (several nodes may share it); dataDir then holds only TLS files and the admin socket. */
  databaseUrl?: string;
  /** PostgreSQL connections this node keeps at most. Default 10. */
  dbPoolSize?: number;
  /** Longest one PostgreSQL statement may run (ms). Default 5000. */
  dbStatementTimeoutMs?: number;
  /** URLs kmgrd is reached by besides its --listen address and certificate names (behind a proxy). */
  publicUrls?: string[];
  /** Verify questions per second per address (0: unlimited). Default 10. */
  verifyPerAddress?: number;
  /** Enrolments per minute per address, IPv6 per /64 (0: unlimited). Default 10. */
  enrolPerAddressPerMinute?: number;
  /** Connections held at once per client address, IPv6 per /64 (0: unlimited). Default 256. */
  maxConnectionsPerAddress?: number;
  /** Test hooks: how long a new connection may wait before its first request, and for its headers (ms). */
  firstRequestMs?: number;
  headersTimeoutMs?: number;
}

/** What a SIGHUP did. */
export interface ReloadReport {
  tls: { reloaded: boolean; fingerprint256: string; error?: string };
  auditLog: { reopened: boolean; error?: string } | null;
}

export interface Daemon {
  url: string;
  port: number;
  fingerprint256: string;
  certPath: string;
  log: Logger;
  /** The notice deliverer; tests run passes directly. */
  deliverer: Deliverer;
  storage: Storage;
  /** The metrics listener's port, when --metrics-listen is given. */
  metricsPort?: number;
  /** SIGHUP: reload the TLS certificate and key (keeping the old ones if the new are bad), reopen the audit log. */
  reload(): Promise<ReloadReport>;
  /** The authorities signed requests must name (see authorities.ts). */
  authorities: Authorities;
  stop(): Promise<void>;
}

const certExpirySeconds = (pem: string): number => Math.floor(Date.parse(new X509Certificate(pem).validTo) / 1000);

export async function startDaemon(o: DaemonOptions): Promise<Daemon> {
  try {
    checkTimeZone(o.tz);
  } catch {
    throw new ConfigError(`unknown time zone: ${o.tz}`);
  }
  // Checked before anything is opened: a bad --public-url is a usage slip, not a half-started daemon.
  const authorities = new Authorities();
  for (const u of o.publicUrls ?? []) authorities.addUrl(u);
  const log = makeLogger(o.logLevel, o.logDest);
  const dataDir = resolve(o.dataDir);
  // Before anything is written there (tls/): a foreign directory is left as it was,
  // and a directory of kmgrd's own is tightened only if nobody else's files are in it.
  checkNewDataDir(dataDir);
  const tightened = await ensureOwnDir(dataDir, "kmgrd's data directory", (n) => OWN_NAMES.has(n) || n === 'lost+found' || n.startsWith('.'));
  if (tightened) log.warn(tightened);
  const tls = await loadTls(dataDir, o.tlsCert, o.tlsKey);
  const clock = o.clock ?? Date.now;
  if ((o.auditLog === undefined) !== (o.auditKeyFile === undefined)) throw new ConfigError('--audit-log and --audit-key-file go together');
  const audit = o.auditLog !== undefined ? await AuditLog.open(o.auditLog, await readAuditKey(o.auditKeyFile!)) : undefined;
  const threads = o.verifyThreads ?? 1;
  const verifier = threads > 0 ? workerVerifier(threads) : undefined;
  const metrics = o.metricsListen
    ? new Metrics({ verifyQueueDepth: () => verifier?.depth() ?? 0, cacheEntries: () => storage.cacheSizes?.() ?? {} })
    : undefined;
  metrics?.certExpiry.set(certExpirySeconds(tls.cert));
  const storage: Storage = await openStorage({
    dataDir,
    databaseUrl: o.databaseUrl,
    tz: o.tz,
    clock,
    poolSize: o.dbPoolSize,
    statementTimeoutMs: o.dbStatementTimeoutMs,
    pinTimeZone: true,
    // A connection dropped while idle (a database restart) costs no request; the pool reconnects.
    onPoolError: (e) => log.warn({ err: e.message }, 'database connection lost'),
    ...(o.cacheKeys !== undefined ? { cacheKeys: o.cacheKeys } : {}),
    ...(metrics
      ? {
          events: {
            commitBatch: (n: number) => {
              metrics.commitBatches.inc();
              metrics.commitBatchSize.observe(n);
            },
            notice: (kind: string) => metrics.notices.inc({ kind }),
          },
        }
      : {}),
  });
  let draining = false;
  const app = createApp({
    authorities,
    connections: {
      ...(o.maxConnectionsPerAddress !== undefined ? { perAddress: o.maxConnectionsPerAddress } : {}),
      ...(o.firstRequestMs !== undefined ? { firstRequestMs: o.firstRequestMs } : {}),
    },
    ...(o.headersTimeoutMs !== undefined ? { headersTimeoutMs: o.headersTimeoutMs } : {}),
    ...(o.verifyPerAddress !== undefined ? { verifyPerAddress: o.verifyPerAddress } : {}),
    ...(o.enrolPerAddressPerMinute !== undefined ? { enrolPerAddressPerMinute: o.enrolPerAddressPerMinute } : {}),
    ...(verifier ? { verifier } : {}),
    ...(metrics ? { metrics } : {}),
    ...(audit ? { audit } : {}),
    draining: () => draining,
    ...(o.cacheKeys !== undefined ? { cacheKeys: o.cacheKeys } : {}),
    storage,
    log,
    clock,
    tz: o.tz,
    cert: tls.cert,
    key: tls.key,
    ratePerAddress: o.ratePerAddress ?? DEFAULT_RATE_PER_ADDRESS,
    ratePerKey: o.ratePerKey ?? DEFAULT_RATE_PER_KEY,
  });
  let running;
  let admin;
  let metricsServer: Awaited<ReturnType<typeof startMetricsServer>> | undefined;
  try {
    admin = await startAdminSocket(dataDir, storage, clock, log);
    running = await listen(app, o.host, o.port);
  } catch (e) {
    admin?.close();
    await storage.close();
    await audit?.close();
    throw new ConfigError(`cannot listen on ${o.host}:${o.port}: ${(e as Error).message}`).because(e);
  }
  // The port is known only now (--listen HOST:0 picks one).
  if (!['0.0.0.0', '::', ''].includes(o.host)) authorities.add(`${o.host.includes(':') ? `[${o.host}]` : o.host}:${running.port}`);
  for (const name of certificateNames(tls.cert)) authorities.addCertificateName(name, running.port);
  if (metrics && o.metricsListen) {
    try {
      metricsServer = await startMetricsServer(metrics, o.metricsListen.host, o.metricsListen.port, log);
    } catch (e) {
      await running.stop(0);
      admin.close();
      await storage.close();
      await audit?.close();
      throw new ConfigError(`cannot listen for metrics on ${o.metricsListen.host}:${o.metricsListen.port}: ${(e as Error).message}`).because(e);
    }
  }
  const deliverer = new Deliverer(storage, {
    ...(o.mail ? { mail: o.mail } : {}),
    webhooks: o.webhooks ?? 'https',
    clock,
    log,
    ...(metrics ? { onAttempt: (channel: string, ok: boolean) => metrics.deliveries.inc({ channel, result: ok ? 'ok' : 'failed' }) } : {}),
  });
  deliverer.start(o.deliverEveryMs ?? 1000);
  const hostPart = o.host.includes(':') ? `[${o.host}]` : o.host;
  const url = `https://${hostPart}:${running.port}`;
  log.info({ url, port: running.port, storage: o.databaseUrl ? 'postgresql' : 'leveldb', tlsCert: tls.certPath, tlsFingerprint256: tls.fingerprint256, authorities: authorities.list(), generatedCert: tls.generated, tz: o.tz }, 'kmgrd listening');
  // A restored database serves counts as of its snapshot: say so at every start.
  const restoredFrom = storage.restoredFrom();
  if (restoredFrom) log.warn({ restoredFrom }, `database restored from a snapshot taken at ${restoredFrom.takenAt}`);
  let stopping: Promise<void> | undefined;
  const daemon: Daemon = {
    url,
    port: running.port,
    fingerprint256: tls.fingerprint256,
    certPath: tls.certPath,
    log,
    deliverer,
    storage,
    ...(metricsServer ? { metricsPort: metricsServer.port } : {}),
    async reload() {
      const report: ReloadReport = { tls: { reloaded: false, fingerprint256: daemon.fingerprint256 }, auditLog: null };
      try {
        // A missing self-signed certificate must not be silently replaced by a new one: clients pin it.
        if (!existsSync(tls.certPath)) throw new ConfigError(`TLS certificate not found: ${tls.certPath}`);
        const next = await loadTls(dataDir, o.tlsCert, o.tlsKey);
        // Built first, so a certificate that does not parse or does not match its key is refused
        // here and the old one keeps serving. Same options as createApp's (TLS 1.3 only).
        createSecureContext({ cert: next.cert, key: next.key, minVersion: 'TLSv1.3' });
        app.setSecureContext({ cert: next.cert, key: next.key, minVersion: 'TLSv1.3' });
        daemon.fingerprint256 = next.fingerprint256;
        // A renewed certificate may name the server anew: requests signed for those names are for us too.
        for (const name of certificateNames(next.cert)) authorities.addCertificateName(name, running.port);
        metrics?.certExpiry.set(certExpirySeconds(next.cert));
        report.tls = { reloaded: true, fingerprint256: next.fingerprint256 };
        log.info({ tlsCert: next.certPath, tlsFingerprint256: next.fingerprint256 }, 'TLS certificate reloaded');
      } catch (e) {
        report.tls.error = (e as Error).message;
        log.error({ err: report.tls.error, tlsFingerprint256: daemon.fingerprint256 }, 'TLS reload refused; still serving the previous certificate');
      }
      if (audit) {
        try {
          await audit.reopen();
          report.auditLog = { reopened: true };
          log.info({ auditLog: o.auditLog }, 'audit log reopened');
        } catch (e) {
          // Still writing to the old file (moved or not): nothing goes unaudited.
          report.auditLog = { reopened: false, error: (e as Error).message };
          log.error({ err: (e as Error).message }, 'audit log reopen failed; still writing to the previous file');
        }
      }
      return report;
    },
    authorities,
    stop() {
      stopping ??= (async () => {
        draining = true;
        if (metricsServer) await new Promise<void>((r) => metricsServer.server.close(() => r()));
        await running.stop();
        await new Promise<void>((r) => admin.close(() => r()));
        await deliverer.stop();
        await verifier?.close();
        await storage.close();
        await audit?.close();
        log.info('kmgrd stopped');
      })();
      return stopping;
    },
  };
  return daemon;
}
