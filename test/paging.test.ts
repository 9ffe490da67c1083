// Replies stay bounded however much data there is: history, keys and notices
// come in pages with a default and a ceiling, and the client pages through a
// hostile server's history without being driven on forever.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { newHome, startServer, startLyingProxy, ownerView, enrol, newIdentity, newPartnerId, register, registerBody, send, signed, type RawReply, type Target } from './support/index.js';
import type { HistoryList, NoticeList, KeyStatus, KeyList } from '../src/protocol/messages.js';
import { HISTORY_CLIENT_MAX } from '../src/client/api.js';

t.test('history pages by default (100), refuses pages over 5000, and the client pages through', async (t) => {
  const server = await startServer(t);
  const target: Target = { url: server.url, ca: server.ca };
  const id = newIdentity();
  t.equal((await enrol(target, id)).status, 201);
  const partner = newPartnerId();
  t.equal((await register(target, id, partner)).status, 201);
  for (let i = 0; i < 12; i++) {
    const replies = await Promise.all(Array.from({ length: 10 }, () => send(target, signed(target, id, 'POST', `/v1/keys/${partner}/fetch`, {}))));
    t.ok(replies.every((r) => r.status === 200));
  }
  const page = await send<HistoryList>(target, signed(target, id, 'GET', `/v1/keys/${partner}/history`));
  t.equal(page.status, 200);
  t.equal(page.json.history.length, 100, 'without limit, one page of 100');
  t.equal(page.json.history[0]?.seq, 120, 'newest first');
  const older = await send<HistoryList>(target, signed(target, id, 'GET', `/v1/keys/${partner}/history?before=21`));
  t.same(older.json.history.map((h) => h.seq), Array.from({ length: 20 }, (_, i) => 20 - i), 'before pages back');
  t.equal((await send(target, signed(target, id, 'GET', `/v1/keys/${partner}/history?limit=5000`))).status, 200);
  const tooMany = await send(target, signed(target, id, 'GET', `/v1/keys/${partner}/history?limit=5001`));
  t.equal(tooMany.status, 400);
  t.match(tooMany.json.error?.message, /1 to 5000/);
  const status = await send<KeyStatus>(target, signed(target, id, 'GET', `/v1/keys/${partner}`));
  t.equal(status.json.historySeq, 120, "the key's status shows its history counter");
});

t.test('GET /v1/keys and GET /v1/notices are paged with a cursor', async (t) => {
  const server = await startServer(t);
  const target: Target = { url: server.url, ca: server.ca };
  const id = newIdentity();
  t.equal((await enrol(target, id)).status, 201);
  const partners = Array.from({ length: 5 }, newPartnerId);
  for (const p of partners) {
    const body = registerBody({ terms: { expiresAt: null, maxUses: 1, maxPerDay: null, maxPerWeek: null, maxPerMonth: null, onLimit: 'deny' } });
    t.equal((await register(target, id, p, body)).status, 201);
    // One use reaches the limit (a notice), the second is refused (another notice).
    await send(target, signed(target, id, 'POST', `/v1/keys/${p}/fetch`, {}));
    await send(target, signed(target, id, 'POST', `/v1/keys/${p}/fetch`, {}));
  }
  const seen: string[] = [];
  let after: string | null = null;
  let pages = 0;
  do {
    const r: RawReply<KeyList> = await send(target, signed(target, id, 'GET', `/v1/keys?limit=2${after ? `&after=${after}` : ''}`));
    t.equal(r.status, 200);
    t.ok(r.json.keys.length <= 2);
    seen.push(...r.json.keys.map((k) => k.partnerId));
    after = r.json.next ?? null;
    pages++;
  } while (after);
  t.equal(pages, 3, 'five keys in pages of two');
  t.same(seen, [...partners].sort(), 'every key once, in partner ID order');
  t.equal((await send<KeyList>(target, signed(target, id, 'GET', '/v1/keys'))).json.keys.length, 5, 'the default page holds them all');
  t.equal((await send(target, signed(target, id, 'GET', '/v1/keys?limit=1001'))).status, 400, 'at most 1000 a page');
  t.equal((await send(target, signed(target, id, 'GET', '/v1/keys?after=..'))).status, 400);

  const ids: string[] = [];
  let before: string | null = null;
  do {
    const r: RawReply<NoticeList> = await send(target, signed(target, id, 'GET', `/v1/notices?limit=3${before ? `&before=${before}` : ''}`));
    t.equal(r.status, 200);
    ids.push(...r.json.notices.map((n) => n.id));
    before = r.json.next ?? null;
  } while (before);
  t.equal(ids.length, 10, 'ten notices over the pages');
  t.same(ids, [...ids].sort().reverse(), 'newest first, none twice');
  t.equal(new Set(ids).size, 10);
  t.equal((await send(target, signed(target, id, 'GET', '/v1/notices?limit=1001'))).status, 400);
});

t.test('the client pages through history in several pages and stops at the oldest entry', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.ok(await c.register('bank-a'));
  for (let i = 0; i < 7; i++) t.equal((await c.run(['fetch', 'bank-a'])).code, 0);
  const view = await ownerView(c);
  const idx = JSON.parse(await readFile(join(c.home, 'partners.json'), 'utf8')) as { partners: Array<{ id: string; name: string }> };
  const id = idx.partners.find((p) => p.name === 'bank-a')!.id;
  const all = await view.history(id, { pageSize: 2 });
  t.same(all.map((h) => h.seq), [7, 6, 5, 4, 3, 2, 1], 'seven entries over four pages, in order');
  const r = await c.run(['history', 'bank-a', '--json']);
  t.equal(r.code, 0);
  t.equal(JSON.parse(r.stdout).history.length, 7, 'kmgr history shows them all');
});

t.test('a hostile server cannot page the client forever: sequence numbers bounded by the counter, the total capped', async (t) => {
  const server = await startServer(t);
  const proxy = await startLyingProxy(t, server);
  const c = await newHome(t, proxy);
  t.ok(await c.register('bank-a'));
  t.equal((await c.run(['fetch', 'bank-a'])).code, 0);
  const idx = JSON.parse(await readFile(join(c.home, 'partners.json'), 'utf8')) as { partners: Array<{ id: string; name: string }> };
  const id = idx.partners.find((p) => p.name === 'bank-a')!.id;
  const histPrefix = `/v1/keys/${id}/history?`;
  // Full pages of invented entries, each page going back from `before` (or from 10^12).
  let pagesServed = 0;
  proxy.rewritePrefix.set(histPrefix, (_reply: HistoryList, path: string) => {
    pagesServed++;
    const q = new URLSearchParams(path.slice(path.indexOf('?')));
    const limit = Number(q.get('limit'));
    const top = q.has('before') ? Number(q.get('before')) - 1 : 1e12;
    return {
      history: Array.from({ length: limit }, (_, i) => ({
        seq: top - i, at: new Date().toISOString(), keyVersion: 1, result: 'verify', code: 'match', overLimit: null,
        remoteAddress: '192.0.2.1', requester: 'x', request: null,
      })),
    };
  });
  const claimed = await c.run(['history', 'bank-a']);
  t.equal(claimed.code, 65, `entries beyond the key's counter are an integrity error (got ${claimed.code}: ${claimed.stderr.trim()})`);
  t.match(claimed.stderr, /beyond the key's counter/);
  t.equal(pagesServed, 1, 'detected on the first page');
  const audit = await c.run(['audit', 'bank-a']);
  t.equal(audit.code, 65, `kmgr audit too (got ${audit.code}: ${audit.stderr.trim()})`);

  // The server lies about the counter as well: then the total cap stops the client.
  proxy.rewrite.set(`/v1/keys/${id}`, (s: KeyStatus) => ({ ...s, historySeq: 1e12 }));
  pagesServed = 0;
  const capped = await c.run(['history', 'bank-a']);
  t.equal(capped.code, 64, `the total is capped (got ${capped.code}: ${capped.stderr.trim().slice(0, 200)})`);
  t.match(capped.stderr, new RegExp(`more than ${HISTORY_CLIENT_MAX} entries`));
  t.equal(pagesServed, HISTORY_CLIENT_MAX / 1000, 'it read exactly up to the cap, then stopped');
});
