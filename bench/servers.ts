// One benchmark server per child process, so that its CPU accounting is its own.
//   node dist/bench/servers.js bare
//   node dist/bench/servers.js verify <keyId> <publicKeyB64url>
//   node dist/bench/servers.js durable <keyId> <publicKeyB64url>
//     (verify-only plus one fsync'd append per request, concurrent fsyncs coalesced:
//     the least any server that verifies and durably records each request must do)
//   node dist/bench/servers.js kmgrd [high|off|default] [postgres://... [tls-dir]]
//     (kmgrd's rate limits: 'high' sets them to 1e9/s so the limiter runs but never
//     refuses one client's load; 'off' is 0 (disabled); 'default' leaves kmgrd's own)
// Talks to the parent over the fork IPC channel: sends {type:'ready', port,
// certPem, dataDir?}, answers {type:'cpu'} with process.cpuUsage(), stops on
// {type:'stop'}, on SIGINT/SIGTERM, or when the parent goes away.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, open, readFile, rm, type FileHandle } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeSelfSignedCert } from '../src/server/tls/selfsigned.js';
import { authenticate } from '../src/server/auth.js';
import { publicKeyObject } from '../src/crypto/sign.js';
import { fromB64url } from '../src/crypto/bytes.js';
import { KmgrError, toWire } from '../src/protocol/errors.js';
import { startDaemon, type Daemon } from '../src/server/daemon.js';

export type Role = 'bare' | 'verify' | 'durable' | 'kmgrd';

export type ToChild = { type: 'cpu'; id: number } | { type: 'stop' };
export type FromChild =
  | { type: 'ready'; role: Role; port: number; certPem: string; dataDir?: string; pid: number }
  | { type: 'cpu'; id: number; usage: NodeJS.CpuUsage; mainThreadUs: number | null; rss: number }
  | { type: 'failed'; message: string };

/** The baselines' fixed answer: exactly 200 bytes of JSON. */
export function fixedBody(): string {
  const head = '{"ok":true,"note":"kmgr bench baseline","pad":"';
  const tail = '"}';
  const s = head + 'x'.repeat(200 - head.length - tail.length) + tail;
  if (Buffer.byteLength(s) !== 200) throw new Error('fixed body is not 200 bytes');
  return s;
}

// The same TLS and HTTP settings as kmgrd's createApp (src/server/app.ts).
function serverOptions(certPem: string, keyPem: string) {
  return {
    cert: certPem,
    key: keyPem,
    minVersion: 'TLSv1.3' as const,
    maxHeaderSize: 16 * 1024,
    requestTimeout: 30_000,
    headersTimeout: 10_000,
    keepAliveTimeout: 5_000,
  };
}

function send(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

/**
 * CPU time of the main (JavaScript) thread alone, from /proc (Linux; 10 ms ticks at
 * CLK_TCK 100). process.cpuUsage() covers every thread: the libuv pool (LevelDB
 * writes and fsync), LevelDB's compaction thread and V8's GC helpers as well.
 */
function mainThreadUs(): number | null {
  try {
    const s = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10_000;
  } catch {
    return null;
  }
}

function reply(m: FromChild): void {
  process.send?.(m);
}

const cleanups: Array<() => Promise<void>> = [];

/**
 * An append-only file with group commit: appends made while an fdatasync runs wait
 * for the next one, which covers them all (as kmgrd's LevelDB group commit does).
 */
class Journal {
  private waiting: Array<{ line: string; done: (e?: Error) => void }> = [];
  private busy = false;
  private constructor(private readonly fh: FileHandle, readonly dir: string) {}

  static async open(): Promise<Journal> {
    const dir = await mkdtemp(join(tmpdir(), 'kmgr-bench-journal-'));
    return new Journal(await open(join(dir, 'journal'), 'a'), dir);
  }

  append(line: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ line, done: (e) => (e ? reject(e) : resolve()) });
      if (!this.busy) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.busy = true;
    while (this.waiting.length > 0) {
      const group = this.waiting;
      this.waiting = [];
      try {
        await this.fh.write(group.map((g) => g.line).join(''));
        await this.fh.datasync();
        for (const g of group) g.done();
      } catch (e) {
        for (const g of group) g.done(e as Error);
      }
    }
    this.busy = false;
  }

  async close(): Promise<void> {
    await this.fh.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const role = process.argv[2] as Role;
  let stop: () => Promise<void>;
  if (role === 'bare' || role === 'verify' || role === 'durable') {
    const tls = makeSelfSignedCert();
    const body = fixedBody();
    let handler: (req: IncomingMessage, res: ServerResponse) => void;
    if (role === 'bare') {
      handler = (req, res) => {
        req.resume();
        req.on('end', () => send(res, 200, body));
      };
    } else {
      const keyId = process.argv[3]!;
      const raw = fromB64url(process.argv[4] ?? '');
      if (!raw) throw new Error('verify: public key missing');
      const key = { raw, obj: publicKeyObject(raw) }; // cached KeyObject: created once
      const keyFor = (id: string) => Promise.resolve(id === keyId ? key : undefined);
      const journal = role === 'durable' ? await Journal.open() : undefined;
      if (journal) cleanups.push(() => journal.close());
      handler = (req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const url = req.url ?? '/';
          const q = url.indexOf('?');
          const path = q < 0 ? url : url.slice(0, q);
          const query = q < 0 ? '' : url.slice(q);
          authenticate(req, path, query, new Uint8Array(Buffer.concat(chunks)), Date.now(), keyFor).then(
            (auth) => (journal ? journal.append(`${auth.claim.keyId} ${auth.claim.nonce} ${Date.now()}\n`).then(() => send(res, 200, body)) : send(res, 200, body)),
            (e) => send(res, e instanceof KmgrError ? 401 : 500, JSON.stringify(e instanceof KmgrError ? toWire(e) : { error: String(e) })),
          );
        });
      };
    }
    const server = createServer(serverOptions(tls.certPem, tls.keyPem), handler);
    server.on('tlsClientError', () => undefined);
    const port = await listen(server);
    stop = () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }).then(async () => {
        for (const c of cleanups) await c();
      });
    reply({ type: 'ready', role, port, certPem: tls.certPem, pid: process.pid });
  } else if (role === 'kmgrd') {
    const dataDir = await mkdtemp(join(tmpdir(), 'kmgr-bench-data-'));
    let daemon: Daemon;
    try {
      // Logs go to stdout (the parent reads them and counts errors), as `kmgrd serve` does.
      const mode = process.argv[3] ?? 'high';
      // The spread-keys run enrols many persons from one address: the enrolment limit is off unless defaults are asked for.
      const rates = mode === 'default' ? {} : mode === 'off' ? { ratePerAddress: 0, ratePerKey: 0, enrolPerAddressPerMinute: 0 } : { ratePerAddress: 1e9, ratePerKey: 1e9, enrolPerAddressPerMinute: 0 };
      // Not a literal: builds against a DaemonOptions with or without the rate options.
      const databaseUrl = process.argv[4];
      const tlsDir = process.argv[5];
      // Two nodes on one database serve one certificate, as behind a load balancer.
      const tls = tlsDir ? { tlsCert: join(tlsDir, 'cert.pem'), tlsKey: join(tlsDir, 'key.pem') } : {};
      const opts = { dataDir, host: '127.0.0.1', port: 0, tz: 'UTC', logLevel: 'info', ...rates, ...(databaseUrl ? { databaseUrl, dbPoolSize: 20 } : {}), ...tls };
      daemon = await startDaemon(opts);
    } catch (e) {
      await rm(dataDir, { recursive: true, force: true });
      throw e;
    }
    const certPem = await readFile(daemon.certPath, 'utf8');
    stop = async () => {
      try {
        await daemon.stop();
      } finally {
        await rm(dataDir, { recursive: true, force: true });
      }
    };
    reply({ type: 'ready', role, port: daemon.port, certPem, dataDir, pid: process.pid });
  } else {
    throw new Error(`unknown role: ${String(role)}`);
  }

  let stopping = false;
  const shutdown = (): void => {
    if (stopping) return;
    stopping = true;
    const hard = setTimeout(() => process.exit(1), 15_000);
    hard.unref();
    stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('message', (m: ToChild) => {
    if (m.type === 'cpu') reply({ type: 'cpu', id: m.id, usage: process.cpuUsage(), mainThreadUs: mainThreadUs(), rss: process.memoryUsage.rss() });
    else if (m.type === 'stop') shutdown();
  });
  process.on('disconnect', shutdown);
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

main().catch((e: unknown) => {
  reply({ type: 'failed', message: e instanceof Error ? e.stack ?? e.message : String(e) });
  process.exit(1);
});
