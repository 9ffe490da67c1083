// The offline recovery kit against a real kmgrd: the kit holds the management
// key only sealed (the code shown once, never in the file); after the keystore
// is deleted, kmgr recover with the code and a new passphrase gives a working
// client; a wrong code, an edited kit or a malformed code writes nothing; and
// a kit made before a rekey no longer works after it.
import t from 'tap';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startServer, tempDir, kmgr, jsonError, snapshot, homeFor, newHome, ok, ownerView, writePassphrase, type DeviceListJson } from './support/index.js';
import { toB64 } from '../src/crypto/bytes.js';
import { newTransferCode } from '../src/crypto/transfer.js';

const CODE = /\b[0-9A-HJKMNP-TV-Z]{4}(?:-[0-9A-HJKMNP-TV-Z]{4}){7}\b/;

t.test('recovery kit: recover after the keystore is deleted; wrong code or edited kit writes nothing; refused after a rekey', async (t) => {
  const server = await startServer(t);
  const h = await newHome(t, server, { device: 'laptop' });
  t.ok(await h.register('bank-a'), 'register bank-a');
  const key = await h.run(['fetch', 'bank-a']);
  ok(t, key, 'fetch bank-a');
  const base = await tempDir(t, 'kmgr-kit-');
  const kit = join(base, 'kit.json');

  // The code on the terminal (stderr), once; never on stdout or in the file.
  const made = await h.run(['recovery-kit', '--out', kit]);
  ok(t, made, 'kmgr recovery-kit --out');
  const code = CODE.exec(made.stderr)?.[0];
  t.ok(code, 'the code is shown on the terminal (stderr)');
  t.notMatch(made.stdout, CODE, 'not on stdout');
  t.equal((await stat(kit)).mode & 0o777, 0o600, 'the kit is mode 0600');
  const text = await readFile(kit, 'utf8');
  const doc = JSON.parse(text);
  t.match(doc, { format: 'kmgr-recovery-kit', v: 1, personId: h.personId, server: server.url, fingerprint: h.fingerprint }, 'a versioned kit naming the person and server');
  const secrets = (await ownerView(h)).session.secrets!;
  t.notOk(text.includes(toB64(secrets.signingSeed)) || text.includes(toB64(secrets.wrapKey)) || text.includes(code!), 'neither the key nor the code is in the file');
  const same = await h.run(['recovery-kit', '--out', kit, '--code-out', kit]);
  t.equal(same.code, 64, 'the code cannot go into the kit file itself');

  // The keystore is lost.
  await rm(h.home, { recursive: true });
  const codeFile = await writePassphrase(base, 'code', code!);
  const pp = await writePassphrase(base, 'new-pp', 'a brand new passphrase');
  const home = join(base, 'home');
  const recover = (args: string[], codeAt = codeFile) =>
    kmgr(['--json', 'recover', ...args, '--code-file', codeAt, '--label', 'rescued', '--passphrase-file', pp, '--kdf-cost', '15'], { home });

  const wrong = await recover([kit], await writePassphrase(base, 'wrong', newTransferCode()));
  t.equal(wrong.code, 77, 'a wrong code: 77');
  t.equal(jsonError(wrong).code, 'wrong_passphrase', 'refused as a code that does not open the kit');
  const typo = await recover([kit], await writePassphrase(base, 'typo', 'not-a-code'));
  t.equal(typo.code, 64, 'a malformed code: 64');
  const edited = join(base, 'edited.json');
  await writeFile(edited, JSON.stringify({ ...doc, server: 'https://evil.example:8443' }));
  const ed = await recover([edited]);
  t.equal(ed.code, 77, 'a kit edited to name another server does not open with the right code');
  t.same([...(await snapshot(home)).keys()], [], 'nothing written by any of these');

  const r = await recover([kit]);
  ok(t, r, 'kmgr recover KIT --code-file');
  t.match(JSON.parse(r.stdout), { personId: h.personId, fingerprint: h.fingerprint, device: 'rescued' }, 'the same person and key, as a new device');
  const rescued = homeFor(home, pp, h.personId, h.fingerprint, 'rescued');
  const again = await rescued.run(['fetch', 'bank-a']);
  ok(t, again, 'the recovered home fetches with its new passphrase');
  t.equal(again.stdout, key.stdout, 'the same key');
  const list = await rescued.json<DeviceListJson>(['device', 'list']);
  t.match(list.devices, [{ label: 'laptop' }, { label: 'rescued', via: 'recovery' }], 'the recovered home is a device of its own');

  // A rekey makes the kit useless; rekey says so.
  const rk = await rescued.run(['rekey']);
  ok(t, rk, 'rekey in the recovered home');
  t.match(rk.stderr, /Recovery kits made before now no longer work: make a new one with kmgr recovery-kit/, 'rekey says older kits no longer work and offers a new one');
  const home2 = join(base, 'home2');
  const old = await kmgr(['--json', 'recover', kit, '--code-file', codeFile, '--label', 'rescued-2', '--passphrase-file', pp, '--kdf-cost', '15'], { home: home2 });
  t.equal(old.code, 77, `a kit from before the rekey: 77 (${old.stderr.trim()})`);
  t.equal(jsonError(old).code, 'key_replaced', 'refused: its key was replaced');
  t.match(jsonError(old).message, /later rekey/, 'says why');
  await t.rejects(stat(home2), 'nothing written');

  // A new kit works.
  const kit2 = join(base, 'kit2.json');
  const code2 = join(base, 'code2');
  ok(t, await rescued.run(['recovery-kit', '--out', kit2, '--code-out', code2]), 'a new kit, code into a file');
  t.equal((await stat(code2)).mode & 0o777, 0o600, 'the code file is 0600');
  const r2 = await kmgr(['--json', 'recover', kit2, '--code-file', code2, '--label', 'rescued-3', '--passphrase-file', pp, '--kdf-cost', '15'], { home: home2 });
  ok(t, r2, 'the new kit recovers');
  ok(t, await homeFor(home2, pp).run(['fetch', 'bank-a']), 'and fetches');
});
