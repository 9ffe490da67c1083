// Sealing a transaction key for escrow. The associated data names the exact
// context the key belongs to, built by the client from what it asked for
// (threat 1), and carries the format and key versions (threats 2 and 5).
import { seal, open } from './aead.js';
import { concat, encodeFields } from './bytes.js';
import { IntegrityError } from '../protocol/errors.js';
import type { RandomSource } from './random.js';

export const BLOB_FORMAT_VERSION = 1;
const BLOB_TAG = 'kmgr/blob';

export interface BlobContext {
  personId: string;
  partnerId: string;
  keyId: string;
  alg: string;
  keyVersion: number;
  /**
   * The owner's name for the partner, as typed on the command line. With the
   * partner index on the server, the server maps names to IDs; binding the
   * name too means a server that maps bank-a to bank-b's ID gets a blob that
   * does not open, rather than bank-b's key printed as bank-a's (threat 1).
   */
  partnerName?: string;
}

export function blobAd(c: BlobContext): Uint8Array {
  const fields: Array<string | number> = [BLOB_TAG, BLOB_FORMAT_VERSION, c.personId, c.partnerId, c.keyId, c.alg, c.keyVersion];
  // Length-prefixed fields: a context with a name can never encode like one without.
  if (c.partnerName !== undefined) fields.push(c.partnerName);
  return encodeFields(fields);
}

export function sealBlob(wrapKey: Uint8Array, ctx: BlobContext, secret: Uint8Array, rng?: RandomSource): Uint8Array {
  return concat(Uint8Array.of(BLOB_FORMAT_VERSION), seal(wrapKey, secret, blobAd(ctx), rng));
}

export function openBlob(wrapKey: Uint8Array, ctx: BlobContext, blob: Uint8Array): Uint8Array {
  // No negotiation: one format, unknown versions refused outright.
  if (blob.length === 0 || blob[0] !== BLOB_FORMAT_VERSION) throw new IntegrityError('key blob has an unknown format version');
  return open(wrapKey, blob.subarray(1), blobAd(ctx), 'key blob');
}
