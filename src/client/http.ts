// The client's only network path: node:https (undici would add ~350 ms to
// every CLI start) over a connection from tls-connect.ts. Every request is
// signed with the management key.
import { request as httpsRequest } from 'node:https';
import { openTls, Preconnect } from './tls-connect.js';
import { KmgrError, UnavailableError, IntegrityError, isErrorCode } from '../protocol/errors.js';
import { ErrorBody } from '../protocol/messages.js';
import { DEFAULT_LIFETIME_SECONDS, DEVICE_HEADER, formatContentDigest, formatSignature, serializeParams, signatureBase, SIG_LABEL, type SignatureParams } from '../protocol/sigbase.js';
import type { Schema } from '../protocol/schema.js';
import { sha256 } from '../crypto/hash.js';
import { toB64, toB64url, utf8 } from '../crypto/bytes.js';
import { randomBytes } from '../crypto/random.js';
import { TAG_REQUEST } from '../crypto/sign.js';

export interface Endpoint {
  server: string; // https://host:port
  ca: string | undefined; // PEM
  /** A connection being opened ahead of the first request (see Preconnect). */
  preconnect?: Preconnect;
}

export interface Identity {
  keyId: string;
  /** A local key, or the agent's (whose answers arrive asynchronously). */
  signer: { sign(tag: typeof TAG_REQUEST, payload: Uint8Array): Uint8Array | Promise<Uint8Array> };
  /** Which of the person's devices signs; recorded in the server's history. */
  device?: string;
  /** Test hook: the clock the signature's created time is taken from. */
  now?: () => number;
}

export interface Sent<T> {
  body: T;
  params: SignatureParams;
}

const TIMEOUT_MS = 15_000;

function friendlyNetworkError(e: NodeJS.ErrnoException, server: string): KmgrError {
  const code = e.code ?? '';
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS_CERT_ALTNAME/.test(code)) {
    return new UnavailableError(`cannot verify the TLS certificate of ${server} (${code}); pass the server's certificate with --ca`);
  }
  return new UnavailableError(`cannot reach the key server at ${server} (${code || e.message})`).because(e);
}

/** Starts the TLS handshake with the server now, for the first request to use (see Preconnect). */
export function preconnect(ep: Endpoint): void {
  ep.preconnect?.discard();
  ep.preconnect = new Preconnect({ server: ep.server, ca: ep.ca }, TIMEOUT_MS);
}

/** 128 random bits, as the signature profile requires. */
export const newNonce = (): string => toB64url(randomBytes(16));

export async function signedRequest<T>(
  ep: Endpoint,
  id: Identity,
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
  path: string,
  body: unknown,
  schema: Schema<T>,
  /** A nonce chosen by the caller, who recorded it before sending (fetch does, for the audit). */
  nonce?: string,
): Promise<Sent<T>> {
  const url = new URL(path, ep.server);
  const bytes = body === undefined ? new Uint8Array(0) : utf8(JSON.stringify(body));
  const created = Math.floor((id.now ?? Date.now)() / 1000);
  const params: SignatureParams = {
    created,
    expires: created + DEFAULT_LIFETIME_SECONDS,
    nonce: nonce ?? newNonce(),
    keyid: id.keyId,
  };
  const digest = formatContentDigest(toB64(sha256(bytes)));
  const device = id.device ?? '';
  const base = signatureBase({ method, authority: url.host, path: url.pathname, query: url.search, contentDigest: digest, device }, params);
  const signature = await id.signer.sign(TAG_REQUEST, utf8(base));
  const headers: Record<string, string | number> = {
    host: url.host,
    'content-digest': digest,
    'signature-input': `${SIG_LABEL}=${serializeParams(params)}`,
    signature: formatSignature(toB64(signature)),
    ...(device ? { [DEVICE_HEADER]: device } : {}),
    accept: 'application/json',
    'content-length': bytes.length,
  };
  if (bytes.length > 0) headers['content-type'] = 'application/json';
  const { status, text } = await send(ep, url, method, headers, bytes);
  return { body: parseReply(status, text, schema, ep.server), params };
}

/** For the endpoints that need no management key (health, verify, directory). */
export async function unsignedRequest<T>(ep: Endpoint, method: 'GET' | 'POST', path: string, body: unknown, schema: Schema<T>): Promise<T> {
  const url = new URL(path, ep.server);
  const bytes = body === undefined ? new Uint8Array(0) : utf8(JSON.stringify(body));
  const headers: Record<string, string | number> = { accept: 'application/json', 'content-length': bytes.length };
  if (bytes.length > 0) headers['content-type'] = 'application/json';
  const { status, text } = await send(ep, url, method, headers, bytes);
  return parseReply(status, text, schema, ep.server);
}

async function send(ep: Endpoint, url: URL, method: string, headers: Record<string, string | number>, body: Uint8Array): Promise<{ status: number; text: string }> {
  let socket;
  try {
    // A warmed connection only to the same server under the same trust (an endpoint copied and re-pointed keeps the field).
    const warm = ep.preconnect && ep.preconnect.target.server === ep.server && ep.preconnect.target.ca === ep.ca ? await ep.preconnect.take() : undefined;
    socket = warm ?? (await openTls(ep, TIMEOUT_MS));
  } catch (e) {
    throw friendlyNetworkError(e as NodeJS.ErrnoException, ep.server);
  }
  const sock = socket;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      // The socket is connected and its certificate checked: the request goes out on it at once.
      // defaultPort: without an https agent node:http would name port 80 in the Host header of a URL without a port.
      { method, headers, createConnection: () => sock, defaultPort: 443, timeout: TIMEOUT_MS },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > 1 << 20) {
            req.destroy(new Error('reply too large'));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (e) => reject(friendlyNetworkError(e, ep.server)));
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (e) => reject(friendlyNetworkError(e, ep.server)));
    req.end(body);
  });
}

function parseReply<T>(status: number, text: string, schema: Schema<T>, server: string): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new UnavailableError(`the key server at ${server} sent a reply that is not JSON (HTTP ${status})`);
  }
  if (status >= 200 && status < 300) {
    try {
      return schema(json, 'reply');
    } catch (e) {
      throw new IntegrityError(`the key server sent a malformed reply: ${(e as Error).message}`).because(e);
    }
  }
  let err;
  try {
    err = ErrorBody(json, 'reply').error;
  } catch {
    throw new UnavailableError(`the key server at ${server} answered HTTP ${status} without a valid error`);
  }
  if (!isErrorCode(err.code)) throw new UnavailableError(`the key server answered HTTP ${status}: ${err.message}`);
  throw new KmgrError(err.code, `the key server refused: ${err.message}`, err.details);
}
