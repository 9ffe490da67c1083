// SIGHUP on a real kmgrd process: the TLS certificate is swapped without
// dropping connections (the next handshake sees the new one, an open
// keep-alive connection keeps working), a bad new certificate is refused with
// the old one kept, the audit log is reopened, and the process stays up.
import t from 'tap';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Agent, request } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { rename, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KMGRD, tempDir, untracked } from './support/index.js';
import { makeSelfSignedCert } from '../src/server/tls/selfsigned.js';

async function writeAtomic(path: string, text: string): Promise<void> {
  await writeFile(path + '.tmp', text, { mode: 0o600 });
  await rename(path + '.tmp', path);
}

t.test('SIGHUP reloads the certificate for new handshakes, keeps connections, refuses a bad one, reopens the audit log', async (t) => {
  const dir = await tempDir(t, 'kmgrd-hup-');
  const a = makeSelfSignedCert({ commonName: 'kmgrd-a' });
  const b = makeSelfSignedCert({ commonName: 'kmgrd-b' });
  const c = makeSelfSignedCert({ commonName: 'kmgrd-c' });
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  const auditPath = join(dir, 'audit.jsonl');
  const auditKey = join(dir, 'audit.key');
  await writeAtomic(certPath, a.certPem);
  await writeAtomic(keyPath, a.keyPem);
  await writeFile(auditKey, 'k'.repeat(40), { mode: 0o600 });
  const child = spawn(
    ...untracked(process.execPath, [KMGRD, 'serve', '--data', join(dir, 'data'), '--listen', '127.0.0.1:0', '--tls-cert', certPath, '--tls-key', keyPath, '--audit-log', auditPath, '--audit-key-file', auditKey]),
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const logLines: string[] = [];
  const waiters: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  createInterface({ input: child.stdout }).on('line', (l) => {
    logLines.push(l);
    for (const w of waiters.splice(0)) {
      if (w.re.test(l)) w.resolve(l);
      else waiters.push(w);
    }
  });
  // Resolves on the first log line after now that matches (log lines are the daemon's own report of what it did).
  const nextLine = (re: RegExp): Promise<string> =>
    new Promise((resolve, reject) => {
      waiters.push({ re, resolve });
      void exited.then((code) => reject(new Error(`kmgrd exited with ${code}`)));
    });
  const port = Number(/"port":(\d+)/.exec(await nextLine(/kmgrd listening/))![1]);

  const ca = [a.certPem, b.certPem, c.certPem];
  const keepAlive = new Agent({ keepAlive: true, maxSockets: 1, ca, minVersion: 'TLSv1.3' });
  t.teardown(() => keepAlive.destroy());
  const get = (agent: Agent | false): Promise<{ status: number; fingerprint: string; socket: TLSSocket }> =>
    new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/v1/persons/me', agent, ca, minVersion: 'TLSv1.3', servername: '' }, (res) => {
        const socket = res.socket as TLSSocket;
        const fingerprint = socket.getPeerCertificate().fingerprint256;
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, fingerprint, socket }));
      });
      req.on('error', reject);
      req.end();
    });

  const first = await get(keepAlive);
  t.equal(first.fingerprint, a.fingerprint256, 'serving certificate A');
  t.equal(first.status, 401, 'an unsigned request is answered (and audited)');

  // Renewal: new files in place, logrotate moves the audit log, SIGHUP.
  await writeAtomic(certPath, b.certPem);
  await writeAtomic(keyPath, b.keyPem);
  await rename(auditPath, auditPath + '.1');
  const reloaded = nextLine(/TLS certificate reloaded/);
  const reopened = nextLine(/audit log reopened/);
  child.kill('SIGHUP');
  t.match(JSON.parse(await reloaded), { tlsFingerprint256: b.fingerprint256 }, 'the daemon logs the new fingerprint');
  await reopened;

  const fresh = await get(false);
  t.equal(fresh.fingerprint, b.fingerprint256, 'a new handshake sees certificate B');
  const again = await get(keepAlive);
  t.equal(again.socket, first.socket, 'the keep-alive connection made before the reload was not dropped');
  t.equal(again.status, 401, 'and it is still served');
  t.equal(readFileSync(auditPath + '.1', 'utf8').trim().split('\n').length, 1, 'the rotated audit file has the request before the reload');
  t.equal(readFileSync(auditPath, 'utf8').trim().split('\n').length, 2, 'the reopened file has the two after it');

  // A broken renewal: garbage certificate. Refused; B keeps serving.
  await writeAtomic(certPath, '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
  const refused = nextLine(/TLS reload refused/);
  child.kill('SIGHUP');
  t.match(JSON.parse(await refused), { tlsFingerprint256: b.fingerprint256 });
  t.equal((await get(false)).fingerprint, b.fingerprint256, 'after a bad certificate, the old one is still served');

  // A certificate that does not match the key: refused too.
  await writeAtomic(certPath, c.certPem);
  const mismatch = nextLine(/TLS reload refused/);
  child.kill('SIGHUP');
  t.match(JSON.parse(await mismatch).err, /key|mismatch/i, 'the log says why');
  t.equal((await get(false)).fingerprint, b.fingerprint256, 'a certificate without its key is refused');

  t.equal(child.exitCode, null, 'kmgrd is still running after three SIGHUPs');
  keepAlive.destroy();
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'and stops cleanly on SIGTERM');
  t.ok(existsSync(auditPath));
  t.ok(logLines.some((l) => /"signal":"SIGHUP"/.test(l)), 'each SIGHUP is logged');
});
