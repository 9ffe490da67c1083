// The daemon side of npm run bench:scale: kmgrd on a prepared data directory,
// in its own process so that its start-up, memory and CPU are its own.
//   node dist/bench/scale-server.js DATA_DIR
// IPC: sends {type:'ready', port, certPem, startupMs, rss}; answers
// {type:'cpu'}, {type:'touch', persons}, {type:'check-terms'}, {type:'stop'}.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { startDaemon } from '../src/server/daemon.js';

export type ScaleToChild =
  | { type: 'cpu' }
  | { type: 'touch'; persons: string[] }
  | { type: 'check-terms'; at: number; warnMs: number }
  | { type: 'stop' };
export type ScaleFromChild =
  | { type: 'ready'; port: number; certPem: string; startupMs: number; rss: number }
  | { type: 'cpu'; usage: NodeJS.CpuUsage; rss: number }
  | { type: 'touched'; keys: number; ms: number; rss: number; heapUsed: number; external: number; cacheKeys: number }
  | { type: 'checked'; ms: number; findings: number; maxStallMs: number }
  | { type: 'failed'; message: string };

const reply = (m: ScaleFromChild): void => void process.send!(m);

async function main(): Promise<void> {
  const dataDir = process.argv[2]!;
  const t0 = performance.now();
  const daemon = await startDaemon({
    dataDir, host: '127.0.0.1', port: 0, tz: 'UTC', logLevel: 'error', ratePerAddress: 0, ratePerKey: 0, verifyThreads: 1,
  });
  const startupMs = performance.now() - t0;
  globalThis.gc?.();
  reply({ type: 'ready', port: daemon.port, certPem: readFileSync(daemon.certPath, 'utf8'), startupMs, rss: process.memoryUsage.rss() });
  process.on('message', (m: ScaleToChild) => {
    void (async () => {
      if (m.type === 'cpu') reply({ type: 'cpu', usage: process.cpuUsage(), rss: process.memoryUsage.rss() });
      else if (m.type === 'touch') {
        // Every key read once through the storage the handlers use: what a day of traffic over all keys would leave in memory.
        const t = performance.now();
        let keys = 0;
        for (const personId of m.persons) {
          let after: string | undefined;
          for (;;) {
            const page = await daemon.storage.listKeys(personId, { ...(after !== undefined ? { after } : {}), limit: 1000 });
            for (const k of page) {
              await daemon.storage.getKey(personId, k.partnerId);
              keys++;
            }
            if (page.length < 1000) break;
            after = page[page.length - 1]!.partnerId;
          }
        }
        globalThis.gc?.();
        const mem = process.memoryUsage();
        reply({ type: 'touched', keys, ms: performance.now() - t, rss: mem.rss, heapUsed: mem.heapUsed, external: mem.external, cacheKeys: daemon.storage.cacheSizes?.().keys ?? -1 });
      } else if (m.type === 'check-terms') {
        // How long the event loop is held at a stretch while check-terms runs (it shares the loop with requests).
        let maxStallMs = 0;
        let last = performance.now();
        const probe = setInterval(() => {
          const now = performance.now();
          maxStallMs = Math.max(maxStallMs, now - last - 1);
          last = now;
        }, 1);
        const t = performance.now();
        const findings = await daemon.storage.checkTerms(m.at, m.warnMs);
        const ms = performance.now() - t;
        clearInterval(probe);
        reply({ type: 'checked', ms, findings: findings.length, maxStallMs: Math.max(0, maxStallMs) });
      } else if (m.type === 'stop') {
        await daemon.stop();
        process.exit(0);
      }
    })().catch((e: Error) => reply({ type: 'failed', message: e.stack ?? e.message }));
  });
  process.on('disconnect', () => void daemon.stop().then(() => process.exit(0)));
}

main().catch((e: Error) => {
  reply({ type: 'failed', message: e.stack ?? e.message });
  process.exit(1);
});
