// kmgr agent start --ssh: the agent also speaks the OpenSSH agent protocol on
// a socket of its own, offering this person's ed25519 and p256 keys that are
// marked for SSH (kmgr register --ssh, kmgr terms --ssh on). It holds no SSH
// key: each signature fetches the key through the server like kmgr fetch, so
// it is counted, limited, in the history and refused when the terms refuse;
// the key is wiped once the signature is made. Requests it does not serve, and
// any failure, get SSH_AGENT_FAILURE: a client can never crash the agent.
import { createServer, type Server, type Socket } from 'node:net';
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { createPrivateKey } from 'node:crypto';
import { homePaths } from '../client/home.js';
import { loadConfig } from '../client/config.js';
import { loadPartners } from '../client/partners.js';
import { api } from '../client/api.js';
import { ConfigError } from '../protocol/errors.js';
import { sessionFromAgent, fetchInAgent, type AgentKeys } from './fetch-op.js';
import { SerialQueue } from '../io/serial-queue.js';
import {
  SSH_AGENTC_REQUEST_IDENTITIES, SSH_AGENTC_SIGN_REQUEST, SshMessageDecoder, failure, identitiesAnswer, parseSignRequest,
  signResponse, sshPublicKeyBlob, sshSign, type SshKeyType,
} from './ssh-protocol.js';

const MAX_CONNECTIONS = 64;
const IDLE_TIMEOUT_MS = 120_000;

interface SshIdentity {
  name: string;
  type: SshKeyType;
  blob: Buffer;
  comment: string;
}

interface SshAgentOptions {
  socket: string;
  keys: AgentKeys;
  /** The agent's --confirm prompt; rejects when the person says no. */
  confirm(what: string): Promise<void>;
  /** Told after each signature (the agent's served count). */
  onServed(): void;
}

/**
 * This person's keys marked for SSH, from the server's key list. The public
 * key is the one this device registered where it has it; otherwise the
 * server's copy (a wrong one only makes signatures that fail to verify: the
 * signature itself is always made with the key the fetch opened).
 */
async function sshIdentities(keys: AgentKeys): Promise<SshIdentity[]> {
  const paths = homePaths(keys.home);
  const config = await loadConfig(paths);
  const session = await sessionFromAgent(paths, config, keys);
  const [list, idx] = await Promise.all([api.list(session), loadPartners(paths)]);
  const out: SshIdentity[] = [];
  for (const k of list) {
    if (!k.ssh || (k.alg !== 'ed25519' && k.alg !== 'p256')) continue;
    const partner = idx.partners.find((p) => p.id === k.partnerId);
    if (!partner) continue; // only keys this home knows by name
    const local = partner.key?.publicKey && partner.key.keyId === k.keyId && partner.key.version === k.keyVersion ? partner.key.publicKey : undefined;
    const pem = local ?? k.publicKey;
    if (!pem) continue;
    try {
      out.push({ name: partner.name, type: k.alg, blob: sshPublicKeyBlob(k.alg, pem), comment: `kmgr:${partner.name}` });
    } catch {
      /* a public key that is not what its type says is not offered */
    }
  }
  return out;
}

export class SshAgentServer {
  private readonly server: Server;
  private readonly conns = new Set<Socket>();
  private socketId: { dev: number; ino: number } | undefined;
  private known: SshIdentity[] = [];

  constructor(private readonly o: SshAgentOptions) {
    this.server = createServer((c) => this.onConnection(c));
    this.server.maxConnections = MAX_CONNECTIONS;
  }

  /** Listens with mode 0600 in the agent's (already checked) private directory, replacing a stale socket. */
  async listen(): Promise<void> {
    const socket = this.o.socket;
    try {
      const st = lstatSync(socket);
      if (!st.isSocket()) throw new ConfigError(`${socket} exists and is not a socket; remove it`);
      unlinkSync(socket); // the main socket was free, so this one is a dead agent's
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen(socket, () => resolve());
      });
    } finally {
      process.umask(oldMask);
    }
    chmodSync(socket, 0o600);
    const st = lstatSync(socket);
    this.socketId = { dev: st.dev, ino: st.ino };
  }

  close(): void {
    this.server.close();
    for (const c of this.conns) c.destroy();
    if (!this.socketId) return;
    try {
      const st = lstatSync(this.o.socket);
      if (st.dev === this.socketId.dev && st.ino === this.socketId.ino) unlinkSync(this.o.socket);
    } catch {
      /* already gone */
    }
  }

  private onConnection(c: Socket): void {
    this.conns.add(c);
    const dec = new SshMessageDecoder();
    const queue = new SerialQueue();
    c.setTimeout(IDLE_TIMEOUT_MS, () => c.destroy());
    c.on('error', () => undefined);
    c.on('close', () => this.conns.delete(c));
    c.on('data', (chunk: Buffer) => {
      let msgs;
      try {
        msgs = dec.push(chunk);
      } catch {
        // A length we will not buffer: the stream cannot be resynchronised.
        c.end(failure());
        return;
      }
      for (const m of msgs) {
        void queue.run(async () => {
          const reply = await this.answer(m.type, m.body).catch(() => failure());
          if (!c.destroyed) c.write(reply);
        });
      }
    });
  }

  private async answer(type: number, body: Uint8Array): Promise<Buffer> {
    if (type === SSH_AGENTC_REQUEST_IDENTITIES) {
      this.known = await sshIdentities(this.o.keys);
      return identitiesAnswer(this.known);
    }
    if (type === SSH_AGENTC_SIGN_REQUEST) return this.sign(body);
    return failure(); // adding keys, locking, extensions, smartcards: not served
  }

  private async sign(body: Uint8Array): Promise<Buffer> {
    const req = parseSignRequest(body);
    const find = (): SshIdentity | undefined => this.known.find((k) => k.blob.equals(req.keyBlob));
    let id = find();
    if (!id) {
      this.known = await sshIdentities(this.o.keys);
      id = find();
    }
    if (!id) return failure();
    await this.o.confirm(`sign with SSH key ${id.name} (${id.type}; a counted use)`);
    const r = await fetchInAgent(this.o.keys, { home: this.o.keys.home, name: id.name, format: 'pem' });
    try {
      const pem = Buffer.from(r.bytes).toString('utf8');
      const key = createPrivateKey(pem);
      // The opened key must be the one asked for (a rotation since the list, say).
      const pub = sshPublicKeyBlob(id.type, pem);
      if (!pub.equals(req.keyBlob)) return failure();
      const sig = sshSign(id.type, key, req.data);
      this.o.onServed();
      return signResponse(sig);
    } finally {
      r.bytes.fill(0);
    }
  }
}
