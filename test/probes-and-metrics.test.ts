// What an operator's monitoring sees: /livez and /readyz on the API listener,
// and Prometheus metrics on their own listener, scraped and parsed here.
import t from 'tap';
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { startServer, enrol, newIdentity, newPartnerId, register, registerBody, send, signed, type Target } from './support/index.js';
import type { FetchResponse } from '../src/protocol/messages.js';

/** What /livez and /readyz answer. */
interface ProbeReply {
  ok: boolean;
  reason?: string;
}

const get = (target: Target, path: string) => send<ProbeReply>(target, { method: 'GET', path, headers: { host: new URL(target.url).host }, body: new Uint8Array(0) });

function scrape(port: number, path = '/metrics'): Promise<{ status: number; type: string; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The Prometheus text exposition format, version 0.0.4: every non-comment line is NAME{LABELS} VALUE. */
function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const ty = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (ty) types.set(ty[1]!, ty[2]!);
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`bad value in: ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  return { samples, types };
}

/** What /readyz answers, as far as this test reads it. */
interface ReadyReply {
  ok: boolean;
  reason?: string;
}

const sum = (s: Sample[], name: string, where: Record<string, string> = {}): number =>
  s.filter((x) => x.name === name && Object.entries(where).every(([k, v]) => x.labels[k] === v)).reduce((a, x) => a + x.value, 0);

t.test('/livez and /readyz answer unauthenticated JSON; readyz turns 503 when storage is closed, livez stays 200', async (t) => {
  const server = await startServer(t);
  const target: Target = { url: server.url, ca: server.ca };
  const live = await get(target, '/livez');
  t.equal(live.status, 200);
  t.equal(live.json.ok, true);
  t.match(live.headers['content-type'], /application\/json/);
  const ready = await get(target, '/readyz');
  t.equal(ready.status, 200, 'ready: storage open and writable');
  t.equal(ready.json.ok, true);
  t.equal((await get(target, '/v1/health')).status, 200, '/v1/health stays as it was');

  // The store goes away under the running daemon: it must stop claiming to be ready.
  await server.daemon.storage.close();
  const notReady = await get(target, '/readyz');
  t.equal(notReady.status, 503, 'not ready once storage is closed');
  t.equal(notReady.json.ok, false);
  t.match(notReady.json.reason, /database is closed/);
  t.equal((await get(target, '/livez')).status, 200, 'still live: restarting would not help a probe that routes traffic');
  t.equal((await send(target, { method: 'POST', path: '/readyz', headers: { host: new URL(target.url).host }, body: new Uint8Array(0) })).status, 405);
});

t.test('/readyz answers 503 once shutdown has begun, to a request already in flight', async (t) => {
  const server = await startServer(t);
  const u = new URL(server.url);
  // Expect: 100-continue gives a moment when the server holds the request (it answered 100) but
  // has not read its body: shutdown begins then, and the probe is answered after.
  const reply = new Promise<{ status: number; body: ReadyReply }>((resolve, reject) => {
    const req = httpsRequest(
      {
        host: u.hostname, port: Number(u.port), path: '/readyz', method: 'GET', ca: readFileSync(server.ca, 'utf8'), servername: '', agent: false,
        headers: { 'content-type': 'application/json', 'content-length': 2, expect: '100-continue' },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as ReadyReply }));
      },
    );
    req.on('error', reject);
    req.on('continue', () => {
      const stopping = server.stop();
      req.end('{}');
      void stopping;
    });
    req.flushHeaders();
  });
  const r = await reply;
  t.equal(r.status, 503, 'not ready while draining');
  t.match(r.body.reason, /draining/);
});

t.test('metrics: scraped and parsed; the served-fetch counter equals what clients saw; labels carry no IDs', async (t) => {
  const server = await startServer(t, { metricsListen: { host: '127.0.0.1', port: 0 }, verifyThreads: 1 });
  const port = server.daemon.metricsPort!;
  t.ok(port > 0, 'metrics listener is up');
  const target: Target = { url: server.url, ca: server.ca };
  const id = newIdentity();
  t.equal((await enrol(target, id)).status, 201);
  const limited = newPartnerId();
  const notify = newPartnerId();
  const terms = { expiresAt: null, maxUses: 3, maxPerDay: null, maxPerWeek: null, maxPerMonth: null };
  const regA = registerBody({ terms: { ...terms, onLimit: 'deny' } });
  const regB = registerBody({ terms: { ...terms, onLimit: 'notify' } });
  t.equal((await register(target, id, limited, regA)).status, 201);
  t.equal((await register(target, id, notify, regB)).status, 201);
  const seen = { served: 0, over: 0, refused: 0 };
  for (let i = 0; i < 5; i++) {
    const a = await send(target, signed(target, id, 'POST', `/v1/keys/${limited}/fetch`, {}));
    if (a.status === 200) seen.served++;
    else if (a.status === 403 && a.json.error?.code === 'terms_max_uses') seen.refused++;
    const b = await send<FetchResponse>(target, signed(target, id, 'POST', `/v1/keys/${notify}/fetch`, {}));
    if (b.status === 200 && b.json.overLimit) seen.over++;
    else if (b.status === 200) seen.served++;
  }
  t.same(seen, { served: 6, over: 2, refused: 2 }, 'the clients saw 6 served, 2 served over the limit, 2 refused');
  await get(target, '/livez');

  const res = await scrape(port);
  t.equal(res.status, 200);
  t.match(res.type, /^text\/plain; version=0\.0\.4/);
  const { samples, types } = parseExposition(res.text);
  t.equal(sum(samples, 'kmgrd_fetches_total', { result: 'served' }), seen.served, 'served counter = served replies seen');
  t.equal(sum(samples, 'kmgrd_fetches_total', { result: 'served_over_limit' }), seen.over);
  t.equal(sum(samples, 'kmgrd_fetches_total', { result: 'refused', code: 'terms_max_uses' }), seen.refused);
  t.equal(types.get('kmgrd_fetches_total'), 'counter');
  t.equal(sum(samples, 'kmgrd_http_requests_total', { route: '/v1/keys/{partnerId}/fetch', status: '200' }), seen.served + seen.over);
  t.equal(sum(samples, 'kmgrd_http_requests_total', { route: '/v1/keys/{partnerId}/fetch', status: '403' }), seen.refused);
  t.equal(sum(samples, 'kmgrd_http_requests_total', { route: '/livez', status: '200' }), 1);
  t.equal(types.get('kmgrd_http_request_duration_seconds'), 'histogram');
  t.equal(sum(samples, 'kmgrd_http_request_duration_seconds_count', { route: '/v1/keys/{partnerId}/fetch' }), 10);
  t.ok(sum(samples, 'kmgrd_group_commit_batches_total') >= 1, 'group commit batches counted');
  t.ok(sum(samples, 'kmgrd_group_commit_batch_size_count') === sum(samples, 'kmgrd_group_commit_batches_total'), 'one size observation per batch');
  t.ok(samples.some((s) => s.name === 'kmgrd_verify_queue_depth'), 'verify queue depth is exported');
  t.equal(sum(samples, 'kmgrd_notices_total', { kind: 'limit_reached' }), 2, 'both keys reached their limit once');
  t.equal(sum(samples, 'kmgrd_notices_total', { kind: 'limit_passed' }), 1);
  t.equal(sum(samples, 'kmgrd_notices_total', { kind: 'refused_attempt' }), 1);
  t.equal(types.get('kmgrd_deliveries_total'), 'counter');
  const validTo = Math.floor(Date.parse(new X509Certificate(readFileSync(server.ca, 'utf8')).validTo) / 1000);
  t.equal(sum(samples, 'kmgrd_tls_certificate_expiry_timestamp_seconds'), validTo, 'certificate expiry = the served certificate\'s notAfter');
  t.ok(samples.some((s) => s.name === 'process_cpu_user_seconds_total'), "Node's process metrics are there");
  t.ok(samples.some((s) => s.name === 'nodejs_eventloop_lag_seconds'), 'and the event loop lag');

  // Labels never carry a person, key or partner ID.
  for (const secretish of [id.personId!, id.keyId, limited, notify, regA.keyId as string, regB.keyId as string]) {
    t.notOk(res.text.includes(secretish), `no sample or label names ${secretish.slice(0, 6)}...`);
  }
  const ours = samples.filter((s) => s.name.startsWith('kmgrd_'));
  const labelNames = new Set(ours.flatMap((s) => Object.keys(s.labels)));
  t.same([...labelNames].filter((n) => !['route', 'status', 'result', 'code', 'kind', 'channel', 'cache', 'le'].includes(n)), [], 'only fixed-vocabulary labels');
  t.ok(ours.every((s) => s.labels.route === undefined || s.labels.route === 'unmatched' || !/[A-Za-z0-9_-]{16,}/.test(s.labels.route)), 'routes are patterns, never paths with IDs');

  t.equal((await scrape(port, '/other')).status, 404, 'only /metrics is served there');
});
