// The one place where error kinds become HTTP statuses, and where the few
// statuses kmgrd sends for failures it meets before any error code applies are named.
import { ERROR_CODES, KmgrError, type ErrorCode, type ErrorKind } from '../protocol/errors.js';

const BY_KIND: Record<ErrorKind, number> = {
  usage: 400,
  integrity: 400,
  not_found: 404,
  unavailable: 503,
  internal: 500,
  refused: 403,
  auth: 401,
  config: 500,
  conflict: 409,
  too_large: 413,
  rate_limited: 429,
  io: 500,
  cancelled: 400,
};

const BY_CODE: Partial<Record<KmgrError['code'], number>> = {
  method_not_allowed: 405,
  unsupported_media_type: 415,
  auth_forbidden: 403,
  // The server's database is damaged: not the client's fault, and nothing to retry at once.
  storage_damaged: 503,
};

export function httpStatus(e: KmgrError): number {
  return statusForCode(e.code);
}

export function statusForCode(code: ErrorCode): number {
  return BY_CODE[code] ?? BY_KIND[ERROR_CODES[code]];
}

/**
 * Failures of the HTTP exchange itself, met by node's parser before any route
 * runs. The body still says bad_request (a client reads the code, not the
 * status); the status tells a proxy or a curl user which limit was hit.
 */
export const TRANSPORT_STATUS = {
  /** an Expect header other than 100-continue */
  expectationFailed: 417,
  /** headers over node's limit (threat 14) */
  headersTooLarge: 431,
  /** headers or body not received in time (threat 19) */
  requestTimeout: 408,
  /** anything else node's parser refused */
  malformed: 400,
} as const;

/** The reason phrases of the statuses written on a raw socket, where node does not add them. */
export const REASON: Record<number, string> = {
  [TRANSPORT_STATUS.malformed]: 'Bad Request',
  [TRANSPORT_STATUS.requestTimeout]: 'Request Timeout',
  [TRANSPORT_STATUS.headersTooLarge]: 'Request Header Fields Too Large',
};

/** Whether a status answers a failure: the audit log records the error code then. */
export const isFailure = (status: number): boolean => status >= 400;
