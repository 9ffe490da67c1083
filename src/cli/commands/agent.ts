// kmgr agent start|stop|status: keep the management key unlocked in a
// background process (like ssh-agent) so commands need no passphrase. The
// agent signs and opens/seals blobs on request; it never hands out the key.
// See src/agent/server.ts for its life cycle and who may connect.
import { spawn, type StdioOptions } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Socket } from 'node:net';
import { fingerprint, signerFromSeed } from '../../crypto/sign.js';
import { concat, wipe } from '../../crypto/bytes.js';
import { IntegrityError, KmgrError, UnavailableError, UsageError } from '../../protocol/errors.js';
import { decodeError } from '../../protocol/wire-error.js';
import { homePaths, type HomePaths } from '../../client/home.js';
import { loadConfig } from '../../client/config.js';
import { unlockAsking } from '../../client/keystore-file.js';
import type { PassphraseSource } from '../../client/passphrase.js';
import { ensurePrivateDir } from '../../io/atomic-file.js';
import { parseDuration } from '../parse.js';
import { AgentError, agentSocketPath, checkSocketDir, checkSocketPathLength, probeAgent, sameDirectory, stopAgent } from '../../agent/client.js';
import { AGENT_PROTOCOL_VERSION, BootReply, FrameDecoder, MAX_TTL_MS, encodeFrame, type AgentBoot, type AgentStatus } from '../../agent/protocol.js';
import { info, print, printJson, warn } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';

const DEFAULT_TTL = '15m';
const START_TIMEOUT_MS = 10_000;
const STOP_WAIT_MS = 5_000;
const AGENT_MAIN = fileURLToPath(new URL('../../agent/main.js', import.meta.url));

interface AgentStartOptions extends PassphraseSource {
  ttl?: string;
  confirm?: boolean;
  ssh?: boolean;
}

/** The OpenSSH agent socket beside the kmgr agent's own (same private directory). */
const sshSocketFor = (socket: string): string => socket.replace(/\.sock$/, '') + '-ssh.sock';

/** --ttl: the shared duration rules (src/cli/parse.ts), from 1 s to 7 days. */
export function parseTtl(v: string): number {
  return parseDuration('--ttl', v, { min: 1_000, max: MAX_TTL_MS });
}

/** The socket path for this home, with its directory made (XDG) or checked (home) private. */
async function prepareSocket(paths: HomePaths): Promise<string> {
  const socket = agentSocketPath(paths);
  checkSocketPathLength(socket);
  // A socket named by KMGR_AGENT_SOCK lives in the user's directory, which kmgr checks but never chmods.
  if (dirname(socket) !== paths.dir && !process.env.KMGR_AGENT_SOCK) await ensurePrivateDir(dirname(socket));
  checkSocketDir(dirname(socket));
  return socket;
}

export async function start(g: GlobalOptions, o: AgentStartOptions): Promise<number> {
  const paths = homePaths(g.home);
  const ttlMs = parseTtl(o.ttl ?? DEFAULT_TTL);
  const config = await loadConfig(paths);
  const socket = await prepareSocket(paths);
  const sshSocket = o.ssh ? sshSocketFor(socket) : null;
  if (sshSocket) checkSocketPathLength(sshSocket);
  // Refused before the passphrase is asked for: one agent per home.
  const probe = await probeAgent(socket);
  if (probe.state === 'running') {
    throw new AgentError('running', socket, `a kmgr agent is already running for ${paths.dir} (pid ${probe.status.pid}, socket ${socket}); kmgr agent stop ends it`);
  }
  let ttyFd: number | undefined;
  if (o.confirm) {
    try {
      ttyFd = openSync('/dev/tty', 'r+');
    } catch {
      throw new UsageError('--confirm needs a terminal to ask on, and there is none (/dev/tty cannot be opened)');
    }
  }
  try {
    const secrets = await unlockAsking(paths, o);
    const packed = concat(secrets.signingSeed, secrets.wrapKey);
    wipe(secrets.signingSeed);
    wipe(secrets.wrapKey);
    try {
      const seed = packed.slice(0, 32);
      const fp = fingerprint(signerFromSeed(seed).publicKey);
      wipe(seed);
      if (fp !== config.fingerprint) throw new IntegrityError(`${paths.config} names a different management key than the keystore`);
      if (probe.state === 'stale') await unlink(socket).catch(() => undefined);
      const boot: AgentBoot = {
        v: AGENT_PROTOCOL_VERSION,
        home: paths.dir,
        socket,
        ttlMs,
        fingerprint: config.fingerprint,
        keyId: config.keyId,
        confirm: Boolean(o.confirm),
        ttyFd: ttyFd === undefined ? null : 4,
        sshSocket,
      };
      const pid = await spawnAgent(boot, packed, ttyFd);
      const expiresAt = new Date(Date.now() + ttlMs).toISOString();
      if (g.json) printJson({ socket, pid, home: paths.dir, fingerprint: config.fingerprint, expiresAt, confirm: boot.confirm, sshSocket });
      else if (sshSocket) {
        // Like ssh-agent: eval "$(kmgr agent start --ssh)" sets SSH_AUTH_SOCK.
        print(`SSH_AUTH_SOCK=${shellQuote(sshSocket)}; export SSH_AUTH_SOCK;`);
        info(`kmgr agent (pid ${pid}) holds the management key for ${paths.dir} until ${expiresAt}${boot.confirm ? ', asking here before each use' : ''}; its SSH agent offers the keys marked --ssh.`);
      } else {
        print(socket);
        info(`kmgr agent (pid ${pid}) holds the management key for ${paths.dir} until ${expiresAt}${boot.confirm ? ', asking here before each use' : ''}.`);
      }
      return EXIT.OK;
    } finally {
      wipe(packed);
    }
  } finally {
    if (ttyFd !== undefined) closeSync(ttyFd);
  }
}

/** Spawns the agent detached, hands it the secrets over fd 3, and resolves with its pid once its socket answers. */
async function spawnAgent(boot: AgentBoot, secrets: Uint8Array, ttyFd: number | undefined): Promise<number> {
  // A minimal environment: never KMGR_PASSPHRASE, and never NODE_OPTIONS (an
  // inherited --inspect would open a debugger onto the keys).
  const env: NodeJS.ProcessEnv = { KMGR_HOME: boot.home };
  for (const k of ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'XDG_RUNTIME_DIR', 'KMGR_TIMEOUT']) if (process.env[k] !== undefined) env[k] = process.env[k];
  // stdin/out/err ignored: the agent must not hold the caller's pipes open (or write to them).
  const stdio: StdioOptions = ['ignore', 'ignore', 'ignore', 'pipe', ...(ttyFd !== undefined ? [ttyFd] : [])];
  const child = spawn(process.execPath, [AGENT_MAIN], { detached: true, cwd: '/', env, stdio });
  const chan = child.stdio[3] as Socket;
  const kill = (): void => {
    try {
      child.kill('SIGKILL');
    } catch {
      /* gone */
    }
  };
  try {
    const reply = await new Promise<unknown>((resolve, reject) => {
      const dec = new FrameDecoder();
      let settled = false;
      const settle = (e: Error | undefined, v?: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        dec.wipe();
        if (e) reject(e);
        else resolve(v);
      };
      const timer = setTimeout(() => settle(new AgentError('timeout', boot.socket, `the kmgr agent did not start within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
      child.once('error', (e) => settle(new UnavailableError(`cannot start the kmgr agent: ${e.message}`).because(e)));
      chan.on('error', () => undefined);
      chan.on('data', (chunk: Buffer) => {
        try {
          const f = dec.push(chunk)[0];
          if (f) settle(undefined, f.json);
        } catch (e) {
          settle(e as Error);
        }
      });
      // The pipe closes when the agent exits; whatever it said has arrived by then.
      chan.on('close', () => settle(new UnavailableError(`the kmgr agent exited while starting (exit code ${child.exitCode ?? 'unknown'})`)));
      const frame = encodeFrame(boot, secrets);
      chan.write(frame, () => frame.fill(0));
    });
    const r = BootReply(reply, 'agent');
    if (!r.ok) {
      if (r.code === 'version_conflict') throw new AgentError('running', boot.socket, r.message ?? 'an agent is already running');
      throw decodeError({ code: r.code ?? '', message: r.message ?? 'the kmgr agent could not start' }, { unknown: (f) => new KmgrError('internal', f.message) });
    }
    // Ready means answering on the socket, as the agent this process started.
    const probe = await probeAgent(boot.socket, 2_000);
    if (probe.state !== 'running' || probe.status.pid !== child.pid) {
      throw new UnavailableError(`the kmgr agent started but its socket ${boot.socket} does not answer`);
    }
    chan.destroy();
    child.unref();
    return child.pid;
  } catch (e) {
    kill();
    chan.destroy();
    throw e;
  }
}

export async function stop(g: GlobalOptions): Promise<number> {
  const paths = homePaths(g.home);
  await loadConfig(paths); // 78 for a home that is not initialised, as every command
  const socket = agentSocketPath(paths);
  const probe = await probeAgent(socket);
  if (probe.state === 'none') {
    if (g.json) printJson({ stopped: false, running: false, socket });
    else info(`no kmgr agent is running for ${paths.dir}`);
    return EXIT.OK;
  }
  if (probe.state === 'stale') {
    await unlink(socket).catch(() => undefined);
    if (g.json) printJson({ stopped: false, running: false, socket, removedStaleSocket: true });
    else info(`no kmgr agent is running for ${paths.dir}; removed the stale socket ${socket}`);
    return EXIT.OK;
  }
  // The socket is named by the home's device and inode: make sure the agent there is this home's
  // (not one left for a deleted home whose inode was reused) before ending it.
  if (!sameDirectory(probe.status.home, paths.dir)) {
    throw new IntegrityError(`the kmgr agent at ${socket} (pid ${probe.status.pid}) serves ${probe.status.home}, not ${paths.dir}; not stopping it`);
  }
  const pid = probe.status.pid;
  await stopAgent(socket);
  if (!(await waitGone(pid, socket, STOP_WAIT_MS))) {
    throw new UnavailableError(`the kmgr agent (pid ${pid}) acknowledged stop but is still running`);
  }
  if (g.json) printJson({ stopped: true, pid, socket });
  else info(`stopped the kmgr agent (pid ${pid}); its keys are wiped`);
  return EXIT.OK;
}

/** A path as a POSIX shell word (single quotes unless it is plainly safe). */
function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

async function waitGone(pid: number, socket: string, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    const alive = isAlive(pid);
    const state = alive ? 'running' : (await probeAgent(socket).catch(() => ({ state: 'running' as const }))).state;
    if (!alive && state !== 'running') return true;
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function status(g: GlobalOptions): Promise<number> {
  const paths = homePaths(g.home);
  await loadConfig(paths);
  const socket = agentSocketPath(paths);
  const probe = await probeAgent(socket);
  if (probe.state === 'none') throw new AgentError('not_running', socket, `no kmgr agent is running for ${paths.dir}`);
  if (probe.state === 'stale') {
    throw new AgentError('stale', socket, `the kmgr agent for ${paths.dir} is not running: ${socket} is a stale socket left by a dead agent (kmgr agent start replaces it)`);
  }
  const s = probe.status;
  const cfg = await loadConfig(paths).catch(() => undefined);
  if (cfg && cfg.fingerprint !== s.fingerprint) warn(`the agent holds management key ${s.fingerprint}, but ${paths.config} names ${cfg.fingerprint}`);
  if (g.json) printJson({ running: true, ...s });
  else printStatus(s);
  return EXIT.OK;
}

function printStatus(s: AgentStatus): void {
  const left = Math.ceil(s.ttlLeftMs / 1000);
  const h = Math.floor(left / 3600);
  const m = Math.floor((left % 3600) / 60);
  const sec = left % 60;
  const inText = (h ? `${h}h ` : '') + (h || m ? `${m}m ` : '') + `${sec}s`;
  print(`agent:        running (pid ${s.pid})`);
  print(`socket:       ${s.socket}`);
  print(`home:         ${s.home}`);
  print(`fingerprint:  ${s.fingerprint}`);
  print(`expires:      ${s.expiresAt} (in ${inText})`);
  print(`confirm:      ${s.confirm ? 'yes' : 'no'}`);
  print(`served:       ${s.served} key operation(s), ${s.refused} refused`);
  if (s.sshSocket) print(`ssh agent:    ${s.sshSocket}`);
}
