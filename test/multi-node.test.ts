// Several kmgrd processes on one PostgreSQL database keep the promises one node
// keeps: a limit of N serves N across all nodes together, a lock through one is
// enforced by the other on the next request, a nonce accepted by one is refused
// by the other, and a node killed under load (or the database restarted under
// load) loses no acknowledged use. Each node is a real process on its own port,
// serving the same certificate, as behind a load balancer.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { spawnServe, tempDir, newHome, rawIdentity, pgUnavailable, testDatabase, clusterUnavailable, makeCluster, enrol, keyStatus, newIdentity, newPartnerId, register, registerBody, send, signed, type ServeProcess , type Identity, type Target } from './support/index.js';
import type { HistoryList } from '../src/protocol/messages.js';
import { loadPartners } from '../src/client/partners.js';
import { homePaths } from '../src/client/home.js';

const noPg = await pgUnavailable();
const noCluster = clusterUnavailable();

/** Two nodes on one database: A makes the certificate, B serves the same one. */
async function twoNodes(t: Test, databaseUrl: string, extra: string[] = []): Promise<{ a: ServeProcess; b: ServeProcess; ta: Target; tb: Target }> {
  const dir = await tempDir(t, 'kmgr-nodes-');
  const a = await spawnServe(t, join(dir, 'a'), ['--database-url', databaseUrl, ...extra]);
  const certDir = join(dir, 'a', 'tls');
  // B also answers to A's address, as nodes behind one load balancer answer to its name: so a request made for A can be replayed to B.
  const b = await spawnServe(t, join(dir, 'b'), ['--database-url', databaseUrl, '--tls-cert', join(certDir, 'cert.pem'), '--tls-key', join(certDir, 'key.pem'), '--public-url', a.url, ...extra], a.ca);
  return { a, b, ta: { url: a.url, ca: a.ca }, tb: { url: b.url, ca: a.ca } };
}

async function keyWith(target: Target, terms: Record<string, unknown>): Promise<{ id: Identity; partner: string }> {
  const id = newIdentity();
  if ((await enrol(target, id)).status !== 201) throw new Error('enrol failed');
  const partner = newPartnerId();
  const body = registerBody();
  const r = await register(target, id, partner, { ...body, terms: { ...(body.terms as object), ...terms } });
  if (r.status !== 201) throw new Error(`register failed: ${r.text}`);
  return { id, partner };
}

const fetchVia = (target: Target, id: Identity, partner: string) => send(target, signed(target, id, 'POST', `/v1/keys/${partner}/fetch`, {}));

async function history(target: Target, id: Identity, partner: string): Promise<Array<{ seq: number; result: string }>> {
  const r = await send<HistoryList>(target, signed(target, id, 'GET', `/v1/keys/${partner}/history?limit=5000`));
  if (r.status !== 200) throw new Error(`history: ${r.status} ${r.text}`);
  return r.json.history;
}

/** 200 fetches at once, alternating between the nodes. */
async function race(targets: Target[], id: Identity, partner: string, n = 200) {
  const replies = await Promise.all(Array.from({ length: n }, (_, i) => fetchVia(targets[i % targets.length]!, id, partner)));
  return {
    served: replies.filter((r) => r.status === 200).length,
    codes: new Set(replies.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.json?.error?.code}`)),
  };
}

t.test('two nodes on one database', { skip: noPg ?? false }, async (t) => {
  const db = await testDatabase(t);
  const { ta, tb } = await twoNodes(t, db);

  t.test('200 fetches racing through both nodes against max-uses 10 serve exactly 10', async (t) => {
    const { id, partner } = await keyWith(ta, { maxUses: 10 });
    const r = await race([ta, tb], id, partner);
    t.equal(r.served, 10);
    t.same([...r.codes], ['403 terms_max_uses'], 'every other fetch is refused by the limit');
    const status = await keyStatus(tb, id, partner);
    t.equal(status.json.uses.total, 10, 'the stored count');
    const h = await history(ta, id, partner);
    t.equal(h.length, 200, 'every attempt is in the history');
    t.same(h.map((x) => x.seq), Array.from({ length: 200 }, (_, i) => 200 - i), 'one sequence across both nodes, without gaps');
  });

  t.test('the same against a per-day limit of 10', async (t) => {
    const { id, partner } = await keyWith(ta, { maxPerDay: 10 });
    const r = await race([ta, tb], id, partner);
    t.equal(r.served, 10);
    t.same([...r.codes], ['403 terms_max_per_day']);
    t.equal((await keyStatus(ta, id, partner)).json.uses.day, 10);
  });

  t.test('a lock through node A is enforced by node B on the next request', async (t) => {
    const { id, partner } = await keyWith(ta, {});
    t.equal((await fetchVia(tb, id, partner)).status, 200, 'B serves before the lock');
    const lock = await send(ta, signed(ta, id, 'PATCH', `/v1/keys/${partner}`, { inhibited: true }));
    t.equal(lock.status, 200);
    const refused = await fetchVia(tb, id, partner);
    t.equal(refused.status, 403);
    t.equal(refused.json.error?.code, 'terms_inhibited');
    const unlock = await send(tb, signed(tb, id, 'PATCH', `/v1/keys/${partner}`, { inhibited: false }));
    t.equal(unlock.status, 200);
    t.equal((await fetchVia(ta, id, partner)).status, 200, 'A serves after the unlock through B');
  });

  t.test('a request served by A and replayed to B is refused', async (t) => {
    const { id, partner } = await keyWith(ta, {});
    const req = signed(ta, id, 'POST', `/v1/keys/${partner}/fetch`, {});
    t.equal((await send(ta, req)).status, 200);
    const replayed = await send(tb, req);
    t.equal(replayed.status, 401);
    t.equal(replayed.json.error?.code, 'auth_replay');
    // And the other way round, racing: one copy wins, the other is refused.
    const twin = signed(ta, id, 'POST', `/v1/keys/${partner}/fetch`, {});
    const both = await Promise.all([send(ta, twin), send(tb, twin)]);
    t.same(both.map((r) => r.status).sort(), [200, 401], 'a request sent to both at once is served once');
    t.equal((await keyStatus(ta, id, partner)).json.uses.total, 2);
  });

  t.test('kmgr rekey through node A: node B refuses the replaced key at once, though it had verified it before', async (t) => {
    const h = await newHome(t, ta);
    const reg = await h.run(['register', 'bank-a']);
    t.equal(reg.code, 0, reg.stderr);
    const partner = (await loadPartners(homePaths(h.home))).partners.find((p) => p.name === 'bank-a')!.id;
    const old = await rawIdentity(h);
    // B verifies (and caches) the old key's signatures before the switch.
    t.equal((await fetchVia(tb, old, partner)).status, 200, 'B serves the old key before the rekey');
    const r = await h.run(['rekey']);
    t.equal(r.code, 0, r.stderr);
    const refused = await fetchVia(tb, old, partner);
    t.equal(refused.status, 401);
    t.equal(refused.json?.error?.code, 'key_replaced', 'B refuses the old key on the next request');
    const fresh = await rawIdentity(h);
    t.not(fresh.keyId, old.keyId);
    t.equal((await fetchVia(tb, fresh, partner)).status, 200, 'and serves the new one');
    const status = await keyStatus(ta, fresh, partner);
    t.equal(status.json.uses.total, 2, 'both uses counted once, whichever node served them');
  });

  t.test('a key retired through node A is refused by node B at once', async (t) => {
    const { id, partner } = await keyWith(ta, {});
    t.equal((await fetchVia(tb, id, partner)).status, 200);
    t.equal((await send(ta, signed(ta, id, 'DELETE', `/v1/keys/${partner}`))).status, 200);
    const after = await fetchVia(tb, id, partner);
    t.equal(after.status, 404);
    t.match(after.json?.error?.message, /retired/);
  });
});

/** Fires fetches with `concurrency` in flight per target until stop(); counts what clients saw. */
function load(t: Test, targets: Target[], id: Identity, partner: string, concurrency: number) {
  let running = true;
  const seen = { ok: 0, failed: 0, inFlight: 0, unavailable: 0 };
  const worker = async (target: Target): Promise<void> => {
    while (running) {
      seen.inFlight++;
      try {
        const r = await fetchVia(target, id, partner);
        if (r.status === 200) seen.ok++;
        else {
          seen.failed++;
          if (r.status === 503) seen.unavailable++;
        }
      } catch {
        seen.failed++;
      } finally {
        seen.inFlight--;
      }
      // A refused connection (node gone) must not spin.
      if (!running) break;
    }
  };
  const workers = targets.flatMap((target) => Array.from({ length: concurrency }, () => worker(target)));
  const stop = async (): Promise<void> => {
    running = false;
    await Promise.all(workers);
  };
  t.teardown(stop); // a failed assertion must not leave load running
  return { seen, stop };
}

const until = async (what: string, cond: () => boolean | Promise<boolean>, tries = 300): Promise<void> => {
  for (let i = 0; i < tries; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for: ${what}`);
};

t.test('SIGKILL of one node under load: the other keeps serving, no acknowledged use lost, none invented', { skip: noPg ?? false }, async (t) => {
  const db = await testDatabase(t);
  const { a, ta, tb } = await twoNodes(t, db);
  const { id, partner } = await keyWith(ta, {});
  const onA = load(t, [ta], id, partner, 8);
  const onB = load(t, [tb], id, partner, 8);
  await until('both nodes served some fetches', () => onA.seen.ok > 20 && onB.seen.ok > 20);
  const inFlightAtKill = onA.seen.inFlight;
  a.child.kill('SIGKILL');
  await a.exited;
  await onA.stop();
  const bBefore = onB.seen.ok;
  await until('B served more after the kill', () => onB.seen.ok > bBefore + 20);
  await onB.stop();
  const acknowledged = onA.seen.ok + onB.seen.ok;
  const total = (await keyStatus(tb, id, partner)).json.uses.total;
  t.ok(total >= acknowledged, `stored count ${total} >= ${acknowledged} acknowledged`);
  t.ok(total <= acknowledged + inFlightAtKill, `stored count ${total} <= ${acknowledged} + ${inFlightAtKill} in flight at the kill`);
  const h = await history(tb, id, partner);
  t.equal(h.filter((x) => x.result === 'served').length, total, 'one history record per counted use');
  t.same(h.map((x) => x.seq), Array.from({ length: h.length }, (_, i) => h.length - i), 'the history has no gaps');
});

t.test('PostgreSQL restarted under load: 503 while it is down, served again without restarting kmgrd, no use lost', { skip: noCluster ?? false }, async (t) => {
  const cluster = await makeCluster(t);
  const dir = await tempDir(t, 'kmgr-pgrestart-');
  // A short connect timeout: while the database is down each request is answered 503 quickly.
  const node = await spawnServe(t, join(dir, 'node'), ['--database-url', cluster.url, '--db-statement-timeout', '3s']);
  const target: Target = { url: node.url, ca: node.ca };
  const { id, partner } = await keyWith(target, {});
  const l = load(t, [target], id, partner, 8);
  await until('some fetches served', () => l.seen.ok > 30);
  const okBeforeCrash = l.seen.ok;
  await cluster.stop('immediate'); // a crash: the restart replays the WAL
  await until('requests answered 503 while the database is down', () => l.seen.unavailable > 5);
  const readyDown = await send(target, { method: 'GET', path: '/readyz', headers: { host: new URL(target.url).host }, body: new Uint8Array(0) });
  t.equal(readyDown.status, 503, '/readyz says not ready while the database is down');
  const okWhileDown = l.seen.ok;
  await cluster.start();
  await until('served again after the restart', () => l.seen.ok > okWhileDown + 30, 600);
  const readyUp = await send(target, { method: 'GET', path: '/readyz', headers: { host: new URL(target.url).host }, body: new Uint8Array(0) });
  t.equal(readyUp.status, 200, '/readyz says ready again');
  await l.stop();
  t.ok(okBeforeCrash > 0);
  const total = (await keyStatus(target, id, partner)).json.uses.total;
  t.ok(total >= l.seen.ok, `stored count ${total} >= ${l.seen.ok} acknowledged`);
  // Only the (at most 8) requests in flight at the crash may have counted unacknowledged; later ones got 503 before any write.
  t.ok(total <= l.seen.ok + 8, `stored count ${total} <= ${l.seen.ok} acknowledged + 8 in flight at the crash`);
  const h = await history(target, id, partner);
  t.equal(h.filter((x) => x.result === 'served').length, total, 'one history record per counted use');
  t.equal(node.child.exitCode, null, 'kmgrd kept running throughout');
});

t.test('failover to a synchronous standby under load: no acknowledged use is missing after the promotion', { skip: noCluster ?? false }, async (t) => {
  // Every commit waits for the standby, so what a client was served is on both machines.
  const primary = await makeCluster(t, { conf: ['wal_level = replica', 'max_wal_senders = 5', "synchronous_standby_names = 'kmgrstandby'", 'synchronous_commit = on'] });
  const standby = await makeCluster(t, { standbyOf: primary, name: 'kmgrstandby', conf: ["synchronous_standby_names = ''"] });
  await until('the standby is synchronous', async () => (await primary.psql("SELECT sync_state FROM pg_stat_replication")).trim() === 'sync', 400);
  const dir = await tempDir(t, 'kmgr-failover-');
  const first = await spawnServe(t, join(dir, 'node'), ['--database-url', primary.url]);
  const target: Target = { url: first.url, ca: first.ca };
  const { id, partner } = await keyWith(target, {});
  const l = load(t, [target], id, partner, 8);
  await until('some fetches served', () => l.seen.ok > 40);
  await primary.stop('immediate'); // the primary's machine is lost
  await l.stop();
  const acknowledged = l.seen.ok;
  await standby.promote();
  await first.stop();
  // kmgrd pointed at the new primary: a restart with its URL (the same --data, so the same certificate).
  const second = await spawnServe(t, join(dir, 'node'), ['--database-url', standby.url]);
  const t2: Target = { url: second.url, ca: second.ca };
  const total = (await keyStatus(t2, id, partner)).json.uses.total;
  t.ok(total >= acknowledged, `the promoted standby holds ${total} uses >= ${acknowledged} acknowledged`);
  t.ok(total <= acknowledged + 8, `and at most ${acknowledged} + 8 in flight at the loss`);
  const h = await history(t2, id, partner);
  t.equal(h.filter((x) => x.result === 'served').length, total, 'the history is whole');
  t.equal((await fetchVia(t2, id, partner)).status, 200, 'the new primary serves');
});
