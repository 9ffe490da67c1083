// kmgr rekey against a hostile or inconsistent server: a lying proxy that
// hides, adds, rolls back or swaps a key, or unlocks one, makes the rekey stop before anything
// changes; the server accepts a switch only for exactly the keys it holds,
// each at its current version, signed by both keys; and fetches racing the
// switch are each served (and counted) before it or refused after it.
import t from 'tap';
import { startServer, errCode, jsonError, snapshot, sameSnapshot, newHome, ok, ownerView, startLyingProxy } from './support/index.js';
import { api } from '../src/client/api.js';
import { signedRequest } from '../src/client/http.js';
import { FetchResponse, RekeyExport, PersonInfo } from '../src/protocol/messages.js';
import { openBlob } from '../src/crypto/blob.js';
import { homePaths } from '../src/client/home.js';
import { loadPartners } from '../src/client/partners.js';
import { rewrap } from '../src/client/rekey.js';
import { generateSecrets } from '../src/crypto/keystore.js';
import { signerFromSeed, managementKeyId } from '../src/crypto/sign.js';
import { signSuccession } from '../src/crypto/succession.js';
import { fromB64, toB64, toB64url } from '../src/crypto/bytes.js';

t.test('a lying server that hides, adds or rolls back a key makes rekey stop before changing anything', async (t) => {
  const server = await startServer(t);
  const proxy = await startLyingProxy(t, server);
  const h = await newHome(t, { ...server, url: proxy.url });
  t.ok(await h.register('bank-a'), 'register bank-a');
  t.ok(await h.register('bank-b', { type: 'p256' }), 'register bank-b');
  ok(t, await h.run(['rotate', 'bank-b']), 'rotate bank-b to version 2');
  t.ok(await h.register('bank-c', { type: 'ed25519' }), 'register bank-c');
  ok(t, await h.run(['lock', 'bank-c']), 'lock bank-c (a new statement that says locked)');
  const before = await snapshot(h.home);
  const fp = h.fingerprint;

  const lies: Array<[string, (r: RekeyExport) => unknown, RegExp]> = [
    ['hides a key', (r) => ({ ...r, keys: r.keys.slice(1) }), /did not hand out the key/],
    ['adds a key', (r) => ({ ...r, keys: [...r.keys, { ...r.keys[0], partnerId: 'someone-else-entirely' }] }), /does not know/],
    ['serves an older version', (r) => ({ ...r, keys: r.keys.map((k) => (k.keyVersion === 2 ? { ...k, keyVersion: 1 } : k)) }), /rollback/],
    // Re-signing what the server says would turn the owner's "locked" into "usable" for every verifier.
    ['says a locked key is usable', (r) => ({ ...r, keys: r.keys.map((k) => ({ ...k, locked: false })) }), /says bank-c is usable, but the owner's latest statement says locked/],
    ['swaps two blobs', (r) => ({ ...r, keys: r.keys.map((k, i) => ({ ...k, blob: r.keys[(i + 1) % r.keys.length]!.blob })) }), /does not open/],
  ];
  for (const [what, lie, msg] of lies) {
    proxy.rewrite.set('/v1/rekey/prepare', lie);
    const r = await h.run(['--json', 'rekey']);
    t.equal(r.code, 65, `${what}: exit 65 (${r.stderr.trim()})`);
    t.match(jsonError(r).message, msg, `${what}: says what is wrong`);
    t.match(jsonError(r).message, /stopped before changing anything/, `${what}: and that nothing changed`);
    sameSnapshot(t, before, await snapshot(h.home), `${what}: the home`);
    t.equal(proxy.captured.has('/v1/rekey'), false, `${what}: no switch was sent`);
  }
  proxy.rewrite.clear();
  ok(t, await h.run(['fetch', 'bank-a']), 'the old key still works at the server');
  const r = await h.run(['--json', 'rekey']);
  ok(t, r, 'an honest answer: the rekey goes through');
  t.not(JSON.parse(r.stdout).fingerprint, fp, 'new key');
  ok(t, await h.run(['fetch', 'bank-b']), 'and fetches work');
});

t.test('the server accepts a switch only for exactly the keys it holds, each at its current version', async (t) => {
  const server = await startServer(t);
  const h = await newHome(t, server);
  t.ok(await h.register('bank-a'), 'register bank-a');
  t.ok(await h.register('bank-b'), 'register bank-b');
  const v = await ownerView(h);
  const s = v.session;
  const exp = (await signedRequest(s.endpoint, s.identity, 'POST', '/v1/rekey/prepare', {}, RekeyExport)).body;
  const next = generateSecrets();
  const nextSigner = signerFromSeed(next.signingSeed);
  const curSigner = signerFromSeed(s.secrets!.signingSeed);
  const keys = rewrap(exp, await loadPartners(homePaths(h.home)), undefined, s.config.personId, s.config.keyId, s.secrets!, curSigner, next, nextSigner);
  const statement = {
    personId: s.config.personId,
    oldKeyId: s.config.keyId,
    oldPublicKey: toB64url(curSigner.publicKey),
    newKeyId: managementKeyId(nextSigner.publicKey),
    newPublicKey: toB64url(nextSigner.publicKey),
    issuedAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  };
  const succession = { statement, signature: toB64(signSuccession(curSigner, statement)), newSignature: toB64(signSuccession(nextSigner, statement)) };
  const send = (body: unknown) => signedRequest(s.endpoint, s.identity, 'POST', '/v1/rekey', body, PersonInfo);
  const refusal = async (body: unknown, code: string, what: string) => {
    try {
      await send(body);
      t.fail(`${what}: accepted`);
    } catch (e) {
      t.equal(errCode(e), code, `${what}: refused with ${code}`);
    }
  };
  await refusal({ succession, keys: keys.slice(1), revokeDevices: [] }, 'rekey_mismatch', 'a key missing');
  await refusal({ succession, keys: [...keys, { ...keys[0], partnerId: 'not-held-here' }], revokeDevices: [] }, 'rekey_mismatch', 'a key not held');
  await refusal({ succession, keys: [keys[0], keys[0], keys[1]], revokeDevices: [] }, 'rekey_mismatch', 'a key twice');
  await refusal({ succession, keys: keys.map((k, i) => (i === 0 ? { ...k, keyVersion: 2, binding: null } : k)), revokeDevices: [] }, 'version_conflict', 'a version that is not current');
  await refusal({ succession: { ...succession, newSignature: succession.signature }, keys, revokeDevices: [] }, 'auth_bad_signature', 'a succession the new key did not sign');
  ok(t, await h.run(['fetch', 'bank-a']), 'after every refusal the old key still works');
  // Fetches signed by the old key race the switch: each is served the old blob (and counted) before
  // it, or refused after it; none is served a blob, or counted, on the wrong side.
  const pid = exp.keys[0]!.partnerId;
  const ctx = { personId: s.config.personId, partnerId: pid, keyId: exp.keys[0]!.keyId, alg: exp.keys[0]!.alg, keyVersion: exp.keys[0]!.keyVersion, partnerName: (await loadPartners(homePaths(h.home))).partners.find((p) => p.id === pid)!.name };
  const before = (await api.status(s, pid)).uses.total;
  const fetchOnce = () => signedRequest(s.endpoint, s.identity, 'POST', `/v1/keys/${pid}/fetch`, {}, FetchResponse).then((r): FetchResponse | string | undefined => r.body, (e: unknown) => errCode(e));
  const switching = send({ succession, keys, revokeDevices: [] });
  let settled = false;
  void switching.finally(() => (settled = true)).catch(() => undefined);
  // Fetches one after another while the switch is written, and three after it.
  const fetched: Array<FetchResponse | string | undefined> = []; // a FetchResponse, or the refusal's error code
  for (let after = 0; after < 3 && fetched.length < 500; ) {
    fetched.push(await fetchOnce());
    if (settled) after++;
  }
  const switched = await switching;
  t.equal(switched.body.keyId, statement.newKeyId, 'the switch is made');
  const served = fetched.filter((f): f is FetchResponse => typeof f === 'object');
  t.ok(fetched.every((f) => typeof f === 'object' || f === 'key_replaced'), 'every racing fetch was served or refused as replaced');
  for (const f of served) t.doesNotThrow(() => openBlob(s.secrets!.wrapKey, ctx, fromB64(f.blob)!), 'a fetch served during the race got the old blob, which the old key opens');
  const newSession = { ...s, identity: { keyId: statement.newKeyId, signer: nextSigner } };
  t.equal((await api.status(newSession, pid)).uses.total, before + served.length, `the count holds: ${served.length} served, ${served.length} counted`);
  const after = await h.run(['--json', 'fetch', 'bank-a']);
  t.equal(jsonError(after).code, 'key_replaced', 'the exact set is accepted, and the old key is refused from then on');
  await refusal({ succession, keys, revokeDevices: [] }, 'key_replaced', 'the same switch again');
});
