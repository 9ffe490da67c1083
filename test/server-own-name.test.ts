// A signed request names the server it was meant for, and kmgrd refuses one
// meant for another: a request captured at one kmgrd (or signed for a name
// that is not this server's) must not act at another where the same
// management key is enrolled.
import t, { type Test as TapTest } from 'tap';
import { connect } from 'node:tls';
import { startServer, kmgrd, caPem, enrol, keyStatus, newIdentity, newPartnerId, register, send, signed, type TestServer, type RawReply } from './support/index.js';
import { Authorities, certificateNames } from '../src/server/authorities.js';
import { makeSelfSignedCert } from '../src/server/tls/selfsigned.js';

type T = TapTest;

function isErr(t: T, r: RawReply, status: number, code: string, what: string): void {
  t.equal(r.status, status, `${what}: HTTP ${status}`);
  t.equal(r.json?.error?.code, code, `${what}: error code ${code} (got ${r.text.slice(0, 160)})`);
}

t.test('a request signed for one kmgrd is refused by another where the same key is enrolled', async (t) => {
  const [one, two] = await Promise.all([startServer(t), startServer(t)]);
  const A = newIdentity();
  t.equal((await enrol(one, A)).status, 201, 'A enrols at one');
  const atTwo = { ...A };
  t.equal((await enrol(two, atTwo)).status, 201, 'the same key enrols at two');
  const p = newPartnerId();
  t.equal((await register(one, A, p)).status, 201, 'registered at one');
  t.equal((await register(two, atTwo, p)).status, 201, 'registered at two');

  // Signed for one (its authority), delivered to two.
  const toTwo = (method: string, path: string, body?: unknown): Promise<RawReply> => send(two, signed(one, A, method, path, body));
  isErr(t, await toTwo('GET', '/v1/persons/me'), 401, 'auth_wrong_server', 'whoami signed for one, sent to two');
  isErr(t, await toTwo('PUT', `/v1/keys/${newPartnerId()}`, { keyId: 'k_' + 'a'.repeat(22) }), 401, 'auth_wrong_server', 'register signed for one, sent to two');
  isErr(t, await toTwo('PATCH', `/v1/keys/${p}`, { inhibited: true }), 401, 'auth_wrong_server', 'lock signed for one, sent to two');
  isErr(t, await toTwo('POST', `/v1/keys/${p}/fetch`, {}), 401, 'auth_wrong_server', 'fetch signed for one, sent to two');
  const st = await keyStatus(two, atTwo, p);
  t.equal(st.status, 200, 'control: a request signed for two is served by two');
  t.equal(st.json.uses.total, 0, 'nothing was counted at two');
  t.equal(st.json.inhibited, false, 'nothing was locked at two');
});

t.test('a request signed for a name that is not the server\'s is refused, whatever the Host says', async (t) => {
  const server = await startServer(t);
  const A = newIdentity();
  t.equal((await enrol(server, A)).status, 201, 'A enrols');
  for (const authority of ['evil.example:443', 'evil.example', `127.0.0.2:${server.daemon.port}`]) {
    isErr(t, await send(server, signed(server, A, 'GET', '/v1/persons/me', undefined, { authority })), 401, 'auth_wrong_server', `signed for and sent to ${authority}`);
  }
  // The server's own names: the listen address and the certificate's names, at its port.
  for (const authority of [`127.0.0.1:${server.daemon.port}`, `localhost:${server.daemon.port}`, `[::1]:${server.daemon.port}`]) {
    const r = await send(server, signed(server, A, 'GET', '/v1/persons/me', undefined, { authority }));
    t.equal(r.status, 200, `signed for ${authority}: served (${r.text.slice(0, 120)})`);
  }
  const unsigned = await send(server, { method: 'GET', path: '/v1/health', headers: { host: 'evil.example' }, body: new Uint8Array(0) });
  t.equal(unsigned.status, 200, 'unsigned endpoints answer whatever the Host');
});

/** Sends raw bytes over TLS and returns the status line's code and the body. */
function rawExchange(server: TestServer, request: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port: server.daemon.port, ca: caPem(server.ca), servername: 'localhost', minVersion: 'TLSv1.3' }, () => s.write(request));
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', reject);
    s.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text });
    });
  });
}

t.test('a request with two Host headers is a 400', async (t) => {
  const server = await startServer(t);
  const A = newIdentity();
  t.equal((await enrol(server, A)).status, 201, 'A enrols');
  const req = signed(server, A, 'GET', '/v1/persons/me');
  const own = String(req.headers.host);
  const others = Object.entries(req.headers).filter(([k]) => k !== 'host').map(([k, v]) => `${k}: ${v}\r\n`).join('');
  const head = (hosts: string[]): string => `GET /v1/persons/me HTTP/1.1\r\n${hosts.map((h) => `Host: ${h}\r\n`).join('')}${others}connection: close\r\n\r\n`;
  const control = await rawExchange(server, head([own]));
  t.equal(control.status, 200, `control: one Host header is served (${control.text.slice(-120)})`);
  const two = await rawExchange(server, head([own, 'evil.example']));
  t.equal(two.status, 400, 'two Host headers: 400');
  t.match(two.text, /"code":"bad_request"/, 'with the stable code');
  t.match(two.text, /more than one Host header/, 'and a reason');
});

t.test('--public-url adds the names kmgrd is reached by behind a proxy', async (t) => {
  const server = await startServer(t, { publicUrls: ['https://kmgr.example.com', 'https://KMGR.example.net:9443/'] });
  const A = newIdentity();
  t.equal((await enrol(server, A)).status, 201, 'A enrols');
  for (const authority of ['kmgr.example.com', 'kmgr.example.net:9443']) {
    const r = await send(server, signed(server, A, 'GET', '/v1/persons/me', undefined, { authority }));
    t.equal(r.status, 200, `signed for ${authority}: served`);
  }
  isErr(t, await send(server, signed(server, A, 'GET', '/v1/persons/me', undefined, { authority: 'kmgr.example.net' })), 401, 'auth_wrong_server', 'the same name at another port');
  const bad = await kmgrd(['serve', '--data', server.dataDir + '-unused', '--listen', '127.0.0.1:0', '--public-url', 'http://kmgr.example.com/api']);
  t.equal(bad.code, 64, `a --public-url that is no https origin is a usage error (${bad.stderr.trim()})`);
  t.match(bad.stderr, /--public-url must be an https URL/, 'with a reason');
});

t.test('certificate names: DNS and IP names, wildcards cover one label', async (t) => {
  const cert = makeSelfSignedCert({ dnsNames: ['kmgr.example.org', '*.pool.example.org'], ipAddresses: ['10.0.0.7', '2001:db8::7'] }).certPem;
  const names = certificateNames(cert);
  const a = new Authorities();
  for (const n of names) a.addCertificateName(n, 8443);
  t.ok(a.has('kmgr.example.org:8443'), 'DNS name at the port');
  t.ok(a.has('KMGR.Example.org:8443'), 'case does not matter');
  t.notOk(a.has('kmgr.example.org:8444'), 'not at another port');
  t.notOk(a.has('kmgr.example.org'), 'not at 443');
  t.ok(a.has('a.pool.example.org:8443'), 'wildcard: one label');
  t.notOk(a.has('a.b.pool.example.org:8443'), 'wildcard: not two labels');
  t.notOk(a.has('pool.example.org:8443'), 'wildcard: not the bare suffix');
  t.ok(a.has('10.0.0.7:8443'), 'IPv4');
  t.ok(a.has('[2001:db8:0:0:0:0:0:7]:8443'), 'IPv6, however written');
  t.notOk(a.has('kmgr.example.org:8443/x'), 'junk after the port');
  t.notOk(a.has('user@kmgr.example.org:8443'), 'user info');
});
