// kmgrd's HTTPS front: TLS 1.3 only, capped bodies, timeouts, JSON errors.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AuthError, InternalError, KmgrError, UnavailableError, UsageError } from '../protocol/errors.js';
import { toWire, type WireError } from '../protocol/wire-error.js';
import { publicKeyObject } from '../crypto/sign.js';
import { fromB64url } from '../crypto/bytes.js';
import { authenticate, type VerifyKey } from './auth.js';
import type { Verifier } from './verify-pool.js';
import { readBody } from './body.js';
import { REKEY_MAX_BODY_BYTES } from '../protocol/messages.js';
import { httpStatus, isFailure, REASON, TRANSPORT_STATUS } from './http-status.js';
import { PROBE_ROUTES, route } from './router.js';
import { RateLimiter } from './rate-limit.js';
import { unwrapStoreError } from '../store/record-codec.js';
import type { RequestContext, ServerDeps } from './context.js';
import { BoundedCache, DEFAULT_CACHE_ENTRIES } from '../store/lru.js';
import type { Authorities } from './authorities.js';
import { addressKey, DEFAULT_CONNECTIONS_PER_ADDRESS, DEFAULT_FIRST_REQUEST_MS, guardConnections, type ConnectionLimits } from './connections.js';

const KEY_REPLACED =
  'this management key was replaced by kmgr rekey and is no longer accepted (if a rekey was interrupted on this device, run kmgr rekey again to finish it; on another device, import a fresh kmgr device export)';

interface AppOptions extends ServerDeps {
  cert: string;
  key: string;
  /** Requests per second per client address, before authentication (0: unlimited). */
  ratePerAddress: number;
  /** Requests per second per management key, after authentication (0: unlimited). */
  ratePerKey: number;
  /** Where signatures are verified; inline on the main thread when absent. */
  verifier?: Verifier;
  /** Verification keys kept in memory at most (kmgrd serve --cache-keys). */
  cacheKeys?: number;
  /** The names signed requests must be meant for; any authority when absent. */
  authorities?: Authorities;
  /**
   * What an outsider can ask: verify questions per second per address, and
   * enrolments per minute per address (IPv6 per /64). 0: unlimited; defaults when absent.
   */
  verifyPerAddress?: number;
  enrolPerAddressPerMinute?: number;
  /** Connection limits (see connections.ts); defaults when absent. */
  connections?: Partial<ConnectionLimits>;
  /** How long a request's headers may take to arrive (ms). Default 10 s. */
  headersTimeoutMs?: number;
}

const DEFAULT_VERIFY_PER_ADDRESS = 10;
const DEFAULT_ENROL_PER_ADDRESS_PER_MINUTE = 10;

interface RunningServer {
  server: Server;
  port: number;
  host: string;
  /** Stops accepting, lets in-flight requests finish, then resolves. */
  stop(graceMs?: number): Promise<void>;
}

export function createApp(opts: AppOptions): Server {
  const { storage, log, clock } = opts;
  // Verification keys are cached: creating a KeyObject costs more than a verify.
  // Only enrolled keys are cached, so probes with random key IDs cannot grow it; and it is
  // bounded, so a million enrolled persons do not all stay in memory.
  const keyCache = new BoundedCache<string, VerifyKey>(opts.cacheKeys ?? DEFAULT_CACHE_ENTRIES);
  const keyFor = async (keyId: string): Promise<VerifyKey | undefined> => {
    const hit = keyCache.get(keyId);
    if (hit) return hit;
    const person = await storage.personByKeyId(keyId);
    // A key that kmgr rekey replaced still names its person: say so rather than "unknown" (and never verify with the new key).
    if (person && person.keyId !== keyId) throw new AuthError('key_replaced', KEY_REPLACED);
    const raw = person ? fromB64url(person.publicKey) : undefined;
    if (!raw) return undefined;
    const key = { raw, obj: publicKeyObject(raw) };
    keyCache.set(keyId, key);
    return key;
  };
  const verifier = opts.verifier;
  // A request signed for another server (or sent with another Host) is refused before its signature is checked.
  const forUs = (req: IncomingMessage): void => {
    const host = req.headers.host;
    if (opts.authorities && host !== undefined && !opts.authorities.has(host)) {
      throw new AuthError('auth_wrong_server', `this request was meant for ${JSON.stringify(host.slice(0, 100))}, which is not this key server's name`);
    }
  };

  // Buckets allow bursts of twice the rate. They refill on the monotonic clock,
  // not the wall clock: a wall clock stepped back must not empty every bucket.
  const byAddress = new RateLimiter(opts.ratePerAddress, opts.ratePerAddress * 2);
  const byKey = new RateLimiter(opts.ratePerKey, opts.ratePerKey * 2);
  // Unsigned questions anyone may ask are limited on their own, far below the general rate:
  // verify (mapping a person's partners by probing) and enrolment (filling the database).
  const verifyRate = opts.verifyPerAddress ?? DEFAULT_VERIFY_PER_ADDRESS;
  const byVerify = new RateLimiter(verifyRate, verifyRate * 2);
  const enrolRate = opts.enrolPerAddressPerMinute ?? DEFAULT_ENROL_PER_ADDRESS_PER_MINUTE;
  const byEnrol = new RateLimiter(enrolRate / 60, enrolRate);
  const limited = (lim: RateLimiter, key: string, who: string): KmgrError => {
    return new KmgrError('rate_limited', `too many requests from ${who}; slow down`, { retryAfter: lim.retryAfter(key) });
  };

  const server = createServer(
    {
      cert: opts.cert,
      key: opts.key,
      minVersion: 'TLSv1.3',
      maxHeaderSize: 16 * 1024,
      requestTimeout: 30_000,
      headersTimeout: opts.headersTimeoutMs ?? 10_000,
      // Node checks the two timeouts above only this often (default 30 s, so a 10 s header
      // timeout really allowed 40 s): checked every second, the stated time holds.
      connectionsCheckingInterval: Math.min(1_000, opts.headersTimeoutMs ?? 1_000),
      // A connection that never finishes TLS is closed as one that never sends a request.
      handshakeTimeout: opts.connections?.firstRequestMs ?? DEFAULT_FIRST_REQUEST_MS,
      keepAliveTimeout: 5_000,
      // Node would answer a missing Host itself, with an empty 400; ours is a JSON 400 (see handle()).
      requireHostHeader: false,
    },
    (req, res) => void handle(req, res),
  );

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const now = clock();
    const started = process.hrtime.bigint();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? '' : url.slice(q);
    const remoteAddress = req.socket.remoteAddress ?? '';
    // Route pattern, never the path: labels and audit lines must not carry IDs.
    let pattern = 'unmatched';
    const note: RequestContext['note'] = {};
    let status: number;
    let replyBody: unknown;
    try {
      if (!byAddress.take(remoteAddress)) throw limited(byAddress, remoteAddress, 'this address');
      // RFC 9112 section 3.2: an HTTP/1.1 request without Host is answered 400.
      if (req.headers.host === undefined && req.httpVersion === '1.1') throw new UsageError('the request has no Host header', 'bad_request');
      // Node keeps the first of two Host headers; a proxy may route by the other (RFC 9112 section 3.2: 400).
      if (hostHeaders(req) > 1) throw new UsageError('the request has more than one Host header', 'bad_request');
      // A damaged store serves nothing but its health: a count it cannot trust must not decide a use.
      const state = storage.state?.();
      if (state && !state.ok && state.problem === 'damaged' && !PROBE_ROUTES.has(path)) throw new KmgrError('storage_damaged', 'the server\'s database is damaged; the operator must restore it (nothing was served)');
      const found = route(req.method ?? '', path);
      const { handler, params } = found;
      pattern = found.pattern;
      if (params.partnerId !== undefined) note.partnerId = params.partnerId;
      if (req.method === 'POST' && path === '/v1/verify' && !byVerify.take(addressKey(remoteAddress))) throw limited(byVerify, addressKey(remoteAddress), 'this address (verify questions)');
      if (req.method === 'POST' && path === '/v1/persons' && !byEnrol.take(addressKey(remoteAddress))) throw limited(byEnrol, addressKey(remoteAddress), 'this address (enrolments)');
      const body = await readBody(req, path === '/v1/rekey' ? REKEY_MAX_BODY_BYTES : undefined);
      if (body.length > 0 && !/^application\/json(\s*;|$)/i.test(req.headers['content-type'] ?? '')) {
        throw new KmgrError('unsupported_media_type', 'request bodies must be application/json');
      }
      const ctx: RequestContext = {
        deps: opts,
        req,
        path,
        query,
        params,
        body,
        now,
        remoteAddress,
        note,
        async person() {
          forUs(req);
          const auth = await authenticate(req, path, query, body, now, keyFor, verifier);
          if (!byKey.take(auth.params.keyid)) throw limited(byKey, auth.params.keyid, 'this key');
          const person = await storage.personByKeyId(auth.params.keyid);
          if (!person) throw new AuthError('unknown_person', 'the signing key is not enrolled at this server');
          note.personId = person.personId;
          if (person.keyId !== auth.params.keyid) throw new AuthError('key_replaced', KEY_REPLACED);
          if (auth.signed.device !== '') {
            const dev = await storage.touchDevice(person.personId, auth.signed.device, auth.params.keyid, now);
            if (dev?.revokedAt != null) throw new AuthError('device_revoked', `the device ${dev.label} was revoked; its requests are refused`);
          }
          await storage.claimNonce(auth.claim);
          return { person, auth };
        },
        async withKey(keyId, key) {
          forUs(req);
          const auth = await authenticate(req, path, query, body, now, async (id) => (id === keyId ? key : undefined), verifier);
          await storage.claimNonce(auth.claim);
          return auth;
        },
      };
      const reply = await handler(ctx);
      status = reply.status;
      replyBody = reply.body;
    } catch (caught) {
      // level wraps what a store's value encoding throws (a failed checksum): answer with that.
      const e = unwrapStoreError(caught);
      if (e instanceof KmgrError) {
        if (e.kind === 'unavailable' || e.kind === 'internal') log.error({ code: e.code, err: e.message, cause: (e.cause as Error | undefined)?.message }, 'request failed');
        if (e.code === 'method_not_allowed') res.setHeader('allow', (e.details?.allow as string[]).join(', '));
        if (e.code === 'rate_limited') res.setHeader('retry-after', String(Number(e.details?.retryAfter ?? 1)));
        status = httpStatus(e);
        replyBody = toWire(e);
      } else {
        // A bug, never the client's doing: log it, answer without detail.
        log.error({ err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e), path }, 'unhandled error');
        const internal = new InternalError('internal server error');
        status = httpStatus(internal);
        replyBody = toWire(internal);
      }
    }
    const { metrics, audit } = opts;
    if (note.fetchResult) metrics?.fetches.inc({ result: note.fetchResult, code: note.refusal ?? '' });
    if (audit && !PROBE_ROUTES.has(pattern)) {
      const result = note.fetchResult ?? (!isFailure(status) ? 'ok' : ((replyBody as WireError).error?.code ?? 'error'));
      try {
        await audit.write({
          time: new Date(now).toISOString(),
          method: (req.method ?? '').slice(0, 16),
          route: pattern,
          status,
          result,
          remoteAddress,
          person: audit.pseudonym(note.personId),
          partner: audit.pseudonym(note.partnerId),
          durationMs: Number(process.hrtime.bigint() - started) / 1e6,
        });
      } catch (e) {
        // Fail closed: what cannot be audited is not answered (a fetch's key stays on the server).
        log.error({ err: (e as Error).message }, 'audit log write failed; refusing the request');
        metrics?.auditFailures.inc();
        const unaudited = new UnavailableError('the audit log cannot be written; the request was not answered');
        status = httpStatus(unaudited);
        replyBody = toWire(unaudited);
      }
    }
    if (metrics) {
      metrics.requests.inc({ route: pattern, status: String(status) });
      metrics.duration.observe({ route: pattern }, Number(process.hrtime.bigint() - started) / 1e9);
    }
    send(res, status, replyBody);
  }

  // Expect: 100-continue is answered by node; any other expectation gets a JSON 417, not an empty one.
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    send(res, TRANSPORT_STATUS.expectationFailed, toWire(new UsageError(`unsupported expectation: ${String(req.headers.expect).slice(0, 100)}`, 'bad_request')));
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (socket.writable && err.code !== 'ECONNRESET') {
      const status =
        err.code === 'HPE_HEADER_OVERFLOW' ? TRANSPORT_STATUS.headersTooLarge : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? TRANSPORT_STATUS.requestTimeout : TRANSPORT_STATUS.malformed;
      const body = JSON.stringify(toWire(new UsageError('malformed HTTP request', 'bad_request')));
      // Written, then destroyed: end() alone half-closes and keeps the descriptor until a slow peer closes too.
      socket.write(`HTTP/1.1 ${status} ${REASON[status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`, () => socket.destroy());
      // A peer that never reads must not hold the socket either.
      setTimeout(() => socket.destroy(), 1_000).unref();
    } else socket.destroy();
  });
  guardConnections(server, {
    perAddress: opts.connections?.perAddress ?? DEFAULT_CONNECTIONS_PER_ADDRESS,
    firstRequestMs: opts.connections?.firstRequestMs ?? DEFAULT_FIRST_REQUEST_MS,
  });
  // TLS handshake failures (wrong version, garbage) are the client's problem, not ours.
  server.on('tlsClientError', () => undefined);
  server.on('close', () => {
    byAddress.stop();
    byKey.stop();
    byVerify.stop();
    byEnrol.stop();
  });
  return server;
}

function hostHeaders(req: IncomingMessage): number {
  let n = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.toLowerCase() === 'host') n++;
  return n;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

export async function listen(server: Server, host: string, port: number): Promise<RunningServer> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  return {
    server,
    port: addr.port,
    host,
    stop: (graceMs = 10_000) =>
      new Promise<void>((resolve) => {
        const t = setTimeout(() => server.closeAllConnections(), graceMs);
        t.unref();
        server.close(() => {
          clearTimeout(t);
          resolve();
        });
        server.closeIdleConnections();
      }),
  };
}
