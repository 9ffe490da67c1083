// A worker thread that verifies Ed25519 request signatures, so the main thread
// (TLS, routing, counting) is not spending a third of its time on them.
// Receives batches; answers each with a bitmap of results.
import { parentPort } from 'node:worker_threads';
import type { KeyObject } from 'node:crypto';
import { publicKeyObject, verifySignature, TAG_REQUEST } from '../crypto/sign.js';

export interface VerifyJob {
  key: Uint8Array; // raw Ed25519 public key
  payload: Uint8Array;
  signature: Uint8Array;
}

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

parentPort?.on('message', (msg: { id: number; jobs: VerifyJob[] }) => {
  const results = new Uint8Array(msg.jobs.length);
  msg.jobs.forEach((j, i) => {
    try {
      results[i] = verifySignature(keyFor(j.key), TAG_REQUEST, j.payload, j.signature) ? 1 : 0;
    } catch {
      results[i] = 0;
    }
  });
  parentPort!.postMessage({ id: msg.id, results });
});
