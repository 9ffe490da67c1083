// A server clock that steps back or jumps forward must not reset limits,
// revive a used request, or rate-limit everyone. Driven by the injected clock
// of an in-process kmgrd, across midnight, a week's end and a month's end.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { startServer, tempDir, enrol, health, newIdentity, newPartnerId, register, registerBody, send, signed, nowSeconds, type TestServer, type Identity, type Target } from './support/index.js';
import type { PersonInfo, KeyStatus } from '../src/protocol/messages.js';
import { judgeUse, type KeyTerms, type Uses } from '../src/terms/judge.js';
import { periodsAt } from '../src/terms/periods.js';
import { RateLimiter } from '../src/server/rate-limit.js';

const at = (iso: string): number => Date.parse(iso);

/** A fetch signed at the server's current (injected) time. */
function fetchAt(server: TestServer, target: Target, id: Identity, partner: string) {
  const created = Math.floor(server.clock.now! / 1000);
  return send(target, signed(target, id, 'POST', `/v1/keys/${partner}/fetch`, {}, { created }));
}

async function keyWith(t: Test, server: TestServer, terms: Partial<KeyTerms>) {
  const target = { url: server.url, ca: server.ca };
  const id = newIdentity();
  const created = (): number => Math.floor(server.clock.now! / 1000);
  const e = await send<PersonInfo>(target, signed(target, id, 'POST', '/v1/persons', { alg: 'ed25519', publicKey: id.publicKey }, { created: created() }));
  t.equal(e.status, 201);
  id.personId = e.json.personId;
  const partner = newPartnerId();
  const body = registerBody({ terms: { expiresAt: null, maxUses: null, maxPerDay: null, maxPerWeek: null, maxPerMonth: null, onLimit: 'deny', ...terms } });
  t.equal((await send(target, signed(target, id, 'PUT', `/v1/keys/${partner}`, body, { created: created() }))).status, 201);
  return { target, id, partner };
}

for (const [what, limit, before, after] of [
  ['midnight', { maxPerDay: 2 }, '2026-03-03T23:59:50Z', '2026-03-04T00:00:10Z'],
  ['the end of a week (Sunday to Monday)', { maxPerWeek: 2 }, '2026-03-08T23:59:50Z', '2026-03-09T00:00:10Z'],
  ['the end of a month', { maxPerMonth: 2 }, '2026-03-31T23:59:50Z', '2026-04-01T00:00:10Z'],
] as const) {
  t.test(`a clock stepped back across ${what} does not restart the count`, async (t) => {
    const server = await startServer(t);
    server.clock.now = at(after);
    const k = await keyWith(t, server, limit);
    t.equal((await fetchAt(server, k.target, k.id, k.partner)).status, 200);
    t.equal((await fetchAt(server, k.target, k.id, k.partner)).status, 200);
    t.equal((await fetchAt(server, k.target, k.id, k.partner)).status, 403, 'the limit holds');
    // Back across the boundary, then forward again, twice.
    for (let i = 0; i < 2; i++) {
      server.clock.now = at(before);
      const back = await fetchAt(server, k.target, k.id, k.partner);
      t.equal(back.status, 403, `stepped back (${i + 1}): still refused, the period did not move back`);
      server.clock.now = at(after);
      t.equal((await fetchAt(server, k.target, k.id, k.partner)).status, 403, `forward again (${i + 1}): still refused`);
    }
    const status = await send<KeyStatus>(k.target, signed(k.target, k.id, 'GET', `/v1/keys/${k.partner}`, undefined, { created: Math.floor(server.clock.now / 1000) }));
    t.equal(status.json.uses.total, 2, 'two uses in all');
  });
}

t.test('judgeUse: periods only move forward', async (t) => {
  const terms: KeyTerms = { inhibited: false, expiresAt: null, maxUses: null, maxPerDay: 2, maxPerWeek: null, maxPerMonth: null, onLimit: 'deny' };
  let uses: Uses = { total: 0, day: 0, week: 0, month: 0, periods: periodsAt(at('2026-03-04T00:00:10Z'), 'UTC') };
  for (const when of ['2026-03-04T00:00:10Z', '2026-03-04T00:00:20Z']) {
    const v = judgeUse(terms, uses, at(when), 'UTC');
    t.ok(v.serve);
    uses = v.uses;
  }
  const back = judgeUse(terms, uses, at('2026-03-03T23:00:00Z'), 'UTC');
  t.equal(back.serve, false, 'a time in an earlier day counts in the later day');
  t.equal(back.uses.periods.day, '2026-03-04');
  const next = judgeUse(terms, uses, at('2026-03-05T00:00:01Z'), 'UTC');
  t.equal(next.serve, true, 'the next real day starts afresh');
});

t.test('a captured request cannot be replayed after the clock jumps forward and back', async (t) => {
  const dataDir = join(await tempDir(t, 'kmgrd-clock-'), 'data');
  const real = Date.now();
  let server = await startServer(t, { dataDir });
  server.clock.now = real;
  const target = { url: server.url, ca: server.ca };
  const id = newIdentity();
  t.equal((await enrol(target, id)).status, 201);
  const partner = newPartnerId();
  t.equal((await register(target, id, partner)).status, 201);
  const captured = signed(target, id, 'POST', `/v1/keys/${partner}/fetch`, {}, { created: Math.floor(real / 1000) });
  t.equal((await send(target, captured)).status, 200, 'the original request is served');
  t.equal((await send(target, captured)).status, 401, 'a replay is refused');
  // Every request so far was signed by now: each stored nonce expires at most one window after this.
  const lastSigned = nowSeconds();
  await server.stop();
  // The clock jumps a day ahead while kmgrd restarts (nonces past their expiry are pruned), then steps back.
  const port = server.daemon.port; // the same address: the signature covers it
  server = await startServer(t, { dataDir, port, clock: () => real + 86_400_000 });
  await server.stop();
  server = await startServer(t, { dataDir, port });
  server.clock.now = lastSigned * 1000 + 1000;
  const t2 = { url: server.url, ca: server.ca };
  const replay = await send(t2, captured);
  t.equal(replay.status, 401, 'the replay after the jump is refused');
  t.match(replay.json.error?.code, /auth_stale|auth_replay/);
  // Signed after every earlier request (however long they took on a busy machine): a request whose
  // window ends no later than a forgotten nonce's could be that nonce's replay, and is refused as
  // stale (the point of the horizon); this one ends later.
  const later = await send<KeyStatus>(t2, signed(t2, id, 'GET', `/v1/keys/${partner}`, undefined, { created: lastSigned + 1 }));
  t.equal(later.status, 200, 'a request signed after the forgotten ones is served');
  t.equal(later.json.uses.total, 1, 'counted once');
});

t.test('rate limits run on a monotonic clock: a wall clock stepped back does not answer 429 to everyone', async (t) => {
  const server = await startServer(t, { ratePerAddress: 5 });
  const target = { url: server.url, ca: server.ca };
  server.clock.now = Date.now();
  t.equal((await health(target)).status, 200);
  server.clock.now -= 3_600_000;
  const replies = await Promise.all(Array.from({ length: 3 }, () => health(target)));
  t.same(replies.map((r) => r.status), [200, 200, 200], 'served after the step back');
  // The bucket itself: time going back takes nothing.
  let mono = 1000;
  const lim = new RateLimiter(1, 2, () => mono);
  t.ok(lim.take('a'));
  mono -= 500_000;
  t.ok(lim.take('a'), 'a backward step does not empty the bucket');
  t.notOk(lim.take('a'), 'and does not fill it either');
});
