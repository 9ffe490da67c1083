// Writing results. Ordinary output goes to stdout; key material only through fetch.
import { writeStdout } from './stdout.js';
import { cleanLine, cleanText, jsonForTerminal } from '../protocol/text.js';

/**
 * Text that may come from the server (notices, history, errors) is shown
 * through the one sanitiser (src/protocol/text.ts), so nobody can rewrite the
 * owner's terminal. Newlines and tabs are kept here; fields that must stay on
 * one line are cleaned with cleanLine where they are put into a line.
 */
const clean = cleanText;

export function print(text: string): void {
  const t = clean(text);
  writeStdout(t.endsWith('\n') ? t : t + '\n');
}

/** One line of output: nothing in it (a server's field) can break it or hide in it. */
export function printLine(text: string): void {
  writeStdout(cleanLine(text) + '\n');
}

/** One table row: each field cleaned to one line, fields separated by tabs. */
export function printRow(fields: string[]): void {
  writeStdout(fields.map((f) => cleanLine(f)).join('\t') + '\n');
}

export function printJson(value: unknown): void {
  writeStdout(jsonForTerminal(value, 2) + '\n');
}

export function warn(text: string): void {
  process.stderr.write(`kmgr: warning: ${cleanLine(text)}\n`);
}

export function info(text: string): void {
  process.stderr.write(`${clean(text)}\n`);
}
