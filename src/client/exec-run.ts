// Running a program with keys (kmgr exec): each key is handed over in an
// environment variable or in a file whose path is in the variable, never in
// argv (every local user can read every process's argv through /proc). Files
// live in a private directory (0700, files 0600) on a memory-backed file
// system where there is one, so the key never reaches a disk, and the
// directory is removed when the program exits, however it exits. Signals sent
// to kmgr are passed on, and the program's exit status becomes kmgr's: the
// complaints about `op run` and `sops exec-env` (lost exit codes, unforwarded
// signals, a terminal required) are what this defends against.
import { spawn } from 'node:child_process';
import { accessSync, constants as fsc, mkdtempSync, rmSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import { constants as osc, tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { KmgrError } from '../protocol/errors.js';

export interface HandedKey {
  /** The variable the program reads: the key itself, or the path of its file. */
  variable: string;
  how: 'env' | 'file';
  /** File name inside the private directory (how: 'file'). */
  fileName: string;
  /** The key as formatted; wiped by runWithKeys once written or copied. */
  bytes: Uint8Array;
}

/** statfs(2) magic numbers of file systems kept in memory only. */
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

/** Signals a shell or supervisor sends to "the program": each is passed on to the child. */
const FORWARDED_SIGNALS = ['SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH', 'SIGALRM'] as const;

function memoryBacked(dir: string): boolean {
  try {
    accessSync(dir, fsc.W_OK | fsc.X_OK);
    const t = statfsSync(dir).type;
    return t === TMPFS_MAGIC || t === RAMFS_MAGIC;
  } catch {
    return false;
  }
}

/**
 * Where key files go: the first writable memory-backed directory of /dev/shm,
 * $XDG_RUNTIME_DIR and the temporary directory; else the temporary directory
 * (memoryBacked false, and the caller warns).
 */
function keyFileBase(env: NodeJS.ProcessEnv = process.env): { dir: string; memoryBacked: boolean } {
  const xdg = env.XDG_RUNTIME_DIR;
  const candidates = ['/dev/shm', ...(xdg && isAbsolute(xdg) ? [xdg] : []), tmpdir()];
  for (const c of candidates) if (memoryBacked(c)) return { dir: c, memoryBacked: true };
  return { dir: tmpdir(), memoryBacked: false };
}

/**
 * Finds COMMAND as execvp would (PATH search unless it has a slash), before any
 * key is fetched: a typo should cost no counted use.
 */
export function checkCommand(command: string, env: NodeJS.ProcessEnv = process.env): void {
  const runnable = (p: string): 'ok' | 'missing' | 'denied' => {
    try {
      accessSync(p, fsc.F_OK);
    } catch {
      return 'missing';
    }
    try {
      accessSync(p, fsc.X_OK);
      return statSync(p).isDirectory() ? 'denied' : 'ok';
    } catch {
      return 'denied';
    }
  };
  if (command.includes('/')) {
    const r = runnable(command);
    if (r === 'missing') throw new KmgrError('command_not_found', `${command}: no such file`);
    if (r === 'denied') throw new KmgrError('command_not_executable', `${command}: permission denied`);
    return;
  }
  let denied = false;
  for (const d of (env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    const r = runnable(join(d || '.', command));
    if (r === 'ok') return;
    if (r === 'denied') denied = true;
  }
  if (denied) throw new KmgrError('command_not_executable', `${command}: permission denied`);
  throw new KmgrError('command_not_found', `${command}: command not found`);
}

interface ExecOptions {
  /** Environment of the program before the keys are added. */
  env: NodeJS.ProcessEnv;
  /** Told once the private directory exists (tests and --verbose-style notes). */
  onDir?: (dir: string) => void;
  warn?: (text: string) => void;
}

/** Runs command with the keys; resolves to the exit status kmgr should have (128+n for death by signal n). */
export async function runWithKeys(command: string, args: string[], keys: HandedKey[], o: ExecOptions): Promise<number> {
  const env: NodeJS.ProcessEnv = { ...o.env };
  let dir: string | undefined;
  const cleanup = (): void => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  };
  // Removed even when kmgr itself exits early (an uncaught error, process.exit):
  // 'exit' handlers run synchronously, so rmSync is used throughout.
  process.once('exit', cleanup);
  try {
    if (keys.some((k) => k.how === 'file')) {
      const base = keyFileBase(o.env);
      if (!base.memoryBacked) o.warn?.(`no memory-backed directory (/dev/shm, $XDG_RUNTIME_DIR) is writable: key files go to ${base.dir}`);
      dir = mkdtempSync(join(base.dir, 'kmgr-exec-')); // mode 0700
      o.onDir?.(dir);
    }
    for (const k of keys) {
      if (k.how === 'env') {
        env[k.variable] = Buffer.from(k.bytes).toString('utf8');
      } else {
        const path = join(dir!, k.fileName);
        writeFileSync(path, k.bytes, { mode: 0o600, flag: 'wx' });
        env[k.variable] = path;
      }
      k.bytes.fill(0);
    }
    return await spawnAndWait(command, args, env);
  } finally {
    cleanup();
    process.off('exit', cleanup);
  }
}

function spawnAndWait(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    // No shell: the command and its arguments go to execve as given.
    const child = spawn(command, args, { stdio: 'inherit', env });
    const forward = (sig: NodeJS.Signals) => (): void => {
      try {
        child.kill(sig);
      } catch {
        /* the child is gone already; its exit is on its way */
      }
    };
    const handlers = FORWARDED_SIGNALS.map((s) => [s, forward(s)] as const);
    for (const [s, h] of handlers) process.on(s, h);
    const done = (): void => {
      for (const [s, h] of handlers) process.off(s, h);
    };
    child.once('error', (e: NodeJS.ErrnoException) => {
      done();
      if (e.code === 'ENOENT') reject(new KmgrError('command_not_found', `${command}: command not found`));
      else if (e.code === 'EACCES') reject(new KmgrError('command_not_executable', `${command}: permission denied`));
      else reject(new KmgrError('internal', `cannot run ${command}: ${e.message}`));
    });
    child.once('exit', (code, signal) => {
      done();
      if (signal) resolve(128 + (osc.signals[signal] ?? 0));
      else resolve(code ?? 0);
    });
  });
}
