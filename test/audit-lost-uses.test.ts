// The audit counts refusals of every kind and notices lost uses. A server (or
// a man in the middle with its certificate) that serves and counts a fetch
// but tells the client 429, any other error, or nothing at all, or whose reply
// fails the client's checks, must not pass the audit; nor may a server whose
// history lacks a use this client was served, or records it under another key
// version. Real kmgrd behind the lying test double, the real CLI.
import t, { type Test } from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initClient, startServer, type TestServer } from './helpers.js';
import { startLyingProxy } from './lying-proxy.js';
import { partnerId } from './cli-util.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

async function setup(t: Test) {
  const server = await startServer(t);
  const double = await startLyingProxy(t, server);
  const c = await initClient(t, { url: double.url, ca: double.ca } as TestServer);
  t.equal((await c.run(['register', 'bank-a'])).code, 0, 'registered');
  const id = await partnerId(c, 'bank-a');
  const paths = { fetch: `/v1/keys/${id}/fetch`, status: `/v1/keys/${id}`, history: `/v1/keys/${id}/history?limit=1000` };
  const ok = await c.run(['fetch', 'bank-a']);
  t.equal(ok.code, 0, `an honest fetch: ${ok.stderr}`);
  const clean = await c.run(['audit', 'bank-a']);
  t.equal(clean.code, 0, `control: the audit is clean (${clean.stdout.trim()})`);
  return { server, double, c, paths };
}

const sentOutcomes = async (home: string): Promise<string[]> =>
  (await readFile(join(home, 'fetch-sent.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { outcome?: string }).outcome ?? 'sent');

t.test('a use counted though the client was told 429, 503 or 401 is a finding', async (t) => {
  const { double, c, paths } = await setup(t);
  for (const [status, code] of [[429, 'rate_limited'], [503, 'unavailable'], [401, 'auth_replay']] as const) {
    double.status.set(paths.fetch, status);
    double.rewrite.set(paths.fetch, () => ({ error: { code, message: 'no' } }));
    const f = await c.run(['fetch', 'bank-a']);
    t.not(f.code, 0, `told ${status}: the fetch fails (${f.stderr.trim()})`);
    t.equal(f.stdoutBytes.length, 0, 'nothing on stdout');
  }
  double.status.delete(paths.fetch);
  double.rewrite.delete(paths.fetch);
  t.same((await sentOutcomes(c.home)).filter((o) => o === 'refused').length, 3, 'each refusal is remembered in the sent log');
  const a = await c.run(['audit', 'bank-a']);
  t.equal(a.code, 1, `the audit fails (${a.stdout.trim()})`);
  t.equal((a.stdout.match(/FORGED .*the server refused this request, yet counts it as a use/g) ?? []).length, 3, 'each of the three is reported');
});

t.test('a use counted though no answer arrived, or the reply failed its checks, is a finding', async (t) => {
  const { double, c, paths } = await setup(t);
  double.drop.add(paths.fetch);
  const dropped = await c.run(['fetch', 'bank-a']);
  t.equal(dropped.code, 69, `no answer: unavailable (${dropped.stderr.trim()})`);
  t.match(dropped.stderr, /may have counted it/, 'the error says the use may have been counted');
  double.drop.delete(paths.fetch);
  double.rewrite.set(paths.fetch, (r: Json) => {
    const b = Buffer.from(r.blob as string, 'base64');
    b[b.length - 1]! ^= 1;
    return { ...r, blob: b.toString('base64') };
  });
  const altered = await c.run(['fetch', 'bank-a']);
  t.equal(altered.code, 65, `an altered blob: refused (${altered.stderr.trim()})`);
  double.rewrite.delete(paths.fetch);
  t.same((await sentOutcomes(c.home)).filter((o) => o !== 'sent'), ['unanswered', 'rejected'], 'the sent log says what became of each');
  const a = await c.run(['audit', 'bank-a', '--json']);
  t.equal(a.code, 1, 'the audit fails');
  const report = JSON.parse(a.stdout) as { clean: boolean; partners: Array<{ findings: Array<{ verdict: string; why: string }> }> };
  t.equal(report.clean, false, 'not clean');
  const whys = report.partners[0]!.findings.map((f) => `${f.verdict}: ${f.why}`);
  t.match(whys.join('\n'), /undelivered: this client got no answer/, 'the unanswered use is reported');
  t.match(whys.join('\n'), /undelivered: this client rejected the reply/, 'the rejected use is reported');
});

t.test("a use this client was served that the server's history lacks, or moved to another version, is a finding", async (t) => {
  const { double, c, paths } = await setup(t);
  t.equal((await c.run(['fetch', 'bank-a'])).code, 0, 'a second honest fetch');
  // The server hides the newest use from both its history and its counter (as a restore would).
  double.rewrite.set(paths.history, (r: Json) => ({ ...r, history: (r.history as Json[]).slice(1) }));
  double.rewrite.set(paths.status, (r: Json) => ({ ...r, uses: { ...r.uses, total: r.uses.total - 1, day: r.uses.day - 1, week: r.uses.week - 1, month: r.uses.month - 1 } }));
  const hidden = await c.run(['audit', 'bank-a']);
  t.equal(hidden.code, 1, `the audit fails (${hidden.stdout.trim()})`);
  t.match(hidden.stdout, /the server's history lacks 1 of this client's uses/, 'the hidden use is reported');
  t.notMatch(hidden.stdout, /COUNT/, 'the counter agrees with the lying history: only the reverse check catches it');
  const json = await c.run(['audit', 'bank-a', '--json']);
  const report = JSON.parse(json.stdout) as { partners: Array<{ missing: Array<{ why: string }> }> };
  t.equal(report.partners[0]!.missing.length, 1, '--json lists the missing use');
  double.rewrite.set(paths.history, (r: Json) => ({ ...r, history: (r.history as Json[]).map((h, i) => (i === 0 ? { ...h, keyVersion: 2 } : h)) }));
  double.rewrite.delete(paths.status);
  const moved = await c.run(['audit', 'bank-a']);
  t.equal(moved.code, 1, 'a use moved to another version: the audit fails');
  t.match(moved.stdout, /lacks 1 of this client's uses[\s\S]*recorded as a use of version 2, not 1/, 'and says where it went');
  double.rewrite.delete(paths.history);
  t.equal((await c.run(['audit', 'bank-a'])).code, 0, 'control: the honest history is clean again');
});
