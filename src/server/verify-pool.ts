// Request signature verification on worker threads (kmgrd serve --verify-threads;
// with 0, auth.ts verifies inline with the cached KeyObject). Jobs arriving in
// the same tick travel to a worker as one message, so the messaging cost is
// paid per batch, not per request.
import { Worker } from 'node:worker_threads';
import { packJobs, type VerifyJob } from './verify-jobs.js';

export interface Verifier {
  verify(key: Uint8Array, payload: Uint8Array, signature: Uint8Array): Promise<boolean>;
  close(): Promise<void>;
  /** Signatures queued or being verified now (kmgrd_verify_queue_depth). */
  depth(): number;
}

interface Pending {
  jobs: VerifyJob[];
  resolvers: Array<(ok: boolean) => void>;
}

export function workerVerifier(threads: number): Verifier {
  interface Slot {
    w: Worker;
    inFlight: Map<number, Array<(ok: boolean) => void>>;
  }
  let closing = false;
  const spawnSlot = (): Slot => {
    const slot: Slot = { w: new Worker(new URL('./verify-worker.js', import.meta.url)), inFlight: new Map() };
    slot.w.unref();
    slot.w.on('message', (m: { id: number; results: Uint8Array }) => {
      const rs = slot.inFlight.get(m.id);
      slot.inFlight.delete(m.id);
      rs?.forEach((r, i) => r(m.results[i] === 1));
    });
    // A dead worker fails its jobs closed (the requests are refused, never accepted) and is replaced,
    // so later requests are not sent to a thread that will never answer.
    const failed = (): void => {
      for (const rs of slot.inFlight.values()) rs.forEach((r) => r(false));
      slot.inFlight.clear();
      const i = slots.indexOf(slot);
      if (i >= 0 && !closing) slots[i] = spawnSlot();
    };
    slot.w.on('error', failed);
    slot.w.on('exit', failed);
    return slot;
  };
  const slots: Slot[] = [];
  for (let i = 0; i < threads; i++) slots.push(spawnSlot());
  let nextId = 1;
  let next = 0;
  let batch: Pending | undefined;
  let queued = 0;
  const flush = (): void => {
    const b = batch!;
    batch = undefined;
    const slot = slots[next++ % slots.length]!;
    const id = nextId++;
    slot.inFlight.set(id, b.resolvers);
    const buffer = packJobs(b.jobs);
    slot.w.postMessage({ id, count: b.jobs.length, buffer }, [buffer]);
  };
  return {
    verify(key, payload, signature) {
      // Wrong sizes never verify; refusing them here keeps the packed layout fixed.
      if (key.length !== 32 || signature.length !== 64) return Promise.resolve(false);
      queued++;
      return new Promise<boolean>((resolve) => {
        if (!batch) {
          batch = { jobs: [], resolvers: [] };
          setImmediate(flush);
        }
        batch.jobs.push({ key, payload, signature });
        batch.resolvers.push((ok) => {
          queued--;
          resolve(ok);
        });
      });
    },
    depth: () => queued,
    async close() {
      closing = true;
      await Promise.all(slots.map((s) => s.w.terminate()));
    },
  };
}
