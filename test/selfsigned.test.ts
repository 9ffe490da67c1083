import t from 'tap';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { createServer, request, type RequestOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import { makeSelfSignedCert } from '../src/server/tls/selfsigned.js';
import { hasOpenssl } from './support/index.js';

const DAY = 86_400_000;


t.test('defaults: parses, self-issued, verifies, matches key', async (t) => {
  const now = new Date();
  const { certPem, keyPem, fingerprint256 } = makeSelfSignedCert({ now });
  const cert = new X509Certificate(certPem);

  t.match(cert.subject, /CN=kmgrd/);
  t.equal(cert.subject, cert.issuer);
  const san = cert.subjectAltName ?? '';
  t.match(san, /DNS:localhost/);
  t.match(san, /IP Address:127\.0\.0\.1/);
  t.match(san, /IP Address:(::1|0:0:0:0:0:0:0:1)\b/);
  t.ok(cert.ca, 'basicConstraints CA:TRUE');
  t.equal(cert.serialNumber.length, 32, '16-byte serial');
  t.ok(cert.checkIssued(cert), 'self-issued');
  t.ok(cert.verify(cert.publicKey), 'signature verifies');
  t.ok(cert.checkPrivateKey(createPrivateKey(keyPem)), 'private key matches');
  t.match(keyPem, /^-----BEGIN PRIVATE KEY-----/);
  t.ok(cert.checkHost('localhost'));
  t.ok(cert.checkIP('127.0.0.1'));
  t.ok(cert.checkIP('::1'));
  t.equal(fingerprint256, cert.fingerprint256);

  const validTo = new Date(cert.validTo).getTime();
  const validFrom = new Date(cert.validFrom).getTime();
  t.ok(Math.abs(validTo - (now.getTime() + 825 * DAY)) < 2000, `validTo ${cert.validTo}`);
  t.ok(Math.abs(validFrom - (now.getTime() - 5 * 60_000)) < 2000, `validFrom ${cert.validFrom}`);
});

t.test('custom options, IPv6 compression, GeneralizedTime after 2049', async (t) => {
  const now = new Date('2048-06-01T00:00:00Z');
  const { certPem } = makeSelfSignedCert({
    commonName: 'escrow.example',
    dnsNames: ['escrow.example', 'alt.example'],
    ipAddresses: ['10.1.2.3', '2001:db8::8:800:200c:417a', '::ffff:192.0.2.1', 'fe80::'],
    days: 3650,
    now,
  });
  const cert = new X509Certificate(certPem);
  t.match(cert.subject, /CN=escrow\.example/);
  t.ok(cert.checkHost('alt.example'));
  t.ok(cert.checkIP('10.1.2.3'));
  t.ok(cert.checkIP('2001:0db8:0:0:0008:0800:200c:417a'));
  t.ok(cert.checkIP('::ffff:c000:201'));
  t.ok(cert.checkIP('fe80:0:0:0:0:0:0:0'));
  t.notOk(cert.checkIP('127.0.0.1'));
  t.equal(new Date(cert.validTo).getUTCFullYear(), 2058, 'GeneralizedTime notAfter');
  t.equal(new Date(cert.validFrom).toISOString(), '2048-05-31T23:55:00.000Z', 'UTCTime notBefore');
  t.ok(cert.verify(cert.publicKey));
  t.throws(() => makeSelfSignedCert({ ipAddresses: ['not-an-ip'] }));
  t.throws(() => makeSelfSignedCert({ days: 0 }));
});

t.test('openssl x509 -text accepts it', { skip: hasOpenssl() ? false : 'openssl not on PATH' }, async (t) => {
  const { certPem } = makeSelfSignedCert();
  const text = execFileSync('openssl', ['x509', '-noout', '-text'], { input: certPem, encoding: 'utf8' });
  t.match(text, /Version: 3/);
  t.match(text, /ecdsa-with-SHA256/);
  t.match(text, /CA:TRUE/);
  t.match(text, /TLS Web Server Authentication/);
  t.match(text, /Subject Key Identifier/);
});

t.test('real TLS 1.3 https server trusts it as ca', async (t) => {
  const { certPem, keyPem } = makeSelfSignedCert();
  const server = createServer({ cert: certPem, key: keyPem, minVersion: 'TLSv1.3' }, (_req, res) => {
    res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as AddressInfo).port;

  const get = (url: string, opts: RequestOptions) =>
    new Promise<{ status: number; body: string; protocol: string }>((resolve, reject) => {
      const req = request(url, { agent: false, ...opts }, (res) => {
        let body = '';
        const protocol = (res.socket as import('node:tls').TLSSocket).getProtocol() ?? '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, protocol }));
      });
      req.on('error', reject);
      req.end();
    });

  const byIp = await get(`https://127.0.0.1:${port}/`, { ca: certPem });
  t.same(byIp, { status: 200, body: 'ok', protocol: 'TLSv1.3' });

  // family: 4 so "localhost" does not resolve to ::1 (server listens on IPv4 only)
  const byName = await get(`https://localhost:${port}/`, { ca: certPem, family: 4 });
  t.equal(byName.status, 200);
  t.equal(byName.body, 'ok');

  await t.rejects(get(`https://127.0.0.1:${port}/`, {}), {
    code: /SELF_SIGNED|UNABLE_TO_VERIFY|CERT/,
  });
});
