// The third embodiment: partners on the server and `kmgr verify` for
// application servers, against a real kmgrd. Two people and the operator's
// shared partners on one server; then a tampered server, first by editing its
// LevelDB record directly, then through an HTTPS test double that rewrites
// the verify reply. `kmgr verify --owner` must catch every lie (exit 65).
import t, { type Test } from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Level } from 'level';
import { startLyingProxy, startServer, tempDir, kmgr, kmgrd, newHome, initHome, ownerView, rawIdentity, readJson, newIdentity, send, signed, type Rewrite, type RunResult, type VerifyJson, type TestServer, type Target, type PartnerList, type HistoryJson, type PartnerJson, type PartnerListJson, type KeyPairStatusJson, LEVELDB } from './support/index.js';
import type { SignedBinding, VerifyResponse } from '../src/protocol/messages.js';
import type { KeyRecord } from '../src/store/types.js';
import { signedBinding } from '../src/client/binding.js';
import { signBinding, type BindingStatement } from '../src/crypto/binding.js';
import { toB64 } from '../src/crypto/bytes.js';
import { checkText, encodeText } from '../src/store/record-codec.js';
import { VERIFY_RECORDS_PER_MINUTE } from '../src/terms/verify-flood.js';

/** A verify reply that carries the owner's statement: the honest answers the lies below start from. */
type Answered = VerifyResponse & { binding: SignedBinding };

const ok = (t: Test, r: RunResult, what: string): void => {
  t.equal(r.code, 0, `${what}: exit 0${r.code !== 0 ? ` (got ${r.code}: ${r.stderr.trim()})` : ''}`);
};

function otherPublicKey(): string {
  return generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }) as string;
}

/** An application server's verifier: no keystore, only its own home for the versions it has seen. */
async function verifier(t: Test, name = 'verifier') {
  const home = join(await tempDir(t, `kmgr-${name}-`), 'home');
  const keys = join(home, '..');
  let n = 0;
  const run = async (
    server: { url: string; ca: string },
    o: { person: string; partner: string; publicKey: string; owner?: string; json?: boolean; requester?: string },
  ): Promise<RunResult> => {
    const file = join(keys, `key-${++n}.pem`);
    await writeFile(file, o.publicKey);
    const args = ['verify', '--server', server.url, '--ca', server.ca, '--person', o.person, `--partner=${o.partner}`, '--public-key', file, '--requester', o.requester ?? 'app-server-1'];
    if (o.owner !== undefined) args.push('--owner', o.owner);
    return kmgr(o.json ? ['--json', ...args] : args, { home });
  };
  return { home, run };
}

/** kmgr verify --json's answer, or what it printed instead (so a failing match shows it). */
const verifyJson = (r: RunResult): Partial<VerifyJson> & { unparsable?: string; stderr?: string } => {
  try {
    return JSON.parse(r.stdout) as VerifyJson;
  } catch {
    return { unparsable: r.stdout, stderr: r.stderr };
  }
};

t.test('two people, shared and private partners on one kmgrd; verify match, mismatch, locked, expired, rotated', async (t) => {
  const dataDir = await tempDir(t, 'kmgrd-data-');
  // The daemon's first start makes the database; then, with no daemon running, the operator
  // pre-registers bank-a before starting it again: kmgrd opens the database itself.
  await (await startServer(t, { dataDir })).stop();
  const preA = await kmgrd(['partner', 'add', 'bank-a', '--data', dataDir, '--name', 'Bank A', '--app-server', 'APAAA', '--business', 'Business 1', '--json']);
  ok(t, preA, 'kmgrd partner add bank-a (no daemon)');
  const sharedA = JSON.parse(preA.stdout);
  t.match(sharedA, { name: 'bank-a', displayName: 'Bank A', appServer: 'APAAA', business: 'Business 1', owner: null }, 'a shared partner record');

  const server = await startServer(t, { dataDir });
  // ...and bank-b while it runs: the daemon does it over its admin socket.
  const preB = await kmgrd(['partner', 'add', 'bank-b', '--data', dataDir, '--name', 'Bank B', '--json']);
  ok(t, preB, 'kmgrd partner add bank-b (daemon running)');
  const sharedB = JSON.parse(preB.stdout);
  t.not(sharedB.partnerId, sharedA.partnerId, 'a different ID');
  const listed = JSON.parse((await kmgrd(['partner', 'list', '--data', dataDir, '--json'])).stdout);
  t.same((listed as PartnerList).partners.map((p) => [p.name, p.partnerId]).sort(), [['bank-a', sharedA.partnerId], ['bank-b', sharedB.partnerId]], 'kmgrd partner list shows both');
  const dup = await kmgrd(['partner', 'add', 'bank-a', '--data', dataDir]);
  t.equal(dup.code, 73, 'a shared partner name is taken once (73)');

  // A on the command line throughout (kmgr init --partners server, kmgr register on a shared partner); B in-process.
  const [a, b] = await Promise.all([initHome(t, server, { partners: 'server', device: 'a-laptop' }), newHome(t, server, { partners: 'server', device: 'b-laptop' })]);
  t.not(a.personId, b.personId, 'two people');

  const regA = await a.json<KeyPairStatusJson>(['register', 'bank-a']);
  const regB = await b.register<KeyPairStatusJson>('bank-a');
  t.equal(regA.partnerId, sharedA.partnerId, "A's bank-a is the shared partner");
  t.equal(regB.partnerId, sharedA.partnerId, "B's bank-a is the same shared partner");
  t.not(regA.publicKey, regB.publicKey, 'each with their own key');
  const shopA = await a.json<PartnerJson>(['partner', 'add', 'shop', '--name', "A's shop"]);
  const shopB = await b.json<PartnerJson>(['partner', 'add', 'shop', '--name', "B's shop"]);
  t.not(shopA.partnerId, shopB.partnerId, 'private partners with the same name get different IDs');
  t.notOk([sharedA.partnerId, sharedB.partnerId].includes(shopA.partnerId) || [sharedA.partnerId, sharedB.partnerId].includes(shopB.partnerId), 'and neither is a shared ID');

  // A person's list is theirs alone: GET /v1/partners signed by B shows only B's.
  const target: Target = { url: server.url, ca: server.ca };
  const [idA, idB] = await Promise.all([rawIdentity(a), rawIdentity(b)]);
  const listB = await send<PartnerList>(target, signed(target, idB, 'GET', '/v1/partners'));
  t.equal(listB.status, 200, 'B lists partners');
  t.same(listB.json.partners.map((p) => [p.name, p.partnerId, p.shared]).sort(), [['bank-a', sharedA.partnerId, true], ['shop', shopB.partnerId, false]], "B sees B's list only");
  t.notOk(listB.text.includes(shopA.partnerId) || listB.text.includes("A's shop"), "nothing of A's private partner in B's answer");
  const listA = await send<PartnerList>(target, signed(target, idA, 'GET', '/v1/partners'));
  t.same(listA.json.partners.map((p) => p.partnerId).sort(), [sharedA.partnerId, shopA.partnerId].sort(), "A sees A's list");
  const cliB = await b.json<PartnerListJson>(['partner', 'list']);
  t.same(cliB.partners.map((p) => [p.name, p.partnerId]).sort(), [['bank-a', sharedA.partnerId], ['shop', shopB.partnerId]], "kmgr partner list in B's home: B's partners");
  // Only the operator's shared partners are in the public directory; private names are not.
  const dirShared = await send(target, { method: 'GET', path: '/v1/directory/bank-a', headers: { host: new URL(server.url).host }, body: new Uint8Array(0) });
  t.match(dirShared.json, { partnerId: sharedA.partnerId, shared: true }, 'the directory names the shared bank-a');
  const dirPrivate = await send(target, { method: 'GET', path: '/v1/directory/shop', headers: { host: new URL(server.url).host }, body: new Uint8Array(0) });
  t.equal(dirPrivate.status, 404, "a private partner's name is not in the directory (404)");
  // A third party with a key of its own (enrolled or not) cannot list anyone's partners.
  const stranger = newIdentity();
  t.equal((await send(target, signed(target, stranger, 'GET', '/v1/partners'))).status, 401, 'an unenrolled key cannot list partners (401)');

  const v = await verifier(t);
  const ask = (o: Partial<Parameters<typeof v.run>[1]> & { publicKey: string }) =>
    v.run(server, { person: a.personId, partner: 'bank-a', owner: a.fingerprint, ...o });

  const match = await ask({ publicKey: regA.publicKey });
  ok(t, match, 'verify: A, bank-a, the key A registered, --owner');
  t.match(match.stdout, /^verified: /, 'says verified');
  const matchJ = verifyJson(await ask({ publicKey: regA.publicKey, json: true, partner: sharedA.partnerId }));
  t.match(matchJ, { verified: true, result: 'match', keyVersion: 1, ownerChecked: true, partnerId: sharedA.partnerId }, '--partner by ID, --json');

  const mismatch = await ask({ publicKey: regB.publicKey });
  t.equal(mismatch.code, 1, "B's key for the same partner: exit 1");
  t.match(mismatch.stdout, /not verified/, 'not verified');
  ok(t, await v.run(server, { person: b.personId, partner: 'bank-a', owner: b.fingerprint, publicKey: regB.publicKey }), "B's key under B's person ID and fingerprint: 0");
  const wrongOwner = await v.run(server, { person: b.personId, partner: 'bank-a', owner: a.fingerprint, publicKey: regB.publicKey });
  t.equal(wrongOwner.code, 65, "B's key with A's fingerprint pinned: 65 (the owner is not the pinned one)");

  ok(t, await a.run(['lock', 'bank-a']), 'A locks bank-a');
  const locked = await ask({ publicKey: regA.publicKey, json: true });
  t.equal(locked.code, 1, 'locked: exit 1');
  t.match(verifyJson(locked), { verified: false, result: 'locked' }, 'result locked');
  ok(t, await a.run(['unlock', 'bank-a']), 'unlock');

  // Expiry, deterministically: the key is valid for a day; the server's clock moves two days on.
  const regAB = await a.register<KeyPairStatusJson>('bank-b', { validFor: '1d' });
  t.equal(regAB.partnerId, sharedB.partnerId, "A's bank-b is the operator's bank-b");
  ok(t, await ask({ publicKey: regAB.publicKey, partner: 'bank-b' }), 'bank-b within its term: 0');
  server.clock.now = Date.now() + 2 * 86_400_000;
  const expired = await ask({ publicKey: regAB.publicKey, partner: 'bank-b', json: true });
  server.clock.now = undefined;
  t.equal(expired.code, 1, 'past its term (server clock +2 days): exit 1');
  t.match(verifyJson(expired), { verified: false, result: 'expired' }, 'result expired');
  // The owner extends the term: a new statement, signed over the same key, carries it to verifiers.
  ok(t, await a.run(['terms', 'bank-b', '--valid-for', '30d']), 'A extends bank-b to 30 days');
  server.clock.now = Date.now() + 2 * 86_400_000;
  const extended = await ask({ publicKey: regAB.publicKey, partner: 'bank-b', json: true });
  server.clock.now = undefined;
  t.equal(extended.code, 0, `with the term extended, the same moment verifies again (got ${extended.code}: ${extended.stderr.trim()})`);

  const rot = await a.run(['rotate', 'bank-a']);
  ok(t, rot, 'A rotates bank-a');
  const oldKey = await ask({ publicKey: regA.publicKey, json: true });
  t.equal(oldKey.code, 1, 'the old key after rotation: exit 1');
  t.match(verifyJson(oldKey), { verified: false, result: 'rotated' }, 'result rotated');
  const newKey = await ask({ publicKey: rot.stdout, json: true });
  t.equal(newKey.code, 0, 'the new key: exit 0');
  t.match(verifyJson(newKey), { verified: true, keyVersion: 2 }, 'at version 2');
  t.same(await readJson(join(v.home, 'verify-seen.json')), { [`${a.personId}/${sharedA.partnerId}`]: 2, [`${a.personId}/${sharedB.partnerId}`]: 1, [`${b.personId}/${sharedA.partnerId}`]: 1 }, "the verifier remembers the newest version per person and partner");

  // Who asked, and what they were told, is in the owner's history.
  const hist = (await a.json<HistoryJson>(['history', 'bank-a'])).history;
  const asked = hist.filter((h) => h.result === 'verify');
  t.same(asked.map((h) => h.code), ['match', 'rotated', 'locked', 'mismatch', 'match', 'match'], "every question about A's bank-a, newest first, with the answer");
  t.ok(asked.every((h) => h.requester === 'app-server-1' && h.device === null), 'with the requester (and no device: the asker is not the owner)');
  t.equal(asked.filter((h) => h.keyVersion === 2).length, 2, 'the last two asked about version 2');
  const histB = (await b.json<HistoryJson>(['history', 'bank-a'])).history;
  t.same(histB.map((h) => [h.result, h.code]), [['verify', 'match'], ['verify', 'match']], "B's history has only the two questions about B's key");
  const histText = await a.run(['history', 'bank-a', '--limit', '1']);
  t.match(histText.stdout, /verify question from app-server-1: match/, 'the text history names the requester');
  const audit = await a.run(['audit', '--json']);
  t.equal(audit.code, 0, 'verify questions are not uses: audit stays clean');

  // Why not verified: an outsider gets one answer for no such key and no such person (so nobody who
  // knows a personal ID can map a person's partners), and the reason says it may be either.
  const noKey = verifyJson(await v.run(server, { person: a.personId, partner: shopA.partnerId, publicKey: regA.publicKey, json: true }));
  const noPerson = verifyJson(await v.run(server, { person: 'p_AAAAAAAAAAAAAAAAAAAAAA', partner: shopA.partnerId, publicKey: regA.publicKey, json: true }));
  t.match(noKey, { verified: false, result: 'unknown', keyVersion: null, reason: /no such key/ }, "A's private partner without a key: unknown, no such key");
  t.match(noPerson, { verified: false, result: 'unknown', keyVersion: null, reason: /no such person/ }, 'a person who does not exist: the same answer, unknown');
  t.equal(noPerson.reason, noKey.reason, 'and the same reason: the two cannot be told apart');
  const noPartner = await v.run(server, { person: a.personId, partner: 'no-such-shop', publicKey: regA.publicKey, json: true });
  t.equal(noPartner.code, 66, 'a partner name that is neither shared nor an ID: 66');
});

/**
 * Edits a key record in a stopped server's LevelDB, as a tampering operator
 * would: the record's checksum is rewritten to match (it guards against
 * damage, not against whoever holds the server), and kmgrd's note of a clean
 * stop is removed, since opening db/ outside kmgrd rewrote its log.
 */
async function editRecord(dataDir: string, personId: string, partnerId: string, edit: (rec: KeyRecord) => void): Promise<void> {
  const db = new Level<string, string>(join(dataDir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  await db.open();
  try {
    const k = `key!${personId}!${partnerId}`;
    const raw = await db.get(k);
    if (raw === undefined) throw new Error(`no record ${k}`);
    const rec = JSON.parse(checkText(raw) ?? raw) as KeyRecord;
    edit(rec);
    await db.put(k, encodeText(JSON.stringify(rec)), { sync: true });
  } finally {
    await db.close();
  }
  await rm(join(dataDir, 'kmgrd-db-state.json'), { force: true });
}

t.test('a tampered server, by its LevelDB record: a swapped public key is caught with --owner; a stripped binding answers unknown', async (t) => {
  let server: TestServer = await startServer(t, { databaseUrl: LEVELDB });
  const dataDir = server.dataDir;
  const a = await newHome(t, server, { partners: 'server' });
  const reg = await a.register<KeyPairStatusJson>('bank-z');
  const v = await verifier(t);
  const ask = (publicKey: string, owner = true) =>
    v.run(server, { person: a.personId, partner: reg.partnerId, publicKey, ...(owner ? { owner: a.fingerprint } : {}) });
  ok(t, await ask(reg.publicKey), 'before: the registered key verifies');

  const forged = otherPublicKey();
  await server.stop();
  await editRecord(dataDir, a.personId, reg.partnerId, (rec) => {
    t.equal(rec.binding!.statement.publicKey, rec.publicKey, 'the record keeps the public key and the statement naming it');
    rec.publicKey = forged;
    rec.binding!.statement.publicKey = forged; // the owner's signature is left as it was
  });
  server = await startServer(t, { dataDir, databaseUrl: LEVELDB });

  const caught = await ask(forged);
  t.equal(caught.code, 65, `the swapped key with --owner: exit 65, not 0 (got ${caught.code})`);
  t.equal(caught.stdout, '', 'nothing on stdout');
  t.match(caught.stderr, /not signed by the owner/, 'the statement no longer verifies');
  const orig = await ask(reg.publicKey);
  // The real key is no longer the record's: the server tells the asker nothing more than "unknown".
  t.equal(orig.code, 1, 'the real key with --owner: not verified (exit 1)');
  const believed = await ask(forged, false);
  t.equal(believed.code, 0, 'without --owner the tampered answer is believed: exit 0 (documented)');
  t.match(believed.stderr, /trusting the server/, 'and stderr warns that the answer rests on trusting the server');

  await server.stop();
  await editRecord(dataDir, a.personId, reg.partnerId, (rec) => {
    rec.binding = null;
  });
  server = await startServer(t, { dataDir, databaseUrl: LEVELDB });
  const stripped = await v.run(server, { person: a.personId, partner: reg.partnerId, publicKey: forged, owner: a.fingerprint, json: true });
  t.equal(stripped.code, 1, 'binding stripped: the server answers unknown, exit 1');
  t.match(verifyJson(stripped), { verified: false, result: 'unknown' }, 'result unknown');
  t.equal((await ask(forged, false)).code, 1, 'without --owner too');
});

interface Double {
  url: string;
  ca: string;
  /** Rewrites the reply to POST /v1/verify; undefined passes it through. */
  rewrite: Rewrite | undefined;
  /** The last verify reply the real server gave, as text. */
  readonly last: string | undefined;
}

/** The lying proxy, aimed at the verify reply. */
async function startDouble(t: Test, server: TestServer): Promise<Double> {
  const p = await startLyingProxy(t, server);
  return {
    url: p.url,
    ca: p.ca,
    get rewrite() {
      return p.rewrite.get('/v1/verify');
    },
    set rewrite(fn) {
      if (fn) p.rewrite.set('/v1/verify', fn);
      else p.rewrite.delete('/v1/verify');
    },
    get last() {
      return p.captured.get('/v1/verify')?.text;
    },
  };
}

t.test('a tampered server, by a test double rewriting the verify reply: every lie is caught with --owner (65)', async (t) => {
  const server = await startServer(t);
  const a = await newHome(t, server, { partners: 'server' });
  const reg = await a.register<KeyPairStatusJson>('bank-p');
  const P = reg.partnerId;
  const double = await startDouble(t, server);
  const v = await verifier(t);
  const wrong = otherPublicKey();
  const ask = (via: { url: string; ca: string }, publicKey: string, o: { owner?: boolean; home?: typeof v } = {}) =>
    (o.home ?? v).run(via, { person: a.personId, partner: P, publicKey, ...(o.owner === false ? {} : { owner: a.fingerprint }) });
  const lie = async (what: string, rewrite: (r: Answered) => unknown, publicKey: string, stderr?: RegExp): Promise<void> => {
    double.rewrite = rewrite;
    const r = await ask(double, publicKey);
    double.rewrite = undefined;
    t.equal(r.code, 65, `${what}: exit 65 (got ${r.code}: ${r.stderr.trim()})`);
    t.equal(r.stdout, '', `${what}: nothing on stdout`);
    if (stderr) t.match(r.stderr, stderr, `${what}: ${stderr}`);
  };

  ok(t, await ask(double, reg.publicKey), 'through the honest double: verified');
  const v1Reply = double.last!;
  t.equal(JSON.parse(v1Reply).binding.statement.keyVersion, 1, 'captured the v1 answer');

  await lie('signature stripped (binding null)', (r) => ({ ...r, binding: null }), reg.publicKey, /no signed binding statement/);
  await lie('signature field removed', (r) => ({ ...r, binding: { statement: r.binding.statement } }), reg.publicKey, /malformed/);
  await lie('signature replaced', (r) => ({ ...r, binding: { ...r.binding, signature: toB64(new Uint8Array(64)) } }), reg.publicKey, /not signed by the owner/);
  // For a wrong key the server answers "unknown" with no statement: the lies below dress it up with the captured v1 one.
  const v1 = (): Answered => JSON.parse(v1Reply) as Answered;
  await lie('"match" for a wrong key', () => ({ ...v1(), result: 'match' }), wrong, /did not sign/);
  await lie(
    'the public key swapped in the statement',
    () => ({ ...v1(), result: 'match', binding: { ...v1().binding, statement: { ...v1().binding.statement, publicKey: wrong } } }),
    wrong,
    /not signed by the owner/,
  );
  // The server's own key as the "owner", with a statement it signed itself: the pinned fingerprint says no.
  const mallory = newIdentity();
  await lie(
    "a statement signed by another key, offered as the owner's",
    () => {
      const statement: BindingStatement = { ...v1().binding.statement, publicKey: wrong };
      return { ...v1(), result: 'match', ownerPublicKey: mallory.publicKey, binding: { statement, signature: toB64(signBinding(mallory.signer, statement)) } };
    },
    wrong,
    /not the pinned/,
  );
  // A statement the owner really signed, but for a term that has ended: served as a match, caught.
  const session = (await ownerView(a)).session;
  const ended = await signedBinding(session, { partnerId: P, keyId: reg.keyId, alg: 'ed25519', publicKey: reg.publicKey, keyVersion: 1, expiresAt: '2020-01-01T00:00:00.000Z' });
  await lie('an owner-signed statement past its term', (r) => ({ ...r, result: 'match', binding: ended }), reg.publicKey, /term ended/);
  await lie('"rotated" for the very key the current statement names', (r) => ({ ...r, result: 'rotated' }), reg.publicKey, /the owner's current statement names/);

  double.rewrite = (r: VerifyResponse) => ({ ...r, result: 'match' });
  const believed = await ask(double, wrong, { owner: false });
  double.rewrite = undefined;
  t.equal(believed.code, 0, 'without --owner, "match" for a wrong key is believed: exit 0 (documented)');
  t.match(believed.stderr, /rests on trusting the server/, 'with a warning on stderr');

  // Replay: the verifier has seen v2; the double serves the captured v1 answer.
  const rot = await a.run(['rotate', 'bank-p']);
  ok(t, rot, 'the owner rotates to v2');
  ok(t, await ask(server, rot.stdout), 'the verifier checks the v2 key at the real server');
  t.equal((await readJson<Record<string, number>>(join(v.home, 'verify-seen.json')))[`${a.personId}/${P}`], 2, "the verifier's high-water mark is 2");
  await lie('the old v1 answer replayed after v2 was seen', () => JSON.parse(v1Reply), reg.publicKey, /replay/);
  const honest = await ask(server, reg.publicKey);
  t.equal(honest.code, 1, 'the honest server says the v1 key is rotated away: exit 1');
  // The high-water mark belongs to the verifier: one that never saw v2 cannot tell a replay (what --owner can and cannot prove).
  const fresh = await verifier(t, 'fresh-verifier');
  double.rewrite = () => JSON.parse(v1Reply);
  const fooled = await ask(double, reg.publicKey, { home: fresh });
  double.rewrite = undefined;
  t.equal(fooled.code, 0, 'documented limit: a verifier that has never seen v2 accepts the replayed v1 statement');
});

t.test('lock, unlock and a new term issue a new owner statement: a replay of the older one cannot say "match"', async (t) => {
  const server = await startServer(t);
  const a = await newHome(t, server, { partners: 'server' });
  const reg = await a.register<KeyPairStatusJson>('bank-l', { validFor: '30d' });
  const P = reg.partnerId;
  const double = await startDouble(t, server);
  const v = await verifier(t);
  const ask = (via: { url: string; ca: string }, home = v) => home.run(via, { person: a.personId, partner: P, publicKey: reg.publicKey, owner: a.fingerprint, json: true });

  ok(t, await ask(double), 'through the honest double: verified');
  const usable = double.last!;
  t.equal(JSON.parse(usable).binding.statement.locked, false, 'the statement says the key is usable');

  ok(t, await a.run(['lock', 'bank-l']), 'the owner locks the key');
  const locked = await ask(double);
  t.equal(locked.code, 1, 'the honest server: locked, not verified');
  t.match(verifyJson(locked), { verified: false, result: 'locked' });
  const lockedReply = JSON.parse(double.last!);
  t.equal(lockedReply.binding.statement.locked, true, 'the lock came with a new statement saying so');
  t.ok(lockedReply.binding.statement.issuedAt > JSON.parse(usable).binding.statement.issuedAt, 'issued later');

  double.rewrite = () => JSON.parse(usable);
  const replay = await ask(double);
  t.equal(replay.code, 65, `the older "usable" statement replayed as "match": caught (${replay.stderr.trim()})`);
  t.match(replay.stderr, /replay/, 'as a replay');
  double.rewrite = (r: VerifyResponse) => ({ ...r, result: 'match' });
  const claim = await ask(double);
  t.equal(claim.code, 65, '"match" with the statement that says locked: caught');
  t.match(claim.stderr, /says is locked/, 'because the statement says locked');
  double.rewrite = undefined;

  ok(t, await a.run(['unlock', 'bank-l']), 'the owner unlocks');
  ok(t, await ask(server), 'verified again, with the newest statement');
  ok(t, await a.run(['terms', 'bank-l', '--valid-for', '10d']), 'the owner shortens the term');
  const termReply = await ask(double);
  ok(t, termReply, 'verified under the new term');
  t.equal(JSON.parse(double.last!).binding.statement.locked, false, 'the new term came with a new statement, still usable');
  double.rewrite = () => JSON.parse(usable);
  const oldTerm = await ask(double);
  t.equal(oldTerm.code, 65, 'the statement with the old term replayed: caught');

  // What a verifier that has seen nothing can know: only that the owner once made the statement.
  const fresh = await verifier(t, 'fresh-verifier');
  const fooled = await ask(double, fresh);
  double.rewrite = undefined;
  t.equal(fooled.code, 0, 'documented limit: a verifier that has seen nothing accepts an older, validly signed statement');
});

t.test('a flood of verify questions records at most the per-minute cap in the owner\'s history', async (t) => {
  const server = await startServer(t);
  const target: Target = { url: server.url, ca: server.ca };
  const a = await newHome(t, server);
  const reg = await a.register<KeyPairStatusJson>('bank-a');
  // All questions inside one (injected) minute; verify is unsigned, so the clock moves nothing else.
  server.clock.now = Date.parse('2027-03-10T12:00:10Z');
  const wrong = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const body = { personId: a.personId, partnerId: reg.partnerId, publicKey: wrong, requester: 'flooder' };
  const bytes = new TextEncoder().encode(JSON.stringify(body));
  const host = new URL(server.url).host;
  const replies = await Promise.all(
    Array.from({ length: VERIFY_RECORDS_PER_MINUTE + 40 }, () => send<VerifyResponse>(target, { method: 'POST', path: '/v1/verify', headers: { host, 'content-type': 'application/json' }, body: bytes })),
  );
  t.ok(replies.every((r) => r.status === 200 && r.json.result === 'unknown'), 'every question is answered (a wrong public key reads "unknown" to the asker)');
  server.clock.now = undefined;
  const h = await a.json<HistoryJson>(['history', 'bank-a']);
  t.equal(h.history.filter((e: { result: string }) => e.result === 'verify').length, VERIFY_RECORDS_PER_MINUTE, 'at most the cap is recorded');
  t.equal(replies.length, VERIFY_RECORDS_PER_MINUTE + 40);
});
