// Use terms through the real CLI against a real kmgrd: status, terms (deny
// versus notify), lock/unlock, history, notices, and `kmgrd check-terms` with
// and without a running daemon. Audit, rotate and passwd (with its crash
// safety) are in terms-cli-renewal.test.ts.
import t from 'tap';
import { connect } from 'node:net';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startServer, zoneAtNoon, kmgrd, newHome, ownerView, rawIdentity, ok, refused77, send, signed, type Target, type HistoryJson, type HistoryJsonEntry, type NoticesJson, type StatusJson } from './support/index.js';

t.test('status --json, terms (a limit of none removes it), deny versus notify', async (t) => {
  const server = await startServer(t, { tz: zoneAtNoon() });
  const a = await newHome(t, server);
  const reg = await a.register<StatusJson>('bank-a', { maxUses: 2 });
  const id = reg.partnerId;
  const view = await ownerView(a);

  let st = await a.json<StatusJson>(['status', 'bank-a']);
  t.same(st.uses, { total: 0, day: 0, week: 0, month: 0 }, 'status --json: uses.total/day/week/month start at zero');
  t.same(st.limits, { total: 2, day: null, week: null, month: null }, 'limits: the one set, null where unset');
  t.equal(st.expiresAt, null, 'expiresAt null without a term');
  t.equal(st.inhibited, false, 'inhibited false');
  t.equal(st.lastUsedAt, null, 'lastUsedAt null before any use');
  t.equal(st.keyVersion, 1, 'keyVersion 1');
  t.equal(st.onLimit, 'deny', 'onLimit defaults to deny');

  const f1 = await a.run(['fetch', 'bank-a']);
  ok(t, f1, 'fetch 1');
  t.match(f1.stderr, /1 use left of its total limit of 2/, 'fetch warns on stderr when the key is near its limit');
  ok(t, await a.run(['fetch', 'bank-a']), 'fetch 2');
  st = await a.json<StatusJson>(['status', 'bank-a']);
  t.same(st.uses, { total: 2, day: 2, week: 2, month: 2 }, 'two uses counted in every period');
  t.equal(typeof st.lastUsedAt, 'string', 'lastUsedAt set');
  t.equal(st.lastUsedAt, (await view.history(id))[0]?.at, 'lastUsedAt is the time of the newest history entry');

  refused77(t, await a.run(['--json', 'fetch', 'bank-a']), 'terms_max_uses', 'fetch 3 past --max-uses 2 (deny)');
  t.equal((await view.status(id)).uses.total, 2, 'the refused fetch was not counted');

  const changed = await a.json<StatusJson>(['terms', 'bank-a', '--max-uses', 'none', '--max-per-day', '3', '--max-per-week', '10', '--max-per-month', '20']);
  t.same(changed.limits, { total: null, day: 3, week: 10, month: 20 }, 'terms --json prints the new limits; --max-uses none removed the total');
  t.same((await view.status(id)).limits, { total: null, day: 3, week: 10, month: 20 }, 'the server agrees');
  t.equal((await a.run(['terms', 'bank-a'])).code, 64, 'terms with nothing to change: usage error 64');

  ok(t, await a.run(['fetch', 'bank-a']), 'fetch 3 (total limit removed): served, reaching the day limit of 3');
  refused77(t, await a.run(['--json', 'fetch', 'bank-a']), 'terms_max_per_day', 'fetch 4 past --max-per-day 3 (deny)');

  t.equal((await a.json<StatusJson>(['terms', 'bank-a', '--on-limit', 'notify'])).onLimit, 'notify', 'terms --on-limit notify');
  const over = await a.run(['fetch', 'bank-a']);
  ok(t, over, 'fetch past the day limit under notify');
  t.match(over.stdout, /BEGIN PRIVATE KEY/, 'the key is still served');
  t.match(over.stderr, /past its day limit/, 'with a warning on stderr');
  t.equal((await view.status(id)).uses.day, 4, 'the overuse is counted (4 of 3 today)');
  const newest = (await view.history(id))[0];
  t.equal(newest?.result, 'served_over_limit', 'history records served_over_limit');
  t.same(newest?.overLimit, ['day'], 'and which limit was passed');
  const notices = await view.notices();
  t.same(notices.filter((n) => n.kind === 'limit_passed').map((n) => n.partnerId), [id], 'one limit_passed notice, for bank-a');
  t.same(notices.filter((n) => n.kind === 'limit_reached').length, 2, 'limit_reached notices for the total (2) and the day (3)');
  t.same(notices.filter((n) => n.kind === 'refused_attempt').length, 2, 'a refused_attempt notice for each refusal reason');
});

t.test('lock, unlock, history --since/--limit, notices --ack/--all', async (t) => {
  const server = await startServer(t, { tz: zoneAtNoon() });
  const a = await newHome(t, server);
  const id = (await a.register<StatusJson>('shop')).partnerId;
  const view = await ownerView(a);
  ok(t, await a.run(['fetch', 'shop']), 'fetch');

  const locked = await a.run(['lock', 'shop']);
  ok(t, locked, 'lock');
  t.match(locked.stdout, /Locked shop/, 'lock says so');
  t.equal((await view.status(id)).inhibited, true, 'status: inhibited');
  const plain = await a.run(['fetch', 'shop']);
  t.equal(plain.code, 77, 'fetch of a locked key: exit 77');
  t.equal(plain.stdoutBytes.length, 0, 'nothing on stdout');
  t.match(plain.stderr, /locked/, 'with a clear message');
  refused77(t, await a.run(['--json', 'fetch', 'shop']), 'terms_inhibited', 'again, with --json');

  const h = (await a.json<HistoryJson>(['history', 'shop'])).history;
  t.same(h.map((e) => e.result), ['refused', 'refused', 'served'], 'history --json: the use and the refusals, newest first');
  t.same(h.map((e) => e.seq), [3, 2, 1], 'by sequence number');
  t.same(h.map((e) => e.code), ['terms_inhibited', 'terms_inhibited', null], 'each refusal with its reason');
  t.ok(h.every((e) => /^(::ffff:)?127\.0\.0\.1$/.test(e.remoteAddress)), 'and where each came from');
  t.ok(h.every((e) => e.device === 'primary' && e.keyVersion === 1 && typeof e.at === 'string'), 'from which device, at which version and time');
  const unreadJ = (await a.json<NoticesJson>(['notices'])).notices;
  const refusedNotice = unreadJ.filter((n) => n.kind === 'refused_attempt');
  t.equal(refusedNotice.length, 1, 'notices --json: one refused_attempt notice (the same refusal twice in a day is one fact)');
  t.equal(refusedNotice[0]?.partner, 'shop', 'naming the partner');
  t.match(refusedNotice[0]?.message, /shop.*locked/, 'and saying why');

  ok(t, await a.run(['unlock', 'shop']), 'unlock');
  t.equal((await view.status(id)).inhibited, false, 'status: permitted');
  ok(t, await a.run(['fetch', 'shop']), 'fetch after unlock is served');

  const all = (await view.history(id)).map((e) => ({ seq: e.seq, at: e.at, result: e.result }));
  t.equal(all.length, 4, 'four entries now');
  const pick = (list: HistoryJsonEntry[]) => list.map((e) => ({ seq: e.seq, at: e.at, result: e.result }));
  t.same(pick((await a.json<HistoryJson>(['history', 'shop', '--limit', '2'])).history), all.slice(0, 2), '--limit 2: the two newest');
  const since = all[2]!.at;
  const fromSince = pick((await a.json<HistoryJson>(['history', 'shop', '--since', since])).history);
  t.same(fromSince, all.filter((e) => e.at >= since), `--since ${since}: exactly the entries at or after it`);
  t.ok(fromSince.length >= 3 && fromSince.length < all.length, 'the three newest (or more at the same millisecond), not all');
  t.equal((await a.run(['history', 'shop', '--since', 'yesterday'])).code, 64, '--since with a bad date: 64');

  const unread = await view.notices();
  t.ok(unread.length >= 1 && unread.every((n) => !n.read), `unread notices (${unread.length})`);
  const acked = await a.json<NoticesJson>(['notices', '--ack']);
  t.equal(acked.acknowledged, unread.length, '--ack marks every listed notice read');
  const text = await a.run(['notices']);
  t.match(text.stdout, /No unread notices/, 'then no unread notices');
  t.same((await view.notices()).length, 0, '(none unread at the server)');
  const withRead = (await a.json<NoticesJson>(['notices', '--all'])).notices;
  t.same(withRead.map((n) => n.id).sort(), unread.map((n) => n.id).sort(), '--all shows the read ones');
  t.ok(withRead.every((n) => n.read === true), 'marked read');
});

interface Finding {
  kind: string;
  personId: string;
  partnerId: string;
  keyVersion: number;
  expiresAt: string;
  isNew: boolean;
}

t.test('kmgrd check-terms while the daemon runs (admin socket): once, idempotent, --all, --at', async (t) => {
  const server = await startServer(t);
  const a = await newHome(t, server);
  const soon = await a.register<StatusJson>('soon', { validFor: '3d' });
  const later = await a.register<StatusJson>('later', { validFor: '60d' });
  const view = await ownerView(a);

  const first = await kmgrd(['check-terms', '--data', server.dataDir]);
  ok(t, first, 'check-terms');
  const lines = first.stdout.split('\n').filter(Boolean);
  t.equal(lines.length, 1, 'one line: the key expiring within 14 days');
  t.match(lines[0], new RegExp(`^expiring\\t${a.personId}\\t${soon.partnerId}\\tv1\\t${soon.expiresAt}\\t`), 'kind, person, partner, version, expiry');
  const second = await kmgrd(['check-terms', '--data', server.dataDir]);
  ok(t, second, 'check-terms again');
  t.equal(second.stdout, '', 'a second run prints nothing new');
  const again = await kmgrd(['check-terms', '--data', server.dataDir, '--all']);
  t.equal(again.stdout, first.stdout, '--all prints the finding again');
  const js = JSON.parse((await kmgrd(['check-terms', '--data', server.dataDir, '--all', '--json'])).stdout);
  t.equal(js.via, 'daemon', '--json: the running daemon answered over its admin socket');
  t.equal((await stat(join(server.dataDir, 'admin.sock'))).mode & 0o777, 0o600, 'the admin socket is mode 0600');
  t.same(js.findings.map((f: Finding) => [f.kind, f.partnerId, f.keyVersion, f.isNew, f.expiresAt]), [['expiring', soon.partnerId, 1, false, soon.expiresAt]], 'the one finding, no longer new');

  const expiring = ((await a.json<NoticesJson>(['notices'])).notices).filter((n) => n.kind === 'expiring');
  t.equal(expiring.length, 1, "the owner's kmgr notices shows exactly one expiring notice");
  t.equal(expiring[0]?.partner, 'soon', 'for soon');

  const far = JSON.parse((await kmgrd(['check-terms', '--data', server.dataDir, '--at', '2099-01-01T00:00:00Z', '--json'])).stdout);
  t.equal(far.at, '2099-01-01T00:00:00.000Z', '--at: judged as of that time');
  t.same(
    (far.findings as Finding[]).map((f) => [f.kind, f.partnerId, f.isNew]).sort(),
    [['expired', soon.partnerId, true], ['expired', later.partnerId, true]].sort(),
    'far in the future both terms are expired, reported as new',
  );
  t.equal(far.recorded, false, '--at reports only');
  const farAgain = await kmgrd(['check-terms', '--data', server.dataDir, '--at', '2099-01-01T00:00:00Z']);
  t.equal(farAgain.stdout.split('\n').filter(Boolean).length, 2, 'and reports the same again: nothing was recorded');
  t.match(farAgain.stderr, /nothing was recorded/, 'saying so');
  t.same((await view.notices()).map((n) => n.kind).sort(), ['expiring'], 'notices: still exactly one expiring, no false "expired"');
  t.equal((await kmgrd(['check-terms', '--data', server.dataDir, '--warn-before', 'soon'])).code, 64, 'a bad --warn-before: 64');

  const warned = await a.run(['fetch', 'soon']);
  ok(t, warned, 'fetch of the key expiring in 3 days');
  t.match(warned.stderr, new RegExp(`soon: the key expires at ${soon.expiresAt}`), 'with a warning on stderr');
  // Four days on (the server's clock; the request signed at that time): the key is refused, and that is recorded.
  server.clock.now = Date.now() + 4 * 86_400_000;
  const target: Target = { url: server.url, ca: server.ca };
  const late = await send(target, signed(target, await rawIdentity(a), 'POST', `/v1/keys/${soon.partnerId}/fetch`, {}, { created: Math.floor(server.clock.now / 1000) }));
  server.clock.now = undefined;
  t.equal(late.status, 403, 'a fetch after the term: 403');
  t.equal(late.json?.error?.code, 'terms_expired', 'terms_expired');
  t.same((await view.history(soon.partnerId)).map((h) => [h.result, h.code]), [['refused', 'terms_expired'], ['served', null]], 'the refusal is in the history');
  const refusedN = (await view.notices()).filter((n) => n.kind === 'refused_attempt');
  t.equal(refusedN.length, 1, 'and a refused_attempt notice');
  t.match(refusedN[0]?.message, /expired/, 'saying the key expired');
});

t.test('kmgrd check-terms with no daemon running opens the database itself; run twice records nothing twice', async (t) => {
  const server = await startServer(t);
  const a = await newHome(t, server);
  const soon = await a.register<StatusJson>('soon', { validFor: '3d' });
  const week = await a.register<StatusJson>('week', { validFor: '10d' });
  await server.stop();

  const first = JSON.parse((await kmgrd(['check-terms', '--data', server.dataDir, '--json'])).stdout);
  t.equal(first.via, 'database', 'no daemon: check-terms opened the database');
  t.same(
    (first.findings as Finding[]).map((f) => [f.kind, f.partnerId, f.isNew]).sort(),
    [['expiring', soon.partnerId, true], ['expiring', week.partnerId, true]].sort(),
    'two keys expiring within 14 days, both new',
  );
  const second = await kmgrd(['check-terms', '--data', server.dataDir]);
  ok(t, second, 'second run');
  t.equal(second.stdout, '', 'prints nothing new');
  const all = JSON.parse((await kmgrd(['check-terms', '--data', server.dataDir, '--all', '--json'])).stdout);
  t.equal(all.via, 'database', 'still via the database');
  t.same((all.findings as Finding[]).map((f) => f.isNew), [false, false], '--all: both findings, neither new');

  // The daemon again (on a new port: the client's config is pointed at it): the notices were recorded once.
  const again = await startServer(t, { dataDir: server.dataDir });
  const configPath = join(a.home, 'config.json');
  await writeFile(configPath, JSON.stringify({ ...JSON.parse(await readFile(configPath, 'utf8')), server: again.url }, null, 2) + '\n', { mode: 0o600 });
  const notices = (await a.json<NoticesJson>(['notices'])).notices;
  t.same(notices.map((n) => [n.kind, n.partner]).sort(), [['expiring', 'soon'], ['expiring', 'week']], 'exactly one expiring notice per key');
  // Loading a key into the daemon reads its recorded findings: the daemon agrees nothing is new.
  const view = await ownerView(a);
  await view.status(soon.partnerId);
  const viaDaemon = JSON.parse((await kmgrd(['check-terms', '--data', server.dataDir, '--json'])).stdout);
  t.equal(viaDaemon.via, 'daemon', 'with the daemon back, it answers');
  t.same(viaDaemon.findings, [], 'and finds nothing new');
  t.equal((await view.notices(false)).length, 2, 'still two notices');
});

t.test('kmgrd check-terms: two runs at the same moment (overlapping cron jobs) record each finding once', async (t) => {
  const first = await startServer(t);
  const a = await newHome(t, first);
  const ids: string[] = [];
  for (const name of ['k1', 'k2', 'k3']) ids.push((await a.register<StatusJson>(name, { validFor: '3d' })).partnerId);
  // A daemon restarted since the keys were registered: it has not loaded them yet (the usual state for cron).
  await first.stop();
  const server = await startServer(t, { dataDir: first.dataDir });
  const view = await ownerView(a);
  view.session.endpoint = { ...view.session.endpoint, server: server.url };
  // What `kmgrd check-terms` sends over the admin socket, twice, at the same moment.
  const sock = join(server.dataDir, 'admin.sock');
  const run = (): Promise<{ ok: { findings: Finding[] } }> =>
    new Promise((resolve, reject) => {
      const c = connect(sock);
      let buf = '';
      c.setEncoding('utf8');
      c.on('connect', () => c.write(JSON.stringify({ op: 'check-terms', warnMs: 14 * 86_400_000 }) + '\n'));
      c.on('data', (d: string) => (buf += d));
      c.on('end', () => resolve(JSON.parse(buf)));
      c.on('error', reject);
    });
  const [r1, r2] = await Promise.all([run(), run()]);
  const isNew = [...r1.ok.findings, ...r2.ok.findings].filter((f: Finding) => f.isNew).map((f: Finding) => f.partnerId).sort();
  t.same(isNew, [...ids].sort(), 'each finding is new in exactly one of the two runs');
  const notices = await view.notices(false);
  t.equal(notices.length, 3, `three expiring notices recorded, not more (got ${notices.length})`);
});
