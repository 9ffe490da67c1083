// The client must detect a server that lies (threats 1, 2 and 5). A real kmgrd
// runs behind a small HTTPS test double that forwards the client's signed
// requests verbatim and can rewrite the fetch reply. Whatever the double does,
// `kmgr fetch` must either print the right key or exit 65 with nothing on stdout.
import t, { type Test as TapTest } from 'tap';
import { cp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { startServer, tempDir, homeFor, newHome, partnerId, startLyingProxy, type TestServer, type RunResult, type LyingProxy, type StatusJson, readJson } from './support/index.js';
import type { FetchResponse } from '../src/protocol/messages.js';
import type { PartnerIndex } from '../src/client/partners.js';

type T = TapTest;

/** An HTTPS server with kmgrd's own certificate that forwards to kmgrd and may lie about the reply. */
const startDouble = (t: T, server: TestServer): Promise<LyingProxy> => startLyingProxy(t, server);


const fetchPath = (id: string): string => `/v1/keys/${id}/fetch`;

function refused(t: T, r: RunResult, what: string, stderrPattern?: RegExp): void {
  t.equal(r.code, 65, `${what}: exit 65 (got ${r.code}; stderr: ${r.stderr.trim().slice(0, 200)})`);
  t.equal(r.stdoutBytes.length, 0, `${what}: nothing on stdout`);
  t.not(r.stderr.trim(), '', `${what}: a reason on stderr`);
  if (stderrPattern) t.match(r.stderr, stderrPattern, `${what}: stderr says ${stderrPattern}`);
}

/** The PEM printed by fetch is the private key of the public key register printed. */
function keyMatches(t: T, pem: string, publicPem: string, what: string): void {
  let ok: boolean;
  try {
    const msg = Buffer.from('kmgr misbehaving-server test');
    ok = verify(null, msg, createPublicKey(publicPem), sign(null, msg, createPrivateKey(pem)));
  } catch {
    ok = false;
  }
  t.ok(ok, `${what}: the fetched key matches the registered public key`);
}

const b64 = {
  decode: (s: string): Buffer => Buffer.from(s, 'base64'),
  encode: (b: Uint8Array): string => Buffer.from(b).toString('base64'),
};

t.test('a lying server is detected: exit 65, nothing on stdout', async (t) => {
  const server = await startServer(t);
  const double = await startDouble(t, server);
  const [c1, c2] = await Promise.all([newHome(t, double), newHome(t, double)]); // two persons

  // c1 works sequentially (one home); c2, another person with its own home, alongside.
  const c2Setup = (async () => {
    const reg = await c2.run(['register', 'bank-a']);
    const fetched = reg.code === 0 ? await c2.run(['fetch', 'bank-a']) : reg;
    return { reg, fetched };
  })();
  const regA = await c1.run(['register', 'bank-a']);
  t.equal(regA.code, 0, `c1 registers bank-a: ${regA.stderr}`);
  const regB = await c1.run(['register', 'bank-b']);
  t.equal(regB.code, 0, `c1 registers bank-b: ${regB.stderr}`);
  const { reg: reg2, fetched: ok2 } = await c2Setup;
  t.equal(reg2.code, 0, `c2 registers its own bank-a: ${reg2.stderr}`);
  t.equal(ok2.code, 0, `honest fetch of c2's bank-a: ${ok2.stderr}`);
  const idA = await partnerId(c1, 'bank-a');
  const idB = await partnerId(c1, 'bank-b');
  const id2 = await partnerId(c2, 'bank-a');
  t.not(idA, id2, "the two persons' bank-a have different partner IDs");

  // Honest replies first, captured as material for the lies.
  const okA = await c1.run(['fetch', 'bank-a']);
  t.equal(okA.code, 0, `honest fetch through the double: ${okA.stderr}`);
  keyMatches(t, okA.stdout, regA.stdout, 'honest bank-a');
  const replyA = JSON.parse(double.captured.get(fetchPath(idA))!.text);
  const okB = await c1.run(['fetch', 'bank-b']);
  t.equal(okB.code, 0, `honest fetch of bank-b: ${okB.stderr}`);
  const replyB = JSON.parse(double.captured.get(fetchPath(idB))!.text);
  const reply2 = JSON.parse(double.captured.get(fetchPath(id2))!.text);

  const partnersFile = join(c1.home, 'partners.json');
  const partnersBefore = await readFile(partnersFile, 'utf8');

  const lie = async (t: T, what: string, fn: (reply: FetchResponse) => unknown, pattern?: RegExp): Promise<RunResult> => {
    double.rewrite.set(fetchPath(idA), fn);
    try {
      const r = await c1.run(['fetch', 'bank-a']);
      refused(t, r, what, pattern);
      return r;
    } finally {
      double.rewrite.delete(fetchPath(idA));
    }
  };
  const withBlob = (reply: FetchResponse, blob: Uint8Array): FetchResponse => ({ ...reply, blob: b64.encode(blob) });

  await t.test("(a) another partner's reply, same person", async (t) => {
    await lie(t, 'bank-b reply for bank-a', () => replyB);
    await lie(t, "bank-b's blob in bank-a's reply", (r) => ({ ...r, blob: replyB.blob }));
  });

  await t.test("(b) another person's blob for the same partner name", async (t) => {
    await lie(t, "c2's whole bank-a reply", () => reply2);
    await lie(t, "c2's blob with c1's key ID and version", (r) => ({ ...reply2, keyId: r.keyId, keyVersion: r.keyVersion, status: r.status }));
  });

  await t.test('(c) one bit flipped anywhere in the blob', async (t) => {
    const blob = b64.decode(replyA.blob);
    // Format byte, nonce, ciphertext, tag.
    const cases: Array<[number, number]> = [[0, 0], [1, 7], [25, 0], [Math.floor(blob.length / 2), 5], [blob.length - 1, 7]];
    for (const [byte, bit] of cases) {
      const c = Buffer.from(blob);
      c[byte]! ^= 1 << bit;
      await lie(t, `bit ${bit} of byte ${byte} flipped`, (r) => withBlob(r, c));
    }
  });

  await t.test('(d) a truncated or extended blob', async (t) => {
    const blob = b64.decode(replyA.blob);
    for (const n of [blob.length - 1, 25]) {
      await lie(t, `blob cut to ${n} bytes`, (r) => withBlob(r, blob.subarray(0, n)));
    }
    await lie(t, 'one byte appended', (r) => withBlob(r, Buffer.concat([blob, Buffer.of(0)])));
    await lie(t, 'empty blob', (r) => ({ ...r, blob: '' }));
    await lie(t, 'bytes of the same length', (r) => withBlob(r, Buffer.alloc(blob.length, 0x5a)));
  });

  await t.test('(e) metadata changed in the reply', async (t) => {
    // If the client lets one of these through, at least the key it prints must be the real one.
    const notBelieved = (r: RunResult, what: string): void => {
      if (r.code === 0) keyMatches(t, r.stdout, regA.stdout, `${what} was not detected (stdout ${r.stdout.startsWith('-----BEGIN PRIVATE KEY-----') ? 'is PEM' : `is not PEM but ${r.stdoutBytes.length} bytes of something else`}); the lie was ignored`);
    };
    for (const alg of ['p256', 'aes256']) {
      const what = `alg ${replyA.alg} -> ${alg}`;
      notBelieved(await lie(t, what, (r) => ({ ...r, alg, status: { ...r.status, alg } })), what);
    }
    notBelieved(await lie(t, 'another key ID', (r) => ({ ...r, keyId: replyB.keyId, status: { ...r.status, keyId: replyB.keyId } })), 'another key ID');
    await lie(t, 'key version raised to 2', (r) => ({ ...r, keyVersion: 2, status: { ...r.status, keyVersion: 2 } }));
    await lie(t, 'a reply that breaks the schema', (r) => ({ ...r, keyVersion: 'one' }));
  });

  await t.test('the lies left no trace in the client state', async (t) => {
    t.equal(await readFile(partnersFile, 'utf8'), partnersBefore, 'partners.json (and its high-water marks) unchanged');
    const again = await c1.run(['fetch', 'bank-a']);
    t.equal(again.code, 0, `an honest fetch works again: ${again.stderr}`);
    keyMatches(t, again.stdout, regA.stdout, 'bank-a after the lies');
  });
});

t.test('(f) rollback: an older key version is refused', async (t) => {
  const server = await startServer(t);
  const double = await startDouble(t, server);
  const c = await newHome(t, double);
  const partnersFile = join(c.home, 'partners.json');

  await t.test('simulated: the client has seen v2, the server serves v1', async (t) => {
    const reg = await c.run(['register', 'bank-x']);
    t.equal(reg.code, 0, reg.stderr);
    const id = await partnerId(c, 'bank-x');
    const ok = await c.run(['fetch', 'bank-x']);
    t.equal(ok.code, 0, `v1 fetches before: ${ok.stderr}`);
    const idx = await readJson<PartnerIndex>(partnersFile);
    const entry = idx.partners.find((p) => p.name === 'bank-x')!;
    entry.highWater = 2;
    entry.key!.version = 2;
    await writeFile(partnersFile, JSON.stringify(idx, null, 2) + '\n', { mode: 0o600 });
    const edited = await readFile(partnersFile, 'utf8');
    const r = await c.run(['fetch', 'bank-x']);
    refused(t, r, 'the real v1 reply after v2 was seen', /rollback/i);
    t.equal(double.captured.get(fetchPath(id))?.status, 200, 'the server did serve v1 (the client refused it)');
    t.equal(await readFile(partnersFile, 'utf8'), edited, 'the high-water mark stays at 2');
  });

  await t.test('real: rotate to v2, then the server serves the old v1 reply', async (t) => {
    const reg = await c.run(['register', 'bank-y']);
    t.equal(reg.code, 0, reg.stderr);
    const id = await partnerId(c, 'bank-y');
    const v1 = await c.run(['fetch', 'bank-y']);
    t.equal(v1.code, 0, `v1 fetch: ${v1.stderr}`);
    keyMatches(t, v1.stdout, reg.stdout, 'v1');
    const replyV1 = JSON.parse(double.captured.get(fetchPath(id))!.text);
    t.equal(replyV1.keyVersion, 1);
    const rot = await c.run(['rotate', 'bank-y']);
    if (rot.code !== 0) {
      t.fail(`kmgr rotate is not available or failed (${rot.code}): ${rot.stderr.trim()}`);
      return;
    }
    const v2 = await c.run(['fetch', 'bank-y']);
    t.equal(v2.code, 0, `v2 fetch: ${v2.stderr}`);
    keyMatches(t, v2.stdout, rot.stdout, 'v2');
    const replyV2 = JSON.parse(double.captured.get(fetchPath(id))!.text);
    t.equal(replyV2.keyVersion, 2, 'the server now serves v2');
    const before = await readFile(partnersFile, 'utf8');
    const serve = async (t: T, what: string, fn: (reply: FetchResponse) => unknown, pattern?: RegExp): Promise<void> => {
      double.rewrite.set(fetchPath(id), fn);
      try {
        refused(t, await c.run(['fetch', 'bank-y']), what, pattern);
      } finally {
        double.rewrite.delete(fetchPath(id));
      }
    };
    await serve(t, 'the old v1 reply', () => replyV1, /rollback/i);
    await serve(t, 'the old v1 blob relabelled as v2', (r) => ({ ...r, blob: replyV1.blob }));
    await serve(t, 'the whole v1 reply relabelled as v2', () => ({ ...replyV1, keyVersion: 2, status: { ...replyV1.status, keyVersion: 2 } }));
    await serve(t, 'v1 key ID and blob under v2', (r) => ({ ...r, keyId: replyV1.keyId, blob: replyV1.blob }));
    t.equal(await readFile(partnersFile, 'utf8'), before, 'partners.json unchanged by the refused replies');
    const honest = await c.run(['fetch', 'bank-y']);
    t.equal(honest.code, 0, `the honest v2 reply still works: ${honest.stderr}`);
    keyMatches(t, honest.stdout, rot.stdout, 'v2 again');
  });
});

t.test('a server that maps a partner name to another partner\'s ID gets a blob that does not open (65)', async (t) => {
  const server = await startServer(t);
  const a = await newHome(t, server, { partners: 'server' });
  const ra = await a.register<StatusJson>('bank-a');
  const rb = await a.register<StatusJson>('bank-b');
  // A fresh device: same home, but no local partner cache, talking through a lying proxy.
  const proxy = await startLyingProxy(t, server);
  proxy.rewrite.set('/v1/partners', (reply: { partners: Array<{ name: string; partnerId: string }> }) => ({
    partners: reply.partners.map((p) => ({ ...p, partnerId: p.name === 'bank-a' ? rb.partnerId : p.name === 'bank-b' ? ra.partnerId : p.partnerId })),
  }));
  const fresh = join(await tempDir(t, 'kmgr-fresh-'), 'home');
  await cp(a.home, fresh, { recursive: true });
  await rm(join(fresh, 'partners.json'));
  const config = JSON.parse(await readFile(join(fresh, 'config.json'), 'utf8')) as { server: string };
  config.server = proxy.url;
  await writeFile(join(fresh, 'config.json'), JSON.stringify(config), { mode: 0o600 });
  const f = await homeFor(fresh, a.pp).run(['fetch', 'bank-a']);
  t.equal(f.code, 65, `fetch through the lying name mapping: exit 65 (${f.stderr.trim()})`);
  t.equal(f.stdoutBytes.length, 0, 'nothing on stdout');
});
