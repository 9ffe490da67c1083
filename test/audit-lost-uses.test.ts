// The audit counts refusals of every kind. A server (or a man in the middle
// with its certificate) that serves and counts a fetch but tells the client
// 429, any other error, or nothing at all, or whose reply fails the client's
// checks, must not pass the audit. Real kmgrd behind the lying test double,
// the real CLI.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { auditSetup, newIdentity, newPartnerId, signed, type Target } from './support/index.js';
import type { FetchResponse } from '../src/protocol/messages.js';
import { auditHistory } from '../src/client/audit.js';
import { publicKeyObject } from '../src/crypto/sign.js';


const sentOutcomes = async (home: string): Promise<string[]> =>
  (await readFile(join(home, 'fetch-sent.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { outcome?: string }).outcome ?? 'sent');

t.test('a use counted though the client was told 429, 503 or 401 is a finding', async (t) => {
  const { double, c, paths } = await auditSetup(t);
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
  const { double, c, paths } = await auditSetup(t);
  double.drop.add(paths.fetch);
  const dropped = await c.run(['fetch', 'bank-a']);
  t.equal(dropped.code, 69, `no answer: unavailable (${dropped.stderr.trim()})`);
  t.match(dropped.stderr, /may have counted it/, 'the error says the use may have been counted');
  double.drop.delete(paths.fetch);
  double.rewrite.set(paths.fetch, (r: FetchResponse) => {
    const b = Buffer.from(r.blob, 'base64');
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

t.test('audit: a use the server refused to this client but counts as served is reported as forged', async (t) => {
  const id = newIdentity();
  const target: Target = { url: 'https://127.0.0.1:8443', ca: '' };
  const partnerId = newPartnerId();
  const req = signed(target, id, 'POST', `/v1/keys/${partnerId}/fetch`, {});
  const h = req.headers as Record<string, string>;
  const entry = {
    seq: 1,
    at: new Date(req.params.created * 1000).toISOString(),
    keyVersion: 1,
    result: 'served' as const,
    code: null,
    overLimit: null,
    remoteAddress: '127.0.0.1',
    requester: null,
    request: {
      method: 'POST',
      authority: h.host!,
      path: `/v1/keys/${partnerId}/fetch`,
      contentDigest: h['content-digest']!,
      device: '',
      signatureInput: h['signature-input']!.slice('kmgr='.length),
      signature: /^kmgr=:(.*):$/.exec(h.signature!)![1]!,
    },
  };
  const key = publicKeyObject(id.signer.publicKey);
  const nonce = req.params.nonce;
  const clean = auditHistory([entry], partnerId, id.keyId, key, { opened: new Set([nonce]), sent: new Set([nonce]) });
  t.equal(clean[0]!.verdict, 'ours', 'control: a served use this client opened is ours');
  const lied = auditHistory([entry], partnerId, id.keyId, key, { opened: new Set(), sent: new Set([nonce]), refused: new Set([nonce]) });
  t.equal(lied[0]!.verdict, 'forged', 'refused to the client, served in the history: forged');
  const twice = auditHistory([entry, { ...entry, seq: 2 }], partnerId, id.keyId, key, { opened: new Set([nonce]), sent: new Set([nonce]) });
  t.equal(twice[1]!.verdict, 'forged', 'one signed request counted twice: forged');
});
