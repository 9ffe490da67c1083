// Writing results. Ordinary output goes to stdout; key material only through fetch.
import { cleanLine, cleanText, jsonForTerminal } from '../protocol/text.js';

/**
 * Text that may come from the server (notices, history, errors) is shown
 * through the one sanitiser (src/protocol/text.ts), so nobody can rewrite the
 * owner's terminal. Newlines and tabs are kept here; fields that must stay on
 * one line are cleaned with cleanLine where they are put into a line.
 */
export const clean = cleanText;

export function print(text: string): void {
  const t = clean(text);
  process.stdout.write(t.endsWith('\n') ? t : t + '\n');
}

/** One line of output: nothing in it (a server's field) can break it or hide in it. */
export function printLine(text: string): void {
  process.stdout.write(cleanLine(text) + '\n');
}

/** One table row: each field cleaned to one line, fields separated by tabs. */
export function printRow(fields: string[]): void {
  process.stdout.write(fields.map((f) => cleanLine(f)).join('\t') + '\n');
}

export function printJson(value: unknown): void {
  process.stdout.write(jsonForTerminal(value, 2) + '\n');
}

export function warn(text: string): void {
  process.stderr.write(`kmgr: warning: ${cleanLine(text)}\n`);
}

export function info(text: string): void {
  process.stderr.write(`${clean(text)}\n`);
}

/** Resolves once everything written to stdout has been flushed (pipes are async). */
export function flushStdout(): Promise<void> {
  return new Promise((resolve) => {
    if (process.stdout.writableLength === 0) resolve();
    else process.stdout.write('', () => resolve());
  });
}
