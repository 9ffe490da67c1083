// Helpers shared by the CLI integration tests (cli-behaviour, cli-server).
import type { Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { initClient, KMGR, kmgr, type RunResult, type TestServer } from './helpers.js';
import { openSession } from '../src/client/session.js';
import { homePaths } from '../src/client/home.js';
import type { Endpoint, Identity } from '../src/client/http.js';
import { signerFromSeed, type Signer } from '../src/crypto/sign.js';

export type Client = Awaited<ReturnType<typeof initClient>>;

/**
 * Runs kmgr detached (its own session, so no controlling terminal: a missing
 * passphrase source can never fall through to a prompt), optionally with a
 * pipe as fd 3 carrying `fd3`.
 */
export function cli(args: string[], o: { home: string; env?: Record<string, string>; fd3?: string }): Promise<RunResult> {
  return kmgr(args, { ...o, detached: true, extraCa: false });
}

/** Every file under dir (recursively), by path relative to dir, with its bytes. */
export async function snapshot(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = async (d: string, rel: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p, join(rel, e.name));
      else if (e.isFile()) out.set(join(rel, e.name), await readFile(p));
    }
  };
  await walk(dir, '');
  return out;
}

export function sameSnapshot(t: Test, before: Map<string, Buffer>, after: Map<string, Buffer>, what: string): void {
  t.same([...after.keys()].sort(), [...before.keys()].sort(), `${what}: the same files`);
  const changed = [...before].filter(([k, v]) => !after.get(k)?.equals(v)).map(([k]) => k);
  t.same(changed, [], `${what}: every file byte-identical`);
}

export function oneLine(s: string): boolean {
  return s.endsWith('\n') && s.trimEnd().split('\n').length === 1 && s.trim().length > 0;
}

/** The JSON error a --json command wrote to stderr. */
export function jsonError(r: RunResult): { code?: string; message?: string } {
  try {
    return (JSON.parse(r.stderr) as { error: { code: string; message: string } }).error;
  } catch {
    return {};
  }
}

export function pp(c: Client): string[] {
  return ['--passphrase-file', c.pp];
}

/** A port on 127.0.0.1 that nobody listens on (it was bound, then released). */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A TCP listener that only counts connections (and drops them): proves a command did not contact the server. */
export async function countingListener(t: Test): Promise<{ url: string; count: () => number }> {
  let n = 0;
  const sockets = new Set<Socket>();
  const s: Server = createServer((sock) => {
    n++;
    sockets.add(sock);
    sock.on('error', () => undefined);
    sock.destroy();
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => s.close(() => r())));
  return { url: `https://127.0.0.1:${(s.address() as { port: number }).port}`, count: () => n };
}

export async function partnerId(c: Client, name: string): Promise<string> {
  const idx = JSON.parse(await readFile(join(c.home, 'partners.json'), 'utf8')) as { partners: Array<{ name: string; id: string }> };
  const p = idx.partners.find((x) => x.name === name);
  if (!p) throw new Error(`no partner ${name}`);
  return p.id;
}

/** A signing HTTP client with the client's own management key, recording every signature it makes. */
export async function directClient(c: Client, server?: TestServer): Promise<{ ep: Endpoint; id: Identity; signatures: string[] }> {
  const session = await openSession(homePaths(c.home), { passphraseFile: c.pp }, null);
  const inner: Signer = signerFromSeed(session.secrets!.signingSeed);
  const signatures: string[] = [];
  const signer: Signer = {
    publicKey: inner.publicKey,
    sign(tag, payload) {
      const s = inner.sign(tag, payload);
      signatures.push(Buffer.from(s).toString('base64'));
      return s;
    },
  };
  const ep: Endpoint = server ? { server: server.url, ca: await readFile(server.ca, 'utf8') } : session.endpoint;
  return { ep, id: { keyId: session.identity.keyId, signer }, signatures };
}

export function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e ? String((e).code) : undefined;
}

export const MSG = Buffer.from('transfer 100 to bank-a');

export const HAVE_SCRIPT = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;

/** Runs `kmgr ARGS` under a pseudo-terminal with util-linux script(1). Output is the terminal's (stdout+stderr, CRLF). */
export function underPty(args: string[], home: string): Promise<{ code: number; out: string }> {
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const cmd = [process.execPath, KMGR, ...args].map(q).join(' ');
  return new Promise((resolve, reject) => {
    const env: Record<string, string> = { KMGR_HOME: home };
    for (const k of ['PATH', 'HOME', 'TMPDIR', 'LANG']) if (process.env[k] !== undefined) env[k] = process.env[k]!;
    const child = spawn('script', ['-qec', cmd, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const out: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => out.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, out: Buffer.concat(out).toString('utf8').replace(/\r\n/g, '\n') });
    });
    child.stdin.end();
  });
}
