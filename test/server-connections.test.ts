// Connections that hold resources: a peer that opens connections and never
// sends a request, or sends its headers slowly, must not keep descriptors,
// and thousands of idle TLS connections from one address must not stop
// another address from being served.
import t from 'tap';
import { connect, type TLSSocket } from 'node:tls';
import { startServer, caPem, health, type TestServer } from './support/index.js';
import { addressKey } from '../src/server/connections.js';

/** A TLS connection from `localAddress` that completes its handshake and then sends nothing. */
function idleTls(server: TestServer, localAddress = '127.0.0.1'): Promise<{ s: TLSSocket; closed: Promise<void> } | undefined> {
  return new Promise((resolve) => {
    // localAddress reaches net.connect (node:tls passes it on; its types do not list it).
    const s = connect({ host: '127.0.0.1', port: server.daemon.port, ca: caPem(server.ca), servername: 'localhost', minVersion: 'TLSv1.3', ...({ localAddress } as object) });
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    s.on('error', () => undefined);
    s.once('secureConnect', () => resolve({ s, closed }));
    // Refused (over the cap): closed before any handshake.
    s.once('close', () => resolve(undefined));
  });
}

t.test('2,000 idle TLS connections from one address do not stop another; all are released', async (t) => {
  const cap = 50;
  const server = await startServer(t, { maxConnectionsPerAddress: cap, firstRequestMs: 5_000 });
  const held: Array<{ s: TLSSocket; closed: Promise<void> }> = [];
  t.teardown(() => held.forEach((h) => h.s.destroy()));
  let refused = 0;
  let open = 0;
  let maxOpen = 0;
  const started = Date.now();
  for (let i = 0; i < 2000; i += 500) {
    const batch = await Promise.all(Array.from({ length: 500 }, () => idleTls(server)));
    for (const b of batch) {
      if (!b) {
        refused++;
        continue;
      }
      held.push(b);
      open++;
      void b.closed.then(() => open--);
    }
    maxOpen = Math.max(maxOpen, open);
  }
  t.comment(`2000 connections attempted in ${Date.now() - started} ms`);
  t.ok(maxOpen <= cap, `at most ${cap} connections from one address are held at once (${maxOpen})`);
  t.equal(held.length + refused, 2000, 'every other one was refused at once');
  const other = await health({ url: server.url, ca: server.ca, localAddress: '127.0.0.2' });
  t.equal(other.status, 200, 'another address is served meanwhile');
  // Never having sent a request, every held connection is closed by the server.
  await Promise.all(held.map((h) => h.closed));
  t.pass('the server closed every idle connection that never sent a request');
  const again = await health({ url: server.url, ca: server.ca });
  t.equal(again.status, 200, 'the first address is served again: its slots were released');
});

t.test('a slow client gets 408 within the header timeout and its socket is destroyed', async (t) => {
  const server = await startServer(t, { headersTimeoutMs: 500 });
  const s = connect({ host: '127.0.0.1', port: server.daemon.port, ca: caPem(server.ca), servername: 'localhost', minVersion: 'TLSv1.3', ...({ allowHalfOpen: true } as object) });
  s.on('error', () => undefined);
  await new Promise<void>((r) => s.once('secureConnect', () => r()));
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.write('GET /v1/health HTTP/1.1\r\nHost: localhost\r\nx-slow: ');
  await new Promise<void>((r) => s.once('end', () => r()));
  t.match(Buffer.concat(chunks).toString('latin1'), /^HTTP\/1\.1 408 Request Timeout/, 'answered 408');
  // Our side stays open (allowHalfOpen): only a destroyed server socket makes this write fail.
  const failed = await new Promise<boolean>((resolve) => {
    s.once('close', () => resolve(true));
    s.once('error', () => resolve(true));
    const again = (): void => {
      if (s.destroyed) return;
      s.write('more header bytes\r\n', () => setImmediate(again));
    };
    again();
  });
  t.ok(failed, 'the server destroyed the socket: writing to it fails');
});

t.test('limits count IPv6 clients per /64', async (t) => {
  t.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  t.equal(addressKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64', 'the same /64');
  t.not(addressKey('2001:db8:1:3::1'), addressKey('2001:db8:1:2::1'), 'another /64');
  t.equal(addressKey('::ffff:192.0.2.7'), '192.0.2.7', 'IPv4-mapped counts as the IPv4 address');
  t.equal(addressKey('192.0.2.7'), '192.0.2.7');
  t.equal(addressKey('::1'), '0:0:0:0::/64');
});
