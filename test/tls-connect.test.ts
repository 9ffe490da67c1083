// The client's TLS connection (src/client/tls-connect.ts): the pinned fast path
// must accept exactly what the standard verification accepts, and a server the
// home does not trust must never receive a byte of a request.
import t from 'tap';
import { createServer, type Server } from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { makeSelfSignedCert } from '../src/server/tls/selfsigned.js';
import { FRESH_MS, openTls, Preconnect } from '../src/client/tls-connect.js';
import { unsignedRequest } from '../src/client/http.js';
import { bool, obj, str } from '../src/protocol/schema.js';
import { hasOpenssl, tempDir } from './support/index.js';

const DAY = 86_400_000;
const HealthResponse = obj({ ok: bool, version: str({ max: 40 }) });
type T = { teardown(fn: () => unknown): void };

interface Counted {
  url: string;
  handshakes(): number;
  requests(): number;
  /** Closes every connection from the server's side. */
  dropAll(): void;
}

async function server(t: T, cert: { certPem: string; keyPem: string }): Promise<Counted> {
  let handshakes = 0;
  let requests = 0;
  const srv: Server = createServer({ cert: cert.certPem, key: cert.keyPem, minVersion: 'TLSv1.3' }, (req, res) => {
    requests++;
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: true, version: 'test' }));
    });
  });
  const sockets = new Set<Socket>();
  // Every handshake attempt is one TCP connection (the TLS-level event is missed when a client hangs up at once).
  srv.on('connection', (so: Socket) => {
    handshakes++;
    sockets.add(so);
    so.on('close', () => sockets.delete(so));
  });
  srv.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(
    () =>
      new Promise<void>((r) => {
        srv.close(() => r());
        for (const so of sockets) so.destroy();
      }),
  );
  return {
    url: `https://127.0.0.1:${(srv.address() as AddressInfo).port}`,
    handshakes: () => handshakes,
    requests: () => requests,
    dropAll: () => {
      for (const so of sockets) so.destroy();
    },
  };
}

/** The server's handshake count once it has stopped changing (its event may trail the client's). */
async function settled(read: () => number): Promise<number> {
  let last = read();
  for (let quiet = 0; quiet < 10; ) {
    await new Promise((r) => setTimeout(r, 10));
    const now = read();
    quiet = now === last ? quiet + 1 : 0;
    last = now;
  }
  return last;
}

/** The error openTls rejects with, or undefined. */
async function failure(p: Promise<{ destroy(): void }>): Promise<NodeJS.ErrnoException | undefined> {
  try {
    (await p).destroy();
    return undefined;
  } catch (e) {
    return e as NodeJS.ErrnoException;
  }
}

t.test('the saved self-signed certificate: one handshake, and requests go through', async (t) => {
  const cert = makeSelfSignedCert();
  const s = await server(t, cert);
  const sock = await openTls({ server: s.url, ca: cert.certPem }, 5_000);
  t.ok(sock.authorized === false, 'the fast path did not use the standard verification');
  sock.destroy();
  t.equal(await settled(s.handshakes), 1, 'one handshake: the pinned fast path');
  const h = await unsignedRequest({ server: s.url, ca: cert.certPem }, 'GET', '/v1/health', undefined, HealthResponse);
  t.equal(h.ok, true, 'a request over it is answered');
  t.equal(s.requests(), 1);
  // A CA file may hold several certificates: any of them may be the server's own.
  const other = makeSelfSignedCert();
  const both = await openTls({ server: s.url, ca: other.certPem + cert.certPem }, 5_000);
  both.destroy();
  t.equal(await settled(s.handshakes), 3, 'the server certificate second in the file: still one handshake');
});

t.test('a server with another certificate: refused with the standard error, no request sent', async (t) => {
  const trusted = makeSelfSignedCert();
  const impostor = makeSelfSignedCert(); // same names, different key: a man in the middle
  const s = await server(t, impostor);
  const e = await failure(openTls({ server: s.url, ca: trusted.certPem }, 5_000));
  t.ok(e, 'refused');
  t.match(e?.code, /SELF_SIGNED|UNABLE_TO_VERIFY|CERT/, `a certificate error (${e?.code})`);
  t.equal(await settled(s.handshakes), 2, 'the pin failed, then the standard verification failed');
  await t.rejects(
    unsignedRequest({ server: s.url, ca: trusted.certPem }, 'GET', '/v1/health', undefined, HealthResponse),
    { code: 'unavailable', message: /cannot verify the TLS certificate/ },
    'the client says it cannot verify the certificate',
  );
  t.equal(s.requests(), 0, 'the impostor never received a request');
});

t.test('the pinned certificate for another host name: the standard altname error', async (t) => {
  const cert = makeSelfSignedCert({ dnsNames: ['escrow.example'], ipAddresses: ['10.9.9.9'] });
  const s = await server(t, cert);
  const e = await failure(openTls({ server: s.url, ca: cert.certPem }, 5_000));
  t.equal(e?.code, 'ERR_TLS_CERT_ALTNAME_INVALID', 'refused for the host name, as without the fast path');
  t.equal(s.requests(), 0);
});

t.test('an expired pinned certificate: the standard expiry error', async (t) => {
  const cert = makeSelfSignedCert({ now: new Date(Date.now() - 3 * 365 * DAY), days: 30 });
  const s = await server(t, cert);
  const e = await failure(openTls({ server: s.url, ca: cert.certPem }, 5_000));
  t.equal(e?.code, 'CERT_HAS_EXPIRED');
  t.equal(s.requests(), 0);
});

t.test('outside its validity by the (injected) clock, the fast path declines and the standard path decides', async (t) => {
  const cert = makeSelfSignedCert();
  const s = await server(t, cert);
  const later = Date.parse(new X509Certificate(cert.certPem).validTo) + DAY;
  const sock = await openTls({ server: s.url, ca: cert.certPem }, 5_000, () => later);
  t.equal(sock.authorized, true, 'verified by OpenSSL on its own clock');
  sock.destroy();
  t.equal(await settled(s.handshakes), 1, 'one handshake, the standard one: an expired certificate is not pinned');
});

t.test('a certificate issued by a CA the home trusts: verified the standard way', { skip: !hasOpenssl() && 'no openssl CLI' }, async (t) => {
  const dir = await tempDir(t);
  const o = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  o('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=test CA');
  o('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=kmgrd');
  await writeFile(join(dir, 'ext'), 'subjectAltName=IP:127.0.0.1\n');
  o('x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'leaf.pem', '-days', '1', '-extfile', 'ext');
  const [ca, certPem, keyPem] = await Promise.all(['ca.pem', 'leaf.pem', 'leaf.key'].map((f) => readFile(join(dir, f), 'utf8')));
  const s = await server(t, { certPem: certPem!, keyPem: keyPem! });
  const sock = await openTls({ server: s.url, ca: ca! }, 5_000);
  t.equal(sock.authorized, true, 'the chain verified');
  sock.destroy();
  t.equal(await settled(s.handshakes), 1, 'a CA certificate is never pinned: straight to the standard path');
  const stranger = makeSelfSignedCert();
  t.ok(await failure(openTls({ server: s.url, ca: stranger.certPem }, 5_000)), 'and a CA file without the issuer is refused');

  // A CA-issued leaf is not self-signed: saved alone it fails as it does without the fast path,
  // saved with its CA it verifies the standard way.
  const before = s.handshakes();
  const leafOnly = await failure(openTls({ server: s.url, ca: certPem! }, 5_000));
  t.equal(leafOnly?.code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'the leaf without its issuer: the standard error');
  const both = await openTls({ server: s.url, ca: certPem! + ca! }, 5_000);
  t.equal(both.authorized, true, 'the leaf with its issuer: verified');
  both.destroy();
  t.equal((await settled(s.handshakes)) - before, 2, 'one handshake each');
});

t.test('a self-signed certificate limited to other uses is not pinned: the standard purpose error', { skip: !hasOpenssl() && 'no openssl CLI' }, async (t) => {
  const dir = await tempDir(t);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'k.pem', '-out', 'c.pem', '-days', '2', '-subj', '/CN=client only', '-addext', 'subjectAltName=IP:127.0.0.1', '-addext', 'extendedKeyUsage=clientAuth'],
    { cwd: dir, stdio: 'ignore' },
  );
  const [certPem, keyPem] = await Promise.all(['c.pem', 'k.pem'].map((f) => readFile(join(dir, f), 'utf8')));
  const s = await server(t, { certPem: certPem!, keyPem: keyPem! });
  const e = await failure(openTls({ server: s.url, ca: certPem! }, 5_000));
  t.equal(e?.code, 'INVALID_PURPOSE', 'refused as without the fast path');
  t.equal(await settled(s.handshakes), 1, 'and not tried as a pin');
  t.equal(s.requests(), 0);
});

t.test('Preconnect: handed out once while fresh; stale or closed means a new connection', async (t) => {
  const cert = makeSelfSignedCert();
  const s = await server(t, cert);
  const target = { server: s.url, ca: cert.certPem };

  const fresh = new Preconnect(target, 5_000);
  const sock = await fresh.take();
  t.ok(sock && !sock.destroyed, 'a fresh connection is handed out');
  t.equal(await fresh.take(), undefined, 'only once');
  sock?.destroy();

  let now = Date.now();
  const stale = new Preconnect(target, 5_000, () => now);
  now += FRESH_MS + 1;
  t.equal(await stale.take(), undefined, 'older than FRESH_MS: not used (the server may be about to drop it)');

  const closed = new Preconnect(target, 5_000);
  while (s.handshakes() < 3) await new Promise((r) => setTimeout(r, 5));
  s.dropAll(); // the server gave up on it (kmgrd does after 10 s without a request)
  await new Promise((r) => setTimeout(r, 100));
  t.equal(await closed.take(), undefined, 'closed by the server before use: not used');
  const h = await unsignedRequest({ server: s.url, ca: cert.certPem, preconnect: new Preconnect(target, 5_000) }, 'GET', '/v1/health', undefined, HealthResponse);
  t.equal(h.ok, true, 'a request takes the warmed connection');
  t.equal(await settled(s.handshakes), 4, 'and makes no other');
});

t.test('Preconnect to nothing: the error reaches whoever takes it, and an untaken failure is harmless', async (t) => {
  const cert = makeSelfSignedCert();
  const s = await server(t, cert);
  t.ok(s.url);
  // A port nobody listens on: bound, then closed.
  const tcp = createTcpServer();
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  const port = (tcp.address() as AddressInfo).port;
  await new Promise((r) => tcp.close(r));
  const dead = `https://127.0.0.1:${port}`;
  const p = new Preconnect({ server: dead, ca: cert.certPem }, 5_000);
  t.equal(await p.take(), undefined, 'a failed preconnect is not handed out: the caller connects anew');
  await t.rejects(
    unsignedRequest({ server: dead, ca: cert.certPem, preconnect: new Preconnect({ server: dead, ca: cert.certPem }, 5_000) }, 'GET', '/v1/health', undefined, HealthResponse),
    { code: 'unavailable', message: /ECONNREFUSED/ },
    'and meets the error itself',
  );
  new Preconnect({ server: dead, ca: cert.certPem }, 5_000).discard();
  await new Promise((r) => setTimeout(r, 100));
  t.pass('no unhandled rejection from a discarded failed preconnect');
});

