// How both command-line fronts report a failure: one sentence on stderr, or a
// JSON error with a stable code under --json; the exit code from exit-codes.ts.
import { KmgrError, UsageError } from '../protocol/errors.js';
import { asKmgrError, toWire } from '../protocol/wire-error.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { cleanLine, jsonForTerminal } from '../protocol/text.js';

/** commander's errors, recognised by shape so that this module need not load commander (fetch's fast path does not). */
interface CommanderLike {
  code: string;
  exitCode: number;
  message: string;
}
const isCommanderError = (e: unknown): e is CommanderLike =>
  e instanceof Error && typeof (e as unknown as Partial<CommanderLike>).code === 'string' && (e as unknown as CommanderLike).code.startsWith('commander.') && typeof (e as unknown as Partial<CommanderLike>).exitCode === 'number';

export function reportError(e: unknown, prog: string, json: boolean, stderr: NodeJS.WritableStream = process.stderr): number {
  if (isCommanderError(e)) {
    if (e.exitCode === 0) return EXIT.OK; // --help, --version
    if (e.code === 'commander.help' || e.code === 'commander.helpDisplayed') return EXIT.USAGE; // help shown for a missing command
    // commander's own printing is silenced: its message is reported like any other usage error.
    e = new UsageError(`${e.message.replace(/^error: /, '')} (see ${prog} --help)`);
  }
  // A library may wrap our error (level wraps what a value encoding throws): report ours.
  for (let i = 0, c = e; i < 4 && c instanceof Error && !(c instanceof KmgrError); i++) if ((c = (c as { cause?: unknown }).cause) instanceof KmgrError) e = c;
  const err = asKmgrError(e, 'internal error');
  // An error is one line in every mode: whatever the server put in its message or details.
  if (json) stderr.write(jsonForTerminal(toWire(err)) + '\n');
  else stderr.write(`${prog}: ${cleanLine(err.message)}\n`);
  if (!(e instanceof KmgrError) && process.env.KMGR_DEBUG && e instanceof Error) stderr.write(`${e.stack}\n`);
  return exitCodeFor(err.kind, err.code);
}
