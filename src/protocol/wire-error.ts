// The one codec for an error on every wire kmgr speaks: the key server's HTTP
// error body, the agent's reply frames (and its boot reply), the admin socket's
// answer line. Each carries the same fields, so a stable code means the same
// thing, and gives the same exit code, however it travelled. Pure: which peer to
// trust and how to word its message is the transport's business, passed in.
import { KmgrError, isErrorCode, toWire, type ErrorCode, type WireError } from './errors.js';

// toWire lives beside KmgrError (bench/ imports it from there); every src/ caller goes through here.
export { toWire, type WireError };

/** An error's fields as they travel. */
type WireErrorFields = WireError['error'];

/** Limits for a transport with bounded frames (the agent's): a longer message is cut, details too long are left out. */
interface WireCaps {
  message?: number;
  detailsJson?: number;
}

/** The fields to send for `e`; never its cause, which may hold paths or a library's words meant for logs. */
export function encodeError(e: KmgrError, caps: WireCaps = {}): WireErrorFields {
  const { code, message, details } = toWire(e).error;
  const fits = details !== undefined && typeof details === 'object' && !Array.isArray(details) && (caps.detailsJson === undefined || JSON.stringify(details).length <= caps.detailsJson);
  return { code, message: caps.message === undefined ? message : message.slice(0, caps.message), ...(fits ? { details } : {}) };
}

/**
 * A thrown value as the KmgrError to report or send: ours as it is; anything
 * else (a bug, a library's error) becomes `code` with `what` before its
 * message, the original kept as cause for logs and KMGR_DEBUG.
 */
export function asKmgrError(e: unknown, what: string, code: ErrorCode = 'internal'): KmgrError {
  if (e instanceof KmgrError) return e;
  return new KmgrError(code, `${what}: ${e instanceof Error ? e.message : String(e)}`).because(e);
}

/** An error's fields as a peer sent them, shape-checked by the transport's schema but not yet trusted: the code may be one this version does not know. */
export interface ReceivedError {
  code: string;
  message: string;
  details?: Record<string, unknown> | null | undefined;
}

interface DecodeOptions {
  /**
   * What a code this version does not know becomes: still a failure, never a
   * success, and never an arbitrary string where a stable code belongs.
   */
  unknown: (f: ReceivedError) => KmgrError;
  /** How the peer's message is told (the key server's words are cleaned and attributed). */
  message?: (m: string) => string;
  /** How the peer's details are passed on (the key server's strings are cleaned). */
  details?: (d: Record<string, unknown>) => Record<string, unknown>;
  /** The lower-level error this one explains, kept as cause. */
  cause?: unknown;
}

/** The typed error a peer's fields say; its stable code decides the exit code. */
export function decodeError(f: ReceivedError, o: DecodeOptions): KmgrError {
  const e = isErrorCode(f.code) ? known(f.code, f, o) : o.unknown(f);
  return o.cause === undefined ? e : e.because(o.cause);
}

function known(code: ErrorCode, f: ReceivedError, o: DecodeOptions): KmgrError {
  // A null the peer sent says no more than none: toWire leaves both out.
  const details = f.details === undefined || f.details === null ? undefined : o.details ? o.details(f.details) : f.details;
  return new KmgrError(code, o.message ? o.message(f.message) : f.message, details);
}
