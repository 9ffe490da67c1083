// kmgrd under the CLI: racing fetches at the HTTP level, restarts on the same
// data directory, and what must never reach the server's disk or its logs.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { startServer, newHome, kmgr, snapshot, jsonError, pp, partnerId, directClient, errCode, MSG, LEVELDB } from './support/index.js';
import { signedRequest, type Endpoint } from '../src/client/http.js';
import { FetchResponse, KeyStatus } from '../src/protocol/messages.js';

t.test('200 concurrent fetches against --max-uses 10: exactly 10 served; a restarted server counts 10', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('race', { maxUses: 10 }), 'register race --max-uses 10');
  const pid = await partnerId(c, 'race');
  const { ep, id } = await directClient(c);

  const N = 200;
  const results = await Promise.allSettled(
    Array.from({ length: N }, () => signedRequest(ep, id, 'POST', `/v1/keys/${pid}/fetch`, {}, FetchResponse)),
  );
  const served = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  t.equal(served.length, 10, 'exactly 10 fetches served (HTTP 200)');
  t.equal(refused.length, 190, '190 refused');
  const codes = new Map<string, number>();
  for (const e of refused) {
    const code = errCode(e) ?? String(e);
    codes.set(code, (codes.get(code) ?? 0) + 1);
  }
  t.same(Object.fromEntries(codes), { terms_max_uses: 190 }, 'every refusal is terms_max_uses');
  t.same(served.map((s) => s.body.status.uses.total).sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'the served ones were uses 1..10');

  const port = server.daemon.port;
  await server.stop();
  const again = await startServer(t, { dataDir: server.dataDir, port });
  const ep2: Endpoint = { server: again.url, ca: await readFile(again.ca, 'utf8') };
  const { body: status } = await signedRequest(ep2, id, 'GET', `/v1/keys/${pid}`, undefined, KeyStatus);
  t.equal(status.uses.total, 10, 'after a restart the server reports uses.total == 10');
  t.equal(status.limits.total, 10);
  const more = await signedRequest(ep2, id, 'POST', `/v1/keys/${pid}/fetch`, {}, FetchResponse).then(
    () => 'served',
    (e: unknown) => errCode(e),
  );
  t.equal(more, 'terms_max_uses', 'and still refuses an 11th fetch');
});

t.test('restart keeps everything: the key, the enrolment and the count', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  const reg = await c.run(['register', 'keep', '--type', 'p256', '--max-uses', '3']);
  t.equal(reg.code, 0, 'register keep --max-uses 3');
  const f1 = await c.run(['fetch', 'keep']);
  const f2 = await c.run(['fetch', 'keep']);
  t.equal(f1.code, 0, 'fetch 1');
  t.equal(f2.code, 0, 'fetch 2');

  const port = server.daemon.port;
  await server.stop();
  const down = await c.run(['fetch', 'keep']);
  t.equal(down.code, 69, 'while the server is down: 69');
  const again = await startServer(t, { dataDir: server.dataDir, port });
  t.equal(again.url, server.url, 'the new server listens at the same URL');

  const f3 = await c.run(['fetch', 'keep']);
  t.equal(f3.code, 0, `fetch 3 after the restart works${f3.code ? `: ${f3.stderr}` : ''}`);
  t.equal(f3.stdout, f1.stdout, 'the same key as before the restart');
  t.ok(verify('sha256', MSG, createPublicKey(reg.stdout), sign('sha256', MSG, createPrivateKey(f3.stdout))), 'and it signs for the registered key');
  const f4 = await kmgr(['--json', 'fetch', 'keep', ...pp(c)], { home: c.home });
  t.equal(f4.code, 77, 'fetch 4: refused, the count continued across the restart (3 of 3 used)');
  t.equal(jsonError(f4).code, 'terms_max_uses', 'code terms_max_uses');
  t.ok(await c.register('after-restart'), 'the enrolment survived: a new registration works');
});

t.test('no file under the server data directory holds a private key; no server log line holds a key, blob or signature', async (t) => {
  // LevelDB on purpose (also under KMGR_TEST_STORE=postgres): the search is over the data directory's files.
  const server = await startServer(t, { databaseUrl: LEVELDB });
  const c = await newHome(t, server);
  const types = ['ed25519', 'p256', 'x25519', 'aes256'] as const;
  const needles: Array<[string, Buffer]> = [];
  const logNeedles: Array<[string, string]> = [];
  for (const type of types) {
    const name = `leak-${type}`;
    // Uses: raw + pem (key pairs) or raw (aes256) by the CLI, then one direct fetch; the next is refused.
    const maxUses = type === 'aes256' ? '2' : '3';
    t.ok(await c.register(name, { type: type, maxUses: Number(maxUses) }), `register ${name}`);
    const raw = await c.run(['fetch', name, '--format', 'raw']);
    t.equal(raw.code, 0, `fetch ${name} raw`);
    const d = raw.stdoutBytes;
    t.equal(d.length, 32);
    needles.push([`${type} raw`, d], [`${type} hex`, Buffer.from(d.toString('hex'))], [`${type} base64`, Buffer.from(d.toString('base64'))], [`${type} base64url`, Buffer.from(d.toString('base64url'))]);
    logNeedles.push([`${type} hex`, d.toString('hex')], [`${type} base64`, d.toString('base64')], [`${type} base64url`, d.toString('base64url')]);
    if (type !== 'aes256') {
      const pem = await c.run(['fetch', name]);
      t.equal(pem.code, 0, `fetch ${name} pem`);
      const der = createPrivateKey(pem.stdout).export({ type: 'pkcs8', format: 'der' });
      const body = pem.stdout.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
      needles.push([`${type} PKCS#8 DER`, der], [`${type} PEM base64`, Buffer.from(body)]);
      logNeedles.push([`${type} PEM base64`, body]);
      for (const line of pem.stdout.split('\n').filter((l) => l && !l.startsWith('-----'))) logNeedles.push([`${type} PEM line`, line]);
    }
  }

  // The blobs as the server holds them, and the signatures of these requests.
  const dc = await directClient(c);
  const blobs: Buffer[] = [];
  for (const type of types) {
    const pid = await partnerId(c, `leak-${type}`);
    const { body } = await signedRequest(dc.ep, dc.id, 'POST', `/v1/keys/${pid}/fetch`, {}, FetchResponse);
    blobs.push(Buffer.from(body.blob, 'base64'));
    logNeedles.push([`${type} blob`, body.blob]);
    // One refused fetch (max-uses reached) so "fetch refused" is logged too.
    const refused = await signedRequest(dc.ep, dc.id, 'POST', `/v1/keys/${pid}/fetch`, {}, FetchResponse).then(() => 'served', (e: unknown) => errCode(e));
    t.equal(refused, 'terms_max_uses', `${type}: the fetch past --max-uses is refused`);
  }
  t.ok(dc.signatures.length >= 8, 'signatures recorded');
  for (const s of dc.signatures) logNeedles.push(['Signature header value', s]);
  const cliRefused = await c.run(['fetch', 'leak-ed25519']);
  t.equal(cliRefused.code, 77, 'a refused CLI fetch');

  // Logs: positive control first (we are reading the right sink), then the canaries.
  const lines = server.logs.lines;
  const edPid = await partnerId(c, 'leak-ed25519');
  t.ok(lines.some((l) => l.includes('key registered') && l.includes(edPid)), 'control: the log has the registration, with the partner ID');
  t.ok(lines.some((l) => l.includes('fetch refused')), 'control: the log has the refusals');
  const logHits = logNeedles.filter(([, n]) => lines.some((l) => l.includes(n))).map(([w]) => w);
  t.same(logHits, [], 'no log line contains a private key, a blob or a Signature header value');

  // Files: stop the server so everything is flushed, then search every file.
  await server.stop();
  const files = await snapshot(server.dataDir);
  t.ok(files.size > 0, 'the data directory has files');
  const blobFound = blobs.filter((b) => [...files.values()].some((f) => f.includes(b))).length;
  t.equal(blobFound, blobs.length, 'control: every sealed blob is found in the data directory (the search works)');
  const hits: string[] = [];
  for (const [what, n] of needles) for (const [path, bytes] of files) if (bytes.includes(n)) hits.push(`${what} in ${path}`);
  t.same(hits, [], 'no file under the data directory contains a private key (raw, hex, base64, PKCS#8 DER, PEM base64)');
});
