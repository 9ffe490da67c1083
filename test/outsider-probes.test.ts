// What an outsider can learn. Someone who knows a person's ID must not be able
// to map which partners that person has by asking POST /v1/verify, must not
// ask or enrol without limit, and must not tell enrolled management key IDs
// from unknown ones by how a request is refused.
import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { startServer, newHome, rawIdentity, enrol, newIdentity, newPartnerId, send, signed, type RawReply, type Target, type HistoryJson, type StatusJson } from './support/index.js';
import type { VerifyResponse } from '../src/protocol/messages.js';

const pem = (): string => generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }) as string;

function ask(target: Target, body: Record<string, unknown>): Promise<RawReply<VerifyResponse>> {
  const bytes = new TextEncoder().encode(JSON.stringify(body));
  return send(target, { method: 'POST', path: '/v1/verify', headers: { host: new URL(target.url).host, 'content-type': 'application/json' }, body: bytes });
}

t.test("a stranger's verify probe is answered the same whether or not the key exists", async (t) => {
  const server = await startServer(t);
  const target: Target = { url: server.url, ca: server.ca };
  const a = await newHome(t, server);
  const reg = await a.register<StatusJson>('bank-a');
  const other = await newHome(t, server);
  const probe = (personId: string, partnerId: string): Promise<RawReply> => ask(target, { personId, partnerId, publicKey: pem(), requester: 'prober' });
  const exists = await probe(a.personId, reg.partnerId);
  const noPartner = await probe(a.personId, newPartnerId());
  const notTheirs = await probe(other.personId, reg.partnerId);
  const noPerson = await probe('p_' + 'A'.repeat(22), reg.partnerId);
  for (const [what, r] of [['no such partner', noPartner], ["another person's ID", notTheirs], ['no such person', noPerson]] as const) {
    t.equal(r.status, exists.status, `${what}: the same status as for an existing key`);
    t.equal(r.text, exists.text, `${what}: the same body, byte for byte, as for an existing key`);
  }
  t.same(exists.json, { result: 'unknown', keyVersion: null, ownerPublicKey: null, binding: null }, "no result, version or owner's binding for a wrong key");
  // The owner's key still verifies (control), and the probe is in the owner's history.
  const real = await ask(target, { personId: a.personId, partnerId: reg.partnerId, publicKey: reg.publicKey, requester: 'bank-a-app' });
  t.equal(real.json.result, 'match', 'control: the real public key matches');
  t.ok(real.json.binding, "and carries the owner's binding");
  const h = await a.json<HistoryJson>(['history', 'bank-a']);
  t.ok((h.history as Array<{ result: string; code: string; requester: string }>).some((e) => e.result === 'verify' && e.code === 'mismatch' && e.requester === 'prober'), 'the owner sees the probe as a mismatch');
});

t.test('verify questions and enrolments are limited per address', async (t) => {
  const server = await startServer(t, { verifyPerAddress: 2, enrolPerAddressPerMinute: 3 });
  const target: Target = { url: server.url, ca: server.ca };
  const body = { personId: 'p_' + 'A'.repeat(22), partnerId: newPartnerId(), publicKey: pem(), requester: 'prober' };
  const replies = [];
  for (let i = 0; i < 8; i++) replies.push(await ask(target, body));
  const limited = replies.filter((r) => r.status === 429);
  t.ok(limited.length > 0, `a burst of verify questions from one address is limited (${limited.length} of 8 got 429)`);
  t.equal(limited[0]?.json?.error?.code, 'rate_limited', 'with the stable code');
  t.ok(Number(limited[0]?.headers['retry-after']) >= 1, 'and Retry-After');
  t.equal((await ask({ ...target, localAddress: '127.0.0.2' }, body)).status, 200, 'another address still asks');

  const enrolments = [];
  for (let i = 0; i < 5; i++) enrolments.push(await enrol(target, newIdentity()));
  t.same(enrolments.map((r) => r.status), [201, 201, 201, 429, 429], 'three enrolments a minute from one address, then 429');
  t.equal((await enrol({ ...target, localAddress: '127.0.0.2' }, newIdentity())).status, 201, 'another address still enrols');
});

t.test('unknown and enrolled management key IDs are refused the same way', async (t) => {
  const server = await startServer(t);
  const target: Target = { url: server.url, ca: server.ca };
  const a = await newHome(t, server);
  const A = await rawIdentity(a);
  const stranger = newIdentity();
  const enrolledId = await send(target, signed(target, stranger, 'GET', '/v1/persons/me', undefined, { keyid: A.keyId }));
  const unknownId = await send(target, signed(target, stranger, 'GET', '/v1/persons/me'));
  t.equal(enrolledId.status, 401, "an enrolled key ID, someone else's signature: 401");
  t.equal(unknownId.status, enrolledId.status, 'an unknown key ID: the same status');
  t.equal(unknownId.text, enrolledId.text, 'and the same body, byte for byte');
  t.equal(unknownId.json.error?.code, 'auth_bad_signature', 'one code for both');
});
