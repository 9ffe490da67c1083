// Counting under races (threat 9): however N concurrent fetches interleave,
// a key with limit L serves exactly min(N, L) and stores exactly that count.
import t from 'tap';
import fc from 'fast-check';
import { startServer, enrol, keyStatus, newIdentity, newPartnerId, register, registerBody, send, signed, type Target } from './support/index.js';
import type { KeyStatus } from '../src/protocol/messages.js';

const LIMIT_FIELDS = ['maxUses', 'maxPerDay', 'maxPerWeek', 'maxPerMonth'] as const;

t.test('property: N racing fetches against any kind of limit L serve min(N, L), and the stored count agrees', async (t) => {
  const server = await startServer(t);
  const target: Target = { url: server.url, ca: server.ca };
  const id = newIdentity();
  t.equal((await enrol(target, id)).status, 201);
  let cases = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...LIMIT_FIELDS),
      fc.integer({ min: 1, max: 12 }),
      // One small delay per request: a different interleaving of sends for every case.
      fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 40 }),
      async (field, limit, delays) => {
        cases++;
        const partner = newPartnerId();
        const terms = { expiresAt: null, maxUses: null, maxPerDay: null, maxPerWeek: null, maxPerMonth: null, onLimit: 'deny', [field]: limit };
        const reg = await register(target, id, partner, registerBody({ terms }));
        if (reg.status !== 201) return false;
        const replies = await Promise.all(
          delays.map(async (d) => {
            await new Promise((r) => setTimeout(r, d));
            return send(target, signed(target, id, 'POST', `/v1/keys/${partner}/fetch`, {}));
          }),
        );
        const served = replies.filter((r) => r.status === 200).length;
        const refused = replies.filter((r) => r.status === 403).length;
        const status = await keyStatus(target, id, partner);
        return served === Math.min(delays.length, limit) && served + refused === delays.length && status.json.uses.total === served;
      },
    ),
    { numRuns: 40, seed: Number(process.env.KMGR_SEED ?? 424242) },
  );
  t.pass(`${cases} cases held`);
});

t.test('200 parallel HTTPS fetches against --max-uses 10: exactly ten are served', async (t) => {
  const server = await startServer(t);
  const target: Target = { url: server.url, ca: server.ca };
  const id = newIdentity();
  await enrol(target, id);
  const partner = newPartnerId();
  const terms = { expiresAt: null, maxUses: 10, maxPerDay: null, maxPerWeek: null, maxPerMonth: null, onLimit: 'deny' };
  t.equal((await register(target, id, partner, registerBody({ terms }))).status, 201);
  const replies = await Promise.all(Array.from({ length: 200 }, () => send(target, signed(target, id, 'POST', `/v1/keys/${partner}/fetch`, {}))));
  t.equal(replies.filter((r) => r.status === 200).length, 10, 'ten served');
  t.equal(replies.filter((r) => r.status === 403 && r.json.error?.code === 'terms_max_uses').length, 190, 'the rest refused with terms_max_uses');
  t.equal((await keyStatus(target, id, partner)).json.uses.total, 10, 'stored count is ten');
});

t.test('100 concurrent fetches against --max-per-day 7 (injected clock): seven today, seven more tomorrow', async (t) => {
  const server = await startServer(t);
  const target: Target = { url: server.url, ca: server.ca };
  const day1 = Date.parse('2027-03-10T12:00:00Z');
  server.clock.now = day1;
  const created = (): number => Math.floor(server.clock.now! / 1000);
  const id = newIdentity();
  await send(target, signed(target, id, 'POST', '/v1/persons', { alg: 'ed25519', publicKey: id.publicKey }, { created: created() }));
  const partner = newPartnerId();
  const terms = { expiresAt: null, maxUses: null, maxPerDay: 7, maxPerWeek: null, maxPerMonth: null, onLimit: 'deny' };
  t.equal((await send(target, signed(target, id, 'PUT', `/v1/keys/${partner}`, registerBody({ terms }), { created: created() }))).status, 201);
  const burst = () => Promise.all(Array.from({ length: 100 }, () => send(target, signed(target, id, 'POST', `/v1/keys/${partner}/fetch`, {}, { created: created() }))));
  const first = await burst();
  t.equal(first.filter((r) => r.status === 200).length, 7, 'seven served on day one');
  t.ok(first.filter((r) => r.status !== 200).every((r) => r.json.error?.code === 'terms_max_per_day'), 'the rest refused for the day limit');
  server.clock.now = day1 + 86_400_000;
  const second = await burst();
  t.equal(second.filter((r) => r.status === 200).length, 7, 'seven more the next day');
  const status = await send<KeyStatus>(target, signed(target, id, 'GET', `/v1/keys/${partner}`, undefined, { created: created() }));
  t.same(status.json.uses, { total: 14, day: 7, week: 14, month: 14 }, 'counts: 14 in all, 7 today, 14 this week and month');
});
