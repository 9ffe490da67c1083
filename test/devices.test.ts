// A second device: `kmgr device export`/`import` between two
// temporary homes against a real kmgrd, fetching from the new device with
// nothing but the export (partners on the server), both devices in the
// history and in the audit; and `kmgr partner push` from a local index.
import t, { type Test } from 'tap';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startServer, tempDir, jsonError, snapshot, hasScript, underPty, homeFor, keyPairMatches, newHome, ownerView, rawIdentity, readJson, writePassphrase, ok, send, signed, type Target, type PartnerList, type HistoryJson, type PartnerListJson, type PartnerPushJson, type KeyPairStatusJson, type WhoamiJson } from './support/index.js';
import type { ClientConfig } from '../src/client/config.js';
import { newTransferCode } from '../src/crypto/transfer.js';
import { toB64 } from '../src/crypto/bytes.js';

const CODE = /\b[0-9A-HJKMNP-TV-Z]{4}(?:-[0-9A-HJKMNP-TV-Z]{4}){7}\b/;


/** `kmgr device import` into a fresh home with its own passphrase. */
async function importInto(t: Test, file: string, code: string, label: string, opts: { json?: boolean } = {}) {
  const base = await tempDir(t, 'kmgr-device-');
  const home = join(base, 'home');
  const pp = await writePassphrase(base, 'passphrase', `the ${label} passphrase`);
  const codeFile = await writePassphrase(base, 'code', code);
  const dev = homeFor(home, pp);
  const r = await dev.run([...(opts.json ? ['--json'] : []), 'device', 'import', file, '--code-file', codeFile, '--label', label, '--kdf-cost', '15']);
  return { r, dev, home, base };
}

t.test('device export/import: a second device with its own passphrase fetches with nothing else copied; both devices in history and audit', async (t) => {
  const server = await startServer(t);
  const a = await newHome(t, server, { partners: 'server', device: 'laptop' });
  const reg = await a.register<KeyPairStatusJson>('bank-a');
  ok(t, await a.run(['fetch', 'bank-a']), 'the laptop fetches bank-a');
  const out = join(a.home, '..', 'export.kmgr');

  const exp = await a.run(['device', 'export', '--out', out]);
  ok(t, exp, 'device export --out');
  t.equal(exp.stdout, '', 'nothing on stdout');
  const code = CODE.exec(exp.stderr)?.[0];
  t.ok(code, 'the one-time code is printed on stderr');
  t.equal((await stat(out)).mode & 0o777, 0o600, 'the export file is mode 0600');
  const text = await readFile(out, 'utf8');
  const doc = JSON.parse(text);
  t.equal(doc.format, 'kmgr-device-transfer', 'a device transfer file');
  const secrets = (await ownerView(a)).session.secrets!;
  t.notOk(text.includes(toB64(secrets.signingSeed)) || text.includes(toB64(secrets.wrapKey)), 'the management key is not in the file in the clear');
  t.notOk(code !== undefined && text.includes(code), 'nor is the code');

  // An existing, readable file at --out is replaced by a private one.
  const outJ = join(a.home, '..', 'export2.kmgr');
  await writeFile(outJ, 'an older file\n', { mode: 0o644 });
  const expJ = await a.run(['--json', 'device', 'export', '--out', outJ]);
  ok(t, expJ, 'device export --out --json');
  const j = JSON.parse(expJ.stdout);
  t.equal(j.out, outJ, '--json: {out}');
  t.match(j.code, CODE, '--json: {code}');
  t.not(j.code, code, 'a fresh code for every export');
  t.equal((await stat(outJ)).mode & 0o777, 0o600, 'an existing 0644 file at --out is replaced by a 0600 one');

  // A wrong code: the second export's code does not open the first. Nothing is written.
  const wrong = await importInto(t, out, j.code, 'phone', { json: true });
  t.equal(wrong.r.code, 77, `a wrong code: exit 77 (got ${wrong.r.code}: ${wrong.r.stderr.trim()})`);
  t.equal(jsonError(wrong.r).code, 'wrong_passphrase', 'refused as a code that does not open the export');
  t.same([...(await snapshot(wrong.home)).keys()], [], 'nothing written to the new home');
  const random = await importInto(t, out, newTransferCode(), 'phone');
  t.equal(random.r.code, 77, 'a random well-formed code: 77');
  t.same([...(await snapshot(random.home)).keys()], [], 'nothing written');

  // An altered export: one character of the sealed box changed.
  const altered = join(a.home, '..', 'altered.kmgr');
  const box = Buffer.from(doc.box, 'base64');
  box[box.length >> 1]! ^= 1;
  await writeFile(altered, JSON.stringify({ ...doc, box: box.toString('base64') }));
  const alt = await importInto(t, altered, code ?? '', 'phone');
  t.equal(alt.r.code, 77, 'an altered export with the right code: 77');
  t.same([...(await snapshot(alt.home)).keys()], [], 'nothing written');
  const typo = await importInto(t, out, 'not-a-code', 'phone');
  // (transfer.ts means a malformed code to be a usage error, 64; openTransfer's catch-all turns it into 77. Either refuses.)
  t.ok(typo.r.code === 64 || typo.r.code === 77, `a malformed code is refused (64 or 77, got ${typo.r.code})`);
  t.same([...(await snapshot(typo.home)).keys()], [], 'nothing written');

  const imp = await importInto(t, out, code ?? '', 'phone');
  ok(t, imp.r, 'device import --code-file --label phone');
  t.match(imp.r.stdout, new RegExp(`${a.personId}.*device phone`), 'says who and which device');
  const phone = imp.dev;
  t.equal((await stat(join(imp.home, 'keystore.json'))).mode & 0o777, 0o600, "the phone's keystore is 0600");
  const who = await phone.json<WhoamiJson>(['whoami']);
  t.same([who.personId, who.fingerprint], [a.personId, a.fingerprint], 'the same person and management key');
  t.equal((await readJson<ClientConfig>(join(imp.home, 'config.json'))).device, 'phone', 'labelled phone');
  const withLaptopPp = await homeFor(imp.home, a.pp).run(['--json', 'notices']);
  t.equal(withLaptopPp.code, 77, "the phone has its own passphrase: the laptop's is refused (77)");

  // With partners on the server, the export's partner index is not needed.
  await rm(join(imp.home, 'partners.json'));
  const auditFirst = await phone.run(['audit', '--json']);
  t.equal(auditFirst.code, 0, "the phone's audit, before it knows any partner locally, finds the laptop's use (the index is on the server) and tells it from an unknown holder's");
  t.match(JSON.parse(auditFirst.stdout || '{}').partners, [{ partner: 'bank-a', findings: [], fromOtherDevices: [{ device: 'laptop', verdict: 'other_device' }] }], 'naming bank-a and the laptop');
  const fetched = await phone.run(['fetch', 'bank-a']);
  ok(t, fetched, 'the phone fetches bank-a with no local partner index');
  t.ok(keyPairMatches(fetched.stdout, reg.publicKey), 'the key matches the registered public key');

  const hist = (await a.json<HistoryJson>(['history', 'bank-a'])).history;
  t.same(hist.map((h) => h.device), ['phone', 'laptop'], "the laptop's history shows which device made each use");
  // Both are the person's registered devices (kmgr device list): each one's uses are not findings for the other.
  const audit = await a.run(['audit', '--json']);
  t.equal(audit.code, 0, "audit on the laptop: exit 0 (the phone's use is by another of the person's devices)");
  const rep = JSON.parse(audit.stdout);
  t.match(rep.partners[0].fromOtherDevices, [{ device: 'phone', verdict: 'other_device', result: 'served' }], 'the use is named as the phone\'s');
  t.equal(rep.partners[0].findings.length, 0, 'and is no finding');
  const auditPhone = await phone.run(['audit']);
  t.equal(auditPhone.code, 0, "the phone's audit shows the laptop's use without flagging it");
  t.match(auditPhone.stdout, /DEVICE .*your device laptop/, 'naming the laptop');
});

t.test('device export refuses to print to a terminal', { skip: hasScript() ? false : 'util-linux script(1) is not installed' }, async (t) => {
  const server = await startServer(t);
  const a = await newHome(t, server);
  const r = await underPty(['device', 'export', '--passphrase-file', a.pp], a.home);
  t.equal(r.code, 64, 'device export to a terminal: exit 64');
  t.match(r.out, /terminal/, 'says why');
  t.notMatch(r.out, /kmgr-device-transfer/, 'no export on the terminal');
  t.notMatch(r.out, CODE, 'and no code');
});

t.test('partner push: a local index moves to the server; a device imported after that fetches the pushed partner', async (t) => {
  const server = await startServer(t);
  const desk = await newHome(t, server, { partners: 'local', device: 'desk' });
  const reg = await desk.json<KeyPairStatusJson>(['register', 'acme', '--name', 'Acme Bank']);
  const pushed = await desk.json<PartnerPushJson>(['partner', 'push']);
  t.same(pushed, { moved: 1, total: 1 }, 'partner push --json: one partner moved');
  t.equal((await readJson<ClientConfig>(join(desk.home, 'config.json'))).partners, 'server', 'the config now says the index is on the server');
  const target: Target = { url: server.url, ca: server.ca };
  const list = await send<PartnerList>(target, signed(target, await rawIdentity(desk), 'GET', '/v1/partners'));
  t.same(list.json.partners.map((p) => [p.name, p.partnerId, p.displayName, p.shared]), [['acme', reg.partnerId, 'Acme Bank', false]], 'the server holds acme under its local ID');
  const again = await desk.run(['partner', 'push']);
  t.equal(again.code, 64, 'a second push: usage error (already on the server)');
  ok(t, await desk.run(['partner', 'add', 'beta']), 'a partner added after the push');
  const deskFetch = await desk.run(['fetch', 'acme']);
  ok(t, deskFetch, 'the desk still fetches acme after the push');
  t.ok(keyPairMatches(deskFetch.stdout, reg.publicKey), 'the same key');

  const out = join(desk.home, '..', 'export.kmgr');
  const exp = await desk.run(['--json', 'device', 'export', '--out', out]);
  ok(t, exp, 'export');
  const imp = await importInto(t, out, JSON.parse(exp.stdout).code, 'tablet');
  ok(t, imp.r, 'import on a fresh home as tablet');
  await rm(join(imp.home, 'partners.json'));
  const fetched = await imp.dev.run(['fetch', 'acme']);
  ok(t, fetched, 'the tablet fetches the pushed partner, with no local index');
  t.ok(keyPairMatches(fetched.stdout, reg.publicKey), 'the key registered on the desk');
  const tabletList = await imp.dev.json<PartnerListJson>(['partner', 'list']);
  t.same(tabletList.partners.map((p) => p.name).sort(), ['acme', 'beta'], "the tablet lists the server's index, including the partner added after the push");
  const hist = (await desk.json<HistoryJson>(['history', 'acme'])).history;
  t.same(hist.map((h) => h.device), ['tablet', 'desk'], "the desk's history shows the tablet's use and its own");
});
