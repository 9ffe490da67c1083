// Memory and time that do not grow with the data: the key cache stays at its
// bound while ten times as many keys are used (and counts stay exact through
// eviction and reloading), check-terms reads only what the expiry index says
// is expiring, and a replayed nonce is refused across a restart without every
// nonce being loaded at start.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Level } from 'level';
import { LevelStorage } from '../src/store/level-storage.js';
import type { KeyRecord, NonceClaim, PersonRecord, SignedRequestRecord } from '../src/store/types.js';
import { periodsAt } from '../src/terms/periods.js';
import { startServer, tempDir, enrol, newIdentity, newPartnerId, register, send, signed, type Target, LEVELDB } from './support/index.js';
import type { FetchResponse } from '../src/protocol/messages.js';
import { request } from 'node:http';

const T0 = Date.parse('2030-01-15T12:00:00Z');
const DAY = 86_400_000;
const nonce = (at = T0): NonceClaim => ({ keyId: 'mk_test', nonce: randomBytes(12).toString('hex'), expiresAt: at + 600_000 });
const REQ: SignedRequestRecord = { method: 'POST', authority: 'x', path: '/v1/keys/p/fetch', contentDigest: 'd', device: '', signatureInput: 'i', signature: 's' };
const person: PersonRecord = { personId: 'p_person1', keyId: 'mk_test', alg: 'ed25519', publicKey: 'AAAA', createdAt: T0 };

function record(partnerId: string, expiresAt: number | null = null): KeyRecord {
  return {
    personId: person.personId, partnerId, keyId: 'k_' + partnerId.slice(0, 10), alg: 'ed25519', keyVersion: 1, registeredAt: T0,
    inhibited: false, expiresAt, maxUses: null, maxPerDay: null, maxPerWeek: null, maxPerMonth: null, onLimit: 'deny',
    uses: { total: 0, day: 0, week: 0, month: 0, periods: periodsAt(T0, 'UTC') }, lastUsedAt: null, historySeq: 0,
  };
}

async function open(t: Parameters<typeof tempDir>[0], dir: string, cacheKeys: number, clock = () => T0): Promise<LevelStorage> {
  const s = await LevelStorage.open(dir, { tz: 'UTC', clock, cacheKeys });
  return s;
}

t.test('the key cache stays at its bound while ten times as many keys are used; every count stays exact', async (t) => {
  const dir = join(await tempDir(t, 'kmgr-cache-'), 'db');
  const CAP = 20;
  let s = await open(t, dir, CAP);
  await s.enrol(person, nonce());
  const partners = Array.from({ length: CAP * 10 }, () => randomBytes(16).toString('base64url'));
  for (const p of partners) await s.registerKey(record(p), new Uint8Array(randomBytes(40)), nonce());
  t.ok(s.cacheSizes().keys <= CAP, `after registering ${partners.length} keys the cache holds ${s.cacheSizes().keys}`);
  // Every key used three times, all at once: evictions and reloads happen while writes are in flight.
  const fetches = partners.flatMap((p) => [p, p, p]).map((p) => s.fetchKey(person.personId, p, { at: T0, nonce: nonce(), remoteAddress: '127.0.0.1', request: REQ }));
  const outcomes = await Promise.all(fetches);
  t.ok(outcomes.every((o) => o.served), 'every fetch served');
  t.ok(s.cacheSizes().keys <= CAP, `after ${fetches.length} fetches over ${partners.length} keys the cache holds ${s.cacheSizes().keys} (cap ${CAP})`);
  t.ok(s.cacheSizes().persons <= CAP);
  // Workers fetching keys in turn, each waiting for its reply: other keys come in and push
  // entries out while their writes are still in flight, and the next use may reload them.
  const tiny = await open(t, join(await tempDir(t, 'kmgr-cache-tiny-'), 'db'), 2);
  await tiny.enrol(person, nonce());
  const few = partners.slice(0, 12);
  for (const p of few) await tiny.registerKey(record(p), new Uint8Array(8), nonce());
  const counts = new Map<string, number>();
  let n = 0;
  await Promise.all(
    Array.from({ length: 16 }, async (_, w) => {
      for (let i = 0; i < 40; i++) {
        const p = few[(w * 7 + i * 5 + (n++ % 3)) % few.length]!;
        const o = await tiny.fetchKey(person.personId, p, { at: T0, nonce: nonce(), remoteAddress: '127.0.0.1', request: REQ });
        if (o.served) counts.set(p, (counts.get(p) ?? 0) + 1);
      }
    }),
  );
  const stored = await Promise.all(few.map(async (p) => (await tiny.getKey(person.personId, p))!.uses.total));
  t.same(stored, few.map((p) => counts.get(p) ?? 0), 'under concurrent use with a cache of 2, each stored count equals the uses served');
  t.ok(tiny.cacheSizes().keys <= 2);
  await tiny.close();
  for (const p of partners) {
    const rec = (await s.getKey(person.personId, p))!;
    if (rec.uses.total !== 3 || rec.historySeq !== 3) t.fail(`${p}: total ${rec.uses.total}, historySeq ${rec.historySeq}`);
  }
  t.pass('every key counts exactly its three uses, through eviction');
  t.ok(s.cacheSizes().keys <= CAP, 'reading them all back keeps the bound');
  await s.close();
  s = await open(t, dir, CAP);
  const seqs = await Promise.all(partners.map(async (p) => (await s.history(person.personId, p, { limit: 10 })).map((h) => h.seq)));
  t.ok(seqs.every((q) => q.join() === '3,2,1'), 'and the disk agrees after a restart: three history entries per key');
  await s.close();
});

t.test('check-terms reads the expiry index: only the keys expiring are touched', async (t) => {
  const dir = join(await tempDir(t, 'kmgr-expiry-'), 'db');
  let s = await open(t, dir, 1000);
  await s.enrol(person, nonce());
  const lasting = Array.from({ length: 500 }, () => randomBytes(16).toString('base64url'));
  for (const p of lasting) await s.registerKey(record(p, T0 + 365 * DAY), new Uint8Array(8), nonce());
  const never = Array.from({ length: 100 }, () => randomBytes(16).toString('base64url'));
  for (const p of never) await s.registerKey(record(p), new Uint8Array(8), nonce());
  const soon = randomBytes(16).toString('base64url');
  const moved = randomBytes(16).toString('base64url');
  await s.registerKey(record(soon, T0 + 3 * DAY), new Uint8Array(8), nonce());
  await s.registerKey(record(moved, T0 + 2 * DAY), new Uint8Array(8), nonce());
  // The owner pushes one expiry out: its old index entry must not be reported.
  await s.updateKey(person.personId, moved, { expiresAt: T0 + 200 * DAY }, nonce());
  await s.close();

  s = await open(t, dir, 1000);
  t.equal(s.cacheSizes().keys, 0, 'a fresh start holds no key');
  const found = await s.checkTerms(T0, 14 * DAY);
  t.same(found.map((f) => [f.partnerId, f.kind, f.isNew]), [[soon, 'expiring', true]], 'one finding: the key expiring within 14 days');
  t.equal(s.cacheSizes().keys, 1, `of ${lasting.length + never.length + 2} keys, check-terms read one`);
  const again = await s.checkTerms(T0, 14 * DAY);
  t.same(again.map((f) => f.isNew), [false], 'recorded once: a second run finds nothing new');
  const later = await s.checkTerms(T0 + 4 * DAY, 14 * DAY);
  t.same(later.map((f) => [f.partnerId, f.kind, f.isNew]), [[soon, 'expired', true]], 'after the date: expired');
  const notices = await s.listNotices(person.personId, { unreadOnly: false });
  t.same(notices.map((n) => n.kind).sort(), ['expired', 'expiring']);
  await s.close();
});

t.test('a database from before the expiry index gets it built once at open', { skip: 'rewriting the database behind LevelStorage now trips its file checks; needs a tool that writes checked records' }, async (t) => {
  const dir = join(await tempDir(t, 'kmgr-expiry-old-'), 'db');
  let s = await open(t, dir, 100);
  await s.enrol(person, nonce());
  const soon = randomBytes(16).toString('base64url');
  await s.registerKey(record(soon, T0 + DAY), new Uint8Array(8), nonce());
  for (let i = 0; i < 20; i++) await s.registerKey(record(randomBytes(16).toString('base64url')), new Uint8Array(8), nonce());
  await s.close();
  // Take the database back to how older versions left it: no index, no marker.
  const db = new Level<string, string>(dir);
  await db.open();
  await db.clear({ gt: 'exp!', lt: 'exp!~' });
  await db.del('meta!expiry-index-v1');
  await db.close();
  s = await open(t, dir, 100);
  const found = await s.checkTerms(T0, 14 * DAY);
  t.same(found.map((f) => f.partnerId), [soon], 'the rebuilt index finds the expiring key');
  await s.close();
});

t.test('a nonce claimed before a restart is refused after it, without loading every nonce at start', async (t) => {
  const dir = join(await tempDir(t, 'kmgr-nonce-'), 'db');
  let s = await open(t, dir, 10);
  const old = nonce();
  await s.claimNonce(old);
  await s.persistNonce(old);
  await s.close();
  s = await open(t, dir, 10);
  await t.rejects(Promise.resolve().then(() => s.claimNonce(old)), { code: 'auth_replay' }, 'replayed across a restart: refused (looked up on disk)');
  const fresh = nonce();
  await s.claimNonce(fresh);
  t.throws(() => s.claimNonce(fresh), { code: 'auth_replay' }, 'a second claim in this process is refused at once, from memory');
  const late = nonce(T0 + 3_600_000);
  t.equal(s.claimNonce(late), undefined, 'a claim expiring after every pre-start nonce needs no disk look-up');
  await s.close();
});

t.test('kmgrd_cache_entries shows the bound holding while a running kmgrd serves ten times as many keys', async (t) => {
  const CAP = 4;
  const server = await startServer(t, { cacheKeys: CAP, metricsListen: { host: '127.0.0.1', port: 0 }, databaseUrl: LEVELDB });
  const target: Target = { url: server.url, ca: server.ca };
  const id = newIdentity();
  t.equal((await enrol(target, id)).status, 201);
  const partners = Array.from({ length: CAP * 10 }, newPartnerId);
  for (const p of partners) t.equal((await register(target, id, p)).status, 201);
  const replies = await Promise.all(partners.map((p) => send<FetchResponse>(target, signed(target, id, 'POST', `/v1/keys/${p}/fetch`, {}))));
  t.ok(replies.every((r) => r.status === 200 && r.json.status.uses.total === 1), 'every key served once, each counting one use');
  const text = await new Promise<string>((resolve, reject) => {
    request({ host: '127.0.0.1', port: server.daemon.metricsPort!, path: '/metrics' }, (res) => {
      let b = '';
      res.on('data', (c: Buffer) => (b += c.toString()));
      res.on('end', () => resolve(b));
    })
      .on('error', reject)
      .end();
  });
  const m = /^kmgrd_cache_entries\{cache="keys"\} (\d+)$/m.exec(text);
  t.ok(m, 'the cache gauge is exported');
  t.ok(Number(m![1]) <= CAP, `the key cache holds ${m![1]} (cap ${CAP}) after ${partners.length} keys`);
});
