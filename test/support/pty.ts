// kmgr under a pseudo-terminal, for what it does only on a terminal (prompts,
// no-echo input, refusing to print a secret to a screen). Tests using these skip
// themselves without the program behind them (tools.ts: hasScript, hasPyPty).
import { spawn } from 'node:child_process';
import { cleanEnv, untracked } from './cli.js';
import { KMGR } from './paths.js';

/** `node bin/kmgr.js ARGS` as one shell command line, for script(1) -c. */
function shellCommand(args: string[]): string {
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  return [process.execPath, KMGR, ...args].map(q).join(' ');
}

/** Runs `kmgr ARGS` under a pseudo-terminal with util-linux script(1). Output is the terminal's (stdout+stderr, CRLF). */
export function underPty(args: string[], home: string): Promise<{ code: number; out: string }> {
  const cmd = shellCommand(args);
  return new Promise((resolve, reject) => {
    const env: Record<string, string> = { KMGR_HOME: home, ...cleanEnv() };
    const child = spawn(...untracked('script', ['-qec', cmd, '/dev/null']), { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const out: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => out.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, out: Buffer.concat(out).toString('utf8').replace(/\r\n/g, '\n') });
    });
    child.stdin.end();
  });
}

/**
 * kmgr ARGS under a pseudo-terminal (util-linux script(1)) that the test types
 * into: `waitFor` resolves once the terminal has shown text matching re (the
 * event, not a delay), `type` sends keys, `done` gives the exit code and screen.
 */
export function ptySession(args: string[], home: string, env: Record<string, string> = {}) {
  const cmd = shellCommand(args);
  const e: Record<string, string> = { KMGR_HOME: home, ...env, ...cleanEnv() };
  const child = spawn(...untracked('script', ['-qefc', cmd, '/dev/null']), { env: e, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  let screen = '';
  const waiters: Array<{ re: RegExp; from: number; resolve: (end: number) => void }> = [];
  /** Where the match of re in screen after `from` ends, or -1. */
  const matchEnd = (re: RegExp, from: number): number => {
    const m = re.exec(screen.slice(from));
    return m ? from + m.index + m[0].length : -1;
  };
  const onData = (d: Buffer): void => {
    screen += d.toString('utf8').replace(/\r\n/g, '\n');
    for (const w of [...waiters]) {
      const end = matchEnd(w.re, w.from);
      if (end >= 0) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(end);
      }
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const exited = new Promise<number>((resolve) => child.on('close', (code) => {
    clearTimeout(timer);
    resolve(code ?? -1);
  }));
  let mark = 0;
  return {
    /** Waits for re in what the terminal showed after the previous match. */
    waitFor(re: RegExp): Promise<void> {
      return new Promise<void>((resolve) => {
        const done = (end: number): void => {
          mark = end;
          resolve();
        };
        const end = matchEnd(re, mark);
        if (end >= 0) done(end);
        else waiters.push({ re, from: mark, resolve: done });
      });
    },
    type(keys: string): void {
      child.stdin.write(keys);
    },
    async done(): Promise<{ code: number; screen: string }> {
      child.stdin.end();
      return { code: await exited, screen };
    },
  };
}

/**
 * A python3 program that runs argv[1:] on a new pseudo-terminal, relays the
 * terminal to stdout and stdin to the terminal, and prints "__EXIT__ N" when
 * the program exits (then keeps relaying for what it left on the terminal,
 * such as an agent's --confirm prompts).
 */
export const PTY_RELAY = [
  'import os, pty, sys, select',
  'pid, fd = pty.fork()',
  'if pid == 0:',
  '    os.execv(sys.argv[1], sys.argv[1:])',
  'done = False',
  'while True:',
  '    if not done:',
  '        w, st = os.waitpid(pid, os.WNOHANG)',
  '        if w:',
  '            done = True',
  '            os.write(1, ("\\n__EXIT__ %d\\n" % os.waitstatus_to_exitcode(st)).encode())',
  '    r, _, _ = select.select([fd, 0], [], [], 0.1)',
  '    if fd in r:',
  '        try:',
  '            data = os.read(fd, 4096)',
  '        except OSError:',
  '            break',
  '        if not data:',
  '            break',
  '        os.write(1, data)',
  '    if 0 in r:',
  '        data = os.read(0, 4096)',
  '        if not data:',
  '            break',
  '        os.write(fd, data)',
].join('\n');
