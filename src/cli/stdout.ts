// stdout that cannot fail silently: a full disk (ENOSPC), a reader that went
// away (EPIPE) or a closed descriptor (`>&-`) is an error with exit 74, never
// exit 0 with nothing written. A script that pipes `kmgr fetch` into a program
// must learn that the key did not arrive.
import { fstatSync, readFileSync, statSync } from 'node:fs';
import { KmgrError } from '../protocol/errors.js';

let failure: NodeJS.ErrnoException | undefined;
let watching = false;

/** Records the first write error on stdout (without a listener, EPIPE would crash the process). */
export function watchStdout(): void {
  if (watching) return;
  watching = true;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    failure ??= e;
  });
}

/**
 * True when the shell closed fd 1 (`>&-`): node then reopens it on /dev/null
 * read-write, where a shell's `>/dev/null` opens it write-only. Linux only
 * (/proc); elsewhere this says false and a closed stdout goes unnoticed.
 */
function stdoutClosed(): boolean {
  try {
    const st = fstatSync(1);
    if (!st.isCharacterDevice() || st.rdev !== statSync('/dev/null').rdev) return false;
    const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync('/proc/self/fdinfo/1', 'utf8'));
    return flags !== null && (parseInt(flags[1]!, 8) & 3) === 2;
  } catch {
    return false;
  }
}

function outputError(what: string, code: string): KmgrError {
  return new KmgrError('output_failed', `${what} could not be written to stdout (${code})`);
}

/** Refuses before any work when stdout is closed: for fetch, before a use is counted. */
export function requireOpenStdout(what: string): void {
  if (stdoutClosed()) throw outputError(what, 'stdout is closed');
}

/**
 * Waits until stdout has taken everything written, then throws if any write
 * failed. `what` says what was lost, e.g. "the key (its use is counted)".
 */
export async function finishStdout(what = 'the output'): Promise<void> {
  watchStdout();
  if (!failure && !process.stdout.destroyed) {
    await new Promise<void>((resolve) => {
      process.stdout.write('', (e) => {
        if (e) failure ??= e as NodeJS.ErrnoException;
        resolve();
      });
    });
  }
  if (failure) throw outputError(what, failure.code ?? failure.message);
}

/** For main(): a command that printed and then found its stdout failed exits 74, whatever it returned. */
export async function checkStdoutAfter(code: number, reportError: (e: unknown) => number): Promise<number> {
  try {
    await finishStdout();
    if (stdoutClosed() && wroteSomething()) throw outputError('the output', 'stdout is closed');
    return code;
  } catch (e) {
    return code === 0 ? reportError(e) : code;
  }
}

let wrote = false;
const wroteSomething = (): boolean => wrote;

/** Every write to stdout goes through here, so a closed stdout matters only to commands that print. */
export function writeStdout(data: string | Uint8Array): void {
  watchStdout();
  wrote = true;
  process.stdout.write(data);
}
