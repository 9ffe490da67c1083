// Raw HTTPS access to kmgrd for server-side security tests: requests are built
// and signed here, by hand, so that every part can be tampered with after
// signing. Uses the same exported pieces the real client uses (sigbase, sign).
import { request, type RequestOptions } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { randomBytes as nodeRandom } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  DEFAULT_LIFETIME_SECONDS, formatContentDigest, formatSignature, serializeParams, signatureBase, SIG_LABEL,
  type SignatureParams,
} from '../../src/protocol/sigbase.js';
import { managementKeyId, signerFromSeed, TAG_REQUEST, type Signer, type SignatureTag } from '../../src/crypto/sign.js';
import { sha256 } from '../../src/crypto/hash.js';
import { fromB64, toB64, toB64url, utf8 } from '../../src/crypto/bytes.js';
import type { HistoryEntry, HistoryList, KeyStatus, PersonInfo } from '../../src/protocol/messages.js';

export interface Target {
  url: string;
  ca: string;
  /** Source address on the loopback range, to act as a different client. */
  localAddress?: string;
}

/** kmgrd's answer to a refused request (ErrorBody in src/protocol/messages.ts). */
export interface ErrorReply {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

/** GET /v1/health (src/server/handlers/health.ts). */
export interface HealthReply {
  ok: boolean;
  version: string;
  storage?: string;
  message?: string;
}

/**
 * A reply as sent. json is the body parsed, typed as the reply the request asks for (T,
 * a protocol type from src/protocol/messages.ts) or the error a refusal carries: which
 * of the two it is, the test's assertion on the status says; the schema on the server
 * made it, so it is not checked again here.
 */
export interface RawReply<T = unknown> {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: T & Partial<ErrorReply>;
}

export interface RawRequest {
  method: string;
  path: string; // path plus query, sent verbatim as the request target
  headers: Record<string, string | number>;
  body: Uint8Array;
  /** Send the body with Transfer-Encoding: chunked, in pieces of this size. */
  chunked?: number;
}

/** PEM text of the CA file, cached per path. */
const caCache = new Map<string, string>();
export function caPem(path: string): string {
  let pem = caCache.get(path);
  if (pem === undefined) {
    pem = readFileSync(path, 'utf8');
    caCache.set(path, pem);
  }
  return pem;
}

/** Sends exactly the given request (no Host header is added unless given) and collects the reply. */
export function send<T = unknown>(target: Target, r: RawRequest): Promise<RawReply<T>> {
  const u = new URL(target.url);
  const headers: Record<string, string | number> = { ...r.headers };
  const hasLength = Object.keys(headers).some((k) => k.toLowerCase() === 'content-length');
  if (r.chunked !== undefined) headers['transfer-encoding'] = 'chunked';
  else if (!hasLength && (r.body.length > 0 || r.method === 'POST' || r.method === 'PUT' || r.method === 'PATCH')) headers['content-length'] = r.body.length;
  const opts: RequestOptions = {
    host: u.hostname,
    port: Number(u.port),
    method: r.method,
    path: r.path,
    headers,
    setHost: false,
    ca: caPem(target.ca),
    agent: false,
    ...(target.localAddress ? { localAddress: target.localAddress } : {}),
    minVersion: 'TLSv1.3',
    // The certificate is checked against the address we dial, never against a (possibly forged) Host header.
    servername: '',
  };
  return new Promise((resolve, reject) => {
    let settled = false;
    const req = request(opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        settled = true;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: json as T & Partial<ErrorReply> });
      });
      res.on('error', (e) => {
        if (!settled) reject(e);
      });
    });
    req.setTimeout(20_000, () => req.destroy(new Error('request timed out')));
    // The server may answer (413) before the whole body is written; a write error after that is expected.
    req.on('error', (e) => {
      if (!settled) reject(e);
    });
    if (r.chunked !== undefined) {
      const step = Math.max(1, r.chunked);
      for (let o = 0; o < r.body.length; o += step) req.write(r.body.subarray(o, o + step));
      req.end();
    } else req.end(r.body);
  });
}

export interface Identity {
  signer: Signer;
  keyId: string;
  publicKey: string; // base64url
  personId?: string;
}

export function newIdentity(): Identity {
  const signer = signerFromSeed(new Uint8Array(nodeRandom(32)));
  return { signer, keyId: managementKeyId(signer.publicKey), publicKey: toB64url(signer.publicKey) };
}

export const nowSeconds = (): number => Math.floor(Date.now() / 1000);
export const newNonce = (): string => toB64url(new Uint8Array(nodeRandom(16)));

export interface SignOptions {
  created?: number;
  expires?: number;
  nonce?: string;
  /** The keyid written into Signature-Input (defaults to the signer's). */
  keyid?: string;
  tag?: SignatureTag;
  /** Sign with this identity's key instead (the keyid stays as given or as the first identity's). */
  signWith?: Identity;
  authority?: string;
  contentType?: string | null;
  /** A Kmgr-Device label, signed and sent (if the profile covers it). */
  device?: string;
}

export interface Built extends RawRequest {
  params: SignatureParams;
}

export function bodyBytes(body: unknown): Uint8Array {
  if (body === undefined) return new Uint8Array(0);
  if (body instanceof Uint8Array) return body;
  if (typeof body === 'string') return utf8(body);
  return utf8(JSON.stringify(body));
}

/** Builds a correctly signed request exactly as the kmgr client would, ready to be tampered with. */
export function signed(target: Target, id: Identity, method: string, pathAndQuery: string, body?: unknown, o: SignOptions = {}): Built {
  // The request target is used verbatim (no URL normalisation of '.' or '..'), as the server sees it.
  const q = pathAndQuery.indexOf('?');
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  const query = q < 0 ? '' : pathAndQuery.slice(q);
  const bytes = bodyBytes(body);
  const created = o.created ?? nowSeconds();
  const params: SignatureParams = {
    created,
    expires: o.expires ?? created + DEFAULT_LIFETIME_SECONDS,
    nonce: o.nonce ?? newNonce(),
    keyid: o.keyid ?? id.keyId,
  };
  const digest = formatContentDigest(toB64(sha256(bytes)));
  const authority = o.authority ?? new URL(target.url).host;
  // Built as a variable so that this compiles whether or not RequestParts has the device field.
  const parts = { method, authority, path, query, contentDigest: digest, ...(o.device !== undefined ? { device: o.device } : {}) };
  const base = signatureBase(parts, params);
  const signature = (o.signWith ?? id).signer.sign(o.tag ?? TAG_REQUEST, utf8(base));
  const headers: Record<string, string | number> = {
    host: authority,
    'content-digest': digest,
    'signature-input': `${SIG_LABEL}=${serializeParams(params)}`,
    signature: formatSignature(toB64(signature)),
    accept: 'application/json',
  };
  if (o.device !== undefined) headers['kmgr-device'] = o.device;
  const ct = o.contentType === undefined ? (bytes.length > 0 ? 'application/json' : null) : o.contentType;
  if (ct !== null) headers['content-type'] = ct;
  return { method, path: pathAndQuery, headers, body: bytes, params };
}

/** Flips one bit of the base64 signature in a Signature header. */
export function flipSignatureBit(header: string, bit = 0): string {
  const m = /^kmgr=:(.*):$/.exec(header);
  if (!m) throw new Error('not a kmgr signature header');
  const sig = fromB64(m[1]!)!;
  const copy = new Uint8Array(sig);
  copy[bit >> 3]! ^= 1 << (bit & 7);
  return formatSignature(toB64(copy));
}

export async function enrol(target: Target, id: Identity): Promise<RawReply<PersonInfo>> {
  const r = await send<PersonInfo>(target, signed(target, id, 'POST', '/v1/persons', { alg: 'ed25519', publicKey: id.publicKey }));
  if (r.status === 201) id.personId = r.json.personId;
  return r;
}

export const newPartnerId = (): string => toB64url(new Uint8Array(nodeRandom(16)));
export const newKeyId = (): string => 'k_' + toB64url(new Uint8Array(nodeRandom(16))).slice(0, 22);

export function registerBody(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    keyId: newKeyId(),
    alg: 'ed25519',
    keyVersion: 1,
    blob: toB64(new Uint8Array(nodeRandom(73))),
    terms: { expiresAt: null, maxUses: null, maxPerDay: null, maxPerWeek: null, maxPerMonth: null, onLimit: 'deny' },
    ...over,
  };
}

export async function register(target: Target, id: Identity, partnerId: string, body = registerBody()): Promise<RawReply<KeyStatus>> {
  return send(target, signed(target, id, 'PUT', `/v1/keys/${partnerId}`, body));
}

export async function keyStatus(target: Target, id: Identity, partnerId: string): Promise<RawReply<KeyStatus>> {
  return send(target, signed(target, id, 'GET', `/v1/keys/${partnerId}`));
}

export async function health(target: Target): Promise<RawReply<HealthReply>> {
  return send(target, { method: 'GET', path: '/v1/health', headers: { host: new URL(target.url).host }, body: new Uint8Array(0) });
}

/** Every history entry of a key, newest first, read in pages of the server's largest size. */
export async function historyAll(target: Target, id: Identity, partnerId: string): Promise<HistoryEntry[]> {
  const out: HistoryEntry[] = [];
  let before = '';
  for (;;) {
    const r = await send<HistoryList>(target, signed(target, id, 'GET', `/v1/keys/${partnerId}/history?limit=5000${before}`));
    if (r.status !== 200) throw new Error(`history: ${r.status} ${r.text}`);
    out.push(...r.json.history);
    if (r.json.history.length < 5000) return out;
    before = `&before=${out[out.length - 1]!.seq}`;
  }
}
