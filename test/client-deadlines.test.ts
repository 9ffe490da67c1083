// Every request the client makes has a total deadline (connect, TLS, reply)
// and an idle limit that fires on the pinned connection too: a key server, or
// a man in the middle holding its certificate, that reads a request and never
// answers, or trickles a byte every so often, must not hold `status`, `fetch`
// or `init` for minutes. Deadlines here are configured short (KMGR_TIMEOUT,
// --timeout); a hang would be killed by the harness and fail the exit-code
// assertions, so no timing is asserted.
import t, { type Test } from 'tap';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { createServer as createNetServer, type Server as NetServer, type Socket, type AddressInfo } from 'node:net';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { newHome, kmgr, startServer, tempDir, PASSPHRASE, startAgent, type TestServer } from './support/index.js';

type Behaviour = 'silent' | 'trickle' | 'no-handshake';

/** A peer at 127.0.0.1 with kmgrd's own certificate that misbehaves after reading the request head. */
async function badPeer(t: Test, server: TestServer, how: Behaviour): Promise<{ url: string; requests: () => number }> {
  const tlsDir = join(server.dataDir, 'tls');
  const [cert, key] = await Promise.all([readFile(join(tlsDir, 'cert.pem'), 'utf8'), readFile(join(tlsDir, 'key.pem'), 'utf8')]);
  let requests = 0;
  const sockets = new Set<Socket | TLSSocket>();
  const timers = new Set<NodeJS.Timeout>();
  const onSocket = (s: Socket | TLSSocket): void => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    if (how === 'no-handshake') return; // TCP accepted, no TLS ever spoken
    let head = '';
    s.on('data', (c: Buffer) => {
      head += c.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      if (head !== '') requests++;
      head = '';
      if (how === 'trickle') {
        s.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n');
        // Never idle for long, never done.
        const tick = setInterval(() => s.write(' '), 50);
        timers.add(tick);
        s.on('close', () => clearInterval(tick));
      }
    });
  };
  const srv: TlsServer | NetServer = how === 'no-handshake' ? createNetServer(onSocket) : createTlsServer({ cert, key, minVersion: 'TLSv1.3' }, onSocket);
  srv.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        for (const tm of timers) clearInterval(tm);
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  );
  return { url: `https://127.0.0.1:${(srv.address() as AddressInfo).port}`, requests: () => requests };
}

/** Points an initialised home at another URL (the trusted certificate stays). */
async function pointAt(home: string, url: string): Promise<void> {
  const path = join(home, 'config.json');
  const c = JSON.parse(await readFile(path, 'utf8')) as { server: string };
  c.server = url;
  await writeFile(path, JSON.stringify(c, null, 2) + '\n');
}

t.test('a silent or trickling server, or one that never completes TLS, cannot hold the client', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('bank-a'), 'registered');
  const [silent, trickle, noTls] = await Promise.all([badPeer(t, server, 'silent'), badPeer(t, server, 'trickle'), badPeer(t, server, 'no-handshake')]);
  const fast = { KMGR_TIMEOUT: '1' };

  await pointAt(c.home, silent.url);
  const st = await c.run(['status', 'bank-a'], fast);
  t.equal(st.code, 69, `status against a silent server: unavailable (${st.stderr.trim()})`);
  t.match(st.stderr, /sent nothing for 0\.5 s/, 'the idle limit fired on the pinned connection');
  t.match(st.stderr, /the request was sent, so the server may have counted it/, 'and it says the request may have been counted');
  const f = await c.run(['fetch', 'bank-a', '--timeout', '1']);
  t.equal(f.code, 69, `fetch against a silent server (--timeout): unavailable (${f.stderr.trim()})`);
  t.equal(f.stdoutBytes.length, 0, 'nothing on stdout');
  t.match(f.stderr, /may have counted it/, 'fetch says the use may have been counted');
  t.equal(silent.requests(), 2, 'both requests reached the silent server');

  await pointAt(c.home, trickle.url);
  const tr = await c.run(['fetch', 'bank-a', '--json'], fast);
  t.equal(tr.code, 69, `fetch against a trickling server: unavailable (${tr.stderr.trim()})`);
  const err = JSON.parse(tr.stderr) as { error: { code: string; message: string; details?: { timeout?: string; maybeCounted?: boolean } } };
  t.equal(err.error.details?.timeout, 'total', 'the total deadline fired, though bytes kept coming');
  t.equal(err.error.details?.maybeCounted, true, '--json says it may have been counted');

  await pointAt(c.home, noTls.url);
  const nt = await c.run(['status', 'bank-a'], fast);
  t.equal(nt.code, 69, `status against a peer that never completes TLS: unavailable (${nt.stderr.trim()})`);
  t.match(nt.stderr, /nothing was sent, so nothing was counted/, 'nothing was sent');

  // init, before any home exists, is bounded as well.
  const home = join(await tempDir(t, 'kmgr-home-'), 'home');
  const pp = join(home + '-pp');
  await writeFile(pp, PASSPHRASE + '\n', { mode: 0o600 });
  const init = await kmgr(['init', '--server', silent.url, '--ca', server.ca, '--passphrase-file', pp, '--kdf-cost', '15', '--timeout', '1'], { home });
  t.equal(init.code, 69, `init against a silent server: unavailable (${init.stderr.trim()})`);

  const bad = await c.run(['status', 'bank-a'], { KMGR_TIMEOUT: 'soon' });
  t.equal(bad.code, 64, `KMGR_TIMEOUT that is no number of seconds: usage error (${bad.stderr.trim()})`);
  const badFlag = await c.run(['status', 'bank-a', '--timeout', '0']);
  t.equal(badFlag.code, 64, `--timeout 0: usage error (${badFlag.stderr.trim()})`);

  // The control: the real server, same home, same deadline, answers.
  await pointAt(c.home, server.url);
  const ok = await c.run(['fetch', 'bank-a'], fast);
  t.equal(ok.code, 0, `the real server within the same deadline: ${ok.stderr.trim()}`);
});

t.test("the agent's fetch path has the same deadline", async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('bank-a'), 'registered');
  const silent = await badPeer(t, server, 'silent');
  await pointAt(c.home, silent.url);
  await startAgent(t, c.home, c.pp, [], { KMGR_TIMEOUT: '1' });
  const f = await kmgr(['fetch', 'bank-a'], { home: c.home });
  t.equal(f.code, 69, `fetch through the agent (started with KMGR_TIMEOUT=1) against a silent server: unavailable (${f.stderr.trim()})`);
  t.equal(f.stdoutBytes.length, 0, 'nothing on stdout');
  t.match(f.stderr, /sent nothing for 0\.5 s .*may have counted it/, "the agent's own deadline fired and says the use may have been counted");
  t.equal(silent.requests(), 1, 'the agent sent the request');
});
