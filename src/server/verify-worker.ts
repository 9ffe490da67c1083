// A worker thread that verifies Ed25519 request signatures, so the main thread
// (TLS, routing, counting) is not spending a third of its time on them.
// Receives batches; answers each with a bitmap of results.
import { parentPort } from 'node:worker_threads';
import type { KeyObject } from 'node:crypto';
import { publicKeyObject, verifySignature, TAG_REQUEST } from '../crypto/sign.js';

import type { VerifyJob } from './verify-jobs.js';
export type { VerifyJob };

const keys = new Map<string, KeyObject>();

function keyFor(raw: Uint8Array): KeyObject {
  const k = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('latin1');
  let obj = keys.get(k);
  if (!obj) {
    if (keys.size > 100_000) keys.clear();
    obj = publicKeyObject(raw);
    keys.set(k, obj);
  }
  return obj;
}

/** Reads the layout written by packJobs (verify-jobs.ts). */
function unpackAndVerify(buffer: ArrayBuffer, count: number): Uint8Array {
  const buf = new Uint8Array(buffer);
  const view = new DataView(buffer);
  const results = new Uint8Array(count);
  let o = 0;
  for (let i = 0; i < count; i++) {
    const len = view.getUint32(o + 96);
    try {
      results[i] = verifySignature(keyFor(buf.subarray(o, o + 32)), TAG_REQUEST, buf.subarray(o + 100, o + 100 + len), buf.subarray(o + 32, o + 96)) ? 1 : 0;
    } catch {
      results[i] = 0;
    }
    o += 100 + len;
  }
  return results;
}

parentPort?.on('message', (msg: { id: number; count: number; buffer: ArrayBuffer }) => {
  const results = unpackAndVerify(msg.buffer, msg.count);
  parentPort!.postMessage({ id: msg.id, results }, [results.buffer as ArrayBuffer]);
});
