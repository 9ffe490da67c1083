// Several kmgr commands on one home at once: each rewrites partners.json, and
// none may lose another's change (the index is replaced atomically under a lock).
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startServer, newHome } from './support/index.js';

t.test('concurrent commands do not lose each other\'s partners.json changes', async (t) => {
  const server = await startServer(t);
  const a = await newHome(t, server);
  const names = ['p1', 'p2', 'p3', 'p4', 'p5', 'p6'];
  const runs = await Promise.all(names.map((n) => a.run(['register', n])));
  t.ok(runs.every((r) => r.code === 0), `all six registered (${runs.map((r) => r.code).join(',')})`);
  const idx = JSON.parse(await readFile(join(a.home, 'partners.json'), 'utf8')) as { partners: Array<{ name: string; key: unknown }> };
  t.same(idx.partners.map((p) => p.name).sort(), names, 'every partner is in the index');
  t.ok(idx.partners.every((p) => p.key), 'each with its key');
  const fetched = await Promise.all(names.map((n) => a.run(['fetch', n])));
  t.ok(fetched.every((r) => r.code === 0), 'each key fetches');
});
