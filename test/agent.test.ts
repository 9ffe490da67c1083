// kmgr agent: real agent processes behind real Unix sockets, in temporary homes
// initialised against a real kmgrd. Every subtest kills whatever it started.

import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, verify } from 'node:crypto';
import { readFile, readdir, stat, writeFile, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join, dirname } from 'node:path';
import { startServer, newHome, tempDir, KMGR, PASSPHRASE, hasPyPty, PTY_RELAY, agent, isAlive, reap, kmgr, startAgent, untracked } from './support/index.js';
import { homePaths } from '../src/client/home.js';
import { loadConfig } from '../src/client/config.js';
import { unlockKeystore } from '../src/client/keystore-file.js';
import { publicKeyObject, signerFromSeed, fingerprint, TAG_BINDING, TAG_REQUEST, verifySignature } from '../src/crypto/sign.js';
import { openBlob, sealBlob, type BlobContext } from '../src/crypto/blob.js';
import { encodeFields, utf8 } from '../src/crypto/bytes.js';
import { randomBytes } from '../src/crypto/random.js';
import { KmgrError } from '../src/protocol/errors.js';
import { AgentConnection, AgentError, agentSession, agentSocketPath, connectAgent, probeAgent } from '../src/agent/client.js';
import { AgentStatus, MAX_BIN, MAX_JSON, FrameDecoder, encodeFrame, parseReply } from '../src/agent/protocol.js';
import { parseTtl } from '../src/cli/commands/agent.js';

const CTX: BlobContext = { personId: 'p_test', partnerId: 'pt_test', keyId: 'k_test', alg: 'ed25519', keyVersion: 3 };

t.jobs = 3;

// ---------------------------------------------------------------- helpers

/** Polls cond every 50 ms until it holds or ms pass; true if it held. */
async function eventually(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Agent processes for a home, found through /proc (their environment names the home). Linux only. */
async function agentPidsFor(home: string): Promise<number[]> {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = await readFile(`/proc/${e}/cmdline`, 'utf8');
      if (!cmd.includes(join('agent', 'main.js'))) continue;
      const env = (await readFile(`/proc/${e}/environ`, 'utf8')).split('\0');
      if (env.includes(`KMGR_HOME=${home}`)) out.push(Number(e));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** A client home (real init against a real server) with its unlocked secrets, for checking the agent's answers. */
async function setup(t: Test) {
  const server = await startServer(t);
  const c = await newHome(t, server);
  const paths = homePaths(c.home);
  const config = await loadConfig(paths);
  const secrets = await unlockKeystore(paths, utf8(PASSPHRASE));
  const publicKey = signerFromSeed(secrets.signingSeed).publicKey;
  return { ...c, paths, config, secrets, publicKey };
}

/** Sends raw bytes on a fresh connection and collects the replies until the agent closes it or ms pass. */
function rawExchange(socket: string, bytes: Buffer, ms = 3_000): Promise<{ replies: ReturnType<typeof parseReply>[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = createConnection({ path: socket });
    const dec = new FrameDecoder();
    const replies: ReturnType<typeof parseReply>[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ replies, closed: false });
    }, ms);
    s.on('data', (c: Buffer) => {
      for (const f of dec.push(c)) replies.push(parseReply(f));
    });
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ replies, closed: true });
    });
    s.on('connect', () => s.write(bytes));
    s.on('error', reject);
  });
}

// ---------------------------------------------------------------- tests

t.test('--ttl parsing', async (t) => {
  t.equal(parseTtl('15m'), 900_000);
  t.equal(parseTtl('2s'), 2_000);
  t.equal(parseTtl('1w'), 7 * 86_400_000, 'a week is the longest');
  t.equal(parseTtl('1d'), 86_400_000);
  for (const bad of ['0s', '0', '', '90', '2w', '8d', '-1m', '1.5h', '15 m']) t.throws(() => parseTtl(bad), { code: 'usage' }, JSON.stringify(bad));
});

t.test('start, status, private socket, sign and open/seal through the agent, refusals, stop', async (t) => {
  const c = await setup(t);
  const { pid, socket, r } = await startAgent(t, c.home, c.pp);
  t.equal(socket, join(c.home, 'agent.sock'), 'without XDG_RUNTIME_DIR the socket is <home>/agent.sock, printed on stdout');
  t.equal((await stat(socket)).mode & 0o777, 0o600, 'the socket is mode 0600');
  t.ok((await stat(socket)).isSocket(), 'and a socket');
  t.equal((await stat(c.home)).mode & 0o777, 0o700, 'in a 0700 directory');
  t.match(r.stderr, /pid \d+/, 'start says which process holds the key');

  // status, human and JSON
  const human = await agent(['status'], { home: c.home });
  t.equal(human.code, 0, 'status exits 0 while running');
  t.match(human.stdout, new RegExp(`pid ${pid}`));
  t.match(human.stdout, c.config.fingerprint);
  const js = await agent(['status', '--json'], { home: c.home });
  const st = AgentStatus(Object.fromEntries(Object.entries(JSON.parse(js.stdout) as Record<string, unknown>).filter(([k]) => k !== 'running')), 's');
  t.equal(st.home, c.paths.dir);
  t.equal(st.socket, socket);
  t.equal(st.fingerprint, c.config.fingerprint, 'the agent is bound to the keystore\'s key');
  t.ok(st.ttlLeftMs > 0 && st.ttlLeftMs <= 15 * 60_000, 'default TTL 15 min, time left shown');
  t.equal(st.confirm, false);

  // nothing secret in the agent's argv or environment
  if (existsSync(`/proc/${pid}/cmdline`)) {
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    const env = await readFile(`/proc/${pid}/environ`, 'utf8');
    t.notMatch(cmd + env, PASSPHRASE, 'the passphrase is not in argv or env');
    t.notMatch(cmd, c.pp, 'not even the passphrase file name');
  }

  // a second agent for the same home is refused, and the first keeps running
  const second = await agent(['start', '--passphrase-file', c.pp], { home: c.home });
  t.equal(second.code, 73, 'second start exits 73');
  t.match(second.stderr, /already running/);
  t.ok(isAlive(pid), 'the first agent still runs');
  if (existsSync('/proc/self/environ')) t.same(await agentPidsFor(c.home), [pid], 'exactly one agent process for this home');

  // a direct client, checked against config.json
  const h = await agentSession(c.paths, c.config, { env: {} });
  t.ok(h, 'agentSession finds the agent');
  t.teardown(() => h?.close());
  t.same(Buffer.from(h!.publicKey), Buffer.from(c.publicKey), 'it answers the keystore\'s public key');
  const pk = await h!.publicKeyInfo();
  t.equal(pk.fingerprint, c.config.fingerprint, 'publicKey operation answers the pinned fingerprint');
  t.equal(fingerprint(pk.publicKey), c.config.fingerprint);

  // sign: verified with node:crypto against the keystore's public key, under the tag it was asked for
  const payload = utf8('"@method": POST\n"@path": /v1/keys/x/fetch');
  const sig = await h!.signAsync(TAG_REQUEST, payload);
  const key = publicKeyObject(c.publicKey);
  t.ok(verify(null, encodeFields([TAG_REQUEST, payload]), key, sig), 'node:crypto verifies the agent\'s request signature');
  t.notOk(verifySignature(key, TAG_BINDING, payload, sig), 'it does not verify as a binding statement (threat 7)');
  const bsig = await h!.signer.sign(TAG_BINDING, payload);
  t.ok(verifySignature(key, TAG_BINDING, payload, bsig), 'the Signer-shaped interface signs bindings too');
  t.notOk(verifySignature(key, TAG_REQUEST, payload, bsig), 'and a binding signature is no request signature');

  // open a blob sealed locally with the wrap key, and the reverse
  const secret = randomBytes(32);
  const opened = await h!.openBlob(CTX, sealBlob(c.secrets.wrapKey, CTX, secret));
  t.same(Buffer.from(opened), Buffer.from(secret), 'the agent opens a blob sealed with the wrap key');
  const sealed = await h!.sealBlob(CTX, secret);
  t.same(Buffer.from(openBlob(c.secrets.wrapKey, CTX, sealed)), Buffer.from(secret), 'a blob the agent sealed opens with the wrap key');
  await t.rejects(h!.openBlob({ ...CTX, keyVersion: 2 }, sealed), { code: 'integrity' }, 'a blob under another context is an integrity error, as locally');
  const flipped = new Uint8Array(sealed);
  flipped[flipped.length - 1]! ^= 1;
  await t.rejects(h!.openBlob(CTX, flipped), { code: 'integrity' }, 'a flipped bit is an integrity error');

  // refusals: unknown purpose tag, unknown op, unknown field, oversized and junk frames
  const conn = await AgentConnection.open(socket);
  t.teardown(() => conn.close());
  await t.rejects(conn.request('sign', { tag: 'kmgr/other/v1' as typeof TAG_REQUEST }, payload), { code: 'bad_request' }, 'an unknown purpose tag is refused');
  await t.rejects(conn.request('sign', { tag: 'kmgr/keystore/v1' as typeof TAG_REQUEST }, payload), { code: 'bad_request' });
  await t.rejects(conn.request('sign', { tag: TAG_REQUEST }), { code: 'bad_request' }, 'an empty payload is refused');
  const junkOp = await rawExchange(socket, encodeFrame({ v: 1, id: 7, op: 'exportKey' }));
  t.equal(junkOp.replies[0]?.ok, false, 'an unknown operation is refused');
  t.equal(junkOp.replies[0]?.id, 7);
  const extra = await rawExchange(socket, encodeFrame({ v: 1, id: 8, op: 'status', wrapKey: true }));
  t.equal(extra.replies[0]?.ok, false, 'an unknown field is refused');
  const big = Buffer.alloc(8);
  big.writeUInt32BE(MAX_JSON + 1, 0);
  const over = await rawExchange(socket, big);
  t.equal(over.replies[0]?.ok, false, 'an oversized frame header is refused at once');
  t.ok(over.closed, 'and the connection dropped');
  const big2 = Buffer.alloc(8);
  big2.writeUInt32BE(10, 0);
  big2.writeUInt32BE(MAX_BIN + 1, 4);
  t.ok((await rawExchange(socket, big2)).closed, 'an oversized data part too');
  const junk = Buffer.concat([Buffer.from([0, 0, 0, 3, 0, 0, 0, 0]), Buffer.from('{{{')]);
  t.ok((await rawExchange(socket, junk)).closed, 'invalid JSON drops the connection');
  t.ok((await conn.request('status')).result, 'the agent still serves after all that');
  t.same(Object.keys(((await conn.request('status')).result) as object).filter((k) => /seed|wrap|secret|private/i.test(k)), [], 'status names no secret');

  // the agent is bound to one identity
  await t.rejects(agentSession(c.paths, { ...c.config, fingerprint: 'SHA256:' + 'A'.repeat(43) }, { env: {} }), { code: 'integrity' }, 'a config naming another key is refused');
  await t.rejects(connectAgent(socket, homePaths(join(c.home, 'other')), c.config), { code: 'integrity' }, 'so is another home');

  // stop: the agent exits, removes its socket; an open handle then fails fast and clearly
  const stop = await agent(['stop'], { home: c.home });
  t.equal(stop.code, 0, 'stop exits 0');
  t.match(stop.stderr, /stopped/);
  t.notOk(isAlive(pid), 'the agent process is gone when stop returns');
  t.notOk(existsSync(socket), 'its socket is removed');
  const gone = await h!.signAsync(TAG_REQUEST, payload).then(() => undefined, (e: unknown) => e);
  t.type(gone, AgentError, 'a handle to a stopped agent rejects with an AgentError');
  // At once: the reason says the agent is gone, not that a timeout ran out.
  t.not((gone as AgentError).reason, 'timeout', 'at once (not after a timeout)');
  t.equal(await agentSession(c.paths, c.config, { env: {} }), undefined, 'agentSession: undefined when no agent runs');
  const after = await agent(['status'], { home: c.home });
  t.equal(after.code, 69, 'status exits 69 when no agent runs');
  t.match(after.stderr, /no kmgr agent is running/);
  const again = await agent(['stop'], { home: c.home });
  t.equal(again.code, 0, 'stop without an agent is not an error');
});

t.test('the TTL wipes the key: the agent exits by itself and removes its socket', async (t) => {
  const c = await setup(t);
  // Long enough that a loaded machine still finds it running after start and status return.
  const { pid, socket } = await startAgent(t, c.home, c.pp, ['--ttl', '8s']);
  const s = await probeAgent(socket);
  t.equal(s.state, 'running');
  if (s.state === 'running') t.ok(s.status.ttlLeftMs <= 8_000, 'an 8 s TTL');
  t.ok(await eventually(() => !isAlive(pid) && !existsSync(socket), 20_000), 'gone, with its socket, within 20 s');
  t.equal((await probeAgent(socket)).state, 'none');
  t.equal(await agentSession(c.paths, c.config, { env: {} }), undefined, 'and clients fall back');
});

t.test('a stale socket (agent SIGKILLed) is a clear error at once, and start replaces it', async (t) => {
  const c = await setup(t);
  const { pid, socket } = await startAgent(t, c.home, c.pp);
  const h0 = (await agentSession(c.paths, c.config, { env: {} }))!;
  t.teardown(() => h0.close());
  process.kill(pid, 'SIGKILL');
  t.ok(await eventually(() => !isAlive(pid), 10_000), 'killed');
  t.ok(existsSync(socket), 'the socket file is left behind');

  const err = await AgentConnection.open(socket).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, AgentError, 'connecting gives an AgentError');
  t.equal((err as AgentError).reason, 'stale', 'reason: stale');
  t.match((err as AgentError).message, /stale socket/);
  t.equal(await agentSession(c.paths, c.config, { env: {} }), undefined, 'agentSession falls back (undefined) on a stale socket');
  const herr = await h0.signAsync(TAG_REQUEST, utf8('x')).then(() => undefined, (e: unknown) => e);
  t.type(herr, AgentError, 'a handle whose agent died rejects with an AgentError');
  t.equal((herr as AgentError).reason, 'stale', 'at once: stale, not a timeout');

  const st = await agent(['status'], { home: c.home });
  t.equal(st.code, 69, 'status: exit 69');
  t.match(st.stderr, /stale socket/, 'saying the socket is stale');
  const stj = await agent(['status', '--json'], { home: c.home });
  t.match(JSON.parse(stj.stderr) as unknown, { error: { code: 'unavailable', details: { agent: 'stale' } } }, '--json names the reason');

  const next = await startAgent(t, c.home, c.pp);
  t.not(next.pid, pid, 'start replaced the stale socket with a new agent');
  t.equal((await probeAgent(socket)).state, 'running');
  const h = await agentSession(c.paths, c.config, { env: {} });
  t.ok(h, 'which serves');
  const sig = await h!.signAsync(TAG_REQUEST, utf8('x'));
  t.ok(verifySignature(publicKeyObject(c.publicKey), TAG_REQUEST, utf8('x'), sig));
  h!.close();
  const sig0 = await h0.signAsync(TAG_REQUEST, utf8('y'));
  t.ok(verifySignature(publicKeyObject(c.publicKey), TAG_REQUEST, utf8('y'), sig0), 'the old handle reconnects to the new agent (same key)');
  t.equal((await agent(['stop'], { home: c.home })).code, 0);
  t.notOk(isAlive(next.pid));
});

t.test('a stopped (hung) agent: a timeout error, never a hang', async (t) => {
  const c = await setup(t);
  const { pid, socket } = await startAgent(t, c.home, c.pp);
  process.kill(pid, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      /* gone */
    }
  });
  const conn = await AgentConnection.open(socket); // the kernel still accepts
  const terr = await conn.request('status', {}, undefined, 1_000).then(() => undefined, (e: unknown) => e);
  t.type(terr, AgentError, 'a request to a stopped agent fails with an AgentError');
  t.equal((terr as AgentError).reason, 'timeout', 'reason: timeout');
  t.match((terr as AgentError).message, /did not answer/);
  const st = await agent(['status'], { home: c.home });
  t.equal(st.code, 69, 'status exits 69');
  t.match(st.stderr, /did not answer/);
  process.kill(pid, 'SIGCONT');
  t.equal((await agent(['stop'], { home: c.home })).code, 0, 'once continued, stop works');
  t.notOk(isAlive(pid));
});

t.test('wrong passphrase: exit 77 and no agent left running', async (t) => {
  const c = await setup(t);
  const bad = join(dirname(c.pp), 'bad');
  await writeFile(bad, 'not it\n', { mode: 0o600 });
  const r = await agent(['start', '--passphrase-file', bad], { home: c.home });
  t.equal(r.code, 77, 'exit 77');
  t.equal(r.stdout, '', 'nothing on stdout');
  t.match(r.stderr, /wrong passphrase/);
  t.notOk(existsSync(join(c.home, 'agent.sock')), 'no socket');
  t.same(await agentPidsFor(c.home), [], 'no agent process for this home');
  const e = await agent(['start'], { home: c.home, env: { KMGR_PASSPHRASE: 'nope' } });
  t.equal(e.code, 77, 'a wrong KMGR_PASSPHRASE: 77 too');
  t.same(await agentPidsFor(c.home), [], 'still none');
  const n = await agent(['start'], { home: c.home });
  t.equal(n.code, 64, 'no passphrase source and no terminal: usage error');
  t.same(await agentPidsFor(c.home), []);
  const ttl = await agent(['start', '--passphrase-file', c.pp, '--ttl', '8d'], { home: c.home });
  t.equal(ttl.code, 64, 'a bad --ttl: 64, before anything starts');
  t.same(await agentPidsFor(c.home), []);
  const conf = await agent(['start', '--passphrase-file', c.pp, '--confirm'], { home: c.home });
  t.equal(conf.code, 64, '--confirm without a terminal: 64');
  t.match(conf.stderr, /terminal/);
  t.same(await agentPidsFor(c.home), [], 'and no agent');
});

t.test('XDG_RUNTIME_DIR: the socket lives in $XDG_RUNTIME_DIR/kmgr/agent-<dev>-<ino>.sock; KMGR_PASSPHRASE does not reach the agent', async (t) => {
  const c = await setup(t);
  const xdg = join(await tempDir(t, 'kmgr-xdg-'), 'run');
  await mkdir(xdg, { mode: 0o700 });
  const env = { XDG_RUNTIME_DIR: xdg, KMGR_PASSPHRASE: PASSPHRASE };
  const r = await agent(['start', '--ttl', '5m'], { home: c.home, env });
  t.equal(r.code, 0, 'started with KMGR_PASSPHRASE');
  const socket = r.stdout.trim();
  const home = await stat(c.paths.dir, { bigint: true });
  t.equal(socket, join(xdg, 'kmgr', `agent-${home.dev}-${home.ino}.sock`), 'named by the home directory\'s device and inode');
  t.equal(socket, agentSocketPath(c.paths, { XDG_RUNTIME_DIR: xdg }));
  t.equal((await stat(join(xdg, 'kmgr'))).mode & 0o777, 0o700, 'its directory is 0700');
  t.equal((await stat(socket)).mode & 0o777, 0o600, 'the socket 0600');
  t.notOk(existsSync(join(c.home, 'agent.sock')), 'nothing in the home');
  const s = await probeAgent(socket);
  t.equal(s.state, 'running');
  if (s.state !== 'running') return;
  reap(t, s.status.pid);
  if (existsSync(`/proc/${s.status.pid}/environ`)) {
    const envText = await readFile(`/proc/${s.status.pid}/environ`, 'utf8');
    t.notMatch(envText, 'KMGR_PASSPHRASE', 'the agent\'s environment has no KMGR_PASSPHRASE');
  }
  t.ok(await agentSession(c.paths, c.config, { env: { XDG_RUNTIME_DIR: xdg } }).then((h) => (h?.close(), h !== undefined)), 'agentSession finds it through XDG_RUNTIME_DIR');
  t.equal(await agentSession(c.paths, c.config, { env: {} }), undefined, 'and not at the home path');
  t.equal((await agent(['stop'], { home: c.home, env: { XDG_RUNTIME_DIR: xdg } })).code, 0);
  t.notOk(existsSync(socket), 'socket removed');
  t.notOk(isAlive(s.status.pid));
});

t.test('a removed socket: the unreachable agent wipes its key and exits', async (t) => {
  const c = await setup(t);
  const { pid, socket } = await startAgent(t, c.home, c.pp);
  const { unlink } = await import('node:fs/promises');
  await unlink(socket);
  t.ok(await eventually(() => !isAlive(pid), 20_000), 'the agent exits by itself');
  t.same(await agentPidsFor(c.home), []);
});

t.test('--confirm asks on the starting terminal (python3 pty)', { skip: hasPyPty() ? false : 'needs python3 (pty module) on Linux' }, async (t) => {
  const c = await setup(t);
  t.ok(await c.register('bank'), 'a key to fetch (registered with the passphrase)');
  const script = KMGR;
  const env: Record<string, string> = { KMGR_HOME: c.home };
  for (const k of ['PATH', 'HOME', 'TMPDIR', 'LANG']) if (process.env[k] !== undefined) env[k] = process.env[k]!;
  const p = spawn(...untracked('python3', ['-c', PTY_RELAY, process.execPath, script, 'agent', 'start', '--confirm', '--ttl', '5m', '--passphrase-file', c.pp]), {
    env,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    p.kill('SIGKILL');
  });
  let out = '';
  p.stdout.on('data', (b: Buffer) => (out += b.toString('utf8')));
  const seen = (re: RegExp): Promise<boolean> => eventually(() => re.test(out), 20_000);
  t.ok(await seen(/__EXIT__ \d+/), 'agent start returned');
  t.match(out, /__EXIT__ 0/, 'agent start --confirm exits 0 under a terminal');
  const s = await probeAgent(join(c.home, 'agent.sock'));
  t.equal(s.state, 'running');
  if (s.state !== 'running') return;
  reap(t, s.status.pid);
  t.equal(s.status.confirm, true, 'status says confirm');

  const h = (await agentSession(c.paths, c.config, { env: {} }))!;
  t.teardown(() => h.close());
  out = '';
  const bankId = (JSON.parse(await readFile(join(c.home, 'partners.json'), 'utf8')) as { partners: Array<{ id: string; name: string }> }).partners.find((p) => p.name === 'bank')!.id;
  const payload = utf8(`"@method": POST\n"@authority": kmgr.example:8443\n"@path": /v1/keys/${bankId}/fetch\n`);
  const signing = h.signAsync(TAG_REQUEST, payload, 'the label a caller chose');
  t.ok(
    await seen(new RegExp(`allow sign a request to https://kmgr\\.example:8443: POST /v1/keys/${bankId}/fetch, partner bank \\(${bankId}\\) \\[caller says: the label a caller chose\\]\\? \\[y/N\\]`)),
    'the agent asks on the terminal, naming the server, the method, the path and the partner by name',
  );
  p.stdin.write('y\n');
  const sig = await signing;
  t.ok(verifySignature(publicKeyObject(c.publicKey), TAG_REQUEST, payload, sig), 'answered y: signed');

  out = '';
  // A binding statement: the partner by name and the fingerprint of the public key being bound.
  const spki = new Uint8Array(generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' }));
  const statement = encodeFields(['p_test', bankId, 'k_test', 'ed25519', spki, 2, '2027-01-01T00:00:00.000Z', '', 'usable']);
  const binding = h.signAsync(TAG_BINDING, statement);
  const fp = 'SHA256:' + Buffer.from(createHash('sha256').update(spki).digest()).toString('base64url');
  t.ok(await seen(new RegExp(`allow sign a key binding statement for partner bank \\(${bankId}\\): ed25519 public key ${fp.replace(/[-]/g, '\\-')} v2\\? \\[y/N\\]`)), 'a binding statement names the partner and the key fingerprint');
  p.stdin.write('y\n');
  await binding;
  out = '';
  // Typed before the next question opens: for nobody (the shell, had it been reading), never an answer.
  p.stdin.write('y\n');
  t.ok(await seen(/y/), 'the typed-ahead line reached the terminal');
  out = '';
  const opening = h.openBlob(CTX, sealBlob(c.secrets.wrapKey, CTX, randomBytes(32)), 'bank-a');
  t.ok(await seen(/allow decrypt key bank-a \(partner pt_test, key k_test v3, ed25519\)\? \[y\/N\]/), 'it asks before decrypting, naming the key');
  p.stdin.write('n\n');
  await t.rejects(opening, { code: 'auth_forbidden' }, 'answered n: refused');
  const after = await probeAgent(join(c.home, 'agent.sock'));
  t.match(after, { state: 'running', status: { served: 2, refused: 1 } }, 'the agent counts two served, one refused: the typed-ahead "y" answered nothing');

  // A fetch through the agent asks before its request is sent: refusing costs no use.
  out = '';
  const fetching = kmgr(['fetch', 'bank'], { home: c.home });
  t.ok(await seen(/allow fetch and decrypt the key for partner bank from https:\/\/127\.0\.0\.1:\d+\? \[y\/N\]/), 'it asks before fetching, naming the partner and the server');
  p.stdin.write('n\n');
  const refusedFetch = await fetching;
  t.equal(refusedFetch.code, 77, `answered n: refused (77): ${refusedFetch.stderr.trim()}`);
  t.equal(refusedFetch.stdoutBytes.length, 0, 'nothing printed');
  const st = await kmgr(['--json', 'status', 'bank', '--passphrase-file', c.pp], { home: c.home, env: { KMGR_NO_AGENT: '1' } });
  t.equal((JSON.parse(st.stdout) as { uses: { total: number } }).uses.total, 0, 'and nothing counted');
  t.equal((await agent(['stop'], { home: c.home })).code, 0);
  t.notOk(isAlive(s.status.pid));
});

t.test('register and fetch use the agent, no passphrase needed; without it they fall back', async (t) => {
  const c = await setup(t);
  const run = (args: string[]) => kmgr(args, { home: c.home });
  const { pid } = await startAgent(t, c.home, c.pp);
  const reg = await run(['register', 'bank-a']);
  t.equal(reg.code, 0, `register with no passphrase source, through the agent: ${reg.stderr}`);
  const f = await run(['fetch', 'bank-a']);
  t.equal(f.code, 0, `fetch through the agent: ${f.stderr}`);
  t.match(f.stdout, /BEGIN PRIVATE KEY/, 'prints the key');
  const s = await probeAgent(join(c.home, 'agent.sock'));
  t.match(s, { state: 'running', status: { pid } });
  if (s.state === 'running') t.ok(s.status.served >= 4, 'the agent signed, sealed and opened for them');
  t.equal((await agent(['stop'], { home: c.home })).code, 0);
  const noAgent = await run(['fetch', 'bank-a']);
  t.equal(noAgent.code, 64, 'no agent and no passphrase source (no terminal): 64');
  const withPp = await run(['fetch', 'bank-a', '--passphrase-file', c.pp]);
  t.equal(withPp.code, 0, 'falls back to the passphrase');
  t.equal(withPp.stdout, f.stdout, 'the same key');
});

t.test('errors are KmgrErrors with stable codes', async (t) => {
  const home = await tempDir(t);
  const e = new AgentError('stale', join(home, 'agent.sock'), 'x');
  t.ok(e instanceof KmgrError);
  t.equal(e.kind, 'unavailable');
  t.equal(new AgentError('running', 's', 'x').kind, 'conflict', 'running: exit 73');
  t.equal(new AgentError('unsafe', 's', 'x').kind, 'config');
  // a socket path too long for sun_path is a clear configuration error
  await t.rejects(AgentConnection.open('/tmp/' + 'x'.repeat(200)), { code: 'config' });
});
