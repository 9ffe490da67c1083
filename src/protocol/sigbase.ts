// Request signatures: a strict profile of RFC 9421 (HTTP Message Signatures).
// Covered: method, authority, path, query, the body's Content-Digest and the
// device label (Kmgr-Device: which of the person's devices made the request), with
// created, expires, nonce, keyid, alg and a context tag (threats 7 and 8).
// Only this exact serialization is accepted, so there is nothing to negotiate.

export const SIG_LABEL = 'kmgr';
export const SIG_TAG = 'kmgr/request/v1';
export const COMPONENTS = '("@method" "@authority" "@path" "@query" "content-digest" "kmgr-device")';
export const DEVICE_HEADER = 'kmgr-device';
/** Device labels: short, printable, no quotes or separators. */
export const DEVICE_LABEL = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,39}$/;
/** How far a request's creation time may be from the server's clock. */
export const MAX_SKEW_SECONDS = 60;
/** Longest lifetime a client may give a signature. */
export const MAX_LIFETIME_SECONDS = 120;
export const DEFAULT_LIFETIME_SECONDS = 60;

export interface SignatureParams {
  created: number; // unix seconds
  expires: number;
  nonce: string; // 22 base64url characters (128 bits)
  keyid: string; // management key ID
}

export interface RequestParts {
  method: string;
  authority: string;
  path: string;
  query: string; // "" or "?a=b"
  contentDigest: string; // "sha-256=:<base64>:"
  device?: string; // absent header signs as the empty value
}

export function serializeParams(p: SignatureParams): string {
  return `${COMPONENTS};created=${p.created};expires=${p.expires};nonce="${p.nonce}";keyid="${p.keyid}";alg="ed25519";tag="${SIG_TAG}"`;
}

const INPUT_RE = new RegExp(
  '^' + SIG_LABEL + '=' + COMPONENTS.replace(/[()]/g, '\\$&') +
    ';created=(\\d{1,12});expires=(\\d{1,12});nonce="([A-Za-z0-9_-]{22})";keyid="(mk_[A-Za-z0-9_-]{22})";alg="ed25519";tag="' +
    SIG_TAG.replace(/\//g, '\\/') + '"$',
);
const SIG_RE = new RegExp('^' + SIG_LABEL + '=:([A-Za-z0-9+/]{86}==):$');
const DIGEST_RE = /^sha-256=:([A-Za-z0-9+/]{43}=):$/;

export function parseSignatureInput(header: string): SignatureParams | undefined {
  const m = INPUT_RE.exec(header);
  if (!m) return undefined;
  return { created: Number(m[1]), expires: Number(m[2]), nonce: m[3]!, keyid: m[4]! };
}

export function parseSignature(header: string): string | undefined {
  return SIG_RE.exec(header)?.[1];
}

export function parseContentDigest(header: string): string | undefined {
  return DIGEST_RE.exec(header)?.[1];
}

export function formatContentDigest(b64: string): string {
  return `sha-256=:${b64}:`;
}

export function formatSignature(b64: string): string {
  return `${SIG_LABEL}=:${b64}:`;
}

/** The RFC 9421 signature base for our fixed component list. */
export function signatureBase(r: RequestParts, p: SignatureParams): string {
  return (
    `"@method": ${r.method.toUpperCase()}\n` +
    `"@authority": ${r.authority.toLowerCase()}\n` +
    `"@path": ${r.path}\n` +
    `"@query": ${r.query === '' ? '?' : r.query}\n` +
    `"content-digest": ${r.contentDigest}\n` +
    `"kmgr-device": ${r.device ?? ''}\n` +
    `"@signature-params": ${serializeParams(p)}`
  );
}
