// The one way tests run the real kmgr and kmgrd commands to completion: as
// subprocesses, asynchronously (so an in-process daemon can answer them), each in
// its own session with no controlling terminal (so a missing passphrase source
// can never fall through to a prompt), in a clean environment plus what the test
// gives (so nothing from the shell that started the suite changes a result).
import { spawn } from 'node:child_process';
import { KMGR, KMGRD } from './paths.js';
import { testDatabaseOf } from './pg.js';

export interface RunResult {
  code: number;
  stdout: string;
  stdoutBytes: Buffer;
  stderr: string;
}

export interface RunOptions {
  /** Added to the clean environment. */
  env?: Record<string, string>;
  /** Written to stdin (which is then closed). */
  input?: string;
  /** Killed with SIGKILL after this long (default 60 s). */
  timeoutMs?: number;
  /** Written to an extra pipe on file descriptor 3 (for --passphrase-fd 3). */
  fd3?: string;
}

export interface KmgrOptions extends RunOptions {
  /** KMGR_HOME. */
  home: string;
}

/**
 * [command, args] that runs `cmd ARGS` without what the test runner puts into the
 * environment of every process this one starts: tap adds its process tracker to
 * NODE_OPTIONS (and _TAPJS_* variables) even where the caller gave a clean
 * environment, and loading that costs each node process about 250 ms of CPU. So
 * the programs under test run as a user runs them, and the suite's ~1300 processes
 * do not each pay for a loader nobody uses (coverage is off).
 */
export function untracked(cmd: string, args: string[]): [string, string[]] {
  const drop = ['NODE_OPTIONS', ...Object.keys(process.env).filter((k) => k.startsWith('_TAPJS_'))];
  return ['env', [...drop.flatMap((k) => ['-u', k]), cmd, ...args]];
}

/** PATH, HOME, TMPDIR and LANG from this process, nothing else. */
export function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'TMPDIR', 'LANG']) if (process.env[k] !== undefined) env[k] = process.env[k]!;
  return env;
}

/**
 * Runs `node bin/kmgr.js ARGS` with KMGR_HOME set to o.home. Every run allows 50 s
 * (KMGR_TIMEOUT, so an idle limit of 25 s): on a loaded machine the in-process test server
 * has paused over 10 s, and a test must not depend on the machine's speed. Tests of the
 * deadlines themselves set their own.
 */
export function kmgr(args: string[], o: KmgrOptions): Promise<RunResult> {
  return run(KMGR, args, { ...cleanEnv(), KMGR_HOME: o.home, KMGR_TIMEOUT: '50', ...o.env }, o);
}

/**
 * The environment kmgrd ARGS runs in: under KMGR_TEST_STORE=postgres the data of an
 * in-process test server is in its test database, not in its --data directory.
 */
export function kmgrdEnv(args: string[]): Record<string, string> {
  const env = cleanEnv();
  const data = args.indexOf('--data');
  const db = data >= 0 && !args.includes('--database-url') ? testDatabaseOf(args[data + 1] ?? '') : undefined;
  if (db) env.KMGRD_DATABASE_URL = db;
  return env;
}

/** Runs `node bin/kmgrd.js ARGS` (an operator command; a server that keeps running is server.ts's spawnServe). */
export function kmgrd(args: string[], o: RunOptions = {}): Promise<RunResult> {
  return run(KMGRD, args, { ...kmgrdEnv(args), ...o.env }, o);
}

function run(script: string, args: string[], env: Record<string, string>, o: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const stdio: Array<'pipe'> = o.fd3 !== undefined ? ['pipe', 'pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe'];
    const child = spawn(...untracked(process.execPath, [script, ...args]), { env, stdio, detached: true });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      resolve({ code: code ?? -1, stdout: stdoutBytes.toString('utf8'), stdoutBytes, stderr: Buffer.concat(err).toString('utf8') });
    });
    if (o.fd3 !== undefined) {
      const fd3 = child.stdio[3] as NodeJS.WritableStream;
      fd3.on('error', () => undefined);
      fd3.end(o.fd3);
    }
    // A command that exits before reading its stdin (a refusal before any prompt) closes the
    // pipe: EPIPE here is not the test's failure, which the exit code and output report.
    child.stdin.on('error', () => undefined);
    child.stdin.end(o.input ?? '');
  });
}
