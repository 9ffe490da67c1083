// Talking to the kmgr agent: the socket, one connection, and the one-shot
// fetch that `kmgr fetch` uses. Every wait is bounded: connecting gives up after
// CONNECT_TIMEOUT_MS and every request after its own timeout, so a dead agent,
// a stale socket file or a stopped (SIGSTOP) agent is a typed AgentError within
// seconds, never a hang.
//
// Kept apart from client.ts (sessions bound to an identity) so that `kmgr fetch`
// through the agent loads only this, the frame protocol and node:net.
import { createConnection, type Socket } from 'node:net';
import { existsSync, lstatSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { ConfigError, KmgrError, type ErrorCode } from '../protocol/errors.js';
import type { HomePaths } from '../client/home.js';
import type { OutputFormat } from '../crypto/formats.js';
import { AgentStatus, FetchReply, FrameDecoder, encodeRequest, parseReply, type AgentOp, type AgentReply, type RequestExtra } from './protocol.js';

export const CONNECT_TIMEOUT_MS = 1_000;
/** An operation the agent answers at once. */
export const OP_TIMEOUT_MS = 10_000;
/** An operation that may wait for a person to answer a --confirm prompt (the agent gives up after 60 s). */
export const CONFIRM_OP_TIMEOUT_MS = 90_000;
/** Linux's sun_path holds 108 bytes including the final NUL. */
export const MAX_SOCKET_PATH = 107;

export type AgentErrorReason =
  | 'not_running' // no socket file
  | 'stale' // a socket file nobody listens on: the agent died
  | 'timeout' // the agent did not answer in time (stopped, overloaded)
  | 'lost' // the connection closed before the answer came (agent stopped or expired)
  | 'protocol' // the other end does not speak the agent protocol
  | 'running' // `agent start`: an agent already serves this home
  | 'unsafe'; // the socket or its directory is not private to this user

const CODE: Record<AgentErrorReason, ErrorCode> = {
  not_running: 'unavailable',
  stale: 'unavailable',
  timeout: 'unavailable',
  lost: 'unavailable',
  protocol: 'unavailable',
  running: 'agent_running',
  unsafe: 'unsafe_permissions',
};

/** Why the agent could not be used. `reason` is machine-readable; the message is one clear sentence. */
export class AgentError extends KmgrError {
  readonly reason: AgentErrorReason;
  readonly socket: string;
  constructor(reason: AgentErrorReason, socket: string, message: string) {
    super(CODE[reason], message, { agent: reason, socket });
    this.name = 'AgentError';
    this.reason = reason;
    this.socket = socket;
  }
}

/**
 * Where the agent for this home listens: $XDG_RUNTIME_DIR/kmgr/agent-<device>-<inode>.sock,
 * named by the home directory's device and inode numbers, when XDG_RUNTIME_DIR
 * is set (a per-user tmpfs on systemd machines), else agent.sock in the home's
 * real directory. The directory's identity rather than a hash of its path,
 * because hashing would load node:crypto: ~4 ms of a ~50 ms `kmgr fetch`
 * through the agent. A home that does not exist has no agent (the path
 * returned then does not exist).
 */
export function agentSocketPath(paths: HomePaths, env: NodeJS.ProcessEnv = process.env): string {
  // Named explicitly, like SSH_AUTH_SOCK: `kmgr agent start` prints it, a shell exports it.
  const named = env.KMGR_AGENT_SOCK;
  if (named) return resolve(named);
  const xdg = env.XDG_RUNTIME_DIR;
  if (xdg && isAbsolute(xdg)) {
    let st;
    try {
      st = statSync(paths.dir, { bigint: true });
    } catch {
      return join(paths.dir, 'agent.sock');
    }
    return join(xdg, 'kmgr', `agent-${st.dev}-${st.ino}.sock`);
  }
  // The real directory, not a symbolic link to it: the socket's directory is checked with
  // lstat (a link in a directory others can write could be swapped after the check).
  let dir = paths.dir;
  try {
    dir = realpathSync(paths.dir);
  } catch {
    // No home: no agent either; the path returned does not exist.
  }
  return join(dir, 'agent.sock');
}

/**
 * Whether two spellings of a home are the same directory, by device and inode
 * as the socket is named (a symlink or bind mount finds the same agent, and it
 * must then count as this home's); a path that no longer exists is the same
 * only as itself.
 */
export function sameDirectory(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    const x = statSync(a, { bigint: true });
    const y = statSync(b, { bigint: true });
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

export function checkSocketPathLength(socket: string): void {
  if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
    throw new ConfigError(
      `the agent socket path ${socket} is too long for a Unix socket (${Buffer.byteLength(socket)} > ${MAX_SOCKET_PATH} bytes); set XDG_RUNTIME_DIR or use a shorter --home`,
    );
  }
}

/** Refuses a socket directory that is not a directory, not ours, or open to group/others. */
export function checkSocketDir(dir: string): void {
  let st;
  try {
    st = lstatSync(dir);
  } catch (e) {
    throw new ConfigError(`the agent's socket directory ${dir} is missing (${(e as NodeJS.ErrnoException).code ?? ''})`);
  }
  if (!st.isDirectory()) throw new ConfigError(`the agent's socket directory ${dir} is not a directory`);
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
    throw new ConfigError(`the agent's socket directory ${dir} belongs to another user`, 'unsafe_permissions');
  }
  if ((st.mode & 0o077) !== 0) {
    throw new ConfigError(`the agent's socket directory ${dir} is accessible by others (mode ${(st.mode & 0o777).toString(8)}); run chmod 700 on it`, 'unsafe_permissions');
  }
}

/**
 * What a client needs of the socket's directory before trusting a socket in it:
 * ours, and writable by nobody else (who could otherwise plant a socket). A
 * home that others may read is fine: the socket itself is 0600.
 */
export function checkNoOtherWriters(dir: string): void {
  const st = lstatSync(dir);
  if (!st.isDirectory() || (typeof process.getuid === 'function' && st.uid !== process.getuid()) || (st.mode & 0o022) !== 0) {
    throw new ConfigError(`the agent's socket directory ${dir} is not a directory of yours that only you can write; refusing to use an agent there`, 'unsafe_permissions');
  }
}

interface Pending {
  resolve: (r: { result: unknown; data: Uint8Array }) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** One connection to an agent. Requests may overlap; replies are matched by id. */
export class AgentConnection {
  private readonly decoder = new FrameDecoder();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: Error | undefined;

  private constructor(
    private readonly sock: Socket,
    readonly socketPath: string,
  ) {
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('error', (e: NodeJS.ErrnoException) => this.fail(new AgentError('lost', socketPath, `lost the connection to the kmgr agent at ${socketPath} (${e.code ?? e.message})`)));
    sock.on('close', () =>
      this.fail(new AgentError('lost', socketPath, `the kmgr agent at ${socketPath} closed the connection (it was stopped, or its time to live ran out)`)),
    );
    sock.unref();
  }

  /** Connects within timeoutMs; ENOENT, ECONNREFUSED and the like become AgentErrors at once. */
  static open(socketPath: string, timeoutMs = CONNECT_TIMEOUT_MS): Promise<AgentConnection> {
    return new Promise((resolve, reject) => {
      checkSocketPathLength(socketPath);
      const sock = createConnection({ path: socketPath });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new AgentError('timeout', socketPath, `the kmgr agent at ${socketPath} did not accept a connection within ${timeoutMs} ms`));
      }, timeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.removeAllListeners('error');
        resolve(new AgentConnection(sock, socketPath));
      });
      sock.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        sock.destroy();
        reject(connectError(socketPath, e));
      });
    });
  }

  /** Sends one request; resolves with the reply's result and data, or rejects with the agent's error. */
  request(
    op: AgentOp,
    extra: RequestExtra = {},
    data?: Uint8Array,
    timeoutMs = OP_TIMEOUT_MS,
  ): Promise<{ result: unknown; data: Uint8Array }> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    if (this.nextId >= 2 ** 31) this.nextId = 1;
    const frame = encodeRequest(id, op, extra, data);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new AgentError('timeout', this.socketPath, `the kmgr agent at ${this.socketPath} did not answer within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.sock.ref();
      // The frame may hold a secret (sealBlob): wipe it once the kernel has it.
      this.sock.write(frame, () => frame.fill(0));
    });
  }

  close(): void {
    this.fail(new AgentError('lost', this.socketPath, 'the connection to the kmgr agent was closed'));
  }

  /** True once the connection is closed or broken; every later request rejects. */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  private onData(chunk: Buffer): void {
    let replies: AgentReply[];
    try {
      replies = this.decoder.push(chunk).map(parseReply);
    } catch (e) {
      this.fail(new AgentError('protocol', this.socketPath, `${this.socketPath} does not speak the kmgr agent protocol (${(e as Error).message})`));
      return;
    }
    for (const r of replies) {
      const p = this.pending.get(r.id);
      if (!p) {
        if (r.ok) r.data.fill(0);
        continue; // a late answer to a request we gave up on
      }
      this.pending.delete(r.id);
      clearTimeout(p.timer);
      if (r.ok) p.resolve({ result: r.result, data: r.data });
      else p.reject(r.error);
    }
    if (this.pending.size === 0) this.sock.unref();
  }

  private fail(e: Error): void {
    if (!this.failure) this.failure = e;
    this.decoder.wipe();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(this.failure);
    }
    this.pending.clear();
    this.sock.destroy();
  }
}

function connectError(socketPath: string, e: NodeJS.ErrnoException): AgentError {
  switch (e.code) {
    case 'ENOENT':
      return new AgentError('not_running', socketPath, `no kmgr agent is running (no socket at ${socketPath})`);
    case 'ECONNREFUSED':
      return new AgentError('stale', socketPath, `the kmgr agent is not running: ${socketPath} is a stale socket left by a dead agent (kmgr agent start replaces it)`);
    case 'EACCES':
    case 'EPERM':
      return new AgentError('unsafe', socketPath, `not allowed to connect to the kmgr agent socket ${socketPath} (${e.code}); it belongs to someone else`);
    case 'ENOTSOCK':
      return new AgentError('protocol', socketPath, `${socketPath} is not a socket`);
    default:
      return new AgentError('stale', socketPath, `cannot connect to the kmgr agent at ${socketPath} (${e.code ?? e.message})`);
  }
}

export type Probe = { state: 'none' } | { state: 'stale' } | { state: 'running'; status: AgentStatus };

/** What is at the socket path: nothing, a dead agent's socket, or a live agent and its status. */
export async function probeAgent(socketPath: string, timeoutMs = CONNECT_TIMEOUT_MS): Promise<Probe> {
  let conn: AgentConnection;
  try {
    conn = await AgentConnection.open(socketPath, timeoutMs);
  } catch (e) {
    if (e instanceof AgentError && e.reason === 'not_running') return { state: 'none' };
    if (e instanceof AgentError && e.reason === 'stale') return { state: 'stale' };
    throw e;
  }
  try {
    return { state: 'running', status: await requestStatus(conn, Math.max(timeoutMs, 2_000)) };
  } finally {
    conn.close();
  }
}

export async function requestStatus(conn: AgentConnection, timeoutMs = OP_TIMEOUT_MS): Promise<AgentStatus> {
  const r = await conn.request('status', {}, undefined, timeoutMs);
  try {
    return AgentStatus(r.result, 'status');
  } catch (e) {
    throw new AgentError('protocol', conn.socketPath, `the kmgr agent at ${conn.socketPath} sent a malformed status (${(e as Error).message})`);
  }
}

/** A connection to the agent at socket; undefined when none runs there (no socket, or a stale one). */
export async function openHomeAgent(socket: string): Promise<AgentConnection | undefined> {
  // No directory, no agent. One that others can write is refused before connecting:
  // a planted socket would otherwise be handed every key that gets sealed.
  if (!existsSync(dirname(socket))) return undefined;
  checkNoOtherWriters(dirname(socket));
  try {
    return await AgentConnection.open(socket);
  } catch (e) {
    if (e instanceof AgentError && (e.reason === 'not_running' || e.reason === 'stale')) return undefined;
    throw e;
  }
}

/**
 * Has the agent serving this home make the whole fetch (src/agent/fetch-op.ts)
 * and hand back the formatted key and any warnings. undefined when no agent
 * serves the home, or one started by an older kmgr that lacks the operation:
 * nothing has then been sent to the key server, and the caller fetches itself.
 */
export async function agentFetch(paths: HomePaths, name: string, format: OutputFormat | undefined): Promise<{ bytes: Uint8Array; warnings: string[] } | undefined> {
  const socket = agentSocketPath(paths);
  const conn = await openHomeAgent(socket);
  if (!conn) return undefined;
  try {
    // The fetch may wait for the network or a --confirm answer; a status request sent
    // with it answers at once, and its short timeout fails both if the agent hangs.
    const alive = conn.request('status');
    const fetched = conn.request('fetch', { home: paths.dir, name, ...(format ? { format } : {}) }, undefined, CONFIRM_OP_TIMEOUT_MS);
    let r;
    try {
      [, r] = await Promise.all([alive, fetched]);
    } catch (e) {
      // An agent started by an older kmgr does not know the operation.
      if (e instanceof KmgrError && e.code === 'bad_request' && /^request\.op /.test(e.message)) return undefined;
      throw e;
    }
    const { warnings } = FetchReply(r.result, 'fetch');
    if (r.data.length === 0) throw new AgentError('protocol', socket, 'the kmgr agent sent an empty key');
    return { bytes: r.data, warnings };
  } finally {
    conn.close();
  }
}
