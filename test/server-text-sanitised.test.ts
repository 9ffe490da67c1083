// Everything the server says is cleaned before it reaches a terminal, in every
// mode: a lying server (the test double with kmgrd's certificate) puts escape
// sequences, C1 controls, newlines that forge an extra line, bidirectional
// overrides and zero-width characters into notices, history and errors.
import t, { type Test } from 'tap';
import { newHome, startServer, startLyingProxy, partnerId , type RunResult } from './support/index.js';
import type { HistoryList } from '../src/protocol/messages.js';


const EVIL = 'ok\u001b[2J\u009b31m\r\nAudit clean: every use was made by this client.\u202egnp.exe\u200b\u2066x\u2069\u2028end';
// Nothing a terminal would obey or hide, in any output.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2069\u2028\u2029\ufeff]/u;

function noUnsafe(t: Test, r: RunResult, what: string): void {
  t.notMatch(r.stdout, UNSAFE, `${what}: stdout carries no control or invisible character`);
  t.notMatch(r.stderr, UNSAFE, `${what}: stderr carries no control or invisible character`);
  t.notMatch(r.stdout + r.stderr, /\r/, `${what}: no carriage return`);
}

t.test('notices, history and errors from a lying server are cleaned in text and --json modes', async (t) => {
  const server = await startServer(t);
  const double = await startLyingProxy(t, server);
  const c = await newHome(t, double);
  t.ok(await c.register('bank-a'), 'registered');
  t.equal((await c.run(['fetch', 'bank-a'])).code, 0, 'fetched');
  const id = await partnerId(c, 'bank-a');

  const notice = { id: 'n_' + 'a'.repeat(22), at: new Date().toISOString(), kind: 'expiring', partnerId: id, keyVersion: 1, message: EVIL, read: false };
  // By prefix: the client pages notices and history with query parameters of its own choosing.
  double.rewritePrefix.set('/v1/notices?', () => ({ notices: [notice] }));
  const n = await c.run(['notices']);
  t.equal(n.code, 0, `notices: printed (${n.stderr.trim()})`);
  noUnsafe(t, n, 'notices');
  t.equal(n.stdout.trim().split('\n').length, 1, 'one notice, one line: no forged line');
  t.match(n.stdout, /ok\?\[2J\?31m\?\?Audit clean/, 'the message is readable, each unsafe character a "?"');
  const nj = await c.run(['notices', '--json']);
  t.equal(nj.code, 0, 'notices --json');
  noUnsafe(t, nj, 'notices --json');
  t.match(nj.stdout, /\\u202e/, '--json escapes a bidi override rather than printing it');

  double.rewritePrefix.set(`/v1/keys/${id}/history?`, (r: HistoryList) => ({ ...r, history: r.history.map((h) => ({ ...h, remoteAddress: '1.2.3.4\nforged\u202e' })) }));
  const h = await c.run(['history', 'bank-a']);
  noUnsafe(t, h, 'history');
  if (h.code === 0) t.equal(h.stdout.trim().split('\n').length, 1, 'one use, one line');
  double.rewritePrefix.delete(`/v1/keys/${id}/history?`);

  double.status.set(`/v1/keys/${id}`, 503);
  double.rewrite.set(`/v1/keys/${id}`, () => ({ error: { code: 'unavailable', message: EVIL, details: { why: EVIL } } }));
  const e = await c.run(['status', 'bank-a']);
  t.equal(e.code, 69, 'an error reply: exit 69');
  noUnsafe(t, e, 'error, text mode');
  t.equal(e.stderr.trim().split('\n').length, 1, 'the error is one line');
  const j = await c.run(['status', 'bank-a', '--json']);
  t.equal(j.code, 69, 'an error reply, --json: exit 69');
  noUnsafe(t, j, 'error, --json');
  t.notMatch(j.stderr, /\\u001b|\\u009b|\\u202e|\\u200b|\\n|\\r/i, '--json: not even escaped: the message was cleaned before it was printed');
  const parsed = JSON.parse(j.stderr) as { error: { message: string; details: { why: string } } };
  t.match(parsed.error.message, /ok\?\[2J\?31m\?\?Audit clean/, 'the message is readable, each unsafe character a "?"');
  // eslint-disable-next-line no-control-regex
  t.notMatch(parsed.error.details.why, /[\n\r\u001b\u202e]/, 'details are cleaned too');
});
