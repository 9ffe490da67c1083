// The one place where error kinds become process exit codes (sysexits.h), and
// where every other exit status kmgr, kmgrd and the kmgr agent use is named.
import type { ErrorCode, ErrorKind } from '../protocol/errors.js';

export const EXIT = {
  OK: 0,
  /** audit found uses this client did not make; verify did not match. */
  FINDINGS: 1,
  /** the kmgr agent process could not start, or lost its socket or its starter (`kmgr agent start` reports why). */
  AGENT_FAILED: 1,
  USAGE: 64,
  DATAERR: 65,
  NOINPUT: 66,
  UNAVAILABLE: 69,
  SOFTWARE: 70,
  CANTCREAT: 73,
  /** a write to stdout or an output file failed */
  IOERR: 74,
  NOPERM: 77,
  CONFIG: 78,
  /** Ctrl-C at a prompt (128 + SIGINT, as a shell reports it) */
  CANCELLED: 130,
} as const;

const BY_KIND: Record<ErrorKind, number> = {
  usage: EXIT.USAGE,
  integrity: EXIT.DATAERR,
  not_found: EXIT.NOINPUT,
  unavailable: EXIT.UNAVAILABLE,
  internal: EXIT.SOFTWARE,
  refused: EXIT.NOPERM,
  auth: EXIT.NOPERM,
  config: EXIT.CONFIG,
  conflict: EXIT.CANTCREAT,
  too_large: EXIT.USAGE,
  rate_limited: EXIT.UNAVAILABLE,
  io: EXIT.IOERR,
  cancelled: EXIT.CANCELLED,
};

/** Codes whose exit status is fixed by convention rather than by kind. */
const BY_CODE: Partial<Record<ErrorCode, number>> = {
  command_not_found: 127,
  command_not_executable: 126,
};

export function exitCodeFor(kind: ErrorKind, code?: ErrorCode): number {
  return (code !== undefined ? BY_CODE[code] : undefined) ?? BY_KIND[kind];
}
