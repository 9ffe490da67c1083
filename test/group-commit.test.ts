// Group commit (src/store/group-commit.ts) on a real LevelDB: every caller is
// answered only after its write is on disk, and a group keeps only the last
// write to each key, which must leave the database as writing them all would.
import t from 'tap';
import { Level } from 'level';
import { join } from 'node:path';
import { coalesce, GroupCommit, type Op } from '../src/store/group-commit.js';
import { tempDir } from './support/index.js';

const put = (key: string, value: string): Op => ({ type: 'put', key, value });

t.test('coalesce keeps the last op for each key, in first-seen order', async (t) => {
  const out = coalesce([
    { ops: [put('a', '1'), put('b', '1')] },
    { ops: [put('a', '2')] },
    { ops: [{ type: 'del', key: 'c' }] },
    { ops: [put('b', '2'), put('a', '3'), put('c', 'back')] },
  ]);
  t.same(out, [put('a', '3'), put('b', '2'), put('c', 'back')]);
  t.same(coalesce([{ ops: [put('x', '1')] }, { ops: [{ type: 'del', key: 'x' }] }]), [{ type: 'del', key: 'x' }], 'a delete after a put wins');
  t.same(coalesce([]), []);
});

t.test('concurrent commits to one counter: one synced write per group, the database as if each were written', async (t) => {
  const dir = await tempDir(t);
  const db = new Level<string, string>(join(dir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  await db.open();
  t.teardown(() => db.close());
  const writes: number[] = [];
  const gc = new GroupCommit(async (ops) => {
    writes.push(ops.length);
    await db.batch(ops as never, { sync: true });
  });

  // What 50 fetches of one key submit: the key's counters (cumulative) and a history record each.
  const N = 50;
  const acked: number[] = [];
  const all = [];
  for (let i = 1; i <= N; i++) {
    all.push(gc.commit([put('ctr!k', JSON.stringify({ uses: i })), put(`hist!k!${String(i).padStart(4, '0')}`, `use ${i}`)]).then(() => acked.push(i)));
  }
  await Promise.all(all);
  t.equal(acked.length, N, 'every caller answered');
  t.same(writes, [2, (N - 1) + 1], 'the first alone; the other 49 in one write: 49 history records and their counters as one op');
  t.equal(await db.get('ctr!k'), JSON.stringify({ uses: N }), 'the counter holds the last value');
  const hist = [];
  for await (const k of db.keys({ gt: 'hist!k!', lt: 'hist!k!~' })) hist.push(k);
  t.equal(hist.length, N, 'every history record written');
});

t.test('after a failed write nothing more is acknowledged', async (t) => {
  let calls = 0;
  const gc = new GroupCommit(async () => {
    calls++;
    throw new Error('disk full');
  });
  await t.rejects(gc.commit([put('a', '1')]), /disk full/);
  await t.rejects(gc.commit([put('b', '1')]), /disk full/, 'fails closed');
  t.equal(calls, 1, 'and does not try to write again');
});
