// `npm test`'s runner: every test file in its own plain `node` process, one more at a time
// than there are cores (KMGR_TEST_JOBS), its TAP kept and shown in full when the file fails, then the totals
// as one line, `# { total: N, pass: N, fail: N, skip: N }` (what .ci/run reads).
//
// Why not tap's own runner: it loads its process tracker (@tapjs/processinfo) into every
// test process, and through NODE_OPTIONS into every process a test starts, with no way to
// turn it off. With coverage off nothing reads what it records, and it cost about 1.5 s of
// CPU per test file and 250 ms per kmgr process, a third of the suite's time on a 2-core
// machine. The files stay ordinary tap tests: `node dist/test/x.test.js` or
// `npx tap dist/test/x.test.js` runs one.
//
//   node dist/scripts/run-tests.js [--alongside CMD]... [FILE...]   (default: every dist/test/*.test.js)
//
// --alongside runs a shell command (npm test: the linter) while the files run, reported as
// one more entry that passes when it exits 0: the files leave some CPU idle while they wait,
// and the linter fits in it rather than after them.
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { availableParallelism } from 'node:os';
import { skipsIn, totalsOf, zero, type Totals } from './tap-totals.js';

interface FileResult {
  file: string;
  code: number | null;
  output: string;
  ms: number;
}

// tap's own limit for a whole file, as package.json gives it to tap's runner (seconds).
const TAP_TIMEOUT = String((JSON.parse(readFileSync('package.json', 'utf8')) as { tap?: { timeout?: number } }).tap?.timeout ?? 120);
// A file (or command) still running a minute past that is killed, with all it started, and failed.
const HARD_LIMIT_MS = (Number(TAP_TIMEOUT) + 60) * 1000;

/**
 * The environment a file runs in: this one, without what tap's runner puts there for its
 * own children (with TAP_CHILD_ID set, tap leaves out the totals line this runner reads).
 */
function fileEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { TAP_TIMEOUT };
  for (const [k, v] of Object.entries(process.env)) if (!/^(TAP_CHILD_|TAP_JOB_ID$|_TAPJS_)/.test(k)) env[k] = v;
  return env;
}

/** A test file, or with `shell` a command line run alongside them. */
function runFile(file: string, shell = false): Promise<FileResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    const [cmd, args] = shell ? ['sh', ['-c', file]] : [process.execPath, [file]];
    // Its own process group, so that a kill at the limit reaches what it started (npm, eslint,
    // kmgrd) and no grandchild keeps the pipes, and with them this runner, open.
    // A developer's NODE_OPTIONS (say --enable-source-maps) passes through.
    const child = spawn(cmd, args, { env: fileEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.on('data', (c: Buffer) => chunks.push(c));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, HARD_LIMIT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const output = Buffer.concat(chunks).toString('utf8') + (signal ? `\n# killed by ${signal}\n` : '');
      resolve({ file, code, output, ms: performance.now() - started });
    });
  });
}

function defaultFiles(): string[] {
  const dir = join('dist', 'test');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.test.js'))
    .map((f) => join(dir, f))
    .sort();
}

/**
 * Larger files first, so that the last one to finish is a short one and both jobs stay busy
 * to the end (the size of a compiled test is a fair guess at how long it runs).
 */
function longestFirst(files: string[]): string[] {
  const size = new Map(files.map((f) => [f, statSync(f).size]));
  return [...files].sort((a, b) => size.get(b)! - size.get(a)!);
}

async function main(argv: string[]): Promise<number> {
  const alongside: string[] = [];
  const named: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--alongside' && argv[i + 1] !== undefined) alongside.push(argv[++i]!);
    else named.push(argv[i]!);
  }
  const files = named.length > 0 ? named : defaultFiles();
  // One more than the cores: a test file spends part of its time waiting (on its kmgr runs, on
  // fsync), and a third job on two cores keeps both busy (175 s against 216 s for two).
  const jobs = Math.max(1, Number(process.env.KMGR_TEST_JOBS) || Math.min(availableParallelism() + 1, 8));
  const queue = longestFirst(files);
  const sum = zero();
  let failedFiles = 0;
  let n = 0;
  const started = performance.now();
  process.stdout.write(`TAP version 14\n# ${files.length} files, ${jobs} at a time\n`);

  /** One entry's line, its counts added in, and its whole output when it failed (its skips when not). */
  const report = (name: string, r: FileResult, ok: boolean, counts: Partial<Totals>): void => {
    for (const k of Object.keys(sum) as Array<keyof Totals>) sum[k] += counts[k] ?? 0;
    n += 1;
    process.stdout.write(`${ok ? 'ok' : 'not ok'} ${n} - ${name} # time=${r.ms.toFixed(0)}ms\n`);
    if (!ok) {
      failedFiles += 1;
      process.stdout.write(r.output.replace(/^/gm, '    ') + `\n    # exit code ${r.code}\n`);
    } else {
      for (const line of skipsIn(r.output)) process.stdout.write(`    ${line.trim()}\n`);
    }
  };

  const reportFile = (r: FileResult): void => {
    const t = totalsOf(r.output);
    const ok = r.code === 0 && t !== undefined && t.fail === 0;
    // A file that died before its totals, or failed with none of its tests failing, is one failure more.
    report(relative('.', r.file), r, ok, { ...t, fail: (t?.fail ?? 0) + (!ok && !t?.fail ? 1 : 0) });
  };

  // A command run alongside counts as one test.
  const commands = alongside.map(async (cmd) => {
    const r = await runFile(cmd, true);
    const ok = r.code === 0;
    report(cmd, r, ok, ok ? { total: 1, pass: 1 } : { total: 1, fail: 1 });
  });

  const worker = async (): Promise<void> => {
    for (let f = queue.shift(); f !== undefined; f = queue.shift()) reportFile(await runFile(f));
  };
  await Promise.all([...Array.from({ length: Math.min(jobs, files.length) }, worker), ...commands]);

  process.stdout.write(`1..${n}\n`);
  if (failedFiles > 0) process.stdout.write(`# ${failedFiles} of ${n} failed\n`);
  const shown = (Object.keys(sum) as Array<keyof Totals>).filter((k) => k === 'total' || k === 'pass' || k === 'fail' || sum[k] > 0);
  process.stdout.write(`# { ${shown.map((k) => `${k}: ${sum[k]}`).join(', ')} }\n`);
  process.stdout.write(`# time=${(performance.now() - started).toFixed(0)}ms\n`);
  return failedFiles > 0 || sum.fail > 0 ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
