// The agent's socket as both ends see it: where it is, who may use its
// directory, and the typed error for every way it can fail. The agent process
// (server.ts) and its clients (connection.ts, client.ts, `kmgr agent`) import
// it from here, so that neither end imports the other.
import { realpathSync, statSync } from 'node:fs';
import { checkAccessSync } from '../io/permissions.js';
import { isAbsolute, join, resolve } from 'node:path';
import { ConfigError, KmgrError, type ErrorCode } from '../protocol/errors.js';
import type { HomePaths } from '../client/home.js';

export const CONNECT_TIMEOUT_MS = 1_000;
/** An operation the agent answers at once. */
export const OP_TIMEOUT_MS = 10_000;
/** An operation that may wait for a person to answer a --confirm prompt (the agent gives up after 60 s). */
export const CONFIRM_OP_TIMEOUT_MS = 90_000;
/** Linux's sun_path holds 108 bytes including the final NUL. */
const MAX_SOCKET_PATH = 107;

type AgentErrorReason =
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

/**
 * Refuses a socket directory that is not a directory, not ours, or open to group/others.
 * lstat: a symbolic link in the directory's place, planted where others can write
 * the parent, must not lend the check its target's owner and mode (see Look).
 */
export function checkSocketDir(dir: string): void {
  let a;
  try {
    a = checkAccessSync(dir, { look: 'lstat', deny: 0o077, owner: 'self', kind: 'directory' });
  } catch (e) {
    throw new ConfigError(`the agent's socket directory ${dir} is missing (${(e as NodeJS.ErrnoException).code ?? ''})`);
  }
  if (a.problem === 'kind') throw new ConfigError(`the agent's socket directory ${dir} is not a directory`);
  if (a.problem === 'owner') throw new ConfigError(`the agent's socket directory ${dir} belongs to another user`, 'unsafe_permissions');
  if (a.problem === 'mode') {
    throw new ConfigError(`the agent's socket directory ${dir} is accessible by others (mode ${a.mode.toString(8)}); run chmod 700 on it`, 'unsafe_permissions');
  }
}

/**
 * What a client needs of the socket's directory before trusting a socket in it:
 * ours, and writable by nobody else (who could otherwise plant a socket). A
 * home that others may read is fine: the socket itself is 0600.
 */
export function checkNoOtherWriters(dir: string): void {
  // lstat, as checkSocketDir: a planted link must not stand in for the directory.
  if (checkAccessSync(dir, { look: 'lstat', deny: 0o022, owner: 'self', kind: 'directory' }).problem) {
    throw new ConfigError(`the agent's socket directory ${dir} is not a directory of yours that only you can write; refusing to use an agent there`, 'unsafe_permissions');
  }
}
