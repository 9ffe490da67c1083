// The kmgr agent process: like ssh-agent, it holds the unlocked management
// secrets in memory and serves sign / openBlob / sealBlob over a Unix socket,
// never handing out the keys themselves.
//
// Life cycle. `kmgr agent start` unlocks the keystore, spawns this process
// detached (src/agent/main.ts) with a pipe as fd 3, and writes one boot frame
// on it: the options as JSON and the 64 bytes of secrets as binary. Secrets
// never travel through argv or the environment. The agent listens, answers
// {ok:true} on the pipe and closes it; `agent start` then checks that the
// socket answers before it returns.
//
// The agent wipes the wrap key, drops the signing key and exits when:
// its TTL runs out, a client sends `stop`, it gets SIGTERM/SIGINT/SIGHUP, or
// its socket file is removed or replaced (a lost socket would otherwise leave
// an unreachable process holding the key until the TTL).
//
// Who may connect. Node exposes no peer credentials (SO_PEERCRED /
// getpeereid), so the agent cannot check the connecting uid itself. Instead it
// relies on the file system, as ssh-agent's socket directory does: the socket
// is created under umask 077 and chmod 0600, and its directory must be owned by
// this user with no group/other access (checked before listening), so only this
// user (and root) can connect on Linux.
import { createConnection, createServer, Socket, type Server } from 'node:net';
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { lstat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ReadStream, WriteStream } from 'node:tty';
import { signerFromSeed, fingerprint, TAG_BINDING, TAG_REQUEST, type Signer } from '../crypto/sign.js';
import { openBlob, sealBlob, type BlobContext } from '../crypto/blob.js';
import { decodeFields, toB64url, wipe } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import { homePaths } from '../client/home.js';
import { loadConfig } from '../client/config.js';
import { loadPartners } from '../client/partners.js';
import { cleanLine } from '../protocol/text.js';
import { ConfigError, InternalError, IntegrityError, KmgrError, UnavailableError } from '../protocol/errors.js';
import { asKmgrError, encodeError } from '../protocol/wire-error.js';
import { EXIT } from '../cli/exit-codes.js';
import {
  AgentBoot, BOOT_SECRET_BYTES, FrameDecoder, encodeErr, encodeFrame, encodeOk, parseRequest, requestId,
  type AgentRequest, type AgentStatus, type Frame,
} from './protocol.js';
import { AgentError, checkSocketDir } from './socket.js';
import { checkAccessSync } from '../io/permissions.js';
import { SerialQueue } from '../io/serial-queue.js';
import { fetchInAgent, type AgentKeys } from './fetch-op.js';
import { SshAgentServer } from './ssh-server.js';

const BOOT_TIMEOUT_MS = 10_000;
const IDLE_TIMEOUT_MS = 120_000; // longer than a --confirm prompt waits
const MAX_CONNECTIONS = 64;
const SOCKET_CHECK_MS = 2_000;
/** How long a --confirm prompt waits for an answer before refusing. */
const CONFIRM_TIMEOUT_MS = 60_000;

/** Entry point of the agent process: read the boot frame from fd 3, listen, serve. */
export async function runAgent(bootFd = 3): Promise<void> {
  const channel = new Socket({ fd: bootFd, readable: true, writable: true });
  channel.on('error', () => undefined);
  let frame: Frame;
  try {
    frame = await readOneFrame(channel, BOOT_TIMEOUT_MS);
  } catch {
    // Nobody to tell: the starter is gone or broken. Nothing secret was received.
    exitAgent(EXIT.SOFTWARE);
  }
  let agent: Agent | undefined;
  try {
    const boot = AgentBoot(frame.json, 'boot');
    if (frame.bin.length !== BOOT_SECRET_BYTES) throw new InternalError('the agent received secrets of the wrong length');
    agent = new Agent(boot, frame.bin);
    agent.armSignals();
    await agent.listen();
  } catch (e) {
    wipe(frame.bin);
    agent?.wipeKeys();
    // The boot reply is flat ({ok, code, message}) and has no room for details.
    const { code, message } = encodeError(asKmgrError(e, 'the agent could not start'));
    await writeAndClose(channel, encodeFrame({ ok: false, code, message }));
    exitAgent(EXIT.AGENT_FAILED);
  }
  // If `agent start` is gone before hearing that we are ready, nobody knows we
  // hold the key: better to wipe it and leave.
  if (!(await writeAndClose(channel, encodeFrame({ ok: true, pid: process.pid })))) agent.shutdown(EXIT.AGENT_FAILED);
}

/**
 * The agent process's one way out, with a status from the one table of exit
 * codes. Every path that ends the agent (TTL, stop, a signal, a lost socket, a
 * failed start) comes here, after wiping what it held.
 */
export function exitAgent(code: number): never {
  process.exit(code);
}

function readOneFrame(sock: Socket, timeoutMs: number): Promise<Frame> {
  return new Promise((resolve, reject) => {
    const dec = new FrameDecoder();
    const timer = setTimeout(() => done(new Error('boot timed out')), timeoutMs);
    const done = (err: Error | undefined, f?: Frame): void => {
      clearTimeout(timer);
      sock.removeAllListeners('data');
      sock.removeAllListeners('end');
      sock.pause();
      dec.wipe();
      if (err) reject(err);
      else resolve(f!);
    };
    sock.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = dec.push(chunk);
      } catch (e) {
        return done(e as Error);
      }
      chunk.fill(0);
      const f = frames[0];
      if (f) done(undefined, f);
    });
    sock.on('end', () => done(new Error('boot channel closed')));
  });
}

/** Writes a last frame and closes; true if it was handed to the peer in time. */
function writeAndClose(sock: Socket, buf: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), 2_000);
    sock.once('error', () => {
      clearTimeout(t);
      resolve(false);
    });
    sock.end(buf, () => {
      clearTimeout(t);
      resolve(!sock.errored);
    });
  });
}

class Agent {
  private wrapKey: Uint8Array | undefined;
  private signer: Signer | undefined;
  private readonly publicKey: Uint8Array;
  private readonly server: Server;
  private readonly conns = new Set<Socket>();
  private readonly startedAt = Date.now();
  private readonly expiresAt: number;
  private ttlTimer: NodeJS.Timeout | undefined;
  private watchTimer: NodeJS.Timeout | undefined;
  private socketId: { dev: number; ino: number } | undefined;
  private readonly confirmer: TtyConfirmer | undefined;
  private served = 0;
  private refused = 0;
  private stopping = false;
  private ssh: SshAgentServer | undefined;

  constructor(
    private readonly boot: AgentBoot,
    secrets: Uint8Array,
  ) {
    const seed = secrets.slice(0, 32);
    this.wrapKey = secrets.slice(32, 64);
    wipe(secrets);
    // The seed lives on only inside the KeyObject (OpenSSL memory); our copy is wiped.
    this.signer = signerFromSeed(seed);
    wipe(seed);
    this.publicKey = this.signer.publicKey;
    if (fingerprint(this.publicKey) !== boot.fingerprint) {
      this.wipeKeys();
      throw new IntegrityError('the secrets given to the agent do not match the fingerprint it was told');
    }
    this.expiresAt = this.startedAt + boot.ttlMs;
    if (boot.confirm) {
      if (boot.ttyFd === null) throw new ConfigError('--confirm needs a terminal');
      this.confirmer = new TtyConfirmer(boot.ttyFd);
    }
    this.server = createServer((c) => this.onConnection(c));
    this.server.maxConnections = MAX_CONNECTIONS;
  }

  /** Checks the socket's directory, replaces a stale socket, listens with mode 0600. */
  async listen(): Promise<void> {
    const socket = this.boot.socket;
    checkSocketDir(dirname(socket));
    let existing;
    try {
      existing = await lstat(socket);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (existing) {
      if (!existing.isSocket()) throw new ConfigError(`${socket} exists and is not a socket; remove it`);
      if (await answers(socket)) throw new AgentError('running', socket, `a kmgr agent is already running for ${this.boot.home} (socket ${socket})`);
      await unlink(socket).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
    }
    // Created under umask 077 so the socket is never briefly connectable by others.
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', (e: NodeJS.ErrnoException) =>
          reject(e.code === 'EADDRINUSE' ? new AgentError('running', socket, `a kmgr agent is already running for ${this.boot.home} (socket ${socket})`) : e),
        );
        this.server.listen(socket, () => resolve());
      });
    } finally {
      process.umask(oldMask);
    }
    chmodSync(socket, 0o600);
    // lstat: the name we listen on, as its clients will find it. A file system that
    // ignores chmod must not leave a socket others can connect to (0600 and no more).
    const { st, problem, mode } = checkAccessSync(socket, { look: 'lstat', deny: 0o177, owner: 'any' });
    if (problem) throw new ConfigError(`could not make ${socket} private (mode ${mode.toString(8)})`);
    this.socketId = { dev: st.dev, ino: st.ino };
    if (this.boot.sshSocket) {
      this.ssh = new SshAgentServer({ socket: this.boot.sshSocket, keys: this.keys(), confirm: (what) => this.confirm(what), onServed: () => this.served++ });
      await this.ssh.listen();
    }
    this.server.on('error', () => this.shutdown(EXIT.AGENT_FAILED));
    this.ttlTimer = setTimeout(() => this.shutdown(EXIT.OK), this.boot.ttlMs);
    this.watchTimer = setInterval(() => this.checkSocket(), SOCKET_CHECK_MS);
  }

  armSignals(): void {
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => this.shutdown(EXIT.OK));
    process.on('uncaughtException', () => this.shutdown(EXIT.SOFTWARE));
    process.on('unhandledRejection', () => this.shutdown(EXIT.SOFTWARE));
  }

  wipeKeys(): void {
    wipe(this.wrapKey);
    this.wrapKey = undefined;
    this.signer = undefined; // the KeyObject cannot be zeroed from JS; it goes with the process
  }

  /** Wipes the keys, stops listening, removes our socket (not a successor's) and exits. */
  shutdown(code: number): void {
    if (this.stopping) return;
    this.stopping = true;
    this.wipeKeys();
    clearTimeout(this.ttlTimer);
    clearInterval(this.watchTimer);
    this.server.close();
    for (const c of this.conns) c.destroy();
    this.ssh?.close();
    this.confirmer?.close();
    if (this.socketId) {
      try {
        const st = lstatSync(this.boot.socket);
        if (st.dev === this.socketId.dev && st.ino === this.socketId.ino) unlinkSync(this.boot.socket);
      } catch {
        /* already gone */
      }
    }
    exitAgent(code);
  }

  private checkSocket(): void {
    try {
      const st = lstatSync(this.boot.socket);
      if (this.socketId && st.dev === this.socketId.dev && st.ino === this.socketId.ino) return;
    } catch {
      /* removed */
    }
    this.socketId = undefined; // not ours any more: leave whatever is there alone
    this.shutdown(EXIT.OK);
  }

  private onConnection(c: Socket): void {
    if (this.stopping) {
      c.destroy();
      return;
    }
    this.conns.add(c);
    const dec = new FrameDecoder();
    const queue = new SerialQueue();
    c.setTimeout(IDLE_TIMEOUT_MS, () => c.destroy());
    c.on('error', () => undefined);
    c.on('close', () => {
      this.conns.delete(c);
      dec.wipe();
    });
    let broken = false;
    c.on('data', (chunk: Buffer) => {
      if (broken) return;
      let frames: Frame[];
      try {
        frames = dec.push(chunk);
      } catch (e) {
        // Oversized or unparsable: answer once, then drop the connection.
        broken = true;
        c.end(encodeErr(0, e as KmgrError));
        return;
      } finally {
        chunk.fill(0);
      }
      // serve() answers every failure itself; the catch keeps one that escapes from ending the agent.
      for (const f of frames)
        queue
          .run(() => this.serve(c, f))
          .catch(() => {
            c.destroy();
          });
    });
  }

  private async serve(c: Socket, f: Frame): Promise<void> {
    let reply: Buffer;
    let after: (() => void) | undefined;
    try {
      const req = parseRequest(f);
      const r = await this.dispatch(req);
      reply = encodeOk(req.id, r.result, r.data);
      if (r.data) wipe(r.data);
      after = r.after;
    } catch (e) {
      const err = asKmgrError(e, 'the agent failed to serve the request');
      try {
        reply = encodeErr(requestId(f.json), err);
      } catch {
        reply = encodeErr(requestId(f.json), new InternalError('the agent could not encode its answer'));
      }
    } finally {
      wipe(f.bin);
    }
    if (c.destroyed) {
      reply.fill(0);
      return;
    }
    c.write(reply, () => {
      reply.fill(0); // may hold an opened secret
      after?.();
    });
  }

  private async dispatch(req: AgentRequest): Promise<{ result: unknown; data?: Uint8Array; after?: () => void }> {
    switch (req.op) {
      case 'status':
        return { result: this.status() };
      case 'publicKey':
        return { result: { publicKey: toB64url(this.publicKey), fingerprint: this.boot.fingerprint } };
      case 'stop':
        return { result: { stopping: true }, after: () => this.shutdown(EXIT.OK) };
      case 'sign': {
        if (this.confirmer) await this.confirm(describeSign(req.tag, req.data, req.label, await this.partnerNames()));
        const signer = this.liveSigner();
        this.served++;
        return { result: {}, data: signer.sign(req.tag, req.data) };
      }
      case 'openBlob': {
        await this.confirm(describeBlob('decrypt', req.ctx, req.label));
        const secret = openBlob(this.liveWrapKey(), req.ctx, req.data);
        this.served++;
        return { result: {}, data: secret };
      }
      case 'sealBlob': {
        await this.confirm(describeBlob('encrypt', req.ctx, req.label));
        const blob = sealBlob(this.liveWrapKey(), req.ctx, req.data);
        this.served++;
        return { result: {}, data: blob };
      }
      case 'fetch': {
        // Asked before the request is sent: a refusal costs no counted use.
        if (this.confirmer) await this.confirm(`fetch and decrypt the key for partner ${clean(req.name, 64)} from ${clean(await this.serverUrl(), 200)}`);
        const r = await fetchInAgent(this.keys(), req);
        this.served++;
        return { result: { warnings: r.warnings }, data: r.bytes };
      }
    }
  }

  /** The held keys as the fetch code takes them; they throw once wiped. */
  private keys(): AgentKeys {
    return { home: this.boot.home, fingerprint: this.boot.fingerprint, signer: () => this.liveSigner(), wrapKey: () => this.liveWrapKey() };
  }

  private liveSigner(): Signer {
    if (!this.signer || this.stopping) throw new UnavailableError('the kmgr agent is stopping');
    return this.signer;
  }

  private liveWrapKey(): Uint8Array {
    if (!this.wrapKey || this.stopping) throw new UnavailableError('the kmgr agent is stopping');
    return this.wrapKey;
  }

  /** The home's partner names by ID, for prompts; empty if the index cannot be read. */
  private async partnerNames(): Promise<Map<string, string>> {
    try {
      return new Map((await loadPartners(homePaths(this.boot.home))).partners.map((p) => [p.id, p.name]));
    } catch {
      return new Map();
    }
  }

  /** The server the home's config names, for prompts. */
  private async serverUrl(): Promise<string> {
    try {
      return (await loadConfig(homePaths(this.boot.home))).server;
    } catch {
      return '(this home names no server)';
    }
  }

  private async confirm(what: string): Promise<void> {
    if (!this.confirmer) return;
    if (!(await this.confirmer.ask(what))) {
      this.refused++;
      throw new KmgrError('auth_forbidden', `refused at the kmgr agent's terminal: ${what}`);
    }
  }

  private status(): AgentStatus {
    const now = Date.now();
    return {
      pid: process.pid,
      home: this.boot.home,
      socket: this.boot.socket,
      fingerprint: this.boot.fingerprint,
      keyId: this.boot.keyId,
      publicKey: toB64url(this.publicKey),
      startedAt: new Date(this.startedAt).toISOString(),
      expiresAt: new Date(this.expiresAt).toISOString(),
      ttlLeftMs: Math.max(0, this.expiresAt - now),
      confirm: this.boot.confirm,
      served: this.served,
      refused: this.refused,
      sshSocket: this.boot.sshSocket ?? null,
    };
  }
}

/** True if something accepts connections at the socket path (within a second). */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ path });
    const t = setTimeout(() => {
      s.destroy();
      resolve(true); // accepting but silent still means someone is there
    }, 1_000);
    s.once('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      clearTimeout(t);
      s.destroy();
      resolve(false);
    });
  });
}

/** Text shown on the terminal must not carry escape sequences, newlines or invisible characters: the one sanitiser. */
const clean = (s: string, max = 120): string => cleanLine(s, max);

/**
 * What a signature allows, from the bytes being signed rather than the label
 * the caller chose: for a request, the server it goes to, the method, the path
 * and the partner by name; for a binding statement, the partner and the
 * fingerprint of the public key being bound. The label is shown after, as a hint.
 */
function describeSign(tag: string, payload: Uint8Array, label: string | undefined, names: Map<string, string>): string {
  const hint = label !== undefined ? ` [caller says: ${clean(label, 60)}]` : '';
  const partner = (id: string): string => {
    const name = names.get(id);
    return name !== undefined ? `${clean(name, 64)} (${clean(id, 40)})` : `${clean(id, 40)} (not in this home's partner list)`;
  };
  if (tag === TAG_REQUEST) {
    // The payload is an RFC 9421 signature base.
    const text = Buffer.from(payload).toString('utf8');
    const field = (name: string): string => new RegExp(`^"${name}": (.*)$`, 'm').exec(text)?.[1] ?? '?';
    const method = field('@method');
    const path = field('@path');
    const id = /^\/v1\/keys\/([^/]+)/.exec(path)?.[1];
    return `sign a request to https://${clean(field('@authority'), 100)}: ${clean(method, 10)} ${clean(path)}${id ? `, partner ${partner(id)}` : ''}${hint}`;
  }
  if (tag === TAG_BINDING) {
    // personId, partnerId, keyId, alg, SPKI DER, keyVersion, issuedAt, expiresAt[, locked]: see crypto/binding.ts.
    const f = decodeFields(payload);
    if (!f || f.length < 8) return `sign a malformed key binding statement${hint}`;
    const s = (i: number): string => Buffer.from(f[i]!).toString('utf8');
    const locked = f.length > 8 && s(8) === 'locked' ? ', locked' : '';
    return `sign a key binding statement for partner ${partner(s(1))}: ${clean(s(3), 16)} public key SHA256:${toB64url(sha256(f[4]!))} v${clean(s(5), 12)}${locked}${hint}`;
  }
  return `sign ${clean(tag)}${hint}`;
}

function describeBlob(verb: 'decrypt' | 'encrypt', c: BlobContext, label: string | undefined): string {
  const hint = label !== undefined ? ` ${clean(label)}` : '';
  return `${verb} key${hint} (partner ${clean(c.partnerId, 40)}, key ${clean(c.keyId, 40)} v${c.keyVersion}, ${clean(c.alg, 16)})`;
}

/**
 * --confirm: asks on the terminal `kmgr agent start` was run from (its fd is
 * inherited; the detached agent has no controlling terminal of its own).
 * One question at a time; anything but y/yes, a closed terminal or 60 s of
 * silence refuses. The answer is read from the terminal like any program's
 * input, so it works best when the command that uses the agent runs in the
 * foreground of that same terminal.
 *
 * The terminal is read only while a question is open: a paused stream would
 * go on reading to fill its buffer, swallowing the next line typed at the
 * shell and taking it for the next answer. And what was typed before a
 * question appeared (already waiting in the terminal's buffer) is discarded,
 * so a keystroke meant for something else cannot answer it.
 */
const TYPED_AHEAD_MS = 100;

class TtyConfirmer {
  private readonly input: ReadStream;
  private readonly output: WriteStream;
  private readonly questions = new SerialQueue();
  private dead = false;

  constructor(fd: number) {
    this.input = new ReadStream(fd);
    this.output = new WriteStream(fd);
    this.input.on('error', () => (this.dead = true));
    this.input.on('end', () => (this.dead = true));
    this.output.on('error', () => (this.dead = true));
    this.stopReading();
  }

  ask(what: string): Promise<boolean> {
    return this.questions.run(() => this.askNow(what));
  }

  close(): void {
    this.dead = true;
    this.input.destroy();
    this.output.destroy();
  }

  private askNow(what: string): Promise<boolean> {
    if (this.dead) return Promise.resolve(false);
    return new Promise((resolve) => {
      let line = '';
      const finish = (yes: boolean, note: string): void => {
        clearTimeout(timer);
        this.input.off('data', onData);
        this.input.off('end', onEnd);
        this.input.off('error', onEnd);
        this.stopReading();
        if (!this.dead) this.output.write(note);
        resolve(yes);
      };
      let open = false;
      const onData = (chunk: Buffer): void => {
        if (!open) return; // typed before the question: discarded
        line += chunk.toString('utf8');
        const m = /^([^\r\n]*)[\r\n]/.exec(line);
        if (m) finish(/^\s*y(es)?\s*$/i.test(m[1]!), /[\r]/.test(line) ? '\r\n' : '');
        else if (line.length > 64) finish(false, '\r\n');
      };
      const onEnd = (): void => finish(false, '');
      const timer = setTimeout(() => finish(false, ' (no answer: refused)\r\n'), CONFIRM_TIMEOUT_MS);
      this.input.on('data', onData);
      this.input.once('end', onEnd);
      this.input.once('error', onEnd);
      // Whatever the terminal holds already arrives in the first reads: let it pass unread, then ask.
      this.startReading();
      setTimeout(() => {
        if (this.dead) return;
        open = true;
        this.output.write(`\r\nkmgr agent: allow ${what}? [y/N] `);
      }, TYPED_AHEAD_MS);
    });
  }

  // node's stream keeps the terminal handle reading while paused (to fill its buffer): the
  // handle is stopped and started here directly, as net.Socket itself does.
  private get handle(): { reading?: boolean; readStop?: () => number; readStart?: () => number } | undefined {
    return (this.input as unknown as { _handle?: { reading?: boolean; readStop?: () => number; readStart?: () => number } })._handle;
  }

  /** Stops reading the terminal itself, not only the stream's flow (see above). */
  private stopReading(): void {
    this.input.pause();
    const h = this.handle;
    if (h?.readStop && h.reading !== false) {
      h.reading = false;
      h.readStop();
    }
  }

  private startReading(): void {
    this.input.resume();
    const h = this.handle;
    if (h?.readStart && !h.reading) {
      h.reading = true;
      h.readStart();
    }
  }
}
