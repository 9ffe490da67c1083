// kmgrd serve --audit-log: a line per request before its reply, IDs only as
// HMACs under the operator's key, failing closed, reopened for logrotate.
import t from 'tap';
import { createHmac } from 'node:crypto';
import { readFileSync, existsSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startServer, tempDir, enrol, newIdentity, newPartnerId, register, send, signed, type Target } from './support/index.js';

const KEY_HEX = 'a1'.repeat(32);
const pseudonym = (id: string): string => createHmac('sha256', Buffer.from(KEY_HEX)).update('kmgrd-audit-id\0').update(id).digest('hex').slice(0, 32);
const lines = (path: string): Array<Record<string, unknown>> =>
  existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) : [];
const get = (target: Target, path: string) => send(target, { method: 'GET', path, headers: { host: new URL(target.url).host }, body: new Uint8Array(0) });

async function keyFile(t: Parameters<typeof tempDir>[0], mode = 0o600, text = KEY_HEX + '\n'): Promise<string> {
  const path = join(await tempDir(t, 'kmgrd-audit-key-'), 'audit.key');
  await writeFile(path, text, { mode });
  return path;
}

t.test('one line per request, on disk before the reply, with IDs pseudonymised under the operator key', async (t) => {
  const dir = await tempDir(t, 'kmgrd-audit-');
  const log = join(dir, 'audit.jsonl');
  const server = await startServer(t, { auditLog: log, auditKeyFile: await keyFile(t) });
  const target: Target = { url: server.url, ca: server.ca };
  const id = newIdentity();
  t.equal((await enrol(target, id)).status, 201);
  t.equal(lines(log).length, 1, 'the enrolment is logged by the time its reply arrives');
  const partner = newPartnerId();
  t.equal((await register(target, id, partner)).status, 201);
  t.equal(lines(log).length, 2);
  t.equal((await send(target, signed(target, id, 'POST', `/v1/keys/${partner}/fetch`, {}))).status, 200);
  t.equal(lines(log).length, 3, 'the fetch is logged before the key leaves');
  t.equal((await get(target, `/v1/keys/${partner}`)).status, 401, 'an unsigned request');
  t.equal((await get(target, '/livez')).status, 200);
  t.equal((await get(target, '/readyz')).status, 200);
  const all = lines(log);
  t.equal(all.length, 4, 'probes are not audited; every API request is');
  const [enrolLine, regLine, fetchLine, unsigned] = all;
  t.match(enrolLine, { method: 'POST', route: '/v1/persons', status: 201, result: 'ok', remoteAddress: '127.0.0.1', partner: null });
  t.equal(enrolLine!.person, null, 'enrolment has no person yet when it is judged');
  t.match(regLine, { method: 'PUT', route: '/v1/keys/{partnerId}', status: 201, person: pseudonym(id.personId!), partner: pseudonym(partner) });
  t.match(fetchLine, { method: 'POST', route: '/v1/keys/{partnerId}/fetch', status: 200, result: 'served', person: pseudonym(id.personId!), partner: pseudonym(partner) });
  t.match(unsigned, { status: 401, result: 'auth_missing', person: null, partner: pseudonym(partner) });
  for (const l of all) {
    t.ok(typeof l.time === 'string' && !Number.isNaN(Date.parse(l.time)), 'time is ISO 8601');
    t.ok(typeof l.durationMs === 'number');
  }
  const text = readFileSync(log, 'utf8');
  for (const raw of [id.personId!, id.keyId, partner]) t.notOk(text.includes(raw), 'no raw ID in the audit log');
  t.notOk(text.includes('signature'), 'no signature in the audit log');

  // logrotate: move the file away, SIGHUP (here: the reload SIGHUP runs), and the next line starts a new file.
  await rename(log, log + '.1');
  const report = await server.daemon.reload();
  t.same(report.auditLog, { reopened: true });
  t.equal((await send(target, signed(target, id, 'POST', `/v1/keys/${partner}/fetch`, {}))).status, 200);
  t.equal(lines(log + '.1').length, 4, 'the rotated file keeps what it had');
  t.match(lines(log), [{ route: '/v1/keys/{partnerId}/fetch', result: 'served' }], 'the new file gets the next request');
});

t.test('fail closed: when the audit line cannot be written, the request is answered 503 and no key leaves', async (t) => {
  // /dev/full opens fine and fails every write with ENOSPC: a full log disk.
  const server = await startServer(t, { auditLog: '/dev/full', auditKeyFile: await keyFile(t) });
  const target: Target = { url: server.url, ca: server.ca };
  const id = newIdentity();
  const r = await enrol(target, id);
  t.equal(r.status, 503);
  t.equal(r.json.error?.code, 'unavailable');
  t.match(r.json.error?.message, /audit log/);
  t.equal((await get(target, '/livez')).status, 200, 'probes still answer');
  t.ok(server.logs.lines.some((l) => /audit log write failed/.test(l)), 'the failure is logged');
});

t.test('the audit key must be private and long enough; the log and key go together', async (t) => {
  const dir = await tempDir(t, 'kmgrd-audit-');
  const log = join(dir, 'audit.jsonl');
  await t.rejects(startServer(t, { auditLog: log, auditKeyFile: await keyFile(t, 0o644) }), { code: 'unsafe_permissions' });
  await t.rejects(startServer(t, { auditLog: log, auditKeyFile: await keyFile(t, 0o600, 'short\n') }), { code: 'config', message: /at least 32/ });
  await t.rejects(startServer(t, { auditLog: log }), { code: 'config', message: /go together/ });
  await t.rejects(startServer(t, { auditLog: log, auditKeyFile: join(dir, 'missing.key') }), { code: 'config', message: /cannot read/ });
});
