// kmgrd's HTTPS front: TLS 1.3 only, capped bodies, timeouts, JSON errors.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KeyObject } from 'node:crypto';
import { KmgrError, toWire, UsageError } from '../protocol/errors.js';
import { AuthError } from '../protocol/errors.js';
import { publicKeyObject } from '../crypto/sign.js';
import { fromB64url } from '../crypto/bytes.js';
import { authenticate } from './auth.js';
import { readBody } from './body.js';
import { httpStatus } from './http-status.js';
import { route } from './router.js';
import type { RequestContext, ServerDeps } from './context.js';

export interface AppOptions extends ServerDeps {
  cert: string;
  key: string;
}

export interface RunningServer {
  server: Server;
  port: number;
  host: string;
  /** Stops accepting, lets in-flight requests finish, then resolves. */
  stop(graceMs?: number): Promise<void>;
}

export function createApp(opts: AppOptions): Server {
  const { storage, log, clock } = opts;
  // Verification keys are cached: creating a KeyObject costs more than a verify.
  const keyCache = new Map<string, KeyObject | null>();
  const keyFor = async (keyId: string): Promise<KeyObject | undefined> => {
    const hit = keyCache.get(keyId);
    if (hit) return hit;
    const person = await storage.personByKeyId(keyId);
    if (!person) return undefined;
    const raw = fromB64url(person.publicKey);
    const key = raw ? publicKeyObject(raw) : null;
    keyCache.set(keyId, key);
    return key ?? undefined;
  };

  const server = createServer(
    {
      cert: opts.cert,
      key: opts.key,
      minVersion: 'TLSv1.3',
      maxHeaderSize: 16 * 1024,
      requestTimeout: 30_000,
      headersTimeout: 10_000,
      keepAliveTimeout: 5_000,
    },
    (req, res) => void handle(req, res),
  );

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const now = clock();
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? '' : url.slice(q);
    try {
      const { handler, params } = route(req.method ?? '', path);
      const body = await readBody(req);
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
        remoteAddress: req.socket.remoteAddress ?? '',
        async person() {
          const auth = await authenticate(req, path, query, body, now, keyFor);
          const person = await storage.personByKeyId(auth.params.keyid);
          if (!person) throw new AuthError('unknown_person', 'the signing key is not enrolled at this server');
          storage.claimNonce(auth.claim);
          return { person, auth };
        },
        async withKey(keyId, key) {
          const auth = await authenticate(req, path, query, body, now, async (id) => (id === keyId ? key : undefined));
          storage.claimNonce(auth.claim);
          return auth;
        },
      };
      const reply = await handler(ctx);
      send(res, reply.status, reply.body);
    } catch (e) {
      if (e instanceof KmgrError) {
        if (e.kind === 'unavailable' || e.kind === 'internal') log.error({ code: e.code, err: e.message }, 'request failed');
        if (e.code === 'method_not_allowed') res.setHeader('allow', (e.details?.allow as string[]).join(', '));
        send(res, httpStatus(e), toWire(e));
      } else {
        // A bug, never the client's doing: log it, answer without detail.
        log.error({ err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e), path }, 'unhandled error');
        send(res, 500, toWire(new KmgrError('internal', 'internal server error')));
      }
    }
  }

  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (socket.writable && err.code !== 'ECONNRESET') {
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const body = JSON.stringify(toWire(new UsageError('malformed HTTP request', 'bad_request')));
      socket.end(`HTTP/1.1 ${status} Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    } else socket.destroy();
  });
  // TLS handshake failures (wrong version, garbage) are the client's problem, not ours.
  server.on('tlsClientError', () => undefined);
  return server;
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
