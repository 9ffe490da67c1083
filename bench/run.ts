// npm run bench: kmgrd against the bare-HTTPS limit and the verify-one-signature
// limit, driven by the same load generator, interleaved over several rounds; then
// the CLI's end-to-end time against `node -e 0`. See issue 5, "Benchmark".
//
//   node dist/bench/run.js [--seconds N] [--rounds N] [--quick] [--connections 10,50]
//                          [--client raw|https] [--cli-runs N] [--no-cli] [--no-http]
//                          [--cpu-prof] [--no-postgres] [--spread N] [--out FILE]
//
// kmgrd runs on LevelDB and on PostgreSQL (KMGR_BENCH_DATABASE_URL, default the
// machine's server at 127.0.0.1:5432; the bench makes a database of its own and
// drops it), on one hot key and on keys spread over many persons, and on
// PostgreSQL also as two nodes on one database.
//
// Every server runs in its own child process (bench/servers.ts) so its CPU time
// is its own; the load generator runs here. Only 127.0.0.1 is used.
import { fork, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { cpus, loadavg, platform, release, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import type { FromChild, Role, ToChild } from './servers.js';
import { newIdentity, signPool, type BenchIdentity, type Pool } from './pool.js';
import { prepareLoad, type ClientKind, type LoadResult } from './load.js';
import { fmt, median, table } from './stats.js';
import { timeCli, type CliTiming } from './cli.js';
import { summariseProfile, type ProfileSummary } from './profile.js';
import { signedRequest } from '../src/client/http.js';
import { KeyStatus, PersonInfo } from '../src/protocol/messages.js';
import { sealBlob } from '../src/crypto/blob.js';
import { toB64 } from '../src/crypto/bytes.js';
import { createDatabase, dropDatabase, unreachable } from '../src/store/pg/databases.js';
import { pgCpuBetween, samplePgCpu } from './pgcpu.js';

const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = join(HERE, '..', '..');
const SERVERS_JS = join(HERE, 'servers.js');
const RESULTS = join(ROOT, 'bench', 'results');

const GOALS = { vsBare: 0.3, vsVerify: 0.85, p99Ms: 50, agentRatio: 2.0, atConnections: 50, postgresOverLevel: 0.5, kmgrdOverDurableVerify: 0.9 };

function mergeLogs(ls: LogStats[]): LogStats {
  return { lines: ls.reduce((a, l) => a + l.lines, 0), problems: ls.reduce((a, l) => a + l.problems, 0), samples: ls.flatMap((l) => l.samples).slice(0, 10) };
}
/** Signatures live 60 s from signing (DEFAULT_LIFETIME_SECONDS): a run must end well inside that. */
const MAX_SECONDS = 45;
const MAX_POOL = 200_000;
const BASELINE_POOL = 4096;

// ---------- options ----------

interface Options {
  seconds: number;
  rounds: number;
  connections: number[];
  client: ClientKind;
  cliRuns: number;
  cli: boolean;
  http: boolean;
  cpuProf: boolean;
  warmupSeconds: number;
  out: string;
  quick: boolean;
  rateLimits: 'high' | 'off' | 'default';
  postgres: boolean;
  spread: number;
}

function usage(msg?: string): never {
  if (msg) console.error(`bench: ${msg}`);
  (msg ? console.error : console.log)(
    'usage: node dist/bench/run.js [--seconds N] [--rounds N] [--quick] [--connections 10,50] [--client raw|https]\n' +
      '                              [--cli-runs N] [--no-cli] [--no-http] [--cpu-prof] [--rate-limits high|off|default]\n' +
      '                              [--no-postgres] [--spread N] [--out FILE]\n' +
      '  PostgreSQL: KMGR_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres); --spread: persons for the spread-keys runs.\n' +
      '  --rate-limits: kmgrd\'s per-address and per-key limits; high (the default here) sets them to 1e9/s, so the\n' +
      '  limiter runs but never refuses the one benchmark client; off disables them; default keeps kmgrd\'s own.',
  );
  process.exit(msg ? 64 : 0);
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    seconds: 5, rounds: 3, connections: [10, 50], client: 'raw', cliRuns: 10, cli: true, http: true, cpuProf: false,
    warmupSeconds: 1, out: join(RESULTS, 'latest.json'), quick: false, rateLimits: 'high', postgres: true, spread: 64,
  };
  let seconds: number | undefined;
  let rounds: number | undefined;
  let cliRuns: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) usage(`${flag} needs a value`);
      return v;
    };
    const num = (min: number): number => {
      const v = Number(value());
      if (!Number.isFinite(v) || v < min) usage(`${flag} must be a number >= ${min}`);
      return v;
    };
    switch (flag) {
      case '--seconds': seconds = num(0.5); break;
      case '--rounds': rounds = Math.floor(num(1)); break;
      case '--quick': o.quick = true; break;
      case '--connections':
        o.connections = value().split(',').map((s) => Math.floor(Number(s)));
        if (o.connections.some((c) => !(c >= 1 && c <= 1000))) usage('--connections takes numbers 1-1000, e.g. 10,50');
        break;
      case '--client': {
        const v = value();
        if (v !== 'raw' && v !== 'https') usage('--client is raw or https');
        o.client = v;
        break;
      }
      case '--cli-runs': cliRuns = Math.floor(num(1)); break;
      case '--no-cli': o.cli = false; break;
      case '--no-http': o.http = false; break;
      case '--cpu-prof': o.cpuProf = true; break;
      case '--no-postgres': o.postgres = false; break;
      case '--spread': o.spread = Math.floor(num(2)); break;
      case '--out': o.out = value(); break;
      case '--rate-limits': {
        const v = value();
        if (v !== 'high' && v !== 'off' && v !== 'default') usage('--rate-limits is high, off or default');
        o.rateLimits = v;
        break;
      }
      case '-h': case '--help': return usage();
      default: usage(`unknown option ${a}`);
    }
  }
  if (o.quick) {
    o.seconds = 2;
    o.rounds = 1;
    o.cliRuns = 5;
    o.warmupSeconds = 0.5;
  }
  if (seconds !== undefined) o.seconds = seconds;
  if (rounds !== undefined) o.rounds = rounds;
  if (cliRuns !== undefined) o.cliRuns = cliRuns;
  if (o.seconds > MAX_SECONDS) usage(`--seconds is at most ${MAX_SECONDS}: the pre-signed requests expire 60 s after signing`);
  return o;
}

// ---------- child servers ----------

interface LogStats {
  lines: number;
  problems: number;
  samples: string[];
}

class ServerProc {
  port = 0;
  certPem = '';
  dataDir: string | undefined;
  readonly log: LogStats = { lines: 0, problems: 0, samples: [] };
  private seq = 0;
  private readonly pending = new Map<number, (u: NodeJS.CpuUsage, main: number | null) => void>();
  private exited: Promise<void>;

  private constructor(readonly role: Role, readonly child: ChildProcess) {
    this.exited = new Promise((r) => child.once('exit', () => r()));
    const note = (line: string, stream: 'stdout' | 'stderr'): void => {
      if (line.trim() === '') return;
      this.log.lines++;
      let bad = stream === 'stderr';
      try {
        const j = JSON.parse(line) as { level?: number };
        bad = (j.level ?? 0) >= 40; // pino: 40 warn, 50 error, 60 fatal
      } catch {
        /* not a log line */
      }
      if (bad) {
        this.log.problems++;
        if (this.log.samples.length < 10) this.log.samples.push(`${stream}: ${line.slice(0, 400)}`);
      }
    };
    createInterface({ input: child.stdout! }).on('line', (l) => note(l, 'stdout'));
    createInterface({ input: child.stderr! }).on('line', (l) => note(l, 'stderr'));
    child.on('message', (m: FromChild) => {
      if (m.type === 'cpu') {
        this.pending.get(m.id)?.(m.usage, m.mainThreadUs);
        this.pending.delete(m.id);
      }
    });
  }

  static async start(role: Role, args: string[], execArgv: string[]): Promise<ServerProc> {
    const child = fork(SERVERS_JS, [role, ...args], { execArgv, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    const p = new ServerProc(role, child);
    children.add(p);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${role} server did not start within 60 s`)), 60_000);
      child.on('message', (m: FromChild) => {
        if (m.type === 'ready') {
          clearTimeout(timer);
          p.port = m.port;
          p.certPem = m.certPem;
          p.dataDir = m.dataDir;
          resolve();
        } else if (m.type === 'failed') {
          clearTimeout(timer);
          reject(new Error(`${role} server failed to start: ${m.message}`));
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${role} server exited (${code}) before it was ready`));
      });
    });
    return p;
  }

  /** Whole-process CPU µs, and the main thread's alone (null where /proc is missing). */
  cpu(): Promise<{ total: number; main: number | null }> {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.role} server did not report its CPU time`)), 10_000);
      this.pending.set(id, (u, main) => {
        clearTimeout(timer);
        resolve({ total: u.user + u.system, main });
      });
      this.child.send({ type: 'cpu', id } satisfies ToChild);
    });
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(): Promise<void> {
    if (this.alive) {
      try {
        this.child.send({ type: 'stop' } satisfies ToChild);
      } catch {
        /* channel already closed */
      }
      const t = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
      await this.exited;
      clearTimeout(t);
    }
    children.delete(this);
    if (this.dataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

const children = new Set<ServerProc>();
const temps = new Set<string>();

function killEverything(): void {
  for (const c of children) {
    if (c.alive) c.child.kill('SIGKILL');
    if (c.dataDir) rmSync(c.dataDir, { recursive: true, force: true });
  }
  for (const d of temps) rmSync(d, { recursive: true, force: true });
}
process.on('exit', killEverything);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    console.error(`\nbench: ${sig}, stopping the servers`);
    killEverything();
    process.exit(130);
  });
}

// ---------- kmgrd set-up: one person, one key without limits ----------

async function enrolAndRegister(d: ServerProc, id: BenchIdentity): Promise<{ personId: string; partnerId: string }> {
  const ep = { server: `https://127.0.0.1:${d.port}`, ca: d.certPem };
  const who = { keyId: id.keyId, signer: id.signer };
  const person = await signedRequest(ep, who, 'POST', '/v1/persons', { alg: 'ed25519', publicKey: id.publicKeyB64url }, PersonInfo);
  const personId = person.body.personId;
  const partnerId = randomBytes(16).toString('base64url');
  const keyId = 'k_' + randomBytes(16).toString('base64url').slice(0, 22);
  const blob = sealBlob(new Uint8Array(randomBytes(32)), { personId, partnerId, keyId, alg: 'ed25519', keyVersion: 1 }, new Uint8Array(randomBytes(32)));
  await signedRequest(
    ep,
    who,
    'PUT',
    `/v1/keys/${partnerId}`,
    {
      keyId,
      alg: 'ed25519',
      keyVersion: 1,
      blob: toB64(blob),
      terms: { expiresAt: null, maxUses: null, maxPerDay: null, maxPerWeek: null, maxPerMonth: null, onLimit: 'deny' },
    },
    KeyStatus,
  );
  return { personId, partnerId };
}

/** The spread-keys load: one key for each of many persons, requests interleaved over them. */
interface Spread {
  ids: BenchIdentity[];
  partners: string[];
}

async function registerSpread(d: ServerProc, ids: BenchIdentity[]): Promise<Spread> {
  const partners: string[] = [];
  for (let i = 0; i < ids.length; i += 16) {
    const got = await Promise.all(ids.slice(i, i + 16).map((id) => enrolAndRegister(d, id)));
    partners.push(...got.map((g) => g.partnerId));
  }
  return { ids, partners };
}

/** Pre-signed fetches spread round-robin over the persons' keys (raw client: each request carries its own path). */
function spreadPool(sp: Spread, port: number, size: number, format: 'raw' | 'headers'): Pool {
  const per = Math.ceil(size / sp.ids.length);
  const pools = sp.ids.map((id, i) => signPool(id, port, 'POST', `/v1/keys/${sp.partners[i]}/fetch`, {}, per, format));
  const requests = [];
  for (let j = 0; j < per; j++) for (const p of pools) requests.push(p.requests[j]!);
  return { ...pools[0]!, requests, signMs: pools.reduce((a, p) => a + p.signMs, 0), signedAt: Math.min(...pools.map((p) => p.signedAt)) };
}

// ---------- one measured run ----------

type Kind = 'bare' | 'verify-only' | 'durable-verify' | 'kmgrd' | 'kmgrd-spread' | 'kmgrd-pg' | 'kmgrd-pg-spread' | 'kmgrd-pg-2nodes';
const BASE_KINDS: Kind[] = ['bare', 'verify-only', 'durable-verify', 'kmgrd', 'kmgrd-spread'];
const PG_KINDS: Kind[] = ['kmgrd-pg', 'kmgrd-pg-spread', 'kmgrd-pg-2nodes'];
const isKmgrd = (k: Kind): boolean => k.startsWith('kmgrd');

interface RunRecord extends LoadResult {
  round: number;
  connections: number;
  server: Kind;
  seconds: number;
  poolSize: number;
  signMs: number;
  serverCpuUsPerReq: number;
  serverMainThreadCpuUsPerReq: number;
  /** PostgreSQL's backends for the bench database (kmgrd-pg runs); NaN elsewhere. */
  postgresCpuUsPerReq: number;
  clientCpuUsPerReq: number;
  loadavg1: number;
}

/** Several nodes' results as one: counts and rates add up; p50 weighted by successes, p99 and max the worst node's. */
function combine(rs: LoadResult[]): LoadResult {
  if (rs.length === 1) return rs[0]!;
  const ok = rs.reduce((a, r) => a + r.ok, 0);
  const kinds: Record<string, number> = {};
  for (const r of rs) for (const [k, v] of Object.entries(r.errorKinds)) kinds[k] = (kinds[k] ?? 0) + v;
  const w = (f: (r: LoadResult) => number) => (ok > 0 ? rs.reduce((a, r) => a + f(r) * r.ok, 0) / ok : NaN);
  return {
    ok,
    errors: rs.reduce((a, r) => a + r.errors, 0),
    errorKinds: kinds,
    errorSamples: rs.flatMap((r) => r.errorSamples).slice(0, 5),
    sent: rs.reduce((a, r) => a + r.sent, 0),
    elapsedMs: Math.max(...rs.map((r) => r.elapsedMs)),
    rps: rs.reduce((a, r) => a + r.rps, 0),
    p50: w((r) => r.p50),
    p90: Math.max(...rs.map((r) => r.p90)),
    p99: Math.max(...rs.map((r) => r.p99)),
    max: Math.max(...rs.map((r) => r.max)),
    mean: w((r) => r.mean),
    poolExhausted: rs.some((r) => r.poolExhausted),
    reconnects: rs.reduce((a, r) => a + r.reconnects, 0),
    preOk: rs.reduce((a, r) => a + r.preOk, 0),
    preErrors: rs.reduce((a, r) => a + r.preErrors, 0),
  };
}

/** One run against one or more nodes at once, the connections split evenly; pools[i] is signed for procs[i]. */
async function measure(
  procs: ServerProc[],
  pools: Pool[],
  cycle: boolean,
  connections: number,
  seconds: number,
  client: ClientKind,
  pg?: { adminUrl: string; dbUrl: string },
): Promise<{ res: LoadResult; serverCpuUs: number; serverMainUs: number; clientCpuUs: number; postgresCpuUs: number }> {
  const per = Math.max(1, Math.floor(connections / procs.length));
  const prepared = await Promise.all(procs.map((p, i) => prepareLoad({ port: p.port, ca: p.certPem, connections: per, seconds, pool: pools[i]!, cycle, client })));
  try {
    const s0 = await Promise.all(procs.map((p) => p.cpu()));
    const g0 = pg ? await samplePgCpu(pg.adminUrl, pg.dbUrl) : undefined;
    const c0 = process.cpuUsage();
    const res = combine(await Promise.all(prepared.map((x) => x.start())));
    const c1 = process.cpuUsage(c0);
    const g1 = pg ? await samplePgCpu(pg.adminUrl, pg.dbUrl) : undefined;
    const s1 = await Promise.all(procs.map((p) => p.cpu()));
    const n = res.ok + res.errors;
    const sum = (f: (i: number) => number) => procs.reduce((a, _, i) => a + f(i), 0);
    const mainKnown = s0.every((x) => x.main !== null) && s1.every((x) => x.main !== null);
    return {
      res,
      serverCpuUs: n > 0 ? sum((i) => s1[i]!.total - s0[i]!.total) / n : NaN,
      serverMainUs: n > 0 && mainKnown ? sum((i) => s1[i]!.main! - s0[i]!.main!) / n : NaN,
      clientCpuUs: n > 0 ? (c1.user + c1.system) / n : NaN,
      postgresCpuUs: n > 0 && pg ? pgCpuBetween(g0, g1) / n : NaN,
    };
  } finally {
    for (const x of prepared) x.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------- main ----------

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const startedAt = new Date();
  const machine = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    platform: `${platform()} ${release()}`,
    totalMemMiB: Math.round(totalmem() / 2 ** 20),
    nodeExtraCaCertsPresent: process.env.NODE_EXTRA_CA_CERTS !== undefined,
    nodeExtraCaCerts: process.env.NODE_EXTRA_CA_CERTS ?? null,
    loadavgAtStart: loadavg(),
    loadavgAtEnd: [] as number[],
  };
  console.log(
    `kmgr bench: ${machine.cpus} CPUs (${machine.cpuModel}), node ${machine.node}, ${machine.platform}, ` +
      `NODE_EXTRA_CA_CERTS ${machine.nodeExtraCaCertsPresent ? 'set' : 'not set'} in this environment, load average ${machine.loadavgAtStart.map((x) => x.toFixed(2)).join(' ')}`,
  );
  console.log(
    `HTTP: ${o.rounds} round(s) x ${o.connections.join(' and ')} connections x bare, verify-only, durable-verify, kmgrd (LevelDB: hot key, spread keys; PostgreSQL: hot, spread, two nodes); ${o.seconds} s per run, ` +
      `${o.client === 'raw' ? 'hand-rolled keep-alive TLS client' : 'node:https keep-alive Agent'}` +
      (o.cpuProf ? '; --cpu-prof: servers are profiled, figures are slowed by the profiler and are NOT for the goals' : ''),
  );

  const id = newIdentity();
  let profDir: string | undefined;
  if (o.cpuProf) {
    profDir = await mkdtemp(join(tmpdir(), 'kmgr-bench-prof-'));
    temps.add(profDir);
  }
  const execArgv = (role: Role): string[] => (profDir ? ['--cpu-prof', '--cpu-prof-dir', join(profDir, role)] : []);

  const runs: RunRecord[] = [];
  let cli: CliTiming | undefined;
  let cliError: string | undefined;
  const procs: Partial<Record<Kind, ServerProc[]>> = {};
  let profiles: Partial<Record<Kind, ProfileSummary>> = {};
  let partnerId: string;
  let pgPartnerId = '';
  /** Successes and failures seen by the client per store, for the count checks. */
  const seen = { level: { ok: 0, errors: 0 }, pg: { ok: 0, errors: 0 } };
  const countChecks: Record<string, { storedTotal: number; client2xx: number; clientErrors: number; consistent: boolean }> = {};
  let countCheck: { storedTotal: number; client2xx: number; clientErrors: number; consistent: boolean } | undefined;
  const pgAdminUrl = process.env.KMGR_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  let pgDb: string | undefined;
  let pgSkipped: string | undefined;
  let kinds: Kind[] = [...BASE_KINDS];
  try {
    if (o.postgres && o.http) {
      const why = await unreachable(pgAdminUrl);
      if (why) pgSkipped = `no PostgreSQL at ${pgAdminUrl} (${why}); set KMGR_BENCH_DATABASE_URL`;
      else pgDb = await createDatabase(pgAdminUrl, 'kmgr_bench');
    } else if (!o.postgres) pgSkipped = '--no-postgres';
    if (pgSkipped) console.log(`PostgreSQL runs skipped: ${pgSkipped}`);
    console.log('starting servers (each in its own process) ...');
    const [bare, verify, durable, kmgrd] = await Promise.all([
      ServerProc.start('bare', [], execArgv('bare')),
      ServerProc.start('verify', [id.keyId, id.publicKeyB64url], execArgv('verify')),
      ServerProc.start('durable', [id.keyId, id.publicKeyB64url], execArgv('durable')),
      ServerProc.start('kmgrd', [o.rateLimits], execArgv('kmgrd')),
    ]);
    procs.bare = [bare];
    procs['verify-only'] = [verify];
    procs['durable-verify'] = [durable];
    procs.kmgrd = [kmgrd];
    procs['kmgrd-spread'] = [kmgrd];
    ({ partnerId } = await enrolAndRegister(kmgrd, id));
    const spreadIds = Array.from({ length: o.spread }, () => newIdentity());
    const levelSpread = await registerSpread(kmgrd, spreadIds);
    let pgSpread: Spread | undefined;
    if (pgDb) {
      // Two nodes on one database, one certificate (node B serves node A's), as behind a load balancer.
      const pgA = await ServerProc.start('kmgrd', [o.rateLimits, pgDb], execArgv('kmgrd'));
      const pgB = await ServerProc.start('kmgrd', [o.rateLimits, pgDb, join(pgA.dataDir!, 'tls')], execArgv('kmgrd'));
      procs['kmgrd-pg'] = [pgA];
      procs['kmgrd-pg-spread'] = [pgA];
      procs['kmgrd-pg-2nodes'] = [pgA, pgB];
      ({ partnerId: pgPartnerId } = await enrolAndRegister(pgA, id));
      pgSpread = await registerSpread(pgA, spreadIds);
      kinds = [...BASE_KINDS, ...PG_KINDS];
    }
    const path = `/v1/keys/${partnerId}/fetch`;
    const format = o.client === 'raw' ? 'raw' : 'headers';
    if (o.client !== 'raw') kinds = kinds.filter((k) => !k.includes('spread')); // the https client sends one path per pool
    console.log(
      `kmgrd at https://127.0.0.1:${kmgrd.port}: one person enrolled, one key registered without limits (hot key), and ${o.spread} more persons with one key each (spread); ` +
        `bare :${bare.port}, verify-only :${verify.port}, durable-verify :${durable.port}` +
        (pgDb ? `; kmgrd on PostgreSQL (${pgDb.replace(/:[^:@/]*@/, ':***@')}) :${procs['kmgrd-pg-2nodes']![0]!.port} and :${procs['kmgrd-pg-2nodes']![1]!.port}` : '') +
        `; kmgrd rate limits: ${o.rateLimits === 'high' ? '1e9/s per address and per key (the limiter runs, never refuses)' : o.rateLimits === 'off' ? 'off (0)' : "kmgrd's defaults"}`,
    );
    const poolsFor = (kind: Kind, size: number): Pool[] => {
      const ps = procs[kind]!;
      if (kind === 'kmgrd-spread') return [spreadPool(levelSpread, ps[0]!.port, size, format)];
      if (kind === 'kmgrd-pg-spread') return [spreadPool(pgSpread!, ps[0]!.port, size, format)];
      const p = isKmgrd(kind) && kind !== 'kmgrd' ? `/v1/keys/${pgPartnerId}/fetch` : path;
      return ps.map((x) => signPool(id, x.port, 'POST', p, {}, Math.ceil(size / ps.length), format));
    };
    const tally = (kind: Kind, r: LoadResult): void => {
      if (kind === 'kmgrd' || kind === 'kmgrd-pg' || kind === 'kmgrd-pg-2nodes') {
        const t = kind === 'kmgrd' ? seen.level : seen.pg;
        t.ok += r.ok + r.preOk;
        t.errors += r.errors + r.preErrors;
      }
    };
    const pgOf = (kind: Kind) => (pgDb && kind.startsWith('kmgrd-pg') ? { adminUrl: pgAdminUrl, dbUrl: pgDb } : undefined);

    if (o.http) {
      // Warm-up (not recorded): JIT, TLS session machinery, LevelDB, the PostgreSQL pool.
      for (const kind of kinds) {
        const pools = poolsFor(kind, isKmgrd(kind) ? Math.ceil(8000 * o.warmupSeconds * 1.5) + 2000 : BASELINE_POOL);
        const w = await measure(procs[kind]!, pools, !isKmgrd(kind), 10, o.warmupSeconds, o.client);
        tally(kind, w.res);
      }
      const maxKmgrdRps: number[] = [];
      for (let round = 1; round <= o.rounds; round++) {
        for (const connections of o.connections) {
          let verifyRps = NaN;
          for (const kind of kinds) {
            const ps = procs[kind]!;
            let size = BASELINE_POOL;
            if (isKmgrd(kind)) {
              // Each kmgrd request needs its own nonce: a generous upper bound from what verify-only
              // (an upper bound for one kmgrd node) just did, and anything kmgrd has done before.
              const rate = Math.max(Number.isFinite(verifyRps) ? verifyRps : 8000, ...maxKmgrdRps) * ps.length;
              size = Math.min(MAX_POOL, Math.ceil(rate * o.seconds * 1.5) + 20 * connections + 2000);
            }
            const pools = poolsFor(kind, size); // signed just before its run
            const signMs = pools.reduce((a, p) => a + p.signMs, 0);
            if (signMs > 50_000) console.log(`  warning: signing ${size} requests took ${fmt(signMs / 1000, 1)} s; the first ones may be near their 60 s expiry`);
            const la = loadavg()[0]!;
            const { res, serverCpuUs, serverMainUs, clientCpuUs, postgresCpuUs } = await measure(ps, pools, !isKmgrd(kind), connections, o.seconds, o.client, pgOf(kind));
            const r: RunRecord = {
              ...res, round, connections, server: kind, seconds: o.seconds, poolSize: size, signMs,
              serverCpuUsPerReq: serverCpuUs, serverMainThreadCpuUsPerReq: serverMainUs, postgresCpuUsPerReq: postgresCpuUs, clientCpuUsPerReq: clientCpuUs, loadavg1: la,
            };
            runs.push(r);
            if (kind === 'verify-only') verifyRps = res.rps;
            if (isKmgrd(kind)) maxKmgrdRps.push(res.rps / ps.length);
            tally(kind, res);
            console.log(
              `  round ${round}/${o.rounds}  ${String(connections).padStart(3)} conns  ${kind.padEnd(15)} ${fmt(res.rps).padStart(7)} req/s  ` +
                `p50 ${fmt(res.p50, 2).padStart(6)}  p99 ${fmt(res.p99, 2).padStart(6)} ms  server ${fmt(serverCpuUs).padStart(4)} µs/req (main thread ${fmt(serverMainUs).padStart(4)})` +
                (Number.isFinite(postgresCpuUs) ? `  postgres ${fmt(postgresCpuUs).padStart(4)} µs/req` : '') +
                `  client ${fmt(clientCpuUs).padStart(3)} µs/req  errors ${res.errors}` +
                (res.reconnects ? `  reconnects ${res.reconnects}` : '') +
                (res.poolExhausted ? '  POOL EXHAUSTED (run ended early)' : '') +
                `  load ${la.toFixed(1)}`,
            );
            await sleep(250);
          }
        }
      }
    }

    if (o.http) {
      // Every acknowledged use must be counted, durably: the stored total against what the client saw.
      const check = async (d: ServerProc, partner: string, t: { ok: number; errors: number }) => {
        const st = await signedRequest(
          { server: `https://127.0.0.1:${d.port}`, ca: d.certPem }, { keyId: id.keyId, signer: id.signer }, 'GET', `/v1/keys/${partner}`, undefined, KeyStatus,
        );
        const storedTotal = st.body.uses.total;
        return { storedTotal, client2xx: t.ok, clientErrors: t.errors, consistent: storedTotal >= t.ok && storedTotal <= t.ok + t.errors };
      };
      countCheck = await check(kmgrd, partnerId, seen.level);
      countChecks.leveldb = countCheck;
      if (pgDb) countChecks.postgresql = await check(procs['kmgrd-pg']![0]!, pgPartnerId, seen.pg);
    }
    if (o.cli) {
      try {
        cli = await timeCli({
          root: ROOT,
          serverUrl: `https://127.0.0.1:${kmgrd.port}`,
          certPem: kmgrd.certPem,
          runs: o.cliRuns,
          registerTemp: (d) => temps.add(d),
          log: (s) => console.log(s),
        });
      } catch (e) {
        cliError = (e as Error).message;
        console.log(`cli timing failed: ${cliError}`);
      }
    }
  } finally {
    await Promise.all([...children].map((c) => c.stop()));
    if (pgDb) await dropDatabase(pgDb, pgAdminUrl).catch((e: Error) => console.log(`could not drop the bench database: ${e.message}`));
  }

  if (profDir) {
    profiles = {};
    await mkdir(RESULTS, { recursive: true });
    for (const [kind, role] of [['bare', 'bare'], ['verify-only', 'verify'], ['kmgrd', 'kmgrd']] as const) {
      try {
        const dir = join(profDir, role);
        const f = (await readdir(dir)).find((n) => n.endsWith('.cpuprofile'));
        if (!f) continue;
        const kept = join(RESULTS, `${role}.cpuprofile`);
        await copyFile(join(dir, f), kept);
        profiles[kind] = await summariseProfile(kept, kind === 'kmgrd' ? 30 : 12);
      } catch (e) {
        console.log(`profile of ${kind}: ${(e as Error).message}`);
      }
    }
    await rm(profDir, { recursive: true, force: true });
    temps.delete(profDir);
  }
  machine.loadavgAtEnd = loadavg();

  // ---------- summary ----------
  const out: string[] = [];
  const summary: Record<string, Record<string, unknown>> = {};
  type RatioSet = {
    kmgrdOverBare: number;
    kmgrdOverVerify: number;
    /** kmgrd on LevelDB against verify + one coalesced fsync'd append per request. */
    kmgrdOverDurableVerify: number;
    /** kmgrd on PostgreSQL against kmgrd on LevelDB: hot key, and keys spread over many persons. */
    postgresOverLevel?: number;
    postgresOverLevelSpread?: number;
    /** Two nodes on one PostgreSQL against one node (hot key). */
    twoNodesOverOne?: number;
  };
  const ratios: Record<string, RatioSet & { perRound: Array<RatioSet & { round: number }> }> = {};
  const pick = (c: number, k: Kind) => runs.filter((r) => r.connections === c && r.server === k);
  if (runs.length > 0) {
    const rows: string[][] = [['conns', 'server', 'req/s', 'p50 ms', 'p99 ms', 'kmgrd/server CPU µs/req', '(main thread)', 'PostgreSQL CPU µs/req', 'client CPU µs/req', 'errors', 'vs bare', 'vs verify-only']];
    for (const c of o.connections) {
      const perRound: Array<RatioSet & { round: number }> = [];
      for (let round = 1; round <= o.rounds; round++) {
        const get = (k: Kind) => runs.find((r) => r.round === round && r.connections === c && r.server === k)?.rps ?? NaN;
        perRound.push({
          round,
          kmgrdOverBare: get('kmgrd') / get('bare'),
          kmgrdOverVerify: get('kmgrd') / get('verify-only'),
          kmgrdOverDurableVerify: get('kmgrd') / get('durable-verify'),
          ...(kinds.includes('kmgrd-pg')
            ? {
                postgresOverLevel: get('kmgrd-pg') / get('kmgrd'),
                postgresOverLevelSpread: get('kmgrd-pg-spread') / get('kmgrd-spread'),
                twoNodesOverOne: get('kmgrd-pg-2nodes') / get('kmgrd-pg'),
              }
            : {}),
        });
      }
      const med = (f: (r: RatioSet) => number | undefined) => median(perRound.map((r) => f(r) ?? NaN));
      ratios[c] = {
        kmgrdOverBare: med((r) => r.kmgrdOverBare),
        kmgrdOverVerify: med((r) => r.kmgrdOverVerify),
        kmgrdOverDurableVerify: med((r) => r.kmgrdOverDurableVerify),
        ...(kinds.includes('kmgrd-pg')
          ? { postgresOverLevel: med((r) => r.postgresOverLevel), postgresOverLevelSpread: med((r) => r.postgresOverLevelSpread), twoNodesOverOne: med((r) => r.twoNodesOverOne) }
          : {}),
        perRound,
      };
      summary[c] = {};
      for (const k of kinds) {
        const rs = pick(c, k);
        const s = {
          rps: median(rs.map((r) => r.rps)),
          p50Ms: median(rs.map((r) => r.p50)),
          p99Ms: median(rs.map((r) => r.p99)),
          p99MsWorst: Math.max(...rs.map((r) => r.p99)),
          serverCpuUsPerReq: median(rs.map((r) => r.serverCpuUsPerReq)),
          serverMainThreadCpuUsPerReq: median(rs.map((r) => r.serverMainThreadCpuUsPerReq)),
          postgresCpuUsPerReq: median(rs.map((r) => r.postgresCpuUsPerReq)),
          clientCpuUsPerReq: median(rs.map((r) => r.clientCpuUsPerReq)),
          ok: rs.reduce((a, r) => a + r.ok, 0),
          errors: rs.reduce((a, r) => a + r.errors, 0),
          errorKinds: rs.reduce<Record<string, number>>((a, r) => {
            for (const [kk, v] of Object.entries(r.errorKinds)) a[kk] = (a[kk] ?? 0) + v;
            return a;
          }, {}),
          poolExhausted: rs.some((r) => r.poolExhausted),
        };
        summary[c][k] = s;
        rows.push([
          String(c), k, fmt(s.rps), fmt(s.p50Ms, 2), fmt(s.p99Ms, 2), fmt(s.serverCpuUsPerReq), fmt(s.serverMainThreadCpuUsPerReq), fmt(s.postgresCpuUsPerReq), fmt(s.clientCpuUsPerReq), String(s.errors),
          k === 'kmgrd' ? fmt(ratios[c].kmgrdOverBare, 3) : k === 'bare' ? '1' : fmt(s.rps / (summary[c].bare as { rps: number }).rps, 3),
          k === 'kmgrd' ? fmt(ratios[c].kmgrdOverVerify, 3) : k === 'verify-only' ? '1' : '',
        ]);
      }
    }
    out.push('', `HTTP results: median over ${o.rounds} round(s) of ${o.seconds} s; ratios are medians of per-round ratios; only 2xx count as successes`);
    out.push(table(rows, 2));
    for (const c of o.connections) {
      out.push(
        `  per-round kmgrd/bare at ${c}: ${ratios[c]!.perRound.map((r) => fmt(r.kmgrdOverBare, 3)).join(', ')};` +
          ` kmgrd/verify-only: ${ratios[c]!.perRound.map((r) => fmt(r.kmgrdOverVerify, 3)).join(', ')}`,
      );
    }
    for (const c of o.connections) {
      const r = ratios[c]!;
      out.push(
        `  at ${c}: kmgrd/durable-verify ${fmt(r.kmgrdOverDurableVerify, 3)}` +
          (r.postgresOverLevel !== undefined
            ? `; PostgreSQL/LevelDB hot key ${fmt(r.postgresOverLevel, 3)}, spread keys ${fmt(r.postgresOverLevelSpread!, 3)}; two PostgreSQL nodes/one ${fmt(r.twoNodesOverOne!, 3)}`
            : ''),
      );
    }
    for (const c of o.connections) {
      const cpu = (k: Kind) => (summary[c]![k] as { serverCpuUsPerReq: number }).serverCpuUsPerReq;
      out.push(
        `  server CPU per request at ${c} (less sensitive to other load on the machine): bare/kmgrd ${fmt(cpu('bare') / cpu('kmgrd'), 3)},` +
          ` verify-only/kmgrd ${fmt(cpu('verify-only') / cpu('kmgrd'), 3)} (what the throughput ratios would be if each server were CPU-bound on one core)`,
      );
    }
    const errs = runs.filter((r) => r.errors > 0);
    if (errs.length > 0) {
      out.push('errors:');
      for (const r of errs) out.push(`  round ${r.round} ${r.connections} conns ${r.server}: ${JSON.stringify(r.errorKinds)} e.g. ${r.errorSamples[0] ?? ''}`);
    }
    if (runs.some((r) => r.poolExhausted)) out.push('warning: a kmgrd run used up its pre-signed pool and ended early; its req/s is over the shorter time');
  }

  for (const [store, cc] of Object.entries(countChecks)) {
    out.push(
      `count check (${store}, hot key): kmgrd's stored uses.total is ${cc.storedTotal}; the load generator saw ${cc.client2xx} 2xx fetches` +
        ` (+${cc.clientErrors} errors): ${cc.consistent ? 'consistent' : 'INCONSISTENT'}`,
    );
  }
  if (pgSkipped) out.push(`PostgreSQL runs skipped: ${pgSkipped}`);

  if (cli) {
    const rows: string[][] = [[
      'environment', 'node -e 0 ms', 'kmgr --version ms', 'node:https GET ms', 'ratio',
      `kmgr fetch --passphrase-file ms (logN ${cli.kdfCostOfHome})`, 'ratio', 'kmgr fetch via agent ms', 'ratio',
    ]];
    for (const e of cli.envs) {
      rows.push([
        e.env, fmt(e.nodeE0Ms, 1), fmt(e.kmgrVersionMs, 1), fmt(e.httpsGetMs, 1), fmt(e.httpsGetMs / e.nodeE0Ms, 2),
        fmt(e.fetchPassphraseMs, 1), fmt(e.ratioPassphrase, 2),
        e.fetchAgentMs === null ? 'n/a' : fmt(e.fetchAgentMs, 1), e.ratioAgent === null ? 'n/a' : fmt(e.ratioAgent, 2),
      ]);
    }
    out.push('', `CLI: medians of ${o.cliRuns} runs each, end to end (spawnSync), against the same kmgrd, home initialised with --kdf-cost ${cli.kdfCostOfHome}`);
    out.push(table(rows));
    out.push(
      '  node:https GET: one GET /v1/health in a fresh `node -e`, the server certificate as `ca`: what any Node CLI pays for one verified request' +
        ' (node:tls parses its bundled roots first; kmgr pins the saved certificate instead, see src/client/tls-connect.ts)',
    );
    for (const u of cli.unlock) out.push(`  passphrase unlock (scrypt logN ${u.logN}, r 8, p 1 via deriveKey): ${fmt(u.ms, 0)} ms${u.logN === 17 ? ' (the default cost)' : ' (the cost of this bench home, included in the fetch above)'}`);
    if (!cli.agentAvailable) {
      out.push('  note: `kmgr agent` does not exist yet (not in `kmgr --help`); an agent would remove the unlock from the fetch path.');
      out.push('        kmgr fetch above includes a scrypt unlock at logN 15; at the default logN 17 every fetch would pay the unlock time above.');
    } else if (cli.agentError) out.push(`  agent: ${cli.agentError}`);
    for (const p of cli.problems) out.push(`  problem: ${p}`);
  } else if (cliError) out.push('', `CLI timing failed: ${cliError}`);

  // ---------- goals ----------
  const goals: { goal: string; value: string; pass: boolean | null; note?: string }[] = [];
  const g50 = GOALS.atConnections;
  if (ratios[g50]) {
    const k = summary[g50]!.kmgrd as { p99Ms: number; p99MsWorst: number; errors: number };
    goals.push({ goal: `kmgrd/bare >= ${GOALS.vsBare} at ${g50} connections`, value: fmt(ratios[g50].kmgrdOverBare, 3), pass: ratios[g50].kmgrdOverBare >= GOALS.vsBare });
    goals.push({ goal: `kmgrd/verify-only >= ${GOALS.vsVerify} at ${g50} connections`, value: fmt(ratios[g50].kmgrdOverVerify, 3), pass: ratios[g50].kmgrdOverVerify >= GOALS.vsVerify });
    goals.push({
      goal: `kmgrd p99 < ${GOALS.p99Ms} ms at ${g50} connections`,
      value: `${fmt(k.p99Ms, 1)} ms (worst round ${fmt(k.p99MsWorst, 1)} ms)`,
      pass: k.p99Ms < GOALS.p99Ms,
    });
  }
  for (const c of o.connections) {
    const r = ratios[c];
    if (!r) continue;
    goals.push({ goal: `kmgrd/durable-verify >= ${GOALS.kmgrdOverDurableVerify} at ${c} connections`, value: fmt(r.kmgrdOverDurableVerify, 3), pass: r.kmgrdOverDurableVerify >= GOALS.kmgrdOverDurableVerify });
  }
  if (ratios[g50]?.postgresOverLevel !== undefined) {
    const r = ratios[g50];
    const exact = Object.values(countChecks).every((cc) => cc.consistent);
    goals.push({ goal: `PostgreSQL/LevelDB >= ${GOALS.postgresOverLevel} at ${g50} connections, hot key`, value: fmt(r.postgresOverLevel!, 3), pass: r.postgresOverLevel! >= GOALS.postgresOverLevel && exact });
    goals.push({ goal: `PostgreSQL/LevelDB >= ${GOALS.postgresOverLevel} at ${g50} connections, spread keys`, value: fmt(r.postgresOverLevelSpread!, 3), pass: r.postgresOverLevelSpread! >= GOALS.postgresOverLevel && exact });
  }
  if (!ratios[g50] && o.http) {
    goals.push({ goal: `kmgrd goals at ${g50} connections`, value: 'not measured', pass: false, note: `--connections did not include ${g50}` });
  }
  if (cli) {
    for (const e of cli.envs) {
      goals.push({
        goal: `kmgr fetch via agent <= ${GOALS.agentRatio}x node -e 0 (${e.env})`,
        value: e.ratioAgent === null ? `no agent; with passphrase ${fmt(e.ratioPassphrase, 2)}x` : `${fmt(e.ratioAgent, 2)}x`,
        pass: e.ratioAgent !== null && e.ratioAgent <= GOALS.agentRatio,
        ...(e.ratioAgent === null ? { note: cli.agentAvailable ? 'agent did not work' : 'kmgr agent is not built yet' } : {}),
      });
    }
  }
  if (goals.length > 0) {
    out.push('', 'GOALS (issues 5 and 14)');
    out.push(table([['goal', 'measured', 'result'], ...goals.map((g) => [g.goal, g.value, `${g.pass ? 'PASS' : 'MISS'}${g.note ? ` (${g.note})` : ''}`])], 3));
  }

  const logs: Record<string, LogStats> = {};
  const logKinds = kinds.filter((k) => k !== 'kmgrd-spread' && k !== 'kmgrd-pg-spread' && k !== 'kmgrd-pg');
  for (const k of logKinds) if (procs[k]) logs[k] = mergeLogs(procs[k].map((p) => p.log));
  const logProblems = logKinds.filter((k) => (logs[k]?.problems ?? 0) > 0);
  if (logProblems.length > 0) {
    out.push('', 'server log lines at warn or above:');
    for (const k of logProblems) {
      out.push(`  ${k}: ${logs[k]!.problems}`);
      for (const s of logs[k]!.samples.slice(0, 5)) out.push(`    ${s}`);
    }
  }
  for (const k of kinds) {
    const p = profiles[k];
    if (!p) continue;
    out.push('', `CPU profile of ${k} (${fmt(p.totalMs)} ms busy; bench/results/${k === 'verify-only' ? 'verify' : k}.cpuprofile)`);
    out.push(table([['self time by area', 'ms', '%'], ...p.selfByArea.slice(0, k === 'kmgrd' ? 20 : 10).map((a) => [a.area, fmt(a.ms), fmt(a.pct, 1)])]));
    out.push(table([['self time by function', 'ms', '%'], ...p.selfByFunction.slice(0, k === 'kmgrd' ? 30 : 12).map((a) => [a.name, fmt(a.ms), fmt(a.pct, 1)])]));
    if (k === 'kmgrd') out.push(table([['inclusive time, kmgr functions', 'ms', '%'], ...p.inclusiveKmgr.slice(0, 25).map((a) => [a.name, fmt(a.ms), fmt(a.pct, 1)])]));
  }
  out.push('', `machine: ${machine.cpus} CPUs, node ${machine.node}, load average at start ${machine.loadavgAtStart.map((x) => x.toFixed(2)).join(' ')}, at end ${machine.loadavgAtEnd.map((x) => x.toFixed(2)).join(' ')} (a shared machine: other work competes for the same cores)`);
  console.log(out.join('\n'));

  const json = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine,
    config: { rateLimits: o.rateLimits, seconds: o.seconds, rounds: o.rounds, connections: o.connections, client: o.client, cliRuns: o.cliRuns, quick: o.quick, cpuProf: o.cpuProf, warmupSeconds: o.warmupSeconds },
    goals,
    summary,
    ratios,
    countCheck,
    countChecks,
    postgres: pgSkipped ? { skipped: pgSkipped } : { adminUrl: pgAdminUrl.replace(/:[^:@/]*@/, ':***@'), spreadPersons: o.spread },
    runs,
    cli: cli ?? (cliError ? { error: cliError } : null),
    serverLogs: logs,
    profiles: Object.keys(profiles).length ? profiles : undefined,
  };
  await mkdir(dirname(o.out), { recursive: true });
  await writeFile(o.out, JSON.stringify(json, null, 2) + '\n');
  console.log(`\nwrote ${o.out}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    process.exit(1);
  },
);
