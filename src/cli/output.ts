// Writing results. Ordinary output goes to stdout; key material only through fetch.
import { writeStdout } from './stdout.js';

/**
 * Text that may come from the server (notices, history, errors) is shown with
 * control characters replaced, so nobody can rewrite the owner's terminal
 * with escape sequences. Newlines and tabs are kept.
 */
export function clean(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, '?');
}

export function print(text: string): void {
  const t = clean(text);
  writeStdout(t.endsWith('\n') ? t : t + '\n');
}

export function printJson(value: unknown): void {
  // JSON escapes C0 controls itself; DEL and C1 (which some terminals obey) are escaped too.
  writeStdout(JSON.stringify(value, null, 2).replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) + '\n');
}

export function warn(text: string): void {
  process.stderr.write(`kmgr: warning: ${clean(text)}\n`);
}

export function info(text: string): void {
  process.stderr.write(`${clean(text)}\n`);
}
