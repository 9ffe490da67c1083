// Server-side request authentication (threats 7 and 8), over raw HTTPS with
// requests signed by hand so that each part can be tampered with after signing.
import t, { type Test as TapTest } from 'tap';
import { startServer, enrol, flipSignatureBit, keyStatus, newIdentity, newNonce, newPartnerId, nowSeconds, register, registerBody, send, signed, type TestServer, type Identity, type RawReply } from './support/index.js';
import type { FetchResponse, PersonInfo, KeyList } from '../src/protocol/messages.js';
import * as sigbase from '../src/protocol/sigbase.js';
import { TAG_BINDING } from '../src/crypto/sign.js';
import { sha256 } from '../src/crypto/hash.js';
import { toB64, utf8 } from '../src/crypto/bytes.js';

type T = TapTest;

/** A message that shows the reply only when it is not what was hoped for (never a blob in passing output). */
const why = (r: RawReply, want = 200): string => (r.status === want ? `HTTP ${want}` : `HTTP ${r.status}: ${r.text.slice(0, 300)}`);

function isErr(t: T, r: RawReply, status: number, code: string, what: string): void {
  t.equal(r.status, status, `${what}: HTTP ${status}`);
  t.equal(r.json?.error?.code, code, `${what}: error code ${code} (got ${r.text.slice(0, 160)})`);
}

async function uses(server: TestServer, id: Identity, partnerId: string): Promise<number> {
  const r = await keyStatus(server, id, partnerId);
  if (r.status !== 200) throw new Error(`status of ${partnerId}: HTTP ${r.status} ${r.text}`);
  return r.json.uses.total;
}

t.test('signed requests: what the server accepts and refuses', async (t) => {
  const server = await startServer(t);
  const A = newIdentity();
  const B = newIdentity();
  t.equal((await enrol(server, A)).status, 201, 'A enrols');
  t.equal((await enrol(server, B)).status, 201, 'B enrols');
  t.not(A.personId, B.personId, 'two persons');

  const pA = newPartnerId();
  const pA2 = newPartnerId();
  const pB = newPartnerId();
  const bodyA = registerBody();
  const regA = await register(server, A, pA, bodyA);
  t.equal(regA.status, 201, 'A registers pA');
  t.equal((await register(server, A, pA2)).status, 201, 'A registers pA2');
  const bodyB = registerBody();
  t.equal((await register(server, B, pB, bodyB)).status, 201, 'B registers pB');

  let served = 0; // fetches of pA that were meant to succeed
  const fetchA = (o?: Parameters<typeof signed>[5]) => signed(server, A, 'POST', `/v1/keys/${pA}/fetch`, {}, o);

  await t.test('a valid fetch is served and counted', async (t) => {
    const r = await send<FetchResponse>(server, fetchA());
    t.equal(r.status, 200, why(r));
    served++;
    t.equal(r.json.keyId, bodyA.keyId, 'the registered key ID');
    t.equal(r.json.blob, bodyA.blob, 'the registered blob');
    t.equal(r.json.keyVersion, 1);
    t.equal(r.json.status.uses.total, served, 'counted once');
    t.equal(await uses(server, A, pA), served, 'stored count');
  });

  await t.test('a flipped signature bit is refused', async (t) => {
    for (const bit of [0, 7, 200, 511]) {
      const req = fetchA();
      req.headers.signature = flipSignatureBit(String(req.headers.signature), bit);
      isErr(t, await send(server, req), 401, 'auth_bad_signature', `bit ${bit} flipped`);
    }
    t.equal(await uses(server, A, pA), served, 'count unchanged');
  });

  await t.test('a body changed after signing is refused', async (t) => {
    // A register body, one byte changed: the digest no longer matches.
    const pNew = newPartnerId();
    const body = registerBody({ keyVersion: 1 });
    const req = signed(server, A, 'PUT', `/v1/keys/${pNew}`, body);
    const bytes = new Uint8Array(req.body);
    const at = new TextDecoder().decode(bytes).indexOf('"keyVersion":1') + '"keyVersion":'.length;
    bytes[at] = '2'.charCodeAt(0);
    isErr(t, await send(server, { ...req, body: bytes }), 401, 'auth_bad_signature', 'one body byte changed');
    // The same, with the Content-Digest recomputed to match: now the signature fails.
    const digest = sigbase.formatContentDigest(toB64(sha256(bytes)));
    isErr(t, await send(server, { ...req, body: bytes, headers: { ...req.headers, 'content-digest': digest } }), 401, 'auth_bad_signature', 'body and digest changed');
    isErr(t, await keyStatus(server, A, pNew), 404, 'unknown_key', 'nothing was registered');
    // A fetch body changed from {} to {}  (one byte appended) is refused too.
    const f = fetchA();
    isErr(t, await send(server, { ...f, body: utf8('{} ') }), 401, 'auth_bad_signature', 'fetch body grown by one byte');
    t.equal(await uses(server, A, pA), served, 'count unchanged');
  });

  await t.test('path, query, method or authority changed after signing is refused', async (t) => {
    const f = fetchA();
    isErr(t, await send(server, { ...f, path: `/v1/keys/${pA2}/fetch` }), 401, 'auth_bad_signature', 'other partner in the path');
    isErr(t, await send(server, { ...fetchA(), path: `/v1/keys/${pA}/fetch?x=1` }), 401, 'auth_bad_signature', 'query added');
    const withQuery = signed(server, A, 'POST', `/v1/keys/${pA}/fetch?a=1`, {});
    isErr(t, await send(server, { ...withQuery, path: `/v1/keys/${pA}/fetch?a=2` }), 401, 'auth_bad_signature', 'query changed');
    // Signed as PUT (register), sent as GET (status): the GET handler authenticates and refuses.
    const pNew = newPartnerId();
    const put = signed(server, A, 'PUT', `/v1/keys/${pNew}`, registerBody());
    isErr(t, await send(server, { ...put, method: 'GET' }), 401, 'auth_bad_signature', 'method PUT -> GET');
    // Signed as GET (status), sent as PUT with the same empty body.
    const get = signed(server, A, 'GET', `/v1/keys/${pNew}`);
    isErr(t, await send(server, { ...get, method: 'PUT' }), 401, 'auth_bad_signature', 'method GET -> PUT');
    isErr(t, await keyStatus(server, A, pNew), 404, 'unknown_key', 'nothing was registered');
    const port = new URL(server.url).port;
    // Another of this server's own names: the signature fails. A name that is not this server's: refused as such.
    for (const [host, code] of [[`localhost:${port}`, 'auth_bad_signature'], ['127.0.0.1', 'auth_wrong_server'], [`127.0.0.1:${Number(port) + 1}`, 'auth_wrong_server'], ['evil.example', 'auth_wrong_server']]) {
      const req = fetchA();
      isErr(t, await send(server, { ...req, headers: { ...req.headers, host: host! } }), 401, code!, `Host ${host}`);
    }
    t.equal(await uses(server, A, pA), served, 'count unchanged');
  });

  await t.test('the device label, where the profile covers it, is bound by the signature', async (t) => {
    if (!sigbase.COMPONENTS.includes('kmgr-device')) {
      t.pass('this build does not sign a device label');
      return;
    }
    const ok = await send(server, fetchA({ device: 'laptop' }));
    t.equal(ok.status, 200, `a request from device "laptop": ${ok.status}`);
    if (ok.status === 200) served++;
    const req = fetchA({ device: 'laptop' });
    isErr(t, await send(server, { ...req, headers: { ...req.headers, 'kmgr-device': 'phone' } }), 401, 'auth_bad_signature', 'device label changed');
    const dropped = { ...req.headers };
    delete dropped['kmgr-device'];
    isErr(t, await send(server, { ...req, headers: dropped }), 401, 'auth_bad_signature', 'device label removed');
    const plain = fetchA();
    isErr(t, await send(server, { ...plain, headers: { ...plain.headers, 'kmgr-device': 'laptop' } }), 401, 'auth_bad_signature', 'device label added');
    t.equal(await uses(server, A, pA), served, 'only the genuine request counted');
  });

  await t.test('the time window: created within 60 s, expires in the future, lifetime at most 120 s', async (t) => {
    const T = nowSeconds();
    server.clock.now = T * 1000; // pin the server's clock so the boundaries are exact
    t.teardown(() => {
      server.clock.now = undefined;
    });
    isErr(t, await send(server, fetchA({ created: T - 61, expires: T + 30 })), 401, 'auth_stale', 'created 61 s ago');
    isErr(t, await send(server, fetchA({ created: T - 3600, expires: T + 30 })), 401, 'auth_stale', 'created an hour ago');
    isErr(t, await send(server, fetchA({ created: T + 61, expires: T + 90 })), 401, 'auth_stale', 'created 61 s in the future');
    isErr(t, await send(server, fetchA({ created: T - 30, expires: T - 1 })), 401, 'auth_stale', 'expired a second ago');
    isErr(t, await send(server, fetchA({ created: T - 30, expires: T })), 401, 'auth_stale', 'expires now');
    isErr(t, await send(server, fetchA({ created: T, expires: T + 121 })), 401, 'auth_stale', 'lifetime 121 s');
    isErr(t, await send(server, fetchA({ created: T, expires: T })), 401, 'auth_stale', 'lifetime 0');
    isErr(t, await send(server, fetchA({ created: T, expires: T - 5 })), 401, 'auth_stale', 'expires before created');
    t.equal(await uses(server, A, pA), served, 'count unchanged by stale requests');
    // The boundaries themselves are accepted.
    let r = await send(server, fetchA({ created: T - 60, expires: T + 1 }));
    t.equal(r.status, 200, `created exactly 60 s ago: ${why(r)}`);
    served++;
    r = await send(server, fetchA({ created: T, expires: T + 120 }));
    t.equal(r.status, 200, `lifetime exactly 120 s: ${why(r)}`);
    served++;
    t.equal(await uses(server, A, pA), served, 'counted');
  });

  await t.test('a replayed request is refused and not counted', async (t) => {
    const req = fetchA();
    const first = await send(server, req);
    t.equal(first.status, 200, 'first use served');
    served++;
    isErr(t, await send(server, req), 401, 'auth_replay', 'replay');
    isErr(t, await send(server, req), 401, 'auth_replay', 'replay again');
    t.equal(await uses(server, A, pA), served, 'counted once');
    // A nonce is single-use across endpoints too.
    const nonce = newNonce();
    t.equal((await send(server, signed(server, A, 'GET', '/v1/keys', undefined, { nonce }))).status, 200, 'list with nonce N');
    isErr(t, await send(server, fetchA({ nonce })), 401, 'auth_replay', 'fetch reusing nonce N');
    t.equal(await uses(server, A, pA), served, 'count unchanged');
  });

  await t.test('the same request sent 20 times at once is served exactly once', async (t) => {
    const req = fetchA();
    const replies = await Promise.all(Array.from({ length: 20 }, () => send(server, req)));
    const ok = replies.filter((r) => r.status === 200).length;
    t.equal(ok, 1, 'one served');
    served += ok;
    t.ok(replies.every((r) => r.status === 200 || (r.status === 401 && r.json?.error?.code === 'auth_replay')), 'the others: 401 auth_replay');
    t.equal(await uses(server, A, pA), served, 'counted once');
  });

  await t.test('a refused request does not burn its nonce', async (t) => {
    const req = fetchA();
    const forged = { ...req, headers: { ...req.headers, signature: flipSignatureBit(String(req.headers.signature), 3) } };
    isErr(t, await send(server, forged), 401, 'auth_bad_signature', 'forged copy first');
    const r = await send(server, req);
    t.equal(r.status, 200, 'the genuine request still works');
    served++;
    t.equal(await uses(server, A, pA), served);
  });

  await t.test('unknown, missing or malformed credentials', async (t) => {
    const C = newIdentity(); // never enrolled
    isErr(t, await send(server, signed(server, C, 'POST', `/v1/keys/${pA}/fetch`, {})), 401, 'auth_bad_signature', 'unknown key ID');
    isErr(t, await send(server, signed(server, C, 'GET', '/v1/keys')), 401, 'auth_bad_signature', 'unknown key ID lists');
    // C's key claiming to be A's key ID.
    isErr(t, await send(server, fetchA({ signWith: C })), 401, 'auth_bad_signature', "A's key ID, C's signature");
    isErr(t, await send(server, fetchA({ signWith: B })), 401, 'auth_bad_signature', "A's key ID, B's signature");
    for (const h of ['signature', 'signature-input', 'content-digest']) {
      const req = fetchA();
      const headers = { ...req.headers };
      delete headers[h];
      isErr(t, await send(server, { ...req, headers }), 401, 'auth_missing', `without ${h}`);
    }
    {
      const req = fetchA();
      const headers = { ...req.headers };
      delete headers.host;
      const r = await send(server, { ...req, headers });
      t.ok(r.status === 400 || r.status === 401, `without Host: 400 or 401 (got ${r.status})`);
      t.type(r.json?.error?.code, 'string', `without Host: a JSON error (got ${JSON.stringify(r.text)})`);
    }
    const none = { method: 'POST', path: `/v1/keys/${pA}/fetch`, headers: { host: new URL(server.url).host, 'content-type': 'application/json' }, body: utf8('{}') };
    isErr(t, await send(server, none), 401, 'auth_missing', 'no signature headers at all');
    // A signature made for another purpose (a binding statement) is not a request signature (threat 7).
    isErr(t, await send(server, fetchA({ tag: TAG_BINDING })), 401, 'auth_bad_signature', 'binding-tag signature');
    const variants: Array<[string, (h: Record<string, string | number>) => void]> = [
      ['alg rsa', (h) => (h['signature-input'] = String(h['signature-input']).replace('alg="ed25519"', 'alg="rsa-v1_5-sha256"'))],
      ['other tag', (h) => (h['signature-input'] = String(h['signature-input']).replace('kmgr/request/v1', 'kmgr/binding/v1'))],
      ['fewer components', (h) => (h['signature-input'] = String(h['signature-input']).replace(' "content-digest"', ''))],
      ['other label', (h) => (h.signature = String(h.signature).replace(/^kmgr=/, 'sig1='))],
      ['sha-512 digest', (h) => (h['content-digest'] = String(h['content-digest']).replace('sha-256', 'sha-512'))],
      ['short signature', (h) => (h.signature = 'kmgr=:AAAA:')],
      ['duplicate params', (h) => (h['signature-input'] = String(h['signature-input']) + ';created=1')],
    ];
    for (const [what, mutate] of variants) {
      const req = fetchA();
      const headers = { ...req.headers };
      mutate(headers);
      const r = await send(server, { ...req, headers });
      t.equal(r.status, 401, `${what}: 401`);
      t.match(r.json?.error?.code, /^auth_/, `${what}: an auth_ error code (${r.json?.error?.code})`);
    }
    t.equal(await uses(server, A, pA), served, 'count unchanged');
  });

  await t.test("one person can never read, count against or change another's keys", async (t) => {
    const before = (await keyStatus(server, A, pA)).json;
    isErr(t, await send(server, signed(server, B, 'POST', `/v1/keys/${pA}/fetch`, {})), 404, 'unknown_key', "B fetches A's partner ID");
    isErr(t, await keyStatus(server, B, pA), 404, 'unknown_key', "B asks for the status of A's partner ID");
    t.equal(await uses(server, A, pA), served, "A's count unchanged");
    // B registering under A's partner ID lands in B's own space; A's record is untouched.
    const bodyB2 = registerBody();
    t.equal((await register(server, B, pA, bodyB2)).status, 201, "B registers a key under A's partner ID, for B");
    const bf = await send<FetchResponse>(server, signed(server, B, 'POST', `/v1/keys/${pA}/fetch`, {}));
    t.equal(bf.status, 200, "B fetches B's own key");
    t.equal(bf.json.blob, bodyB2.blob, "B gets B's blob");
    t.not(bf.json.blob, bodyA.blob, "never A's blob");
    const after = (await keyStatus(server, A, pA)).json;
    t.same(after, before, "A's record is unchanged");
    // Listing shows only one's own keys.
    const listB = await send<KeyList>(server, signed(server, B, 'GET', '/v1/keys'));
    t.equal(listB.status, 200);
    t.same((listB.json.keys as Array<{ partnerId: string }>).map((k) => k.partnerId).sort(), [pA, pB].sort(), 'B sees only B\'s keys');
    t.notOk((listB.json.keys as Array<{ keyId: string }>).some((k) => k.keyId === bodyA.keyId), "A's key ID is not in B's list");
    const listA = await send<KeyList>(server, signed(server, A, 'GET', '/v1/keys'));
    t.same((listA.json.keys as Array<{ partnerId: string }>).map((k) => k.partnerId).sort(), [pA, pA2].sort(), 'A sees only A\'s keys');
    t.notOk((listA.json.keys as Array<{ keyId: string }>).some((k) => k.keyId === bodyB.keyId || k.keyId === bodyB2.keyId), "B's key IDs are not in A's list");
    // A's register to A's own existing partner ID is refused, B's existence there notwithstanding.
    isErr(t, await register(server, A, pA), 409, 'key_exists', 'A registers pA again');
    t.same((await keyStatus(server, A, pA)).json, before, "A's record still unchanged");
    const me = await send<PersonInfo>(server, signed(server, B, 'GET', '/v1/persons/me'));
    t.equal(me.json.personId, B.personId, 'whoami answers for the signer');
  });

  await t.test('enrolment: proof of possession, once per key', async (t) => {
    isErr(t, await enrol(server, A), 409, 'person_exists', 'the same key enrolled twice');
    const D = newIdentity();
    const E = newIdentity();
    const body = { alg: 'ed25519', publicKey: D.publicKey };
    // Signed by E under E's key ID: the server only accepts the body's key.
    isErr(t, await send(server, signed(server, E, 'POST', '/v1/persons', body)), 401, 'auth_bad_signature', "D's key in the body, signed by E");
    // Signed by E but claiming D's key ID.
    isErr(t, await send(server, signed(server, D, 'POST', '/v1/persons', body, { signWith: E })), 401, 'auth_bad_signature', "D's key ID, E's signature");
    // Signed by an enrolled person (A) for D's key.
    isErr(t, await send(server, signed(server, A, 'POST', '/v1/persons', body)), 401, 'auth_bad_signature', "D's key in the body, signed by A");
    // Neither D nor E got enrolled by those attempts.
    isErr(t, await send(server, signed(server, D, 'GET', '/v1/persons/me')), 401, 'auth_bad_signature', 'D is not enrolled');
    isErr(t, await send(server, signed(server, E, 'GET', '/v1/persons/me')), 401, 'auth_bad_signature', 'E is not enrolled');
    // A replayed enrolment is refused as a replay or as a conflict, never as a second person.
    const req = signed(server, D, 'POST', '/v1/persons', body);
    t.equal((await send(server, req)).status, 201, 'D enrols properly');
    const again = await send(server, req);
    t.equal(again.status === 401 || again.status === 409, true, `replayed enrolment refused (${again.status} ${again.json?.error?.code})`);
  });
});

t.test('nonces are durable: a replay after a restart on the same data is refused', async (t) => {
  const first = await startServer(t);
  const A = newIdentity();
  t.equal((await enrol(first, A)).status, 201);
  const p = newPartnerId();
  t.equal((await register(first, A, p)).status, 201);
  const fetch = signed(first, A, 'POST', `/v1/keys/${p}/fetch`, {});
  const whoami = signed(first, A, 'GET', '/v1/persons/me');
  t.equal((await send(first, fetch)).status, 200, 'fetch served');
  t.equal((await send(first, whoami)).status, 200, 'whoami served');
  await first.stop();

  // Restarted at the same address: the requests were signed for it.
  const second = await startServer(t, { dataDir: first.dataDir, port: first.daemon.port });
  // The same bytes, Host header included, to the restarted daemon.
  isErr(t, await send(second, fetch), 401, 'auth_replay', 'fetch replayed after restart');
  isErr(t, await send(second, whoami), 401, 'auth_replay', 'whoami replayed after restart');
  t.equal(await uses(second, A, p), 1, 'count unchanged by the replay');
  const fresh = await send<FetchResponse>(second, signed(second, A, 'POST', `/v1/keys/${p}/fetch`, {}));
  t.equal(fresh.status, 200, 'a fresh request is served');
  t.equal(fresh.json.status.uses.total, 2);
});
