// kmgr rekey killed with SIGKILL: at each step of the switch (failpoints), and
// at random moments. Afterwards either the old or the new management key works
// for every key (never a mix that opens nothing), and running kmgr rekey again
// finishes the job.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { KMGR, startServer, jsonError, newHome, ok, mulberry32, type Home, untracked } from './support/index.js';
import { homePaths } from '../src/client/home.js';
import { openSession } from '../src/client/session.js';
import { loadPartners } from '../src/client/partners.js';
import { fetchWith } from '../src/client/fetch.js';

const NAMES = ['bank-a', 'bank-b', 'bank-c'];

/** Every key fetched and opened by the client library in this process (the CLI's own runs are the rekeys under test). */
async function fetchAll(h: Home): Promise<string[]> {
  const paths = homePaths(h.home);
  const session = await openSession(paths, { passphraseFile: h.pp }, null);
  const idx = await loadPartners(paths);
  const out: string[] = [];
  for (const n of NAMES) out.push(Buffer.from((await fetchWith(paths, session, idx.partners.find((p) => p.name === n)!, n, 'pem')).bytes).toString('utf8'));
  return out;
}

/** Runs `kmgr rekey` and kills it with SIGKILL after `ms` milliseconds (or lets it finish first). */
function rekeyKilledAfter(h: Home, ms: number): Promise<number | string> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string> = { KMGR_HOME: h.home, KMGR_NO_AGENT: '1' };
    for (const k of ['PATH', 'HOME', 'TMPDIR', 'NODE_EXTRA_CA_CERTS']) if (process.env[k] !== undefined) env[k] = process.env[k]!;
    const child = spawn(...untracked(process.execPath, [KMGR, 'rekey', '--passphrase-file', h.pp]), { env, stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve(signal ?? code ?? -1);
    });
  });
}

/** The invariant after any crash: the home's key either works now, or works once kmgr rekey is run again. */
async function checkRecovers(t: Test, h: Home, want: string[], what: string): Promise<void> {
  const probe = await h.run(['--json', 'status', 'bank-a']);
  if (probe.code !== 0) {
    // Only a switch made at the server but not yet here may stop the home, and rekey must say how to finish.
    t.match(jsonError(probe).code, /^(key_replaced|integrity)$/, `${what}: the home waits for the rekey to finish (${jsonError(probe).code})`);
    await t.resolves(stat(join(h.home, 'rekey-pending.json')), `${what}: the new key is in the pending file`);
  }
  ok(t, await h.run(['rekey']), `${what}: kmgr rekey again`);
  await t.rejects(stat(join(h.home, 'rekey-pending.json')), `${what}: nothing left pending`);
  t.same(await fetchAll(h), want, `${what}: every key opens to the same private key`);
}

t.test('rekey killed at each step, then run again: every key works', async (t) => {
  const server = await startServer(t);
  const h = await newHome(t, server);
  for (const n of NAMES) t.ok(await h.register(n), `register ${n}`);
  const want = await fetchAll(h);
  for (const at of ['pending-written', 'prepared', 'switched', 'keystore-written', 'config-written']) {
    const r = await h.run(['rekey'], { KMGR_FAILPOINT: at });
    t.equal(r.code, -1, `killed at ${at}`);
    if (at === 'switched') {
      // Mid-rekey, nothing hands out the key about to be replaced.
      const kit = await h.run(['--json', 'recovery-kit', '--out', join(h.home, '..', 'kit.json')]);
      t.equal(kit.code, 64, `recovery-kit while a rekey is unfinished: 64 (${jsonError(kit).message})`);
      const exp = await h.run(['--json', 'device', 'export', '--out', join(h.home, '..', 'exp.kmgr')]);
      t.equal(exp.code, 64, 'device export too');
    }
    await checkRecovers(t, h, want, `after a kill at ${at}`);
  }
});

t.test('rekey killed at random moments, then run again: every key works', async (t) => {
  const seed = Number(process.env.KMGR_SEED ?? 1234);
  const rnd = mulberry32(seed);
  t.comment(`KMGR_SEED=${seed}`);
  const server = await startServer(t);
  const h = await newHome(t, server);
  for (const n of NAMES) t.ok(await h.register(n), `register ${n}`);
  const want = await fetchAll(h);
  // KMGR_LONG_TESTS=1: a longer loop.
  for (let i = 0; i < (process.env.KMGR_LONG_TESTS ? 25 : 2); i++) {
    // A kmgr start plus a rekey takes roughly 0.5-2 s here: kills spread over that, some after it finished.
    const ms = Math.floor(150 + rnd() * 1800);
    const how = await rekeyKilledAfter(h, ms);
    await checkRecovers(t, h, want, `run ${i + 1} (killed after ${ms} ms: ${how})`);
  }
});
