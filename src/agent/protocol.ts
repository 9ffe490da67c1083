// The kmgr agent's wire protocol: what the CLI and the agent say to each other
// over the agent's Unix socket, and how `kmgr agent start` hands the unlocked
// secrets to the agent over an inherited pipe.
//
// Framing: every message is one frame,
//   u32be jsonLength | u32be binLength | JSON (UTF-8) | bin
// The JSON carries the request or reply; `bin` carries the one byte string the
// operation needs (a payload to sign, a blob, a secret, a signature). Bytes
// travel as bytes, not base64 text, so each side can wipe the secrets it holds
// (a JS string can never be wiped). Both lengths are capped before anything is
// buffered, so a peer cannot make the other side allocate without bound.
//
// The agent never hands out the management secrets: there is no operation that
// returns the signing seed or the wrap key, only their results. `fetch` runs a
// whole `kmgr fetch` in the agent (so the CLI starts no TLS or crypto code) and
// returns the transaction key, which openBlob would return to the same caller.
import { TAG_BINDING, TAG_REQUEST, type SignatureTag } from '../crypto/tags.js';
import type { BlobContext } from '../crypto/blob.js';
import { KmgrError } from '../protocol/errors.js';
import { decodeError, encodeError } from '../protocol/wire-error.js';
import { array, bool, int, nullable, obj, oneOf, optional, str, type Infer, type Schema } from '../protocol/schema.js';
import { PARTNER_NAME } from '../protocol/names.js';
import { OUTPUT_FORMATS, type OutputFormat } from '../crypto/formats.js';

export const AGENT_PROTOCOL_VERSION = 1;
/** Longest JSON part of a frame. Requests are a few hundred bytes. */
export const MAX_JSON = 16 * 1024;
/** Longest binary part: a signature base, a blob or a transaction key is far below this. */
export const MAX_BIN = 64 * 1024;
const HEADER = 8;
/** Longest TTL: a week (also below setTimeout's 2^31 ms limit). */
export const MAX_TTL_MS = 7 * 86_400_000;

/** The only purposes the agent signs for (threat 7): the tags of src/crypto/sign.ts. */
const AGENT_SIGN_TAGS = [TAG_REQUEST, TAG_BINDING] as const satisfies readonly SignatureTag[];
const AGENT_OPS = ['status', 'publicKey', 'sign', 'openBlob', 'sealBlob', 'fetch', 'stop'] as const;
export type AgentOp = (typeof AGENT_OPS)[number];

/** A protocol violation by the peer: malformed or oversized frame, unknown field. */
class AgentProtocolError extends KmgrError {
  constructor(message: string) {
    super('bad_request', message);
  }
}

// ---------- framing ----------

export interface Frame {
  json: unknown;
  bin: Uint8Array;
}

export function encodeFrame(json: unknown, bin: Uint8Array = new Uint8Array(0)): Buffer {
  const j = Buffer.from(JSON.stringify(json), 'utf8');
  if (j.length > MAX_JSON) throw new AgentProtocolError(`agent message too large (${j.length} bytes of JSON)`);
  if (bin.length > MAX_BIN) throw new AgentProtocolError(`agent message too large (${bin.length} bytes of data)`);
  const out = Buffer.allocUnsafe(HEADER + j.length + bin.length);
  out.writeUInt32BE(j.length, 0);
  out.writeUInt32BE(bin.length, 4);
  j.copy(out, HEADER);
  out.set(bin, HEADER + j.length);
  return out;
}

/**
 * Incremental frame reader. push() returns every complete frame; a frame over
 * the caps or with JSON that does not parse throws AgentProtocolError, after
 * which the connection should be dropped. wipe() zeroes whatever is buffered.
 */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    // Always a copy: the caller may wipe its chunk as soon as push() returns.
    const prev = this.buf;
    this.buf = Buffer.concat([prev, chunk]);
    prev.fill(0);
    const frames: Frame[] = [];
    for (;;) {
      if (this.buf.length < HEADER) break;
      const jl = this.buf.readUInt32BE(0);
      const bl = this.buf.readUInt32BE(4);
      if (jl > MAX_JSON || bl > MAX_BIN) {
        this.wipe();
        throw new AgentProtocolError(`agent message over the size cap (${jl} + ${bl} bytes)`);
      }
      const total = HEADER + jl + bl;
      if (this.buf.length < total) break;
      const text = this.buf.subarray(HEADER, HEADER + jl).toString('utf8');
      // A copy the caller owns and may wipe; the receive buffer is wiped below.
      const bin = new Uint8Array(this.buf.subarray(HEADER + jl, total));
      this.buf.fill(0, 0, total);
      this.buf = this.buf.subarray(total);
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        bin.fill(0);
        this.wipe();
        throw new AgentProtocolError('agent message is not valid JSON');
      }
      frames.push({ json, bin });
    }
    if (this.buf.length === 0) this.buf = Buffer.alloc(0);
    return frames;
  }

  get pending(): number {
    return this.buf.length;
  }

  wipe(): void {
    this.buf.fill(0);
    this.buf = Buffer.alloc(0);
  }
}

// ---------- requests ----------

const ID = int({ min: 0, max: 2 ** 31 - 1 });
const V = int({ min: AGENT_PROTOCOL_VERSION, max: AGENT_PROTOCOL_VERSION });
/** Shown by --confirm to help the person decide (for example the partner's name). Not authenticated. */
const LABEL = optional(str({ max: 120, pattern: /^[\x20-\x7e]*$/, name: 'printable ASCII label' }));

const BlobContextSchema: Schema<BlobContext> = obj({
  personId: str({ min: 1, max: 64 }),
  partnerId: str({ min: 1, max: 64 }),
  keyId: str({ min: 1, max: 64 }),
  alg: str({ min: 1, max: 32 }),
  keyVersion: int({ min: 0, max: 2 ** 31 - 1 }),
  partnerName: optional(str({ min: 1, max: 64 })),
});

const Head = obj({ v: V, id: ID, op: oneOf(AGENT_OPS) });
const Bare = (op: 'status' | 'publicKey' | 'stop') => obj({ v: V, id: ID, op: oneOf([op] as const) });
const SignReq = obj({ v: V, id: ID, op: oneOf(['sign'] as const), tag: oneOf(AGENT_SIGN_TAGS), label: LABEL });
const OpenReq = obj({ v: V, id: ID, op: oneOf(['openBlob'] as const), ctx: BlobContextSchema, label: LABEL });
const SealReq = obj({ v: V, id: ID, op: oneOf(['sealBlob'] as const), ctx: BlobContextSchema, label: LABEL });
const FetchReq = obj({
  v: V,
  id: ID,
  op: oneOf(['fetch'] as const),
  /** The home the client means: the agent refuses to fetch for another. */
  home: str({ min: 1, max: 4096 }),
  name: str({ max: 64, pattern: PARTNER_NAME, name: 'partner name' }),
  format: optional(oneOf(OUTPUT_FORMATS)),
});

/** A validated request; `data` is the frame's binary part (payload, blob or secret). */
export type AgentRequest =
  | { id: number; op: 'status' | 'publicKey' | 'stop' }
  | { id: number; op: 'sign'; tag: SignatureTag; label?: string; data: Uint8Array }
  | { id: number; op: 'openBlob' | 'sealBlob'; ctx: BlobContext; label?: string; data: Uint8Array }
  | { id: number; op: 'fetch'; home: string; name: string; format?: OutputFormat };

/** Validates a request frame. Throws a KmgrError (bad_request) naming the offending field. */
export function parseRequest(f: Frame): AgentRequest {
  const head = Head(pick(f.json, ['v', 'id', 'op']), 'request');
  switch (head.op) {
    case 'status':
    case 'publicKey':
    case 'stop':
      Bare(head.op)(f.json, 'request');
      if (f.bin.length !== 0) throw new AgentProtocolError(`request.${head.op} takes no data`);
      return { id: head.id, op: head.op };
    case 'sign': {
      const r = SignReq(f.json, 'request');
      if (f.bin.length === 0) throw new AgentProtocolError('request.sign needs a payload');
      return { id: r.id, op: 'sign', tag: r.tag, ...(r.label !== undefined ? { label: r.label } : {}), data: f.bin };
    }
    case 'openBlob':
    case 'sealBlob': {
      const r = (head.op === 'openBlob' ? OpenReq : SealReq)(f.json, 'request');
      if (f.bin.length === 0) throw new AgentProtocolError(`request.${head.op} needs data`);
      return { id: r.id, op: head.op, ctx: r.ctx, ...(r.label !== undefined ? { label: r.label } : {}), data: f.bin };
    }
    case 'fetch': {
      const r = FetchReq(f.json, 'request');
      if (f.bin.length !== 0) throw new AgentProtocolError('request.fetch takes no data');
      return { id: r.id, op: 'fetch', home: r.home, name: r.name, ...(r.format !== undefined ? { format: r.format } : {}) };
    }
  }
}

/** The request's id if it has a usable one, so an error reply can name it. */
export function requestId(json: unknown): number {
  const id = typeof json === 'object' && json !== null ? (json as Record<string, unknown>).id : undefined;
  return typeof id === 'number' && Number.isSafeInteger(id) && id >= 0 && id < 2 ** 31 ? id : 0;
}

function pick(v: unknown, keys: string[]): unknown {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return v;
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = (v as Record<string, unknown>)[k];
  return out;
}

/** The operation's fields besides v, id and op. */
export type RequestExtra = { tag?: SignatureTag; ctx?: BlobContext; label?: string; home?: string; name?: string; format?: OutputFormat };

export function encodeRequest(
  id: number,
  op: AgentOp,
  extra: RequestExtra = {},
  data?: Uint8Array,
): Buffer {
  return encodeFrame({ v: AGENT_PROTOCOL_VERSION, id, op, ...extra }, data);
}

// ---------- replies ----------

export const AgentStatus = obj({
  pid: int({ min: 1, max: 2 ** 31 - 1 }),
  home: str({ max: 4096 }),
  socket: str({ max: 4096 }),
  fingerprint: str({ max: 64 }),
  keyId: str({ max: 64 }),
  /** Raw Ed25519 public key, base64url. */
  publicKey: str({ max: 64 }),
  startedAt: str({ max: 30 }),
  expiresAt: str({ max: 30 }),
  ttlLeftMs: int({ min: 0, max: 2 ** 53 - 1 }),
  confirm: bool,
  /** Key operations served (sign, openBlob, sealBlob) and refused. */
  served: int({ min: 0, max: 2 ** 53 - 1 }),
  refused: int({ min: 0, max: 2 ** 53 - 1 }),
  /** The OpenSSH agent socket (SSH_AUTH_SOCK), when started with --ssh. */
  sshSocket: optional(nullable(str({ max: 4096 }))),
});
export type AgentStatus = Infer<typeof AgentStatus>;

export const PublicKeyReply = obj({ publicKey: str({ max: 64 }), fingerprint: str({ max: 64 }) });
export const StopReply = obj({ stopping: bool });
/** fetch: the key itself travels as the frame's binary part. */
export const FetchReply = obj({ warnings: array(str({ max: 1024 }), 16) });

/** Longest error message a reply carries; a longer one is cut before sending. */
const MAX_MESSAGE = 2048;
const ReplyError = obj({ code: str({ max: 64 }), message: str({ max: MAX_MESSAGE }), details: optional(plainObject) });
const Reply = obj({ id: ID, ok: bool, result: optional(nullable((v) => v)), error: optional(ReplyError) });

/** An error's details: a JSON object (the frame's size cap bounds it). */
function plainObject(v: unknown, path: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new AgentProtocolError(`${path} must be an object`);
  return v as Record<string, unknown>;
}

export type AgentReply = { id: number; ok: true; result: unknown; data: Uint8Array } | { id: number; ok: false; error: KmgrError };

export function encodeOk(id: number, result: unknown, data?: Uint8Array): Buffer {
  return encodeFrame({ id, ok: true, result }, data);
}

/** Longest JSON of an error's details passed on: the key server chooses them, and must not be able to make a reply over the frame cap. */
const MAX_DETAILS_JSON = 2048;

export function encodeErr(id: number, e: KmgrError): Buffer {
  return encodeFrame({ id, ok: false, error: encodeError(e, { message: MAX_MESSAGE, detailsJson: MAX_DETAILS_JSON }) });
}

export function parseReply(f: Frame): AgentReply {
  const r = Reply(f.json, 'reply');
  if (r.ok) return { id: r.id, ok: true, result: r.result ?? {}, data: f.bin };
  if (!r.error) throw new AgentProtocolError('agent reply has neither result nor error');
  return { id: r.id, ok: false, error: decodeError(r.error, { unknown: (f) => new KmgrError('internal', f.message, f.details ?? undefined) }) };
}

// ---------- boot: `kmgr agent start` to the agent process, over fd 3 ----------

/** What the agent is told at start. The 64 bytes of secrets travel in the frame's binary part. */
export const AgentBoot = obj({
  v: V,
  home: str({ min: 1, max: 4096 }),
  socket: str({ min: 1, max: 107 }),
  ttlMs: int({ min: 1000, max: MAX_TTL_MS }),
  fingerprint: str({ max: 64 }),
  keyId: str({ max: 64 }),
  confirm: bool,
  /** The inherited file descriptor of the terminal to ask on, when confirm is set. */
  ttyFd: nullable(int({ min: 3, max: 1024 })),
  /** kmgr agent start --ssh: also serve the OpenSSH agent protocol here. */
  sshSocket: optional(nullable(str({ min: 1, max: 107 }))),
});
export type AgentBoot = Infer<typeof AgentBoot>;

export const BootReply = obj({
  ok: bool,
  pid: optional(int({ min: 1, max: 2 ** 31 - 1 })),
  code: optional(str({ max: 64 })),
  message: optional(str({ max: 2048 })),
});

/** Fixed size of the secrets in the boot frame: signing seed then wrap key. */
export const BOOT_SECRET_BYTES = 64;
