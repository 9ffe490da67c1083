// npm run bench:scale: does kmgrd stay flat as the data grows? For databases of
// 10k and 100k keys (and 1M with --sizes 10000,100000,1000000), built with
// direct LevelDB writes in the layout src/store/keys.ts defines, it measures:
// start-up time, resident memory after every key has been read, server CPU per
// fetch, check-terms time with ten keys expiring (and the longest event-loop
// stall while it runs), and the time of one history page.
//
//   node dist/bench/scale.js [--sizes 10000,100000] [--fetches 2000] [--out FILE]
//
// Start-up, memory, fetch CPU and check-terms should stay flat; history pages
// grow at most logarithmically (a LevelDB seek).
import { fork } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, platform, release, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Level } from 'level';
import * as K from '../src/store/keys.js';
import type { HistoryRecord, KeyRecord, PersonRecord } from '../src/store/types.js';
import { periodsAt } from '../src/terms/periods.js';
import { signedRequest, type Endpoint, type Identity } from '../src/client/http.js';
import { FetchResponse, HistoryList } from '../src/protocol/messages.js';
import { newIdentity } from './pool.js';
import type { ScaleFromChild, ScaleToChild } from './scale-server.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');
const KEYS_PER_PERSON = 1000;
const EXPIRING = 10;
const HISTORY_ENTRIES = 10_000;
const DAY = 86_400_000;

interface Options {
  sizes: number[];
  fetches: number;
  out: string;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { sizes: [10_000, 100_000], fetches: 2000, out: join(ROOT, 'bench', 'results', 'scale-latest.json') };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    if (a === '--sizes' && v) {
      o.sizes = v.split(',').map(Number);
      i++;
    } else if (a === '--fetches' && v) {
      o.fetches = Number(v);
      i++;
    } else if (a === '--out' && v) {
      o.out = v;
      i++;
    } else if (a === '--help') {
      console.log('usage: node dist/bench/scale.js [--sizes 10000,100000,1000000] [--fetches 2000] [--out FILE]');
      process.exit(0);
    } else {
      console.error(`bench:scale: unknown argument ${a}`);
      process.exit(64);
    }
  }
  if (o.sizes.some((n) => !Number.isInteger(n) || n < 1000) || !(o.fetches >= 100)) {
    console.error('bench:scale: --sizes are whole numbers of at least 1000; --fetches at least 100');
    process.exit(64);
  }
  return o;
}

const id22 = (): string => randomBytes(16).toString('base64url').slice(0, 22);

function keyRecord(personId: string, partnerId: string, now: number, expiresAt: number | null, historySeq = 0): KeyRecord {
  return {
    personId, partnerId, keyId: 'k_' + id22(), alg: 'ed25519', keyVersion: 1, registeredAt: now, inhibited: false, expiresAt,
    maxUses: null, maxPerDay: null, maxPerWeek: null, maxPerMonth: null, onLimit: 'deny',
    uses: { total: historySeq, day: 0, week: 0, month: 0, periods: periodsAt(now, 'UTC') }, lastUsedAt: null, historySeq, publicKey: null, binding: null, previousPublicKeys: [],
  };
}

interface Built {
  persons: string[];
  identity: Identity;
  fetchPartners: string[];
  historyPartner: string;
  buildMs: number;
}

/** Writes N keys over N/1000 persons; person 0 is real (we sign as it) and owns the keys we fetch and a long history. */
async function build(dataDir: string, n: number): Promise<Built> {
  const t0 = performance.now();
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const db = new Level<string, string>(join(dataDir, 'db'), { keyEncoding: 'utf8', valueEncoding: 'utf8' });
  await db.open();
  const now = Date.now();
  const real = newIdentity();
  const persons: string[] = [];
  let ops: Array<{ type: 'put'; key: string; value: string | Uint8Array; valueEncoding?: 'view' }> = [];
  const flush = async (force = false): Promise<void> => {
    if (ops.length >= 20_000 || (force && ops.length > 0)) {
      await db.batch(ops as never);
      ops = [];
    }
  };
  const blob = new Uint8Array(randomBytes(120));
  let written = 0;
  const fetchPartners: string[] = [];
  let historyPartner = '';
  for (let p = 0; written < n; p++) {
    const personId = 'p_' + id22();
    persons.push(personId);
    const keyId = p === 0 ? real.keyId : 'mk_' + id22();
    const person: PersonRecord = { personId, keyId, alg: 'ed25519', publicKey: p === 0 ? real.publicKeyB64url : randomBytes(32).toString('base64url'), createdAt: now };
    ops.push({ type: 'put', key: K.personKey(personId), value: JSON.stringify(person) }, { type: 'put', key: K.mgmtKey(keyId), value: personId });
    for (let i = 0; i < KEYS_PER_PERSON && written < n; i++, written++) {
      const partnerId = randomBytes(16).toString('base64url');
      // A few keys expire within the warning window; a third a year out (in the index, outside the window); the rest never.
      const expiresAt = written % Math.floor(n / EXPIRING) === 1 ? now + 3 * DAY : written % 3 === 0 ? now + 365 * DAY : null;
      const isHistory = p === 0 && i === 0;
      const rec = keyRecord(personId, partnerId, now, expiresAt, isHistory ? HISTORY_ENTRIES : 0);
      if (p === 0 && i > 0 && i <= 100) fetchPartners.push(partnerId);
      if (isHistory) historyPartner = partnerId;
      ops.push(
        { type: 'put', key: K.keyRecordKey(personId, partnerId), value: JSON.stringify(rec) },
        { type: 'put', key: K.countersKey(personId, partnerId), value: JSON.stringify({ uses: rec.uses, lastUsedAt: rec.lastUsedAt, historySeq: rec.historySeq }) },
        { type: 'put', key: K.blobKey(personId, partnerId, 1), value: blob, valueEncoding: 'view' },
      );
      if (expiresAt !== null) ops.push({ type: 'put', key: K.expiryKey(expiresAt, personId, partnerId), value: '' });
      if (isHistory) {
        for (let s = 1; s <= HISTORY_ENTRIES; s++) {
          const h: HistoryRecord = {
            seq: s, at: now - (HISTORY_ENTRIES - s) * 1000, keyVersion: 1, result: 'served', remoteAddress: '127.0.0.1',
            request: { method: 'POST', authority: '127.0.0.1:8443', path: `/v1/keys/${partnerId}/fetch`, contentDigest: 'sha-256=:' + 'A'.repeat(43) + '=:', device: '', signatureInput: 'x'.repeat(180), signature: 'y'.repeat(88) },
          };
          ops.push({ type: 'put', key: K.historyKey(personId, partnerId, s), value: JSON.stringify(h) });
        }
      }
      await flush();
    }
  }
  // Live nonces in proportion to the size, as a busier server leaves more: start-up must not read them.
  for (let i = 0; i < Math.floor(n / 10); i++) {
    ops.push({ type: 'put', key: K.nonceKey(now + 600_000, 'mk_' + id22(), randomBytes(16).toString('base64url')), value: '' });
    await flush();
  }
  ops.push({ type: 'put', key: K.expiryIndexMarker, value: String(now) });
  await flush(true);
  await db.close();
  return { persons, identity: { keyId: real.keyId, signer: real.signer }, fetchPartners, historyPartner, buildMs: performance.now() - t0 };
}

interface Child {
  ask<T extends ScaleFromChild['type']>(m: ScaleToChild, want: T): Promise<Extract<ScaleFromChild, { type: T }>>;
  ready: Extract<ScaleFromChild, { type: 'ready' }>;
  processStartToReadyMs: number;
  stop(): Promise<void>;
}

async function startChild(dataDir: string): Promise<Child> {
  const t0 = performance.now();
  const child = fork(join(HERE, 'scale-server.js'), [dataDir], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting: Array<{ want: string; resolve: (m: ScaleFromChild) => void; reject: (e: Error) => void }> = [];
  let onReady: ((m: ScaleFromChild) => void) | undefined;
  child.on('message', (m: ScaleFromChild) => {
    if (m.type === 'failed') for (const w of waiting.splice(0)) w.reject(new Error(m.message));
    if (m.type === 'ready') return onReady?.(m);
    const i = waiting.findIndex((w) => w.want === m.type);
    if (i >= 0) waiting.splice(i, 1)[0]!.resolve(m);
  });
  const ready = await new Promise<Extract<ScaleFromChild, { type: 'ready' }>>((resolve, reject) => {
    onReady = (m) => resolve(m as Extract<ScaleFromChild, { type: 'ready' }>);
    child.once('exit', (c) => reject(new Error(`scale server exited with ${c}`)));
  });
  const processStartToReadyMs = performance.now() - t0;
  return {
    ready,
    processStartToReadyMs,
    ask: (m, want) =>
      new Promise((resolve, reject) => {
        waiting.push({ want, resolve: resolve as (m: ScaleFromChild) => void, reject });
        child.send(m);
      }),
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.send({ type: 'stop' });
      }),
  };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function measure(n: number, o: Options): Promise<Record<string, number>> {
  const dir = await mkdtemp(join(tmpdir(), 'kmgr-scale-'));
  try {
    process.stderr.write(`bench:scale: building ${n} keys... `);
    const b = await build(join(dir, 'data'), n);
    process.stderr.write(`${(b.buildMs / 1000).toFixed(1)} s; starting kmgrd\n`);
    const child = await startChild(join(dir, 'data'));
    const ep: Endpoint = { server: `https://127.0.0.1:${child.ready.port}`, ca: child.ready.certPem };
    try {
      const touched = await child.ask({ type: 'touch', persons: b.persons }, 'touched');
      // Warm-up, then the measured fetches: CPU the server spent, divided by the fetches it answered.
      const fetchSome = async (count: number): Promise<void> => {
        let next = 0;
        await Promise.all(
          Array.from({ length: 16 }, async () => {
            while (next < count) {
              const p = b.fetchPartners[next++ % b.fetchPartners.length]!;
              await signedRequest(ep, b.identity, 'POST', `/v1/keys/${p}/fetch`, {}, FetchResponse);
            }
          }),
        );
      };
      await fetchSome(200);
      const before = await child.ask({ type: 'cpu' }, 'cpu');
      await fetchSome(o.fetches);
      const after = await child.ask({ type: 'cpu' }, 'cpu');
      const cpuUs = after.usage.user + after.usage.system - before.usage.user - before.usage.system;
      const checked = await child.ask({ type: 'check-terms', at: Date.now(), warnMs: 14 * DAY }, 'checked');
      const pages: number[] = [];
      const deep: number[] = [];
      for (let i = 0; i < 20; i++) {
        let t = performance.now();
        const page = await signedRequest(ep, b.identity, 'GET', `/v1/keys/${b.historyPartner}/history`, undefined, HistoryList);
        pages.push(performance.now() - t);
        if (page.body.history.length !== 100) throw new Error(`history page of ${page.body.history.length}`);
        t = performance.now();
        await signedRequest(ep, b.identity, 'GET', `/v1/keys/${b.historyPartner}/history?before=${HISTORY_ENTRIES / 2}&limit=100`, undefined, HistoryList);
        deep.push(performance.now() - t);
      }
      return {
        keys: n,
        buildSeconds: b.buildMs / 1000,
        startupMs: child.ready.startupMs,
        processStartToReadyMs: child.processStartToReadyMs,
        rssAtStartMiB: child.ready.rss / 2 ** 20,
        touchedKeys: touched.keys,
        touchSeconds: touched.ms / 1000,
        rssAfterTouchingEveryKeyMiB: touched.rss / 2 ** 20,
        // The JS heap after a full GC: what the caches hold. RSS also has LevelDB's native table cache and freed pages not yet returned.
        heapUsedAfterTouchingEveryKeyMiB: touched.heapUsed / 2 ** 20,
        externalAfterTouchingEveryKeyMiB: touched.external / 2 ** 20,
        cachedKeysAfterTouch: touched.cacheKeys,
        fetchCpuUsPerRequest: cpuUs / o.fetches,
        checkTermsMs: checked.ms,
        checkTermsFindings: checked.findings,
        checkTermsMaxEventLoopStallMs: checked.maxStallMs,
        historyPageMs: median(pages),
        historyDeepPageMs: median(deep),
      };
    } finally {
      await child.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const results: Array<Record<string, number>> = [];
  for (const n of o.sizes) {
    const r = await measure(n, o);
    results.push(r);
    console.log(
      `${String(n).padStart(8)} keys: start-up ${r.startupMs!.toFixed(0)} ms, RSS after touching all ${r.rssAfterTouchingEveryKeyMiB!.toFixed(0)} MiB, heap ${r.heapUsedAfterTouchingEveryKeyMiB!.toFixed(0)} MiB ` +
        `(${r.cachedKeysAfterTouch} cached), fetch ${r.fetchCpuUsPerRequest!.toFixed(0)} µs CPU, check-terms ${r.checkTermsMs!.toFixed(1)} ms ` +
        `(${r.checkTermsFindings} found, longest stall ${r.checkTermsMaxEventLoopStallMs!.toFixed(1)} ms), history page ${r.historyPageMs!.toFixed(1)} ms`,
    );
  }
  const out = {
    kind: 'kmgr bench:scale',
    at: new Date().toISOString(),
    machine: { platform: platform(), release: release(), cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', totalMemMiB: Math.round(totalmem() / 2 ** 20), node: process.version },
    fetches: o.fetches,
    results,
  };
  await mkdir(dirname(o.out), { recursive: true });
  await writeFile(o.out, JSON.stringify(out, null, 2) + '\n');
  console.log(`results: ${o.out}`);
}

main().catch((e: Error) => {
  console.error(e.stack ?? e.message);
  process.exit(1);
});
