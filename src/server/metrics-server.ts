// The metrics listener: plain HTTP on its own address (off by default), so the
// scrape port can be firewalled apart from the API and needs no client
// certificate or signature. It serves /metrics and nothing else.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Metrics } from './metrics.js';
import type { Logger } from './logger.js';
import { statusForCode } from './http-status.js';

export async function startMetricsServer(metrics: Metrics, host: string, port: number, log: Logger): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(statusForCode('not_found'), { 'content-type': 'text/plain' }).end('only /metrics is served here\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(statusForCode('method_not_allowed'), { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('GET /metrics\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : text),
      (e: unknown) => {
        log.error({ err: (e as Error).message }, 'metrics collection failed');
        res.writeHead(statusForCode('internal'), { 'content-type': 'text/plain' }).end('metrics collection failed\n');
      },
    );
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, port: (server.address() as AddressInfo).port };
}
