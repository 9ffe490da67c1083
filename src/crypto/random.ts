import { randomBytes as nodeRandom } from 'node:crypto';

/**
 * Where sealing takes its nonces and salts. Always randomBytes in use; the
 * format vectors in fixtures/ pass the recorded bytes instead, so that a test
 * can re-encode a vector byte for byte.
 */
export type RandomSource = (n: number) => Uint8Array;

export function randomBytes(n: number): Uint8Array {
  return new Uint8Array(nodeRandom(n));
}
