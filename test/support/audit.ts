// The audit tests' common start: a real kmgrd behind the lying test double,
// a client whose honest fetch the audit finds clean.
import type { Test } from 'tap';
import { newHome, partnerId } from './home.js';
import { startLyingProxy } from './lying-proxy.js';
import { startServer } from './server.js';

export async function auditSetup(t: Test) {
  const server = await startServer(t);
  const double = await startLyingProxy(t, server);
  const c = await newHome(t, double);
  t.equal((await c.run(['register', 'bank-a'])).code, 0, 'registered');
  const id = await partnerId(c, 'bank-a');
  const paths = { fetch: `/v1/keys/${id}/fetch`, status: `/v1/keys/${id}`, history: `/v1/keys/${id}/history?limit=1000` };
  const ok = await c.run(['fetch', 'bank-a']);
  t.equal(ok.code, 0, `an honest fetch: ${ok.stderr}`);
  const clean = await c.run(['audit', 'bank-a']);
  t.equal(clean.code, 0, `control: the audit is clean (${clean.stdout.trim()})`);
  return { server, double, c, paths };
}
