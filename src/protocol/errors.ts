// Every error kmgr raises is a KmgrError with a stable string code. The code's
// kind decides the CLI exit code (src/cli/exit-codes.ts) and the HTTP status
// (src/server/http-status.ts); nothing else maps errors.

export type ErrorKind =
  | 'usage' // the caller's words are off
  | 'integrity' // tamper, rollback, a box that does not authenticate
  | 'not_found' // unknown partner, key, person or route
  | 'unavailable' // server unreachable, storage down
  | 'internal' // a bug
  | 'refused' // wrong passphrase, key refused by its terms
  | 'auth' // request authentication failed
  | 'config' // local configuration missing or unsafe
  | 'conflict' // already exists
  | 'too_large' // body over the cap
  | 'rate_limited'; // slow down

/** The stable codes, each with its kind. Clients and servers both read this table. */
export const ERROR_CODES = {
  usage: 'usage',
  bad_request: 'usage',
  method_not_allowed: 'usage',
  unsupported_media_type: 'usage',
  body_too_large: 'too_large',
  rate_limited: 'rate_limited',
  not_found: 'not_found',
  unknown_partner: 'not_found',
  unknown_key: 'not_found',
  unknown_person: 'auth',
  auth_missing: 'auth',
  auth_malformed: 'auth',
  auth_bad_signature: 'auth',
  auth_stale: 'auth',
  auth_replay: 'auth',
  auth_forbidden: 'auth',
  auth_wrong_server: 'auth',
  key_exists: 'conflict',
  person_exists: 'conflict',
  keystore_exists: 'conflict',
  version_conflict: 'conflict',
  target_not_empty: 'conflict',
  agent_running: 'conflict',
  terms_inhibited: 'refused',
  terms_expired: 'refused',
  terms_max_uses: 'refused',
  terms_max_per_day: 'refused',
  terms_max_per_week: 'refused',
  terms_max_per_month: 'refused',
  wrong_passphrase: 'refused',
  terminal_refused: 'usage',
  integrity: 'integrity',
  rollback: 'integrity',
  /** kmgrd's own database failed a check: refused, never served (exit 65, HTTP 503). */
  storage_damaged: 'integrity',
  kdf_too_weak: 'integrity',
  config: 'config',
  unsafe_permissions: 'config',
  not_initialised: 'config',
  unavailable: 'unavailable',
  internal: 'internal',
  // kmgr exec: the program could not be started (exit 127 and 126, as shells and env(1) do).
  command_not_found: 'not_found',
  command_not_executable: 'usage',
  // Certificates beside keys.
  certificate_mismatch: 'usage',
  chain_broken: 'usage',
  no_certificate: 'not_found',
  key_type_unsupported: 'usage',
} as const satisfies Record<string, ErrorKind>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, s);
}

export class KmgrError extends Error {
  readonly code: ErrorCode;
  /** Extra machine-readable facts (for example which limit refused a fetch). Never secrets. */
  readonly details: Record<string, unknown> | undefined;
  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'KmgrError';
    this.code = code;
    this.details = details;
  }
  get kind(): ErrorKind {
    return ERROR_CODES[this.code];
  }
  /**
   * Keeps the lower-level error this one explains (a file-system or socket
   * error, a parse failure) as `cause`, for logs and debugging; the one-line
   * message stays ours. Never sent over the wire (toWire takes code, message, details).
   */
  because(cause: unknown): this {
    Object.defineProperty(this, 'cause', { value: cause, enumerable: false, writable: true, configurable: true });
    return this;
  }
}

export class UsageError extends KmgrError {
  constructor(message: string, code: ErrorCode = 'usage') {
    super(code, message);
  }
}
export class IntegrityError extends KmgrError {
  constructor(message: string, code: ErrorCode = 'integrity') {
    super(code, message);
  }
}
export class NotFoundError extends KmgrError {}
export class AuthError extends KmgrError {}
export class RefusedError extends KmgrError {}
export class ConfigError extends KmgrError {
  constructor(message: string, code: ErrorCode = 'config') {
    super(code, message);
  }
}
export class UnavailableError extends KmgrError {
  constructor(message: string) {
    super('unavailable', message);
  }
}
export class InternalError extends KmgrError {
  constructor(message: string) {
    super('internal', message);
  }
}

/** The JSON body of every error response, and of `--json` errors on the CLI. */
export interface WireError {
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}

export function toWire(e: KmgrError): WireError {
  return { error: { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) } };
}
