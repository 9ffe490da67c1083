import t from 'tap';
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { startServer, initClient } from './helpers.js';

t.test('init, register, fetch: the key printed by fetch signs for the public key register printed', async (t) => {
  const server = await startServer(t);
  const c = await initClient(t, server);
  const reg = await c.run(['register', 'bank-a', '--expires', '2099-06-30', '--max-uses', '1000', '--max-per-day', '50']);
  t.equal(reg.code, 0, reg.stderr);
  const pub = createPublicKey(reg.stdout);
  const f = await c.run(['fetch', 'bank-a']);
  t.equal(f.code, 0, f.stderr);
  const priv = createPrivateKey(f.stdout);
  const msg = Buffer.from('transfer 100 to bank-a');
  t.ok(verify(null, msg, pub, sign(null, msg, priv)), 'signature verifies against the registered public key');
});
