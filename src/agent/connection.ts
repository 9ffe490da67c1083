// Talking to the kmgr agent: the socket, one connection, and the one-shot
// fetch that `kmgr fetch` uses. Every wait is bounded: connecting gives up after
// CONNECT_TIMEOUT_MS and every request after its own timeout, so a dead agent,
// a stale socket file or a stopped (SIGSTOP) agent is a typed AgentError within
// seconds, never a hang.
//
// Kept apart from client.ts (sessions bound to an identity) so that `kmgr fetch`
// through the agent loads only this, the frame protocol and node:net.
import { createConnection, type Socket } from 'node:net';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { KmgrError } from '../protocol/errors.js';
import type { HomePaths } from '../client/home.js';
import { AgentError, CONNECT_TIMEOUT_MS, OP_TIMEOUT_MS, CONFIRM_OP_TIMEOUT_MS, agentSocketPath, checkNoOtherWriters, checkSocketPathLength } from './socket.js';
import type { OutputFormat } from '../crypto/formats.js';
import { AgentStatus, FetchReply, FrameDecoder, encodeRequest, parseReply, type AgentOp, type AgentReply, type RequestExtra } from './protocol.js';

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
    sock.on('error', (e: NodeJS.ErrnoException) => this.fail(new AgentError('lost', socketPath, `lost the connection to the kmgr agent at ${socketPath} (${e.code ?? e.message})`).because(e)));
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
      this.fail(new AgentError('protocol', this.socketPath, `${this.socketPath} does not speak the kmgr agent protocol (${(e as Error).message})`).because(e));
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
      return new AgentError('stale', socketPath, `cannot connect to the kmgr agent at ${socketPath} (${e.code ?? e.message})`).because(e);
  }
}

type Probe = { state: 'none' } | { state: 'stale' } | { state: 'running'; status: AgentStatus };

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
    throw new AgentError('protocol', conn.socketPath, `the kmgr agent at ${conn.socketPath} sent a malformed status (${(e as Error).message})`).because(e);
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
