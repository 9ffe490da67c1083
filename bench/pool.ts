// Pre-signed request pools: every kmgrd request carries its own nonce, so the
// whole pool is signed before the clock starts, with the client's own pieces
// (sigbase, sign), exactly as src/client/http.ts signs a request.
import { randomBytes } from 'node:crypto';
import {
  DEFAULT_LIFETIME_SECONDS, formatContentDigest, formatSignature, serializeParams, signatureBase, SIG_LABEL,
} from '../src/protocol/sigbase.js';
import { managementKeyId, signerFromSeed, TAG_REQUEST, type Signer } from '../src/crypto/sign.js';
import { sha256 } from '../src/crypto/hash.js';
import { toB64, toB64url, utf8 } from '../src/crypto/bytes.js';

export interface BenchIdentity {
  keyId: string;
  publicKeyB64url: string;
  signer: Signer;
}

export function newIdentity(): BenchIdentity {
  const signer = signerFromSeed(new Uint8Array(randomBytes(32)));
  return { keyId: managementKeyId(signer.publicKey), publicKeyB64url: toB64url(signer.publicKey), signer };
}

/** One pre-built request: the raw HTTP/1.1 bytes, and the same as node:https options. */
export interface PooledRequest {
  raw: Buffer | undefined;
  headers: Record<string, string | number> | undefined;
}

export interface Pool {
  method: string;
  path: string;
  body: Buffer;
  requests: PooledRequest[];
  signedAt: number; // ms
  signMs: number;
}

/**
 * Signs `count` distinct requests (own nonce each) for `method path` with a JSON
 * body, for the server at 127.0.0.1:port. `format` picks what is built: raw
 * bytes for the hand-rolled client, a header object for node:https.
 */
export function signPool(
  id: BenchIdentity,
  port: number,
  method: string,
  path: string,
  bodyJson: unknown,
  count: number,
  format: 'raw' | 'headers',
): Pool {
  const t0 = performance.now();
  const authority = `127.0.0.1:${port}`;
  const body = Buffer.from(JSON.stringify(bodyJson));
  const digest = formatContentDigest(toB64(sha256(body)));
  const q = path.indexOf('?');
  const pathOnly = q < 0 ? path : path.slice(0, q);
  const query = q < 0 ? '' : path.slice(q);
  const nonces = randomBytes(16 * count);
  const requests = new Array<PooledRequest>(count);
  const firstCreated = Math.floor(Date.now() / 1000);
  let created = firstCreated;
  for (let i = 0; i < count; i++) {
    // Requests are used in order, so each block takes the time it is signed at: a long
    // signing run cannot leave the last-used requests near their expiry.
    if (i % 1000 === 0) created = Math.floor(Date.now() / 1000);
    const params = {
      created,
      expires: created + DEFAULT_LIFETIME_SECONDS,
      nonce: nonces.subarray(16 * i, 16 * i + 16).toString('base64url'),
      keyid: id.keyId,
    };
    const base = signatureBase({ method, authority, path: pathOnly, query, contentDigest: digest }, params);
    const sig = formatSignature(toB64(id.signer.sign(TAG_REQUEST, utf8(base))));
    const input = `${SIG_LABEL}=${serializeParams(params)}`;
    if (format === 'raw') {
      const head =
        `${method} ${path} HTTP/1.1\r\nhost: ${authority}\r\ncontent-digest: ${digest}\r\nsignature-input: ${input}\r\n` +
        `signature: ${sig}\r\naccept: application/json\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`;
      requests[i] = { raw: Buffer.concat([Buffer.from(head, 'latin1'), body]), headers: undefined };
    } else {
      requests[i] = {
        raw: undefined,
        headers: {
          host: authority,
          'content-digest': digest,
          'signature-input': input,
          signature: sig,
          accept: 'application/json',
          'content-type': 'application/json',
          'content-length': body.length,
        },
      };
    }
  }
  return { method, path, body, requests, signedAt: firstCreated * 1000, signMs: performance.now() - t0 };
}
