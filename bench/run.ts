// npm run bench: kmgrd against the bare-HTTPS limit and the verify-one-signature
// limit, driven by the same load generator, interleaved over several rounds; then
// the CLI's end-to-end time against `node -e 0`. See issue 5, "Benchmark".
//
//   node dist/bench/run.js [--seconds N] [--rounds N] [--quick] [--connections 10,50]
//                          [--client raw|https] [--cli-runs N] [--no-cli] [--no-http]
//                          [--cpu-prof] [--out FILE]
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

const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = join(HERE, '..', '..');
const SERVERS_JS = join(HERE, 'servers.js');
const RESULTS = join(ROOT, 'bench', 'results');

const GOALS = { vsBare: 0.3, vsVerify: 0.85, p99Ms: 50, agentRatio: 2.0, atConnections: 50 };
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
}

function usage(msg?: string): never {
  if (msg) console.error(`bench: ${msg}`);
  (msg ? console.error : console.log)(
    'usage: node dist/bench/run.js [--seconds N] [--rounds N] [--quick] [--connections 10,50] [--client raw|https]\n' +
      '                              [--cli-runs N] [--no-cli] [--no-http] [--cpu-prof] [--rate-limits high|off|default] [--out FILE]\n' +
      '  --rate-limits: kmgrd\'s per-address and per-key limits; high (the default here) sets them to 1e9/s, so the\n' +
      '  limiter runs but never refuses the one benchmark client; off disables them; default keeps kmgrd\'s own.',
  );
  process.exit(msg ? 64 : 0);
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    seconds: 5, rounds: 3, connections: [10, 50], client: 'raw', cliRuns: 10, cli: true, http: true, cpuProf: false,
    warmupSeconds: 1, out: join(RESULTS, 'latest.json'), quick: false, rateLimits: 'high',
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

// ---------- one measured run ----------

type Kind = 'bare' | 'verify-only' | 'kmgrd';
const KINDS: Kind[] = ['bare', 'verify-only', 'kmgrd'];

interface RunRecord extends LoadResult {
  round: number;
  connections: number;
  server: Kind;
  seconds: number;
  poolSize: number;
  signMs: number;
  serverCpuUsPerReq: number;
  serverMainThreadCpuUsPerReq: number;
  clientCpuUsPerReq: number;
  loadavg1: number;
}

async function measure(
  proc: ServerProc,
  pool: Pool,
  cycle: boolean,
  connections: number,
  seconds: number,
  client: ClientKind,
): Promise<{ res: LoadResult; serverCpuUs: number; serverMainUs: number; clientCpuUs: number }> {
  const prepared = await prepareLoad({ port: proc.port, ca: proc.certPem, connections, seconds, pool, cycle, client });
  try {
    const s0 = await proc.cpu();
    const c0 = process.cpuUsage();
    const res = await prepared.start();
    const c1 = process.cpuUsage(c0);
    const s1 = await proc.cpu();
    const n = res.ok + res.errors;
    return {
      res,
      serverCpuUs: n > 0 ? (s1.total - s0.total) / n : NaN,
      serverMainUs: n > 0 && s0.main !== null && s1.main !== null ? (s1.main - s0.main) / n : NaN,
      clientCpuUs: n > 0 ? (c1.user + c1.system) / n : NaN,
    };
  } finally {
    prepared.close();
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
    `HTTP: ${o.rounds} round(s) x ${o.connections.join(' and ')} connections x bare, verify-only, kmgrd; ${o.seconds} s per run, ` +
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
  const procs: Partial<Record<Kind, ServerProc>> = {};
  let profiles: Partial<Record<Kind, ProfileSummary>> = {};
  let partnerId: string;
  let kmgrdOk = 0;
  let kmgrdErrors = 0;
  let countCheck: { storedTotal: number; client2xx: number; clientErrors: number; consistent: boolean } | undefined;
  try {
    console.log('starting servers (each in its own process) ...');
    const [bare, verify, kmgrd] = await Promise.all([
      ServerProc.start('bare', [], execArgv('bare')),
      ServerProc.start('verify', [id.keyId, id.publicKeyB64url], execArgv('verify')),
      ServerProc.start('kmgrd', [o.rateLimits], execArgv('kmgrd')),
    ]);
    procs.bare = bare;
    procs['verify-only'] = verify;
    procs.kmgrd = kmgrd;
    ({ partnerId } = await enrolAndRegister(kmgrd, id));
    const path = `/v1/keys/${partnerId}/fetch`;
    const format = o.client === 'raw' ? 'raw' : 'headers';
    console.log(
      `kmgrd at https://127.0.0.1:${kmgrd.port}: one person enrolled, one key registered without limits; bare :${bare.port}, verify-only :${verify.port}; ` +
        `kmgrd rate limits: ${o.rateLimits === 'high' ? '1e9/s per address and per key (the limiter runs, never refuses)' : o.rateLimits === 'off' ? 'off (0)' : "kmgrd's defaults"}`,
    );

    if (o.http) {
      // Warm-up (not recorded): JIT, TLS session machinery, LevelDB.
      for (const kind of KINDS) {
        const p = procs[kind]!;
        const pool = signPool(id, p.port, 'POST', path, {}, kind === 'kmgrd' ? Math.ceil(8000 * o.warmupSeconds * 1.5) + 2000 : BASELINE_POOL, format);
        const w = await measure(p, pool, kind !== 'kmgrd', 10, o.warmupSeconds, o.client);
        if (kind === 'kmgrd') {
          kmgrdOk += w.res.ok + w.res.preOk;
          kmgrdErrors += w.res.errors + w.res.preErrors;
        }
      }
      const maxKmgrdRps: number[] = [];
      for (let round = 1; round <= o.rounds; round++) {
        for (const connections of o.connections) {
          let verifyRps = NaN;
          for (const kind of KINDS) {
            const p = procs[kind]!;
            let size = BASELINE_POOL;
            if (kind === 'kmgrd') {
              // Each kmgrd request needs its own nonce: a generous upper bound from what verify-only
              // (an upper bound for kmgrd) just did, and anything kmgrd has done before.
              const rate = Math.max(Number.isFinite(verifyRps) ? verifyRps : 8000, ...maxKmgrdRps);
              size = Math.min(MAX_POOL, Math.ceil(rate * o.seconds * 1.5) + 20 * connections + 2000);
            }
            const pool = signPool(id, p.port, 'POST', path, {}, size, format); // signed just before its run
            if (pool.signMs > 50_000) console.log(`  warning: signing ${size} requests took ${fmt(pool.signMs / 1000, 1)} s; the first ones may be near their 60 s expiry`);
            const la = loadavg()[0]!;
            const { res, serverCpuUs, serverMainUs, clientCpuUs } = await measure(p, pool, kind !== 'kmgrd', connections, o.seconds, o.client);
            const r: RunRecord = {
              ...res, round, connections, server: kind, seconds: o.seconds, poolSize: size, signMs: pool.signMs,
              serverCpuUsPerReq: serverCpuUs, serverMainThreadCpuUsPerReq: serverMainUs, clientCpuUsPerReq: clientCpuUs, loadavg1: la,
            };
            runs.push(r);
            if (kind === 'verify-only') verifyRps = res.rps;
            if (kind === 'kmgrd') {
              maxKmgrdRps.push(res.rps);
              kmgrdOk += res.ok + res.preOk;
              kmgrdErrors += res.errors + res.preErrors;
            }
            console.log(
              `  round ${round}/${o.rounds}  ${String(connections).padStart(3)} conns  ${kind.padEnd(11)} ${fmt(res.rps).padStart(7)} req/s  ` +
                `p50 ${fmt(res.p50, 2).padStart(6)}  p99 ${fmt(res.p99, 2).padStart(6)} ms  server ${fmt(serverCpuUs).padStart(4)} µs/req (main thread ${fmt(serverMainUs).padStart(4)})  ` +
                `client ${fmt(clientCpuUs).padStart(3)} µs/req  errors ${res.errors}` +
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
      const st = await signedRequest(
        { server: `https://127.0.0.1:${kmgrd.port}`, ca: kmgrd.certPem }, { keyId: id.keyId, signer: id.signer }, 'GET', `/v1/keys/${partnerId}`, undefined, KeyStatus,
      );
      const storedTotal = st.body.uses.total;
      countCheck = { storedTotal, client2xx: kmgrdOk, clientErrors: kmgrdErrors, consistent: storedTotal >= kmgrdOk && storedTotal <= kmgrdOk + kmgrdErrors };
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
  const ratios: Record<string, { kmgrdOverBare: number; kmgrdOverVerify: number; perRound: { round: number; kmgrdOverBare: number; kmgrdOverVerify: number }[] }> = {};
  const pick = (c: number, k: Kind) => runs.filter((r) => r.connections === c && r.server === k);
  if (runs.length > 0) {
    const rows: string[][] = [['conns', 'server', 'req/s', 'p50 ms', 'p99 ms', 'server CPU µs/req', '(main thread)', 'client CPU µs/req', 'errors', 'vs bare', 'vs verify-only']];
    for (const c of o.connections) {
      const perRound = [];
      for (let round = 1; round <= o.rounds; round++) {
        const get = (k: Kind) => runs.find((r) => r.round === round && r.connections === c && r.server === k)?.rps ?? NaN;
        perRound.push({ round, kmgrdOverBare: get('kmgrd') / get('bare'), kmgrdOverVerify: get('kmgrd') / get('verify-only') });
      }
      ratios[c] = {
        kmgrdOverBare: median(perRound.map((r) => r.kmgrdOverBare)),
        kmgrdOverVerify: median(perRound.map((r) => r.kmgrdOverVerify)),
        perRound,
      };
      summary[c] = {};
      for (const k of KINDS) {
        const rs = pick(c, k);
        const s = {
          rps: median(rs.map((r) => r.rps)),
          p50Ms: median(rs.map((r) => r.p50)),
          p99Ms: median(rs.map((r) => r.p99)),
          p99MsWorst: Math.max(...rs.map((r) => r.p99)),
          serverCpuUsPerReq: median(rs.map((r) => r.serverCpuUsPerReq)),
          serverMainThreadCpuUsPerReq: median(rs.map((r) => r.serverMainThreadCpuUsPerReq)),
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
          String(c), k, fmt(s.rps), fmt(s.p50Ms, 2), fmt(s.p99Ms, 2), fmt(s.serverCpuUsPerReq), fmt(s.serverMainThreadCpuUsPerReq), fmt(s.clientCpuUsPerReq), String(s.errors),
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

  if (countCheck) {
    out.push(
      `count check: kmgrd's stored uses.total is ${countCheck.storedTotal}; the load generator saw ${countCheck.client2xx} 2xx fetches` +
        ` (+${countCheck.clientErrors} errors): ${countCheck.consistent ? 'consistent' : 'INCONSISTENT'}`,
    );
  }

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
  } else if (o.http) {
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
    out.push('', 'GOALS (issue 5)');
    out.push(table([['goal', 'measured', 'result'], ...goals.map((g) => [g.goal, g.value, `${g.pass ? 'PASS' : 'MISS'}${g.note ? ` (${g.note})` : ''}`])], 3));
  }

  const logs: Record<string, LogStats> = {};
  for (const k of KINDS) if (procs[k]) logs[k] = procs[k].log;
  const logProblems = KINDS.filter((k) => (procs[k]?.log.problems ?? 0) > 0);
  if (logProblems.length > 0) {
    out.push('', 'server log lines at warn or above:');
    for (const k of logProblems) {
      out.push(`  ${k}: ${procs[k]!.log.problems}`);
      for (const s of procs[k]!.log.samples.slice(0, 5)) out.push(`    ${s}`);
    }
  }
  for (const k of KINDS) {
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
