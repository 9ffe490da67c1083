// npm test's runner (scripts/run-tests.ts): what CI's totals line is made from must count
// every failure, including a file that dies before its totals, and never report a red run green.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ROOT } from './support/index.js';
import { skipsIn, totalsOf } from '../scripts/tap-totals.js';

t.test('totals are read from the last summary line of a file', async (t) => {
  t.same(totalsOf('ok 1 - a\n# { total: 2, pass: 1, fail: 1 }\n# time=3ms\n'), { total: 2, pass: 1, fail: 1, skip: 0, todo: 0 });
  t.same(totalsOf('    # { total: 9, pass: 9 }\n# { total: 3, pass: 2, skip: 1 }\n'), { total: 3, pass: 2, fail: 0, skip: 1, todo: 0 }, 'a subtest-like indented line is not the file\'s');
  t.equal(totalsOf('TAP version 14\nok 1 - a\n'), undefined, 'no summary: the file did not finish');
  t.same(skipsIn('ok 1 - a\n    ok 2 - b # SKIP needs openssl\nok 3 - c # TODO later\n'), ['    ok 2 - b # SKIP needs openssl', 'ok 3 - c # TODO later']);
});

function runner(files: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    // As under tap's own runner, which names each file it starts: the files the runner starts must not inherit that.
    const env = { ...process.env, TAP_CHILD_ID: '7', TAP_JOB_ID: '1' };
    const child = spawn(process.execPath, [join(ROOT, 'dist', 'scripts', 'run-tests.js'), ...files], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code, out }));
  });
}

t.test('the runner sums every file, shows a failing file in full and exits 1', async (t) => {
  // Inside the repository, so that the files find its tap.
  const dir = await mkdtemp(join(ROOT, 'dist', 'runner-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = async (name: string, body: string): Promise<string> => {
    const p = join(dir, name);
    await writeFile(p, `import t from 'tap';\n${body}\n`);
    return p;
  };
  const pass = await file('pass.test.mjs', "t.pass('fine');\nt.test('later', { skip: 'no widget here' }, async () => {});");
  const fail = await file('fail.test.mjs', "t.equal(1, 2, 'one is two');\nt.pass('fine');");
  const crash = await file('crash.test.mjs', "t.pass('fine');\nprocess.exit(3);");
  const died = await file('died.test.mjs', "process.kill(process.pid, 'SIGKILL');");

  const green = await runner([pass]);
  t.equal(green.code, 0, 'all passing: exit 0');
  t.match(green.out, /^# \{ total: 2, pass: 1, fail: 0, skip: 1 \}$/m, 'the totals line');
  t.match(green.out, /ok 2 - later # SKIP no widget here/, 'a skip is shown with its reason');

  const beside = await runner(['--alongside', 'echo linted; exit 2', pass]);
  t.equal(beside.code, 1, 'a command run alongside that fails: exit 1');
  t.match(beside.out, /^# \{ total: 3, pass: 1, fail: 1, skip: 1 \}$/m, 'counted as one test');
  t.match(beside.out, /^not ok \d+ - echo linted; exit 2 .*\n {4}linted$/m, 'its output shown');

  const red = await runner([pass, fail, crash, died]);
  t.equal(red.code, 1, 'a failure: exit 1');
  t.match(red.out, /^# \{ total: 5, pass: 3, fail: 3, skip: 1 \}$/m, 'a failed assertion, a bad exit code and a file killed before its totals each count');
  t.match(red.out, /^not ok \d+ - .*fail\.test\.mjs/m, 'the failing file is marked');
  t.match(red.out, /^ {4}not ok 1 - one is two$/m, 'and its output shown');
  t.match(red.out, /^# 3 of 4 failed$/m);
});
