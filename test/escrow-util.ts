// Helpers for the terms, renewal, verification and device integration tests (terms-cli, terms-cli-renewal, verify, devices):
// client homes with options initClient does not take, the kmgrd operator
// commands as subprocesses, a signing identity from a home's own keystore.
import type { Test } from 'tap';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { KMGRD, PASSPHRASE, tempDir, testDatabaseOf, type RunResult, type TestServer } from './helpers.js';
import { cli, jsonError } from './cli-util.js';
import type { Identity } from './support/raw-client.js';
import { openSession } from '../src/client/session.js';
import { homePaths } from '../src/client/home.js';
import { signerFromSeed } from '../src/crypto/sign.js';
import { toB64url } from '../src/crypto/bytes.js';
import { api } from '../src/client/api.js';

type Teardown = { teardown(fn: () => unknown): void };

/** Runs `node bin/kmgrd.js ARGS` (detached, no terminal), asynchronously so an in-process daemon can answer its admin socket. */
export function kmgrd(args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string> = {};
    for (const k of ['PATH', 'HOME', 'TMPDIR', 'LANG']) if (process.env[k] !== undefined) env[k] = process.env[k]!;
    // Under KMGR_TEST_STORE=postgres the server's data is in its test database, not in --data.
    const data = args.indexOf('--data');
    const db = data >= 0 && !args.includes('--database-url') ? testDatabaseOf(args[data + 1] ?? '') : undefined;
    if (db) env.KMGRD_DATABASE_URL = db;
    const child = spawn(process.execPath, [KMGRD, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      resolve({ code: code ?? -1, stdout: stdoutBytes.toString('utf8'), stdoutBytes, stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/** Commands that take no passphrase: everything else gets --passphrase-file appended by Home.run. */
const NO_PASSPHRASE = new Set(['init', 'verify', 'whoami', 'list']);

export interface Home {
  home: string;
  pp: string;
  personId: string;
  fingerprint: string;
  device: string;
  /** Runs kmgr in this home; appends --passphrase-file unless the command takes none. */
  run(args: string[], env?: Record<string, string>): Promise<RunResult>;
  /** Runs `kmgr ARGS --json`, expects exit `code`, parses stdout (or the JSON error on stderr when code != 0). */
  json(args: string[], code?: number): Promise<any>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export async function writePassphrase(dir: string, name: string, passphrase: string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, passphrase + '\n', { mode: 0o600 });
  return p;
}

export function homeFor(home: string, pp: string, personId = '', fingerprint = '', device = ''): Home {
  const run = (args: string[], env?: Record<string, string>): Promise<RunResult> =>
    cli([...args, ...(NO_PASSPHRASE.has(args[0] ?? '') ? [] : ['--passphrase-file', pp])], { home, ...(env ? { env } : {}) });
  return {
    home,
    pp,
    personId,
    fingerprint,
    device,
    run,
    async json(args, code = 0) {
      const r = await run([...args, '--json']);
      if (r.code !== code) throw new Error(`kmgr ${args.join(' ')} --json: exit ${r.code}, expected ${code}: ${r.stderr.trim()}`);
      if (code !== 0) return JSON.parse(r.stderr).error;
      return JSON.parse(r.stdout);
    },
  };
}

/** A client home initialised against `server` (KDF cost at the floor), with options initClient does not take. */
export async function newHome(
  t: Teardown,
  server: TestServer,
  o: { partners?: 'local' | 'server'; device?: string; passphrase?: string } = {},
): Promise<Home> {
  const base = await tempDir(t, 'kmgr-home-');
  const home = join(base, 'home');
  const pp = await writePassphrase(base, 'passphrase', o.passphrase ?? PASSPHRASE);
  const device = o.device ?? 'primary';
  const r = await cli(
    ['--json', 'init', '--server', server.url, '--ca', server.ca, '--passphrase-file', pp, '--kdf-cost', '15', '--partners', o.partners ?? 'local', '--device', device],
    { home },
  );
  if (r.code !== 0) throw new Error(`kmgr init failed (${r.code}): ${r.stderr}`);
  const info = JSON.parse(r.stdout) as { personId: string; fingerprint: string };
  return homeFor(home, pp, info.personId, info.fingerprint, device);
}

/** A raw-client identity that signs with a home's own management key. */
export async function rawIdentity(h: { home: string; pp: string }): Promise<Identity> {
  const session = await openSession(homePaths(h.home), { passphraseFile: h.pp }, null);
  const signer = signerFromSeed(session.secrets!.signingSeed);
  return { signer, keyId: session.config.keyId, publicKey: toB64url(signer.publicKey), personId: session.config.personId };
}

/** Whether the PEM private key signs for the PEM public key. */
export function keyPairMatches(privatePem: string, publicPem: string): boolean {
  try {
    const msg = Buffer.from('kmgr escrow test message');
    const alg = createPublicKey(publicPem).asymmetricKeyType === 'ed25519' ? null : 'sha256';
    return verify(alg, msg, createPublicKey(publicPem), sign(alg, msg, createPrivateKey(privatePem)));
  } catch {
    return false;
  }
}

/**
 * A time zone in which it is now between noon and 1 pm, for a test server that counts uses
 * across several requests: per-day, week and month counters roll over at local midnight, so in
 * this zone the next rollover is at least eleven hours away and the test cannot straddle one,
 * whatever the time of day it runs (no waiting out the end of a UTC day). Etc/GMT-K is UTC+K.
 */
export function zoneAtNoon(now: number = Date.now()): string {
  const k = 12 - new Date(now).getUTCHours(); // 12 .. -11
  return k === 0 ? 'Etc/GMT' : k > 0 ? `Etc/GMT-${k}` : `Etc/GMT+${-k}`;
}

export async function readJson(path: string): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return JSON.parse(await readFile(path, 'utf8'));
}

/**
 * The owner's view through the real client library, in this process: for checks
 * that follow a CLI step (the CLI form of each read is tested on its own), so a
 * test spends its time on the commands under test rather than on process starts.
 */
export async function ownerView(h: { home: string; pp: string }) {
  const session = await openSession(homePaths(h.home), { passphraseFile: h.pp }, null);
  return {
    session,
    status: (partnerId: string) => api.status(session, partnerId),
    history: (partnerId: string, q: Parameters<typeof api.history>[2] = {}) => api.history(session, partnerId, q),
    notices: (unreadOnly = true) => api.notices(session, unreadOnly),
  };
}

/** Asserts exit 0, with stderr in the message when not. */
export const ok = (t: Test, r: RunResult, what: string): void => {
  t.equal(r.code, 0, `${what}: exit 0${r.code !== 0 ? ` (got ${r.code}: ${r.stderr.trim()})` : ''}`);
};

/** Asserts a refusal: exit 77, nothing on stdout, and the JSON error code when given. */
export const refused77 = (t: Test, r: RunResult, code: string, what: string): void => {
  t.equal(r.code, 77, `${what}: exit 77 (got ${r.code}: ${r.stderr.trim()})`);
  t.equal(r.stdoutBytes.length, 0, `${what}: nothing on stdout`);
  if (code) t.equal(jsonError(r).code, code, `${what}: error code ${code}`);
};
