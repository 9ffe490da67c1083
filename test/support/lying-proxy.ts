// A lying key server for tests: an HTTPS test double with kmgrd's own
// certificate that forwards each request verbatim to the real kmgrd (so the
// client's signatures still hold) and may rewrite the JSON reply, by path.
import { createServer, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Teardown } from './files.js';
import type { TestServer } from './server.js';

/**
 * A rewrite of a JSON reply. Each names the reply type it expects (a protocol reply
 * type such as KeyStatus or HistoryList): the proxy cannot check it, the real server's
 * schema made the reply. It returns whatever the lie should be.
 */
export type Rewrite = (reply: never) => unknown;
export type PrefixRewrite = (reply: never, path: string) => unknown;

export interface LyingProxy {
  url: string;
  ca: string;
  /** Rewrites of the JSON reply, by request path. */
  rewrite: Map<string, Rewrite>;
  /** Rewrites of the JSON reply for every request path (query included) starting with the key. */
  rewritePrefix: Map<string, PrefixRewrite>;
  /** The last reply the real server gave, by request path. */
  captured: Map<string, { status: number; text: string }>;
  /** A status to answer instead of the real one (with the body the rewrite gives), by request path. */
  status: Map<string, number>;
  /** Request paths whose reply is never delivered: the connection is cut once the real server has answered. */
  drop: Set<string>;
}

/** An HTTPS server with kmgrd's own certificate that forwards to kmgrd and may lie about the reply. */
export async function startLyingProxy(t: Teardown, server: TestServer): Promise<LyingProxy> {
  const tlsDir = join(server.dataDir, 'tls');
  const [cert, key, ca] = await Promise.all([readFile(join(tlsDir, 'cert.pem'), 'utf8'), readFile(join(tlsDir, 'key.pem'), 'utf8'), readFile(server.ca, 'utf8')]);
  const rewrite = new Map<string, Rewrite>();
  const captured = new Map<string, { status: number; text: string }>();
  const rewritePrefix = new Map<string, PrefixRewrite>();
  const statusFor = new Map<string, number>();
  const drop = new Set<string>();
  const upstreamPort = server.daemon.port;
  const srv: Server = createServer({ cert, key, minVersion: 'TLSv1.3' }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      // Forward verbatim: the same method, target and headers (Host included), so the client's signature still holds.
      const up = request(
        { host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers, ca, servername: '', agent: false },
        (ures) => {
          const out: Buffer[] = [];
          ures.on('data', (c: Buffer) => out.push(c));
          ures.on('end', () => {
            let status = ures.statusCode ?? 502;
            let text = Buffer.concat(out).toString('utf8');
            const path = req.url ?? '';
            captured.set(path, { status, text });
            if (drop.has(path)) {
              res.socket?.destroy();
              return;
            }
            status = statusFor.get(path) ?? status;
            const fn = rewrite.get(path);
            const byPrefix = [...rewritePrefix].find(([prefix]) => path.startsWith(prefix))?.[1];
            if (fn) text = JSON.stringify(fn(JSON.parse(text) as never));
            else if (byPrefix) text = JSON.stringify(byPrefix(JSON.parse(text) as never, path));
            res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
            res.end(text);
          });
        },
      );
      up.on('error', (e) => {
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'unavailable', message: `test double: ${e.message}` } }));
      });
      up.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        srv.close(() => resolve());
        srv.closeAllConnections();
      }),
  );
  const port = (srv.address() as AddressInfo).port;
  // The double stands where the real server's name leads (a man in the middle
  // on the path): kmgrd is told it is reached by that URL, as `--public-url`
  // tells it the name a proxy serves.
  server.daemon.authorities.addUrl(`https://127.0.0.1:${port}`);
  return { url: `https://127.0.0.1:${port}`, ca: server.ca, rewrite, rewritePrefix, captured, status: statusFor, drop };
}

