// The audit notices lost uses: every use this client was served (its fetch
// log) must be in the server's history with the same nonce and key version.
// A server that hides a use from both its counter and its history (as a
// restore or a damaged log would), or moves it to another version, fails the
// audit. Real kmgrd behind the lying test double, the real CLI.
import t from 'tap';
import { auditSetup } from './support/index.js';
import type { HistoryList, KeyStatus } from '../src/protocol/messages.js';


t.test("a use this client was served that the server's history lacks, or moved to another version, is a finding", async (t) => {
  const { double, c, paths } = await auditSetup(t);
  t.equal((await c.run(['fetch', 'bank-a'])).code, 0, 'a second honest fetch');
  // The server hides the newest use from both its history and its counter (as a restore would).
  double.rewrite.set(paths.history, (r: HistoryList) => ({ ...r, history: r.history.slice(1) }));
  double.rewrite.set(paths.status, (r: KeyStatus) => ({ ...r, uses: { ...r.uses, total: r.uses.total - 1, day: r.uses.day - 1, week: r.uses.week - 1, month: r.uses.month - 1 } }));
  const hidden = await c.run(['audit', 'bank-a']);
  t.equal(hidden.code, 1, `the audit fails (${hidden.stdout.trim()})`);
  t.match(hidden.stdout, /the server's history lacks 1 of this client's uses/, 'the hidden use is reported');
  t.notMatch(hidden.stdout, /COUNT/, 'the counter agrees with the lying history: only the reverse check catches it');
  const json = await c.run(['audit', 'bank-a', '--json']);
  const report = JSON.parse(json.stdout) as { partners: Array<{ missing: Array<{ why: string }> }> };
  t.equal(report.partners[0]!.missing.length, 1, '--json lists the missing use');
  double.rewrite.set(paths.history, (r: HistoryList) => ({ ...r, history: r.history.map((h, i) => (i === 0 ? { ...h, keyVersion: 2 } : h)) }));
  double.rewrite.delete(paths.status);
  const moved = await c.run(['audit', 'bank-a']);
  t.equal(moved.code, 1, 'a use moved to another version: the audit fails');
  t.match(moved.stdout, /lacks 1 of this client's uses[\s\S]*recorded as a use of version 2, not 1/, 'and says where it went');
  double.rewrite.delete(paths.history);
  t.equal((await c.run(['audit', 'bank-a'])).code, 0, 'control: the honest history is clean again');
});
