// Reading and checking what a command gave back: its exit, its one line, its JSON error.
import type { Test } from 'tap';
import type { RunResult } from './cli.js';

/** A single non-empty line, newline-terminated. */
export function oneLine(s: string): boolean {
  return s.endsWith('\n') && s.trimEnd().split('\n').length === 1 && s.trim().length > 0;
}

/** The JSON error a --json command wrote to stderr (empty if there is none). */
export function jsonError(r: RunResult): { code?: string; message?: string } {
  try {
    return (JSON.parse(r.stderr) as { error: { code: string; message: string } }).error;
  } catch {
    return {};
  }
}

/** The code of a thrown error (the client library's errors, Node's errno errors), if it has one. */
export function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String(e.code) : undefined;
}

/** Asserts exit 0, with stderr in the message when not. */
export const ok = (t: Test, r: RunResult, what: string): void => {
  t.equal(r.code, 0, `${what}: exit 0${r.code !== 0 ? ` (got ${r.code}: ${r.stderr.trim()})` : ''}`);
};

/** Asserts a refusal: exit 77, nothing on stdout, and the JSON error code when given. */
export const refused77 = (t: Test, r: RunResult, code: string, what: string): void => {
  t.equal(r.code, 77, `${what}: exit 77 (got ${r.code}: ${r.stderr.trim()})`);
  t.equal(r.stdoutBytes.length, 0, `${what}: nothing on stdout`);
  if (code) t.equal(jsonError(r).code, code, `${what}: error code ${code}`);
};
