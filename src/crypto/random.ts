import { randomBytes as nodeRandom } from 'node:crypto';

export function randomBytes(n: number): Uint8Array {
  return new Uint8Array(nodeRandom(n));
}
