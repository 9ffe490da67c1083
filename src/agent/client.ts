// Agent sessions for the CLI: agentSession() is the integration point for
// commands other than fetch. It returns undefined when no agent serves this
// home (no socket, or a stale one left by a dead agent), so callers fall back
// to the passphrase; otherwise a handle bound to the identity in config.json
// (the agent's key fingerprint must match it). The socket and connection
// level is in connection.ts, re-exported here.
import { IntegrityError } from '../protocol/errors.js';
import { fingerprint, type SignatureTag } from '../crypto/sign.js';
import { fromB64url } from '../crypto/bytes.js';
import type { HomePaths } from '../client/home.js';
import type { ClientConfig } from '../client/config.js';
import type { BlobContext } from '../crypto/blob.js';
import { PublicKeyReply, StopReply, type AgentOp, type AgentStatus, type RequestExtra } from './protocol.js';
import { AgentConnection, openHomeAgent, requestStatus } from './connection.js';
import { AgentError, CONFIRM_OP_TIMEOUT_MS, OP_TIMEOUT_MS, agentSocketPath, sameDirectory } from './socket.js';

export * from './connection.js';
export * from './socket.js';

/** A Signer whose answers arrive asynchronously (src/crypto/sign.ts Signer is synchronous). */
interface AsyncSigner {
  publicKey: Uint8Array;
  sign(tag: SignatureTag, payload: Uint8Array): Promise<Uint8Array>;
}

/** The unlocked management key, as served by the agent. The key itself never leaves the agent. */
interface AgentHandle {
  socket: string;
  status: AgentStatus;
  /** Raw Ed25519 public key; its fingerprint matched config.fingerprint. */
  publicKey: Uint8Array;
  signer: AsyncSigner;
  signAsync(tag: SignatureTag, payload: Uint8Array, label?: string): Promise<Uint8Array>;
  /** Opens a blob with the wrap key; the caller owns (and should wipe) the result. */
  openBlob(ctx: BlobContext, blob: Uint8Array, label?: string): Promise<Uint8Array>;
  /** Seals a secret with the wrap key. */
  sealBlob(ctx: BlobContext, secret: Uint8Array, label?: string): Promise<Uint8Array>;
  publicKeyInfo(): Promise<{ publicKey: Uint8Array; fingerprint: string }>;
  stop(): Promise<void>;
  close(): void;
}

/**
 * The agent serving this home, checked against config.json; undefined when no
 * agent is running (no socket, or a stale one). A hung agent is an AgentError
 * (timeout), a different identity an IntegrityError.
 */
export async function agentSession(paths: HomePaths, config: ClientConfig, opts: { env?: NodeJS.ProcessEnv } = {}): Promise<AgentHandle | undefined> {
  const conn = await openHomeAgent(agentSocketPath(paths, opts.env));
  if (!conn) return undefined;
  try {
    return await bindHandle(conn, paths, config);
  } catch (e) {
    conn.close();
    throw e;
  }
}

/** Connects to the agent at an explicit socket path (tests, tools); checks it serves this home and key. */
export async function connectAgent(socket: string, paths: HomePaths, config: ClientConfig): Promise<AgentHandle> {
  const conn = await AgentConnection.open(socket);
  try {
    return await bindHandle(conn, paths, config);
  } catch (e) {
    conn.close();
    throw e;
  }
}

/** The agent's public key, if its status is consistent and it serves this home and this identity. */
function checkBinding(status: AgentStatus, socket: string, paths: HomePaths, config: ClientConfig): Uint8Array {
  const publicKey = fromB64url(status.publicKey);
  if (!publicKey || publicKey.length !== 32 || fingerprint(publicKey) !== status.fingerprint) {
    throw new AgentError('protocol', socket, `the kmgr agent at ${socket} sent an inconsistent public key`);
  }
  if (!sameDirectory(status.home, paths.dir)) {
    throw new IntegrityError(`the kmgr agent at ${socket} serves ${status.home}, not ${paths.dir}`);
  }
  // The agent is bound to one identity: the one config.json names.
  if (status.fingerprint !== config.fingerprint) {
    throw new IntegrityError(`the kmgr agent at ${socket} holds a different management key (${status.fingerprint}) than ${paths.config} names; kmgr agent stop ends it`);
  }
  return publicKey;
}

async function bindHandle(first: AgentConnection, paths: HomePaths, config: ClientConfig): Promise<AgentHandle> {
  const socket = first.socketPath;
  let conn = first;
  const status = await requestStatus(conn);
  const publicKey = checkBinding(status, socket, paths, config);
  let opTimeout = status.confirm ? CONFIRM_OP_TIMEOUT_MS : OP_TIMEOUT_MS;
  let closed = false;
  // A handle may outlive its connection (the agent drops connections idle for two
  // minutes): a failed connection is reopened, and the agent re-checked, before
  // the next request. A request in flight when the agent goes away still fails.
  const live = async (): Promise<AgentConnection> => {
    if (closed) throw new AgentError('lost', socket, 'this kmgr agent handle was closed');
    if (!conn.failed) return conn;
    const next = await AgentConnection.open(socket);
    try {
      const s = await requestStatus(next);
      checkBinding(s, socket, paths, config);
      opTimeout = s.confirm ? CONFIRM_OP_TIMEOUT_MS : OP_TIMEOUT_MS;
    } catch (e) {
      next.close();
      throw e;
    }
    conn = next;
    return conn;
  };
  const request = async (op: AgentOp, extra: RequestExtra, data: Uint8Array | undefined, slow: boolean) => {
    const c = await live();
    return c.request(op, extra, data, slow ? opTimeout : OP_TIMEOUT_MS);
  };
  const bytesOf = async (p: Promise<{ data: Uint8Array }>, what: string, check: (n: number) => boolean): Promise<Uint8Array> => {
    const { data } = await p;
    if (!check(data.length)) {
      data.fill(0);
      throw new AgentError('protocol', socket, `the kmgr agent sent a ${what} of the wrong length`);
    }
    return data;
  };
  const withLabel = (label: string | undefined) => (label !== undefined ? { label } : {});
  const signAsync = (tag: SignatureTag, payload: Uint8Array, label?: string): Promise<Uint8Array> =>
    bytesOf(request('sign', { tag, ...withLabel(label) }, payload, true), 'signature', (n) => n === 64);
  return {
    socket,
    status,
    publicKey,
    signer: { publicKey, sign: (tag, payload) => signAsync(tag, payload) },
    signAsync,
    openBlob: (ctx, blob, label) => bytesOf(request('openBlob', { ctx, ...withLabel(label) }, blob, true), 'secret', (n) => n > 0),
    sealBlob: (ctx, secret, label) => bytesOf(request('sealBlob', { ctx, ...withLabel(label) }, secret, true), 'blob', (n) => n > 1),
    publicKeyInfo: async () => {
      const r = await request('publicKey', {}, undefined, false);
      const p = PublicKeyReply(r.result, 'publicKey');
      const raw = fromB64url(p.publicKey);
      if (!raw || raw.length !== 32) throw new AgentError('protocol', socket, 'the kmgr agent sent a malformed public key');
      return { publicKey: raw, fingerprint: p.fingerprint };
    },
    stop: async () => {
      const r = await request('stop', {}, undefined, false);
      StopReply(r.result, 'stop');
    },
    close: () => {
      closed = true;
      conn.close();
    },
  };
}

/** Asks the agent at socketPath to stop; resolves once it acknowledged. */
export async function stopAgent(socketPath: string): Promise<void> {
  const conn = await AgentConnection.open(socketPath);
  try {
    const r = await conn.request('stop');
    StopReply(r.result, 'stop');
  } finally {
    conn.close();
  }
}
