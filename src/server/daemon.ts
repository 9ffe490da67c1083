// Starts kmgrd: data directory, TLS, storage, HTTPS. Used by `kmgrd serve` and by tests.
import { resolve } from 'node:path';
import type { DestinationStream } from 'pino';
import { ensurePrivateDir } from '../io/atomic-file.js';
import { openStorage } from '../store/open.js';
import { checkNewDataDir, type DataMarker } from '../store/marker.js';
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

export interface Daemon {
  url: string;
  port: number;
  fingerprint256: string;
  certPath: string;
  log: Logger;
  /** The notice deliverer; tests run passes directly. */
  deliverer: Deliverer;
  /** The authorities signed requests must name (see authorities.ts). */
  authorities: Authorities;
  stop(): Promise<void>;
}

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
  // Before anything is written there (tls/): a foreign directory is left as it was.
  checkNewDataDir(dataDir);
  await ensurePrivateDir(dataDir);
  const tls = await loadTls(dataDir, o.tlsCert, o.tlsKey);
  const clock = o.clock ?? Date.now;
  const storage = await openStorage({
    dataDir,
    databaseUrl: o.databaseUrl,
    tz: o.tz,
    clock,
    poolSize: o.dbPoolSize,
    statementTimeoutMs: o.dbStatementTimeoutMs,
    pinTimeZone: true,
    // A connection dropped while idle (a database restart) costs no request; the pool reconnects.
    onPoolError: (e) => log.warn({ err: e.message }, 'database connection lost'),
  });
  const threads = o.verifyThreads ?? 1;
  const verifier = threads > 0 ? workerVerifier(threads) : undefined;
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
  try {
    admin = await startAdminSocket(dataDir, storage, clock, log);
    running = await listen(app, o.host, o.port);
  } catch (e) {
    admin?.close();
    await storage.close();
    throw new ConfigError(`cannot listen on ${o.host}:${o.port}: ${(e as Error).message}`).because(e);
  }
  // The port is known only now (--listen HOST:0 picks one).
  if (!['0.0.0.0', '::', ''].includes(o.host)) authorities.add(`${o.host.includes(':') ? `[${o.host}]` : o.host}:${running.port}`);
  for (const name of certificateNames(tls.cert)) authorities.addCertificateName(name, running.port);
  const deliverer = new Deliverer(storage, { ...(o.mail ? { mail: o.mail } : {}), webhooks: o.webhooks ?? 'https', clock, log });
  deliverer.start(o.deliverEveryMs ?? 1000);
  const hostPart = o.host.includes(':') ? `[${o.host}]` : o.host;
  const url = `https://${hostPart}:${running.port}`;
  log.info({ url, port: running.port, storage: o.databaseUrl ? 'postgresql' : 'leveldb', tlsCert: tls.certPath, tlsFingerprint256: tls.fingerprint256, authorities: authorities.list(), generatedCert: tls.generated, tz: o.tz }, 'kmgrd listening');
  // A restored database serves counts as of its snapshot: say so at every start.
  const restoredFrom = (storage as { marker?: DataMarker }).marker?.restoredFrom;
  if (restoredFrom) log.warn({ restoredFrom }, `database restored from a snapshot taken at ${restoredFrom.takenAt}`);
  let stopping: Promise<void> | undefined;
  return {
    url,
    port: running.port,
    fingerprint256: tls.fingerprint256,
    certPath: tls.certPath,
    log,
    deliverer,
    authorities,
    stop() {
      stopping ??= (async () => {
        await running.stop();
        await new Promise<void>((r) => admin.close(() => r()));
        await deliverer.stop();
        await verifier?.close();
        await storage.close();
        log.info('kmgrd stopped');
      })();
      return stopping;
    },
  };
}
