// CLI timing: `kmgr fetch NAME` end to end against `node -e 0` (the process
// start floor), against a real kmgrd, in two environments: without and with
// NODE_EXTRA_CA_CERTS. Also times the passphrase unlock (scrypt) on its own.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { deriveKey, KDF_DEFAULT_LOGN } from '../src/crypto/kdf.js';
import { median } from './stats.js';

export interface CliEnvTiming {
  env: 'without NODE_EXTRA_CA_CERTS' | 'with NODE_EXTRA_CA_CERTS';
  nodeExtraCaCerts: string | null;
  runs: number;
  nodeE0Ms: number;
  /** `kmgr --version`: the CLI's own start-up floor (imports, no work). */
  kmgrVersionMs: number;
  /**
   * One GET /v1/health with node:https and the server's certificate as `ca`, in a
   * fresh `node -e`: what any Node CLI pays for one verified HTTPS request.
   */
  httpsGetMs: number;
  fetchPassphraseMs: number;
  fetchAgentMs: number | null;
  ratioPassphrase: number;
  ratioAgent: number | null;
  samples: { nodeE0: number[]; kmgrVersion: number[]; httpsGet: number[]; fetchPassphrase: number[]; fetchAgent: number[] | null };
}

export interface CliTiming {
  kdfCostOfHome: number;
  agentAvailable: boolean;
  agentError: string | null;
  unlock: { logN: number; ms: number; samples: number[] }[];
  envs: CliEnvTiming[];
  problems: string[];
}

const PASSPHRASE = 'correct horse battery staple';
const PARTNER = 'bench';
const TIMEOUT_MS = 60_000;

/** node -e HTTPS_GET URL CA_FILE: one verified request, exit 0 on a 200. */
const HTTPS_GET =
  "const https=require('node:https'),fs=require('node:fs');" +
  "https.get(process.argv[1],{ca:fs.readFileSync(process.argv[2]),minVersion:'TLSv1.3'},(r)=>{r.resume();r.on('end',()=>process.exit(r.statusCode===200?0:1))})" +
  ".on('error',()=>process.exit(2))";

function describe(r: SpawnSyncReturns<Buffer>): string {
  return `exit ${r.status ?? r.signal ?? r.error?.message}: ${r.stderr?.toString('utf8').trim().slice(0, 500) ?? ''}`;
}

export async function timeCli(o: {
  root: string;
  serverUrl: string;
  certPem: string;
  runs: number;
  registerTemp: (dir: string) => void;
  log: (s: string) => void;
}): Promise<CliTiming> {
  const kmgr = join(o.root, 'bin', 'kmgr.js');
  const tmp = await mkdtemp(join(tmpdir(), 'kmgr-bench-cli-'));
  o.registerTemp(tmp);
  const problems: string[] = [];
  try {
    const home = join(tmp, 'home');
    const pp = join(tmp, 'passphrase');
    const ca = join(tmp, 'ca.pem');
    const runtime = join(tmp, 'run');
    await mkdir(runtime, { mode: 0o700 });
    await writeFile(pp, PASSPHRASE + '\n', { mode: 0o600 });
    await writeFile(ca, o.certPem);

    // A clean environment, the same for `node -e 0` and for kmgr; XDG_RUNTIME_DIR is ours so an agent socket cannot collide.
    const base: Record<string, string> = {};
    for (const k of ['PATH', 'HOME', 'TMPDIR', 'LANG']) if (process.env[k] !== undefined) base[k] = process.env[k]!;
    Object.assign(base, { KMGR_HOME: home, XDG_RUNTIME_DIR: runtime });
    const extraCa = process.env.NODE_EXTRA_CA_CERTS ?? (existsSync('/etc/ssl/certs/ca-certificates.crt') ? '/etc/ssl/certs/ca-certificates.crt' : null);

    const run = (args: string[], env: Record<string, string>): { ms: number; r: SpawnSyncReturns<Buffer> } => {
      const t = performance.now();
      const r = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: TIMEOUT_MS });
      return { ms: performance.now() - t, r };
    };
    const must = (what: string, args: string[], env: Record<string, string>): SpawnSyncReturns<Buffer> => {
      const { r } = run(args, env);
      if (r.status !== 0) throw new Error(`${what} failed (${describe(r)})`);
      return r;
    };

    o.log('cli: kmgr init (--kdf-cost 15) and register against the real kmgrd');
    must('kmgr init', [kmgr, 'init', '--server', o.serverUrl, '--ca', ca, '--passphrase-file', pp, '--kdf-cost', '15'], base);
    must('kmgr register', [kmgr, 'register', PARTNER, '--passphrase-file', pp], base);
    const first = must('kmgr fetch', [kmgr, 'fetch', PARTNER, '--passphrase-file', pp], base);
    if (!/PRIVATE KEY/.test(first.stdout.toString('utf8'))) problems.push('kmgr fetch printed no PEM private key');

    const help = run([kmgr, '--help'], base).r.stdout.toString('utf8');
    const agentAvailable = /^\s+agent\b/m.test(help);
    let agentError: string | null = null;
    let agentUp = false;
    if (agentAvailable) {
      // The agent outlives `agent start`: its output goes to a file, so an inherited pipe cannot hold spawnSync up.
      const outFile = join(tmp, 'agent-start.out');
      const fd = openSync(outFile, 'w');
      const start = spawnSync(process.execPath, [kmgr, 'agent', 'start', '--passphrase-file', pp], { env: base, stdio: ['ignore', fd, fd], timeout: TIMEOUT_MS });
      closeSync(fd);
      if (start.status === 0) {
        agentUp = true;
        const check = run([kmgr, 'fetch', PARTNER], base);
        if (check.r.status !== 0) {
          agentError = `fetch through the agent failed (${describe(check.r)})`;
          agentUp = false;
        }
      } else agentError = `kmgr agent start failed (exit ${start.status ?? start.signal ?? start.error?.message}: ${readFileSync(outFile, 'utf8').trim().slice(0, 500)})`;
      if (agentError) problems.push(agentError);
    }

    const envs: CliEnvTiming[] = [];
    try {
      const variants: [CliEnvTiming['env'], Record<string, string>][] = [['without NODE_EXTRA_CA_CERTS', base]];
      if (extraCa) variants.push(['with NODE_EXTRA_CA_CERTS', { ...base, NODE_EXTRA_CA_CERTS: extraCa }]);
      for (const [name, env] of variants) {
        o.log(`cli: timing ${o.runs} runs each, ${name}`);
        const e0: number[] = [];
        const fp: number[] = [];
        const fa: number[] = [];
        const ver: number[] = [];
        const hg: number[] = [];
        // The passphrase runs skip a running agent (KMGR_NO_AGENT), or they would time the agent twice.
        const noAgent = { ...env, KMGR_NO_AGENT: '1' };
        const cmds: [number[], string[], Record<string, string>][] = [
          [e0, ['-e', '0'], env],
          [ver, [kmgr, '--version'], env],
          [hg, ['-e', HTTPS_GET, `${o.serverUrl}/v1/health`, ca], env],
          [fp, [kmgr, 'fetch', PARTNER, '--passphrase-file', pp], noAgent],
        ];
        if (agentUp) cmds.push([fa, [kmgr, 'fetch', PARTNER], env]);
        // One untimed warm-up each (page cache), then interleaved timed runs.
        for (const [, args, e] of cmds) run(args, e);
        for (let i = 0; i < o.runs; i++) {
          for (const [into, args, e] of cmds) {
            const { ms, r } = run(args, e);
            if (r.status !== 0) {
              problems.push(`${args.slice(1).join(' ')} (${name}) failed: ${describe(r)}`);
              continue;
            }
            into.push(ms);
          }
        }
        const nodeE0Ms = median(e0);
        const fetchPassphraseMs = median(fp);
        const fetchAgentMs = agentUp ? median(fa) : null;
        envs.push({
          env: name,
          nodeExtraCaCerts: env.NODE_EXTRA_CA_CERTS ?? null,
          runs: o.runs,
          nodeE0Ms,
          kmgrVersionMs: median(ver),
          httpsGetMs: median(hg),
          fetchPassphraseMs,
          fetchAgentMs,
          ratioPassphrase: fetchPassphraseMs / nodeE0Ms,
          ratioAgent: fetchAgentMs === null ? null : fetchAgentMs / nodeE0Ms,
          samples: { nodeE0: e0, kmgrVersion: ver, httpsGet: hg, fetchPassphrase: fp, fetchAgent: agentUp ? fa : null },
        });
      }
    } finally {
      if (agentAvailable) run([kmgr, 'agent', 'stop'], base);
    }

    o.log('cli: timing the passphrase unlock (scrypt)');
    const unlock: CliTiming['unlock'] = [];
    for (const logN of [KDF_DEFAULT_LOGN, 15]) {
      const samples: number[] = [];
      for (let i = 0; i < 3; i++) {
        const t = performance.now();
        await deriveKey(new TextEncoder().encode(PASSPHRASE), { alg: 'scrypt', logN, r: 8, p: 1, salt: new Uint8Array(randomBytes(16)) });
        samples.push(performance.now() - t);
      }
      unlock.push({ logN, ms: median(samples), samples });
    }
    return { kdfCostOfHome: 15, agentAvailable, agentError, unlock, envs, problems };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
