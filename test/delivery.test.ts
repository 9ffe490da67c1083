// Notice delivery by webhook and e-mail (Fig. 8, paragraph 32): a real HTTP receiver and a real SMTP sink on
// 127.0.0.1; the daemon's deliverer is driven pass by pass with an injected clock.
import t from 'tap';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { startServer, newHome } from './support/index.js';
import { isPublicAddress } from '../src/server/delivery/webhook.js';

interface Hook {
  headers: IncomingMessage['headers'];
  body: string;
}

/** An HTTP receiver that fails the first `failFirst` deliveries with 503. */
async function receiver(t: { teardown(fn: () => unknown): void }, failFirst: number) {
  const got: Hook[] = [];
  let failures = 0;
  const srv = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      if (failures < failFirst) {
        failures++;
        res.statusCode = 503;
        return res.end('busy');
      }
      got.push({ headers: req.headers, body });
      res.end('ok');
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/kmgr`, got, failures: () => failures };
}

/** A minimal SMTP sink: accepts one message per session and keeps what it was given. */
async function smtpSink(t: { teardown(fn: () => unknown): void }) {
  const messages: { from: string; to: string; data: string }[] = [];
  const srv = createTcpServer((sock: Socket) => {
    sock.setEncoding('utf8');
    let buf = '';
    let inData = false;
    let from = '';
    let to = '';
    let data = '';
    sock.write('220 sink ready\r\n');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (inData) {
          if (line === '.') {
            inData = false;
            messages.push({ from, to, data });
            sock.write('250 queued\r\n');
          } else data += line.replace(/^\./, '') + '\n';
          continue;
        }
        const cmd = line.slice(0, 4).toUpperCase();
        if (cmd === 'EHLO' || cmd === 'HELO') sock.write('250 sink\r\n');
        else if (cmd === 'MAIL') {
          from = line;
          sock.write('250 ok\r\n');
        } else if (cmd === 'RCPT') {
          to = line;
          sock.write('250 ok\r\n');
        } else if (cmd === 'DATA') {
          inData = true;
          sock.write('354 go on\r\n');
        }
        else if (cmd === 'QUIT') sock.end('221 bye\r\n');
        else sock.write('502 no\r\n');
      }
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  return { port: (srv.address() as AddressInfo).port, messages };
}

t.test('webhook: a signed JSON POST per notice, retried with backoff after failures', async (t) => {
  const hook = await receiver(t, 2);
  const server = await startServer(t, { webhooks: 'any', deliverEveryMs: 3_600_000 });
  const c = await newHome(t, server);
  const set = await c.run(['notify', '--webhook', hook.url, '--json']);
  t.equal(set.code, 0, set.stderr);
  const secret = Buffer.from(JSON.parse(set.stdout).webhookSecret as string, 'base64');
  t.equal(secret.length, 32, 'a 32-byte secret, printed once');

  t.ok(await c.register('bank-a', { maxUses: 1 }));
  t.equal((await c.run(['fetch', 'bank-a'])).code, 0, 'the one permitted use: limit reached, a notice');
  const now = Date.now();
  server.clock.now = now;
  const d = server.daemon.deliverer;
  await d.runOnce();
  t.equal(hook.failures(), 1, 'first attempt failed (503)');
  t.equal(hook.got.length, 0);
  await d.runOnce();
  t.equal(hook.failures(), 1, 'no retry before its backoff is due');
  server.clock.now = now + 1_000;
  await d.runOnce();
  t.equal(hook.failures(), 2, 'second attempt after 1 s, failed too');
  server.clock.now = now + 3_000;
  await d.runOnce();
  t.equal(hook.got.length, 1, 'third attempt, 2 s later, delivered');
  await d.runOnce();
  t.equal(hook.got.length, 1, 'delivered once');

  const h = hook.got[0]!;
  const ts = String(h.headers['kmgr-timestamp']);
  const expected = 'v1=' + createHmac('sha256', secret).update(`${ts}.${h.body}`).digest('hex');
  const sig = String(h.headers['kmgr-signature']);
  t.ok(sig.length === expected.length && timingSafeEqual(Buffer.from(sig), Buffer.from(expected)), 'the receiver verifies the HMAC over timestamp and body');
  const body = JSON.parse(h.body) as { type: string; notice: { kind: string; keyVersion: number } };
  t.equal(body.type, 'kmgr.notice');
  t.equal(body.notice.kind, 'limit_reached');

  const status = await c.run(['notify', '--json']);
  const view = JSON.parse(status.stdout) as { deliveries: { ok: boolean; attempt: number; error: string | null }[]; webhook: { url: string } };
  t.equal(view.webhook.url, hook.url);
  t.notOk('secret' in view.webhook, 'the secret is never sent back');
  t.same(view.deliveries.map((x) => [x.ok, x.attempt]), [[true, 3], [false, 2], [false, 1]], 'every attempt is in the delivery log, newest first');
  t.match(view.deliveries[2]!.error ?? '', /503/, 'failures say why');
});

t.test('webhooks are https-only by default', async (t) => {
  const hook = await receiver(t, 0);
  const server = await startServer(t, { deliverEveryMs: 3_600_000 });
  const c = await newHome(t, server);
  t.equal((await c.run(['notify', '--webhook', hook.url])).code, 0);
  await c.run(['register', 'bank-a', '--max-uses', '1']);
  await c.run(['fetch', 'bank-a']);
  await server.daemon.deliverer.runOnce();
  t.equal(hook.got.length, 0, 'an http:// webhook is not called');
  const view = JSON.parse((await c.run(['notify', '--json'])).stdout) as { deliveries: { ok: boolean; error: string }[] };
  t.match(view.deliveries[0]!.error, /https/, 'the refusal is logged');
});

t.test('e-mail through an SMTP relay', async (t) => {
  const sink = await smtpSink(t);
  const server = await startServer(t, { mail: { from: 'kmgrd@test.invalid', smtp: { host: '127.0.0.1', port: sink.port } }, deliverEveryMs: 3_600_000 });
  const c = await newHome(t, server);
  t.equal((await c.run(['notify', '--email', 'owner@example.test'])).code, 0);
  t.equal((await c.run(['notify', '--email', 'bad address'])).code, 64, 'an address with a space is a usage error at the server (400)');
  await c.run(['register', 'bank-a']);
  await c.run(['lock', 'bank-a']);
  t.equal((await c.run(['fetch', 'bank-a'])).code, 77, 'locked: refused, and a notice');
  await server.daemon.deliverer.runOnce();
  t.equal(sink.messages.length, 1, 'one message');
  const m = sink.messages[0]!;
  t.match(m.from, /kmgrd@test\.invalid/);
  t.match(m.to, /owner@example\.test/);
  t.match(m.data, /Subject: kmgr: refused attempt/);
  t.match(m.data, /locked/);
});

t.test('webhooks cannot reach loopback, private or mapped addresses in https mode', async (t) => {
  for (const ip of ['127.0.0.1', '::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '10.0.0.1', '172.16.5.4', '192.168.1.1', '169.254.169.254', '100.64.0.1', 'fe80::1', 'fd00::1', '64:ff9b::7f00:1', '0.0.0.0']) {
    t.notOk(isPublicAddress(ip), `${ip} is not public`);
  }
  for (const ip of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111']) t.ok(isPublicAddress(ip), `${ip} is public`);
});
