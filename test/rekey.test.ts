// kmgr rekey against a real kmgrd: every key type re-wrapped (locked, expired
// and rotated ones among them) without a counted use; the old key refused
// afterwards; a verifier that pinned the old fingerprint follows the signed
// succession once; older recovery kits stop working. (A lying server and the
// server's own checks: rekey-refusals.test.ts.)
import t, { type Test } from 'tap';
import { cp, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { startServer, tempDir, kmgr, jsonError, homeFor, newHome, ok, ownerView, readJson, type Home, openServerStore } from './support/index.js';
import type { KeyStatus } from '../src/protocol/messages.js';
import type { ClientConfig } from '../src/client/config.js';
import { api } from '../src/client/api.js';
import { homePaths } from '../src/client/home.js';
import { loadPartners } from '../src/client/partners.js';

const TYPES = ['ed25519', 'p256', 'secp256k1', 'x25519', 'aes256'] as const;

/** Registers one key of every type, a rotated one, a locked one and an expired one. */
async function populate(t: Test, h: Home): Promise<void> {
  for (const type of TYPES) t.ok(await h.register(`k-${type}`, { type: type }), `register ${type}`);
  t.ok(await h.register('rotated'), 'register rotated');
  ok(t, await h.run(['rotate', 'rotated']), 'rotate it to version 2');
  t.ok(await h.register('locked', { maxUses: 5 }), 'register locked');
  ok(t, await h.run(['lock', 'locked']), 'lock it');
  t.ok(await h.register('expired', { validFor: '1h' }), 'register expired');
  // The term is moved into the past through the owner's own PATCH (the CLI refuses a past date).
  const v = await ownerView(h);
  const id = (await loadPartners(homePaths(h.home))).partners.find((p) => p.name === 'expired')!.id;
  await api.patch(v.session, id, { expiresAt: '2020-01-01T00:00:00Z' });
  // A key offered to the SSH agent with a certificate beside it: both are fields of the key record a rekey rewrites.
  const dir = await tempDir(t, 'kmgr-cert-');
  execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', join(dir, 'c.key')], { stdio: 'pipe' });
  execFileSync('openssl', ['req', '-x509', '-key', join(dir, 'c.key'), '-subj', '/CN=certified', '-days', '10', '-out', join(dir, 'c.pem')], { stdio: 'pipe' });
  t.ok(await h.register('certified', { importFile: join(dir, 'c.key'), ssh: true }), 'register certified, offered over SSH');
  ok(t, await h.run(['cert', 'import', 'certified', join(dir, 'c.pem')]), 'a certificate beside it');
}

async function fetchAll(h: Home): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of [...TYPES.map((x) => `k-${x}`), 'rotated']) {
    const r = await h.run(['fetch', name]);
    if (r.code !== 0) throw new Error(`fetch ${name}: ${r.code} ${r.stderr}`);
    out.set(name, r.stdout);
  }
  return out;
}

async function copyHome(t: { teardown(fn: () => unknown): void }, h: Home): Promise<Home> {
  const dir = join(await tempDir(t, 'kmgr-oldhome-'), 'home');
  await cp(h.home, dir, { recursive: true });
  return homeFor(dir, h.pp, h.personId, h.fingerprint, h.device);
}

t.test('rekey re-wraps every key under a new management key without a use; the old key is refused; verify follows the succession once', async (t) => {
  const server = await startServer(t);
  const h = await newHome(t, server, { device: 'laptop' });
  await populate(t, h);
  const before = await fetchAll(h);
  const v0 = await ownerView(h);
  const ids = new Map((await loadPartners(homePaths(h.home))).partners.map((p) => [p.name, p.id]));
  const statusBefore = new Map<string, KeyStatus>();
  for (const [name, id] of ids) statusBefore.set(name, await v0.status(id));
  const old = await copyHome(t, h);
  const kitOut = join(h.home, '..', 'kit.json');
  ok(t, await h.run(['recovery-kit', '--out', kitOut, '--code-out', join(h.home, '..', 'kit.code')]), 'a recovery kit before the rekey');

  // A verifier pins the old fingerprint for the ed25519 key's public half.
  const pubFile = join(h.home, '..', 'ed.pub');
  await writeFile(pubFile, createPublicKey(before.get('k-ed25519')!).export({ type: 'spki', format: 'pem' }) as string);
  const verifyArgs = ['verify', '--server', server.url, '--ca', server.ca, '--person', h.personId, '--partner-id', ids.get('k-ed25519')!, '--public-key', pubFile, '--owner', h.fingerprint];

  const r = await h.run(['--json', 'rekey']);
  ok(t, r, 'kmgr rekey');
  const out = JSON.parse(r.stdout);
  t.equal(out.rekeyed, ids.size, 'every key re-wrapped, locked and expired ones included');
  t.not(out.fingerprint, h.fingerprint, 'a new fingerprint');
  t.equal(out.recoveryKitsInvalidated, true, 'says older kits no longer work');
  const cfg = await readJson<ClientConfig>(join(h.home, 'config.json'));
  t.equal(cfg.fingerprint, out.fingerprint, 'config names the new key');
  t.equal(cfg.previousKeys?.[0]?.keyId, JSON.parse((await kmgr(['--json', 'whoami'], { home: old.home })).stdout).keyId, 'the old key is remembered for the audit');
  await t.rejects(stat(join(h.home, 'rekey-pending.json')), 'the pending file is gone');

  // Same keys, same terms, no use counted; locked stays locked, expired stays expired.
  const after = await fetchAll(h);
  t.same([...after], [...before], 'every key opens to the same private key under the new management key');
  const v1 = await ownerView(h);
  for (const [name, id] of ids) {
    const s = await v1.status(id);
    const b = statusBefore.get(name)!;
    const fetched = after.has(name) ? 1 : 0;
    t.equal(s.uses.total, b.uses.total + fetched, `${name}: the rekey counted no use`);
    t.equal(s.keyVersion, b.keyVersion, `${name}: same version`);
    t.equal(s.inhibited, b.inhibited, `${name}: same lock flag`);
    t.equal(s.expiresAt, b.expiresAt, `${name}: same term`);
    const hist = await v1.history(id);
    t.same(hist.filter((x) => x.result === 'rekey').map((x) => x.code).sort(), ['exported', 'rewrapped'], `${name}: the rekey is in its history, twice (blob handed out, blob replaced)`);
  }
  const locked = await h.run(['--json', 'fetch', 'locked']);
  t.equal(jsonError(locked).code, 'terms_inhibited', 'the locked key is still locked');
  const expired = await h.run(['--json', 'fetch', 'expired']);
  t.equal(jsonError(expired).code, 'terms_expired', 'the expired key is still expired');

  // The old key (a copy of the home as it was) is refused, for reads and uses alike.
  const oldFetch = await old.run(['--json', 'fetch', 'k-ed25519']);
  t.equal(oldFetch.code, 77, `the old key's fetch: exit 77 (${oldFetch.stderr.trim()})`);
  t.equal(jsonError(oldFetch).code, 'key_replaced', 'refused as a replaced key');
  t.equal(oldFetch.stdout, '', 'nothing printed');
  const oldStatus = await old.run(['--json', 'status', 'k-ed25519']);
  t.equal(jsonError(oldStatus).code, 'key_replaced', 'status with the old key refused too');

  // The verifier that pinned the old fingerprint is led to the new one, once, with a warning.
  const vr = await kmgr(['--json', ...verifyArgs], { home: join(h.home, '..', 'verifier') });
  t.equal(vr.code, 0, `verify with the old pin: verified (${vr.stderr.trim()})`);
  t.equal(JSON.parse(vr.stdout).ownerReplacedBy, out.fingerprint, 'names the new fingerprint');
  t.match(vr.stderr, /replaced the management key/, 'and warns to re-pin');

  // A second rekey: a verifier pinned two keys back is not led down a chain.
  ok(t, await h.run(['rekey']), 'a second rekey');
  const vr2 = await kmgr(['--json', ...verifyArgs], { home: join(h.home, '..', 'verifier') });
  t.equal(vr2.code, 65, 'a pin two rekeys old is not followed');
  const vr3 = await kmgr(['--json', ...verifyArgs.slice(0, -1), JSON.parse((await h.run(['whoami', '--json'])).stdout).fingerprint], { home: join(h.home, '..', 'verifier') });
  t.equal(vr3.code, 0, 'the current pin verifies with no statement to follow');

  // The audit still checks uses the replaced keys signed.
  const audit = await h.run(['--json', 'audit']);
  t.equal(audit.code, 0, `audit after two rekeys is clean (${audit.stdout.slice(0, 300)} ${audit.stderr.trim()})`);

  // A kit from before the rekeys no longer recovers anything.
  const newHomeDir = join(await tempDir(t, 'kmgr-recover-'), 'home');
  const rec = await kmgr(['--json', 'recover', kitOut, '--code-file', join(h.home, '..', 'kit.code'), '--label', 'rescued', '--passphrase-file', h.pp, '--kdf-cost', '15'], { home: newHomeDir });
  t.equal(rec.code, 77, `an old kit: exit 77 (${rec.stderr.trim()})`);
  t.equal(jsonError(rec).code, 'key_replaced', 'refused: its key was replaced');
  await t.rejects(stat(newHomeDir), 'nothing written for the old kit');

  // On disk, after the daemon stops: the old key ID still names the person (so its requests are told
  // "replaced"), the person holds the newest key, and every key has its blob.
  await server.stop();
  const db = await openServerStore(t, server);
  {
    const oldKeyId = cfg.previousKeys![0]!.keyId;
    const person = await db.personByKeyId(oldKeyId);
    t.equal(person?.personId, h.personId, 'the old key ID still names the person');
    t.not(person?.keyId, oldKeyId, 'whose key is another');
    t.equal(person?.keyId, JSON.parse((await h.run(['whoami', '--json'])).stdout).keyId, 'the current one');
    t.equal((await db.listKeys(h.personId)).length, ids.size, 'every key kept');
    for (const id of ids.values()) t.ok(await db.getKey(h.personId, id), `the key of ${id} loads with its blob`);
    for (const [name, id] of ids) {
      const rec = (await db.getKey(h.personId, id))!;
      // Re-signed in the current format: the statement says whether the key is locked, as kmgr lock's do.
      if (rec.binding) t.equal(rec.binding.statement.locked, rec.inhibited, `${name}: the re-signed statement says ${rec.inhibited ? 'locked' : 'usable'}`);
    }
    const certified = (await db.getKey(h.personId, ids.get('certified')!))!;
    t.equal(certified.ssh, true, 'the SSH flag survives the rekey');
    t.equal(certified.certificates?.chain.length, 1, 'the certificate beside the key survives the rekey');
  }
});
