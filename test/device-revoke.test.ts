// A person's devices against a real kmgrd: a device export is accepted for one
// import and expires; kmgr device list shows each device, when it was added and
// last used; the audit tells the person's other devices apart from an unknown
// holder of the key; and kmgr device revoke cuts one device off: its requests
// are refused, and what it holds opens nothing served afterwards.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { startServer, tempDir, errCode, jsonError, homeFor, newHome, ok, ownerView, writePassphrase, type Home, type DeviceListJson } from './support/index.js';
import { signedRequest } from '../src/client/http.js';
import { AddDeviceRequest, DeviceView, FetchResponse } from '../src/protocol/messages.js';
import { openBlob } from '../src/crypto/blob.js';
import { fromB64 } from '../src/crypto/bytes.js';
import { loadPartners } from '../src/client/partners.js';
import { homePaths } from '../src/client/home.js';

const CODE = /\b[0-9A-HJKMNP-TV-Z]{4}(?:-[0-9A-HJKMNP-TV-Z]{4}){7}\b/;

async function exportFrom(h: Home, name: string): Promise<{ file: string; code: string }> {
  const file = join(h.home, '..', `${name}.kmgr`);
  const r = await h.run(['--json', 'device', 'export', '--out', file]);
  if (r.code !== 0) throw new Error(`device export: ${r.stderr}`);
  return { file, code: JSON.parse(r.stdout).code };
}

async function importAs(t: Test, file: string, code: string, label: string, force = false, into?: string): Promise<{ r: Awaited<ReturnType<Home['run']>>; dev: Home }> {
  const base = into ? join(into, '..') : await tempDir(t, 'kmgr-device-');
  const home = into ?? join(base, 'home');
  const pp = await writePassphrase(base, `pp-${label}`, `the ${label} passphrase`);
  const codeFile = await writePassphrase(base, `code-${label}`, code);
  const dev = homeFor(home, pp);
  const r = await dev.run(['--json', 'device', 'import', file, '--code-file', codeFile, '--label', label, '--kdf-cost', '15', ...(force ? ['--force'] : [])]);
  return { r, dev };
}

t.test('a device export is accepted for one import; device list shows each device; the audit tells own devices from an unknown holder', async (t) => {
  const server = await startServer(t);
  const laptop = await newHome(t, server, { partners: 'server', device: 'laptop' });
  t.ok(await laptop.register('bank-a'), 'register bank-a');
  const exp = await exportFrom(laptop, 'phone');
  t.match(exp.code, CODE, 'a code');
  const phone = await importAs(t, exp.file, exp.code, 'phone');
  ok(t, phone.r, 'the first import');
  const again = await importAs(t, exp.file, exp.code, 'tablet');
  t.equal(again.r.code, 77, `the same export a second time: exit 77 (${again.r.stderr.trim()})`);
  t.equal(jsonError(again.r).code, 'export_used', 'refused: already imported once');
  const exp2 = await exportFrom(laptop, 'two');
  const sameLabel = await importAs(t, exp2.file, exp2.code, 'phone');
  t.equal(jsonError(sameLabel.r).code, 'device_exists', 'a second device cannot take a label in use');

  // An export expires: a day later the server refuses it (the request signed at the server's time).
  const exp3 = await exportFrom(laptop, 'late');
  const v = await ownerView(laptop);
  server.clock.now = Date.now() + 25 * 3_600_000;
  const payloadId = await (async () => {
    const { openTransfer } = await import('../src/crypto/transfer.js');
    const { readFile } = await import('node:fs/promises');
    return JSON.parse(new TextDecoder().decode(openTransfer(exp3.code, JSON.parse(await readFile(exp3.file, 'utf8'))))).exportId as string;
  })();
  try {
    await signedRequest(v.session.endpoint, { ...v.session.identity, device: 'late', now: () => server.clock.now! }, 'POST', '/v1/devices', AddDeviceRequest({ label: 'late', exportId: payloadId }, ''), DeviceView);
    t.fail('an expired export was accepted');
  } catch (e) {
    t.equal(errCode(e), 'export_expired', 'an export a day old is refused');
  }
  server.clock.now = undefined;

  ok(t, await phone.dev.run(['fetch', 'bank-a']), 'the phone fetches');
  const list = await laptop.json<DeviceListJson>(['device', 'list']);
  t.match(list.devices, [
    { label: 'laptop', via: 'init', current: true, revokedAt: null, thisDevice: true },
    { label: 'phone', via: 'import', current: true, revokedAt: null, thisDevice: false },
  ], 'device list: both devices, how each came, and which one this is');
  t.equal(list.devices.length, 2, 'and no others');
  t.ok(list.devices.every((d) => typeof d.addedAt === 'string' && typeof d.lastUsedAt === 'string'), 'each with when it was added and last used');

  // A use signed with the key under a label that is no device of this person is a finding.
  const pid = (await loadPartners(homePaths(laptop.home))).partners.find((p) => p.name === 'bank-a')!.id;
  await signedRequest(v.session.endpoint, { ...v.session.identity, device: 'stranger' }, 'POST', `/v1/keys/${pid}/fetch`, {}, FetchResponse);
  const audit = await laptop.run(['--json', 'audit']);
  t.equal(audit.code, 1, 'audit: exit 1 for the unknown holder');
  const rep = JSON.parse(audit.stdout).partners[0];
  t.match(rep.fromOtherDevices, [{ device: 'phone', verdict: 'other_device' }], "the phone's use is the person's own device");
  t.match(rep.findings, [{ device: 'stranger', verdict: 'not_ours' }], "the stranger's use is a finding");
  t.equal(rep.findings.length, 1, 'only that one');
});

t.test('device revoke: the revoked device is refused, and what it holds opens nothing served afterwards', async (t) => {
  const server = await startServer(t);
  const laptop = await newHome(t, server, { partners: 'server', device: 'laptop' });
  t.ok(await laptop.register('bank-a'), 'register bank-a');
  const e1 = await exportFrom(laptop, 'phone');
  const phone = await importAs(t, e1.file, e1.code, 'phone');
  ok(t, phone.r, 'import the phone');
  const e2 = await exportFrom(laptop, 'tablet');
  const tablet = await importAs(t, e2.file, e2.code, 'tablet');
  ok(t, tablet.r, 'import the tablet');
  ok(t, await phone.dev.run(['fetch', 'bank-a']), 'the phone fetches before');
  const phoneView = await ownerView(phone.dev);
  const phoneWrap = Uint8Array.from(phoneView.session.secrets!.wrapKey);

  const self = await laptop.run(['--json', 'device', 'revoke', 'laptop']);
  t.equal(self.code, 64, 'a device cannot revoke itself');
  const unknown = await laptop.run(['--json', 'device', 'revoke', 'nosuch']);
  t.equal(unknown.code, 66, 'an unknown label: 66');

  const r = await laptop.run(['--json', 'device', 'revoke', 'phone']);
  ok(t, r, 'device revoke phone');
  const out = JSON.parse(r.stdout);
  t.equal(out.revoked, 'phone', 'names the revoked device');
  t.same(out.needFreshExport, ['tablet'], 'and the devices that need a fresh export');

  const refused = await phone.dev.run(['--json', 'fetch', 'bank-a']);
  t.equal(refused.code, 77, `the revoked phone's fetch: exit 77 (${refused.stderr.trim()})`);
  t.equal(refused.stdout, '', 'nothing printed');
  const list = await laptop.json<DeviceListJson>(['device', 'list']);
  t.match(list.devices.find((d) => d.label === 'phone'), { revokedAt: /^\d{4}-/ }, 'device list shows the phone revoked');
  t.match(list.devices.find((d) => d.label === 'tablet'), { current: false, revokedAt: null }, 'and the tablet as needing a fresh export');
  const text = await laptop.run(['device', 'list']);
  t.match(text.stdout, /^\* laptop .*\(current key\)$/m, 'in text: this device marked, with its state');
  t.match(text.stdout, /^ {2}phone .*\(revoked /m, 'the phone revoked');
  t.match(text.stdout, /^ {2}tablet .*needs a fresh device export/m, 'the tablet waiting for an export');

  // What the phone holds (its management secrets) does not open a blob served now.
  const lv = await ownerView(laptop);
  const pid = (await loadPartners(homePaths(laptop.home))).partners.find((p) => p.name === 'bank-a')!.id;
  const served = (await signedRequest(lv.session.endpoint, lv.session.identity, 'POST', `/v1/keys/${pid}/fetch`, {}, FetchResponse)).body;
  const ctx = { personId: laptop.personId, partnerId: pid, keyId: served.keyId, alg: served.alg, keyVersion: served.keyVersion, partnerName: 'bank-a' };
  t.throws(() => openBlob(phoneWrap, ctx, fromB64(served.blob)!), 'the phone\'s wrapping key does not open the blob served after the revoke');
  t.ok(openBlob(lv.session.secrets!.wrapKey, ctx, fromB64(served.blob)!).length > 0, 'the new one does');

  // The tablet gets a fresh export and works again; the phone's label stays refused.
  const e3 = await exportFrom(laptop, 'tablet2');
  const t2 = await importAs(t, e3.file, e3.code, 'tablet-2', true, tablet.dev.home);
  ok(t, t2.r, 'the tablet imports a fresh export (new label, --force)');
  ok(t, await t2.dev.run(['fetch', 'bank-a']), 'and fetches');
  const e4 = await exportFrom(laptop, 'phone-again');
  const back = await importAs(t, e4.file, e4.code, 'phone');
  t.equal(jsonError(back.r).code, 'device_revoked', "the revoked phone's label is refused, even with a fresh export");
});
