// The one place where error kinds become HTTP statuses.
import { KmgrError, type ErrorKind } from '../protocol/errors.js';

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
};

const BY_CODE: Partial<Record<KmgrError['code'], number>> = {
  method_not_allowed: 405,
  unsupported_media_type: 415,
  auth_forbidden: 403,
  // The server's database is damaged: not the client's fault, and nothing to retry at once.
  storage_damaged: 503,
};

export function httpStatus(e: KmgrError): number {
  return BY_CODE[e.code] ?? BY_KIND[e.kind];
}
