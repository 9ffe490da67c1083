// The client's only network path: node:https (undici would add ~350 ms to
// every CLI start) over a connection from tls-connect.ts. Every request is
// signed with the management key.
import { request as httpsRequest } from 'node:https';
import { openTls, Preconnect } from './tls-connect.js';
import { KmgrError, UnavailableError, IntegrityError, UsageError } from '../protocol/errors.js';
import { decodeError } from '../protocol/wire-error.js';
import { ErrorBody } from '../protocol/messages.js';
import { DEFAULT_LIFETIME_SECONDS, DEVICE_HEADER, formatContentDigest, formatSignature, serializeParams, signatureBase, SIG_LABEL, type SignatureParams } from '../protocol/sigbase.js';
import type { Schema } from '../protocol/schema.js';
import { parseTimeoutSeconds } from '../protocol/timeout.js';
import { cleanLine } from '../protocol/text.js';
import { sha256 } from '../crypto/hash.js';
import { toB64, toB64url, utf8 } from '../crypto/bytes.js';
import { randomBytes } from '../crypto/random.js';
import { TAG_REQUEST } from '../crypto/sign.js';

export interface Endpoint {
  server: string; // https://host:port
  ca: string | undefined; // PEM
  /** A connection being opened ahead of the first request (see Preconnect). */
  preconnect?: Preconnect;
  /** The whole request's deadline (ms); requestDeadlineMs() when absent. */
  timeoutMs?: number;
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

/**
 * Every request has a total deadline covering connect, TLS and the whole
 * reply, and an idle limit within it: a server (or a man in the middle) that
 * reads the request and never answers, or trickles a byte every few seconds,
 * must not hold `fetch`, `status` or `init` for minutes. KMGR_TIMEOUT (seconds;
 * `kmgr --timeout` sets it) changes the total; the idle limit is half of it, at
 * most IDLE_MS.
 */
const DEFAULT_TIMEOUT_MS = 30_000;
const IDLE_MS = 10_000;
function requestDeadlineMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.KMGR_TIMEOUT;
  if (v === undefined || v === '') return DEFAULT_TIMEOUT_MS;
  const ms = parseTimeoutSeconds(v);
  if (ms === undefined) throw new UsageError(`KMGR_TIMEOUT must be a number of seconds from 0.1 to 3600, not ${JSON.stringify(v.slice(0, 40))}`);
  return ms;
}

/** What the user needs to know about a request that failed on the way: could the server have counted it? */
const afterSend = (sent: boolean): string =>
  sent ? 'the request was sent, so the server may have counted it (kmgr status shows the count)' : 'nothing was sent, so nothing was counted';

function friendlyNetworkError(e: NodeJS.ErrnoException, server: string, sent = false): KmgrError {
  const code = e.code ?? '';
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS_CERT_ALTNAME/.test(code)) {
    return new UnavailableError(
      `cannot verify the TLS certificate of ${server} (${code}); if its certificate changed and you trust the new one, kmgr config set ca FILE shows its fingerprint and saves it (kmgr init and verify take --ca FILE)`,
    );
  }
  return new KmgrError('unavailable', `cannot reach the key server at ${server} (${code || e.message}); ${afterSend(sent)}`, { maybeCounted: sent }).because(e);
}

function timeoutError(server: string, what: 'total' | 'idle', ms: number, sent: boolean): KmgrError {
  const s = `${Number((ms / 1000).toFixed(1))} s`;
  const how = what === 'total' ? `did not complete the request within ${s}` : `sent nothing for ${s}`;
  return new KmgrError('unavailable', `the key server at ${server} ${how} (--timeout or KMGR_TIMEOUT changes the limit); ${afterSend(sent)}`, {
    timeout: what,
    maybeCounted: sent,
  });
}

/** Starts the TLS handshake with the server now, for the first request to use (see Preconnect). */
export function preconnect(ep: Endpoint): void {
  ep.preconnect?.discard();
  ep.preconnect = new Preconnect({ server: ep.server, ca: ep.ca }, ep.timeoutMs ?? requestDeadlineMs());
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
  const deadline = ep.timeoutMs ?? requestDeadlineMs();
  const idle = Math.min(IDLE_MS, Math.ceil(deadline / 2));
  return new Promise((resolve, reject) => {
    let settled = false;
    let sent = false;
    let sock: import('node:tls').TLSSocket | undefined;
    let req: ReturnType<typeof httpsRequest> | undefined;
    const finish = (e: KmgrError | undefined, v?: { status: number; text: string }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(total);
      if (e) {
        reject(e);
        req?.destroy();
        sock?.destroy();
      } else resolve(v!);
    };
    // One timer for the whole exchange: connecting, the handshake, the request and every byte of the reply.
    const total = setTimeout(() => finish(timeoutError(ep.server, 'total', deadline, sent)), deadline);
    void (async () => {
      try {
        // A warmed connection only to the same server under the same trust (an endpoint copied and re-pointed keeps the field).
        const warm = ep.preconnect && ep.preconnect.target.server === ep.server && ep.preconnect.target.ca === ep.ca ? await ep.preconnect.take() : undefined;
        sock = warm ?? (await openTls(ep, deadline));
      } catch (e) {
        finish(friendlyNetworkError(e as NodeJS.ErrnoException, ep.server));
        return;
      }
      if (settled) {
        sock.destroy();
        return;
      }
      const s = sock;
      // Set on the socket itself: node's `timeout` request option never reaches a socket handed over already connected.
      s.setTimeout(idle, () => finish(timeoutError(ep.server, 'idle', idle, sent)));
      req = httpsRequest(
        url,
        // The socket is connected and its certificate checked: the request goes out on it at once.
        // defaultPort: without an https agent node:http would name port 80 in the Host header of a URL without a port.
        { method, headers, createConnection: () => s, defaultPort: 443 },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > 1 << 20) {
              finish(new UnavailableError(`the key server at ${ep.server} sent a reply over 1 MiB; ${afterSend(true)}`));
              return;
            }
            chunks.push(c);
          });
          res.on('end', () => {
            s.setTimeout(0);
            finish(undefined, { status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') });
          });
          res.on('error', (e) => finish(friendlyNetworkError(e, ep.server, sent)));
        },
      );
      req.on('error', (e) => finish(friendlyNetworkError(e, ep.server, sent)));
      sent = true;
      req.end(body);
    })();
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
  // The server's words are cleaned here, once, so that no mode (text, --json, the agent's replies) passes them on raw.
  throw decodeError(err, {
    unknown: (f) => new UnavailableError(`the key server answered HTTP ${status}: ${cleanLine(f.message, 500)}`),
    message: (m) => `the key server refused: ${cleanLine(m, 500)}`,
    details: (d) => cleanStrings(d) as Record<string, unknown>,
  });
}

/** Every string in a server's error details, as one clean line. */
function cleanStrings(v: unknown): unknown {
  if (typeof v === 'string') return cleanLine(v, 500);
  if (Array.isArray(v)) return v.map(cleanStrings);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [cleanLine(k, 100), cleanStrings(x)]));
  return v;
}
