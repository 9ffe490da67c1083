// The load generator: N keep-alive TLS 1.3 connections, each issuing its next
// request as soon as the previous answer has arrived, for a bounded time.
// Two clients: 'raw' (default) writes pre-built HTTP/1.1 bytes on tls sockets
// and parses just the status line and Content-Length, so the client costs the
// shared CPUs as little as possible; 'https' uses node:https with a keep-alive
// Agent (maxSockets = connections), as a cross-check.
import { connect, type TLSSocket } from 'node:tls';
import { Agent, request } from 'node:https';
import { percentileSorted } from './stats.js';
import type { Pool } from './pool.js';

export type ClientKind = 'raw' | 'https';

export interface LoadSpec {
  port: number;
  ca: string;
  connections: number;
  seconds: number;
  pool: Pool;
  /** Baselines may reuse the pool round-robin; kmgrd refuses replays, so its pool is used once. */
  cycle: boolean;
  client: ClientKind;
}

export interface LoadResult {
  ok: number;
  errors: number;
  errorKinds: Record<string, number>;
  errorSamples: string[];
  sent: number;
  elapsedMs: number;
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
  poolExhausted: boolean;
  reconnects: number;
  /** Requests answered before the clock started (the https client opens its sockets with one each): 2xx, other. */
  preOk: number;
  preErrors: number;
}

export interface PreparedLoad {
  /** Runs the load: resolves when the time is up and every request in flight has been answered (or has failed). */
  start(): Promise<LoadResult>;
  close(): void;
}

/** Drain limit after the deadline: requests still unanswered by then count as errors. */
const DRAIN_MS = 30_000;

class Recorder {
  ok = 0;
  errors = 0;
  sent = 0;
  errorKinds: Record<string, number> = {};
  errorSamples: string[] = [];
  lat: number[] = [];
  next = 0;
  poolExhausted = false;
  reconnects = 0;
  preOk = 0;
  preErrors = 0;
  t0 = 0;
  deadline = 0;
  lastDone = 0;

  constructor(private readonly spec: LoadSpec) {}

  take(): number | undefined {
    const n = this.spec.pool.requests.length;
    if (this.spec.cycle) return this.next++ % n;
    if (this.next >= n) {
      this.poolExhausted = true;
      return undefined;
    }
    return this.next++;
  }

  done(status: number, ms: number, text: string): void {
    this.lastDone = performance.now();
    if (status >= 200 && status < 300) {
      this.ok++;
      this.lat.push(ms);
    } else {
      let code = '';
      try {
        code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? '';
      } catch {
        /* not JSON */
      }
      this.fail(`HTTP ${status}${code ? ' ' + code : ''}`, text.slice(0, 300));
    }
  }

  fail(kind: string, sample: string): void {
    this.lastDone = performance.now();
    this.errors++;
    this.errorKinds[kind] = (this.errorKinds[kind] ?? 0) + 1;
    if (this.errorSamples.length < 5) this.errorSamples.push(`${kind}: ${sample}`);
  }

  result(): LoadResult {
    const sorted = Float64Array.from(this.lat).sort();
    const elapsedMs = Math.max(this.lastDone, this.deadline) - this.t0;
    let sum = 0;
    for (const x of sorted) sum += x;
    return {
      ok: this.ok,
      errors: this.errors,
      errorKinds: this.errorKinds,
      errorSamples: this.errorSamples,
      sent: this.sent,
      elapsedMs,
      rps: this.ok / (elapsedMs / 1000),
      p50: percentileSorted(sorted, 50),
      p90: percentileSorted(sorted, 90),
      p99: percentileSorted(sorted, 99),
      max: sorted.length ? sorted[sorted.length - 1]! : NaN,
      mean: sorted.length ? sum / sorted.length : NaN,
      poolExhausted: this.poolExhausted,
      reconnects: this.reconnects,
      preOk: this.preOk,
      preErrors: this.preErrors,
    };
  }
}

function tlsConnect(port: number, ca: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, ca, minVersion: 'TLSv1.3' });
    s.setNoDelay(true);
    s.once('secureConnect', () => {
      s.off('error', reject);
      // Until the load loop attaches its own handlers, an idle socket's error must not crash the run.
      s.on('error', () => undefined);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** The hand-rolled client: one request in flight per connection, pre-built bytes, minimal response parsing. */
async function prepareRaw(spec: LoadSpec): Promise<PreparedLoad> {
  const rec = new Recorder(spec);
  const sockets = await Promise.all(Array.from({ length: spec.connections }, () => tlsConnect(spec.port, spec.ca)));
  const live = new Set<TLSSocket>();
  let finish: (() => void) | undefined;
  let active = 0;
  let closed = false;

  // One slot per connection; a slot whose socket is dropped reconnects (counted) while time remains.
  const slot = (first: TLSSocket): void => {
    let finished = false;
    const stop = (): void => {
      if (finished) return;
      finished = true;
      if (--active === 0) finish?.();
    };
    const attach = (socket: TLSSocket): (() => void) => {
      live.add(socket);
      let buf: Buffer | null = null;
      let busy = false;
      let dead = false;
      let t = 0;
      const issue = (): void => {
        if (performance.now() >= rec.deadline) return stop();
        const i = rec.take();
        if (i === undefined) return stop();
        busy = true;
        rec.sent++;
        t = performance.now();
        socket.write(spec.pool.requests[i]!.raw!);
      };
      const lost = (why: string): void => {
        if (dead) return;
        dead = true;
        live.delete(socket);
        socket.destroy();
        if (busy) {
          busy = false;
          rec.fail(`socket ${why}`, why);
        }
        if (finished) return;
        if (closed || performance.now() >= rec.deadline) return stop();
        rec.reconnects++;
        tlsConnect(spec.port, spec.ca).then(
          (s) => {
            if (closed) {
              s.destroy();
              stop();
            } else attach(s)();
          },
          (e: Error) => {
            rec.fail('connect', e.message);
            stop();
          },
        );
      };
      socket.on('data', (chunk: Buffer) => {
        buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
        for (;;) {
          const b: Buffer | null = buf;
          if (b === null) return;
          const he: number = b.indexOf('\r\n\r\n');
          if (he < 0) return;
          const status = (b[9]! - 48) * 100 + (b[10]! - 48) * 10 + (b[11]! - 48);
          const head = b.toString('latin1', 0, he);
          const m = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
          if (!m) return lost('reply without content-length');
          const total: number = he + 4 + Number(m[1]);
          if (b.length < total) return;
          const text = status >= 200 && status < 300 ? '' : b.toString('utf8', he + 4, total);
          buf = b.length === total ? null : b.subarray(total);
          if (!busy) {
            rec.fail('unsolicited reply', head.slice(0, 80));
            continue;
          }
          busy = false;
          rec.done(status, performance.now() - t, text);
          issue();
        }
      });
      socket.on('error', (e: NodeJS.ErrnoException) => lost(`error ${e.code ?? e.message}`));
      socket.on('close', () => lost('closed by server'));
      return issue;
    };
    attach(first)();
  };

  return {
    start() {
      return new Promise<LoadResult>((resolve) => {
        const hard = setTimeout(() => {
          // Whatever is still unanswered long after the deadline is an error.
          for (const s of live) s.destroy(new Error('no reply within the drain limit'));
        }, spec.seconds * 1000 + DRAIN_MS);
        finish = () => {
          clearTimeout(hard);
          resolve(rec.result());
        };
        rec.t0 = performance.now();
        rec.deadline = rec.t0 + spec.seconds * 1000;
        active = sockets.length;
        for (const s of sockets) slot(s);
      });
    },
    close() {
      closed = true;
      for (const s of live) {
        s.removeAllListeners('close');
        s.removeAllListeners('error');
        s.on('error', () => undefined);
        s.destroy();
      }
      live.clear();
    },
  };
}

/** node:https with a keep-alive Agent; the sockets are opened (and a first request answered) before the clock starts. */
async function prepareHttps(spec: LoadSpec): Promise<PreparedLoad> {
  const rec = new Recorder(spec);
  const agent = new Agent({ keepAlive: true, maxSockets: spec.connections, maxFreeSockets: spec.connections, ca: spec.ca, minVersion: 'TLSv1.3' });
  const one = (i: number, cb: (status: number, text: string) => void, onErr: (e: Error) => void): void => {
    const r = spec.pool.requests[i]!;
    const req = request(
      { host: '127.0.0.1', port: spec.port, method: spec.pool.method, path: spec.pool.path, headers: r.headers, agent, ca: spec.ca, minVersion: 'TLSv1.3' },
      (res) => {
        const ok = res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => {
          if (!ok) chunks.push(c);
        });
        res.on('end', () => cb(res.statusCode ?? 0, ok ? '' : Buffer.concat(chunks).toString('utf8')));
        res.on('error', onErr);
      },
    );
    req.on('error', onErr);
    req.end(spec.pool.body);
  };
  // Warm-up: one request per connection, concurrently, to open the sockets.
  await Promise.all(
    Array.from({ length: spec.connections }, () => {
      const i = rec.take();
      if (i === undefined) return Promise.resolve();
      return new Promise<void>((resolve) =>
        one(
          i,
          (status) => {
            if (status >= 200 && status < 300) rec.preOk++;
            else rec.preErrors++;
            resolve();
          },
          () => {
            rec.preErrors++;
            resolve();
          },
        ),
      );
    }),
  );
  return {
    start() {
      return new Promise<LoadResult>((resolve) => {
        let active = spec.connections;
        const hard = setTimeout(() => agent.destroy(), spec.seconds * 1000 + DRAIN_MS);
        const stop = (): void => {
          if (--active === 0) {
            clearTimeout(hard);
            resolve(rec.result());
          }
        };
        const loop = (): void => {
          if (performance.now() >= rec.deadline) return stop();
          const i = rec.take();
          if (i === undefined) return stop();
          rec.sent++;
          const t = performance.now();
          one(
            i,
            (status, text) => {
              rec.done(status, performance.now() - t, text);
              loop();
            },
            (e) => {
              rec.fail(`request ${(e as NodeJS.ErrnoException).code ?? 'error'}`, e.message);
              loop();
            },
          );
        };
        rec.t0 = performance.now();
        rec.deadline = rec.t0 + spec.seconds * 1000;
        for (let c = 0; c < spec.connections; c++) loop();
      });
    },
    close() {
      agent.destroy();
    },
  };
}

export function prepareLoad(spec: LoadSpec): Promise<PreparedLoad> {
  return spec.client === 'raw' ? prepareRaw(spec) : prepareHttps(spec);
}
