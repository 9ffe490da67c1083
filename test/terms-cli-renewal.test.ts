// Use terms through the real CLI against a real kmgrd, second part (renewal and
// questioning, paragraphs 31 and 35): audit against a copied keystore, rotate,
// passwd and its crash safety (SIGKILL at seeded random moments). The first
// part, terms-cli.test.ts, covers status, terms, lock, history, notices and
// kmgrd check-terms.
import t from 'tap';
import { spawn } from 'node:child_process';
import { cp, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { KMGR, startServer, tempDir, homeFor, keyPairMatches, newHome, ownerView, writePassphrase, ok, refused77, mulberry32, type HistoryJson, type StatusJson, type AuditJson, untracked } from './support/index.js';
import { openKeystore } from '../src/crypto/keystore.js';
import { fingerprint, signerFromSeed } from '../src/crypto/sign.js';

t.test('audit: clean, then a fetch made with a copy of the keystore in another home is found', async (t) => {
  const server = await startServer(t);
  const a = await newHome(t, server);
  const idA = (await a.register<StatusJson>('bank-a')).partnerId;
  t.ok(await a.register('bank-b'), 'register bank-b');
  ok(t, await a.run(['fetch', 'bank-a']), 'fetch bank-a');
  ok(t, await a.run(['fetch', 'bank-b']), 'fetch bank-b');
  const cleanR = await a.run(['audit', '--json']);
  t.equal(cleanR.code, 0, `audit with only our own uses: exit 0 (${cleanR.stderr.trim()})`);
  const clean = JSON.parse(cleanR.stdout) as AuditJson;
  t.equal(clean.clean, true, '--json: clean:true');
  t.same(clean.partners.map((p) => [p.partner, p.uses, p.ours, p.findings.length]).sort(), [['bank-a', 1, 1, 0], ['bank-b', 1, 1, 0]], 'every use is ours');

  const copyHome = join(await tempDir(t, 'kmgr-copy-'), 'home');
  await cp(a.home, copyHome, { recursive: true });
  t.equal((await stat(join(copyHome, 'keystore.json'))).mode & 0o777, 0o600, 'the copied keystore kept mode 0600');
  ok(t, await homeFor(copyHome, a.pp).run(['fetch', 'bank-a']), 'a fetch from the copied keystore');
  const view = await ownerView(a);
  const otherSeq = (await view.history(idA))[0]!.seq;

  const found = await a.run(['audit']);
  t.equal(found.code, 1, 'audit in the original home: exit 1');
  t.match(found.stdout, new RegExp(`OTHER .*#${otherSeq} .*signed by your management key, not made by this client`), 'the finding lists the other use');
  t.match(found.stdout, /Audit found 1 /, 'one finding in all');
  const r = await a.run(['audit', '--json']);
  t.equal(r.code, 1, 'audit --json: exit 1');
  const report = JSON.parse(r.stdout) as AuditJson;
  t.equal(report.clean, false, '--json: clean:false');
  const bankA = report.partners.find((p) => p.partner === 'bank-a')!;
  t.same([bankA.uses, bankA.ours], [2, 1], 'bank-a: two uses on the server, one of them ours');
  t.match(bankA.findings, [{ seq: otherSeq, verdict: 'not_ours', result: 'served', device: 'primary' }], 'the other one is the finding');
  t.equal(bankA.findings.length, 1, 'and only it');
  t.same(report.partners.find((p) => p.partner === 'bank-b')?.findings, [], 'bank-b is clean');
  t.equal((await a.run(['audit', 'bank-b'])).code, 0, 'audit bank-b alone: clean, exit 0');
});

t.test('rotate: a new key, version 2, counts reset, v1 history kept', async (t) => {
  const server = await startServer(t);
  const a = await newHome(t, server);
  const reg = await a.run(['register', 'bank-a', '--max-per-month', '50']);
  ok(t, reg, 'register bank-a');
  const v1 = await a.run(['fetch', 'bank-a']);
  t.ok(keyPairMatches(v1.stdout, reg.stdout), 'the v1 key matches the registered public key');

  const rot = await a.run(['rotate', 'bank-a']);
  ok(t, rot, 'rotate');
  t.match(rot.stdout, /^-----BEGIN PUBLIC KEY-----/, 'prints the new public key');
  t.not(rot.stdout, reg.stdout, 'a different public key');
  const st = await a.json<StatusJson>(['status', 'bank-a']);
  t.equal(st.keyVersion, 2, 'status: keyVersion 2');
  t.same(st.uses, { total: 0, day: 0, week: 0, month: 0 }, 'counts reset');
  t.same(st.limits, { total: null, day: null, week: null, month: 50 }, 'under the same terms');
  const v2 = await a.run(['fetch', 'bank-a']);
  ok(t, v2, 'fetch after rotate');
  t.ok(keyPairMatches(v2.stdout, rot.stdout), 'the fetched key matches the new public key');
  t.notOk(keyPairMatches(v2.stdout, reg.stdout), 'and not the old one');
  const h = (await a.json<HistoryJson>(['history', 'bank-a'])).history;
  t.same(h.map((e) => [e.keyVersion, e.result]), [[2, 'served'], [1, 'served']], 'history still lists the v1 use');
});

t.test('passwd: old passphrase refused, new one works; SIGKILL at seeded random moments leaves the old or the new keystore, never neither', async (t) => {
  const SEED = Number(process.env.KMGR_SEED ?? 0x9a55);
  const rand = mulberry32(SEED);
  const server = await startServer(t);
  const a = await newHome(t, server);
  const dir = join(a.home, '..');
  const keystore = join(a.home, 'keystore.json');
  const opens = async (passphrase: string): Promise<boolean> => {
    let doc: unknown;
    try {
      doc = JSON.parse(await readFile(keystore, 'utf8'));
    } catch {
      return false;
    }
    try {
      const s = await openKeystore(new TextEncoder().encode(passphrase), doc);
      return fingerprint(signerFromSeed(s.signingSeed).publicKey) === a.fingerprint;
    } catch {
      return false;
    }
  };

  // A plain change first; its duration calibrates the kill delays below.
  const first = await writePassphrase(dir, 'pp-0', 'a brand new passphrase');
  const t0 = Date.now();
  const changed = await a.run(['passwd', '--new-passphrase-file', first]);
  const took = Date.now() - t0;
  ok(t, changed, 'passwd --new-passphrase-file');
  t.match(changed.stdout, /Passphrase changed/, 'says so');
  t.equal((await stat(keystore)).mode & 0o777, 0o600, 'keystore still 0600');
  refused77(t, await a.run(['--json', 'notices']), 'wrong_passphrase', 'the old passphrase');
  ok(t, await homeFor(a.home, first).run(['notices']), 'the new passphrase unlocks');

  let current = 'a brand new passphrase';
  let currentFile = first;
  const outcome = { old: 0, new: 0 };
  // Kills spread over 0-400 ms and over the whole run as measured here (a loaded machine is slower).
  const span = Math.max(400, Math.round(took * 1.1));
  for (let i = 1; i <= 15; i++) {
    const next = `passphrase number ${i}`;
    const nextFile = await writePassphrase(dir, `pp-${i}`, next);
    const delay = Math.floor(rand() * span);
    const child = spawn(...untracked(process.execPath, [KMGR, 'passwd', '--passphrase-file', currentFile, '--new-passphrase-file', nextFile, '--kdf-cost', '15']), {
      env: { PATH: process.env.PATH ?? '', KMGR_HOME: a.home },
      stdio: ['ignore', 'ignore', 'ignore'],
      detached: true,
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const timer = setTimeout(() => child.kill('SIGKILL'), delay);
    const code = await exited;
    clearTimeout(timer);
    const withOld = await opens(current);
    const withNew = await opens(next);
    t.ok(withOld !== withNew, `kill ${i} after ${delay} ms (exit ${code}): opens with exactly one of old/new (old ${withOld}, new ${withNew})`);
    if (code === 0) t.ok(withNew, `kill ${i}: passwd had finished, so the new passphrase opens it`);
    if (withNew) {
      outcome.new++;
      current = next;
      currentFile = nextFile;
    } else outcome.old++;
  }
  t.comment(`seed ${SEED}, kill delays over 0-${span} ms: ${outcome.old} left the old keystore, ${outcome.new} the new one`);
  t.equal((await stat(keystore)).mode & 0o777, 0o600, 'keystore mode still 0600');
  ok(t, await homeFor(a.home, currentFile).run(['notices']), 'the CLI unlocks with the surviving passphrase');
});
