// Shared by the format-vector generator (test/make-vectors.ts) and the test
// that checks the vectors (test/format-vectors.test.ts).
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RandomSource } from '../../src/crypto/random.js';
import { ROOT } from './paths.js';

export const VECTORS = join(ROOT, 'fixtures', 'vectors');

/** Fixed, documented input bytes: SHA-256 of "kmgr vector <label>", repeated as needed. */
export function inputBytes(label: string, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0, block = 0; i < n; block++) {
    const h = createHash('sha256').update(`kmgr vector ${label} ${block}`).digest();
    out.set(h.subarray(0, Math.min(32, n - i)), i);
    i += 32;
  }
  return out;
}

/** A RandomSource that hands out exactly the recorded bytes, in order, and fails on any other request. */
export function replay(...chunks: Uint8Array[]): RandomSource & { done(): boolean } {
  const queue = [...chunks];
  const rng = (n: number): Uint8Array => {
    const next = queue.shift();
    if (!next || next.length !== n) throw new Error(`the vector recorded ${next?.length ?? 'no'} random bytes here, the code asked for ${n}`);
    return next;
  };
  return Object.assign(rng, { done: () => queue.length === 0 });
}

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
export const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

export function readVector<T>(name: string): T {
  return JSON.parse(readFileSync(join(VECTORS, name), 'utf8')) as T;
}
