// `kmgr fetch` through the agent's fetch operation (src/agent/fetch-op.ts):
// the agent makes the whole fetch, and everything a user relies on must be as
// without it — the key, the count, the logs the audit reads, every error and
// exit code, and the checks against a lying server. Real agent, real kmgrd.
import t, { type Test } from 'tap';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startServer, newHome, kmgr, startLyingProxy, tempDir, startAgent, statusReader, type Home, type RunResult, type TestServer } from './support/index.js';
import { AgentConnection, agentSocketPath } from '../src/agent/client.js';
import { homePaths } from '../src/client/home.js';

t.jobs = 2;


/** kmgr without a passphrase source (so only the agent can unlock), detached from any terminal. */
const viaAgent = (c: Home, args: string[]): Promise<RunResult> => kmgr(args, { home: c.home });
/** kmgr with the agent skipped and the passphrase from a file. */
const direct = (c: Home, args: string[]): Promise<RunResult> =>
  kmgr([...args, '--passphrase-file', c.pp], { home: c.home, env: { KMGR_NO_AGENT: '1' } });

async function served(c: Home): Promise<number> {
  const s = await kmgr(['agent', 'status', '--json'], { home: c.home });
  return (JSON.parse(s.stdout) as { served: number }).served;
}

async function usesOf(c: Home, name: string): Promise<number> {
  return (await statusReader(c))(name);
}

async function setup(t: Test, server?: TestServer): Promise<Home> {
  const c = await newHome(t, server ?? (await startServer(t)));
  await c.register('bank');
  await c.register('vault', { type: 'aes256' });
  await c.register('once', { maxUses: 1 });
  return c;
}

t.test('through the agent: the same key in every format, counted once each, logged for the audit', async (t) => {
  const c = await setup(t);
  await startAgent(t, c.home, c.pp);
  for (const [name, format] of [['bank', 'pem'], ['bank', 'jwk'], ['bank', 'raw'], ['vault', 'hex'], ['vault', 'base64']] as const) {
    const a = await viaAgent(c, ['fetch', name, '--format', format]);
    t.equal(a.code, 0, `${name} --format ${format} through the agent: ${a.stderr}`);
    const b = await direct(c, ['fetch', name, '--format', format]);
    t.equal(b.code, 0);
    t.ok(a.stdoutBytes.length > 0 && a.stdoutBytes.equals(b.stdoutBytes), `${name} ${format}: byte for byte the key fetched without the agent`);
  }
  t.ok((await served(c)) >= 5, 'the agent served the fetches');
  t.equal(await usesOf(c, 'bank'), 6, 'each fetch counted once');
  const sent = (await readFile(join(c.home, 'fetch-sent.jsonl'), 'utf8')).trim().split('\n');
  const log = (await readFile(join(c.home, 'fetch-log.jsonl'), 'utf8')).trim().split('\n');
  t.equal(sent.length, 10, 'the durable sent log has every request, the agent\'s too');
  t.equal(log.length, 10, 'the fetch log has every use');
  const audit = await direct(c, ['audit']);
  t.equal(audit.code, 0, `the audit finds only our own uses: ${audit.stdout}${audit.stderr}`);
});

t.test('through the agent, errors are those of a fetch without it, and cost nothing', async (t) => {
  const c = await setup(t);
  await startAgent(t, c.home, c.pp);
  const both = async (args: string[]): Promise<[RunResult, RunResult]> => [await viaAgent(c, args), await direct(c, args)];

  for (const [what, args, code] of [
    ['unknown partner', ['fetch', 'nobody'], 66],
    ['a PEM of an aes256 key', ['fetch', 'vault', '--format', 'pem'], 64],
  ] as const) {
    const [a, b] = await both([...args]);
    t.equal(a.code, code, `${what}: exit ${code} through the agent`);
    t.equal(b.code, code, `${what}: exit ${code} without it`);
    t.equal(a.stderr, b.stderr, `${what}: the same message`);
    t.equal(a.stdoutBytes.length, 0, `${what}: nothing on stdout`);
  }
  t.equal(await usesOf(c, 'vault'), 0, 'the refused format cost no use');

  t.equal((await viaAgent(c, ['fetch', 'once'])).code, 0, 'the one allowed use');
  const [a, b] = await both(['--json', 'fetch', 'once']);
  t.not(a.code, 0, 'the second use is refused');
  t.equal(a.code, b.code, `the same exit code (${a.code})`);
  const ja = JSON.parse(a.stderr) as { error: { code: string; details?: unknown } };
  const jb = JSON.parse(b.stderr) as { error: { code: string; details?: unknown } };
  t.equal(ja.error.code, jb.error.code, `the same JSON error code (${ja.error.code})`);
  // Each refusal is a history entry of its own, so the key's history counter differs by one between them.
  const withoutSeq = (d: unknown): unknown => {
    const st = (d as { status?: Record<string, unknown> } | undefined)?.status;
    return st ? { ...(d as object), status: { ...st, historySeq: undefined } } : d;
  };
  t.same(withoutSeq(ja.error.details), withoutSeq(jb.error.details), 'and the same details');
  t.equal(a.stdoutBytes.length, 0);
  const refusals = (await readFile(join(c.home, 'fetch-sent.jsonl'), 'utf8')).split('\n').filter((l) => l.includes('"outcome":"refused"'));
  t.equal(refusals.length, 2, 'both refusals remembered for the audit');
});

t.test('through the agent, a server that swaps or alters the blob is caught: 65, nothing printed', async (t) => {
  const server = await startServer(t);
  const proxy = await startLyingProxy(t, server);
  const c = await setup(t, { ...server, url: proxy.url, ca: proxy.ca });
  await startAgent(t, c.home, c.pp);
  const idx = JSON.parse(await readFile(join(c.home, 'partners.json'), 'utf8')) as { partners: { id: string; name: string }[] };
  const bank = idx.partners.find((p) => p.name === 'bank')!.id;
  const vault = idx.partners.find((p) => p.name === 'vault')!.id;
  // vault's blob, served for bank: opens under no context this client asks for.
  t.equal((await viaAgent(c, ['fetch', 'vault'])).code, 0);
  const vaultBlob = (JSON.parse(proxy.captured.get(`/v1/keys/${vault}/fetch`)!.text) as { blob: string }).blob;
  proxy.rewrite.set(`/v1/keys/${bank}/fetch`, (r: { blob: string }) => ({ ...r, blob: vaultBlob }));
  const swapped = await viaAgent(c, ['fetch', 'bank']);
  t.equal(swapped.code, 65, `a swapped blob: 65 (${swapped.stderr.trim()})`);
  t.equal(swapped.stdoutBytes.length, 0, 'nothing printed');
  proxy.rewrite.set(`/v1/keys/${bank}/fetch`, (r: { keyVersion: number }) => ({ ...r, keyVersion: r.keyVersion + 1 }));
  const altered = await viaAgent(c, ['fetch', 'bank']);
  t.equal(altered.code, 65, 'an altered version: 65');
  t.equal(altered.stdoutBytes.length, 0);
  proxy.rewrite.clear();
  t.equal((await viaAgent(c, ['fetch', 'bank'])).code, 0, 'an honest reply again: 0');

  // The server chooses an error's details: oversized or malformed ones must not end the agent or change the exit code.
  const once = idx.partners.find((p) => p.name === 'once')!.id;
  t.equal((await viaAgent(c, ['fetch', 'once'])).code, 0, 'the one allowed use');
  for (const [what, details] of [['20 KB of details', { pad: 'x'.repeat(20_000) }], ['details that are a string', 'not an object']] as const) {
    proxy.rewrite.set(`/v1/keys/${once}/fetch`, (r: { error: object }) => ({ error: { ...r.error, details } }));
    const refused = await viaAgent(c, ['fetch', 'once']);
    t.equal(refused.code, 77, `${what}: still the refusal, 77 (${refused.stderr.trim().slice(0, 120)})`);
    t.equal(refused.stdoutBytes.length, 0);
  }
  proxy.rewrite.clear();
  t.equal((await viaAgent(c, ['fetch', 'bank'])).code, 0, 'and the agent is still serving');
});

t.test('with XDG_RUNTIME_DIR, a home reached through a symbolic link is the same home: fetch and stop work', async (t) => {
  const c = await setup(t);
  const runtime = join(await tempDir(t, 'kmgr-run-'), 'run');
  await mkdir(runtime, { mode: 0o700 });
  const env = { XDG_RUNTIME_DIR: runtime };
  const as = (home: string, args: string[]): Promise<RunResult> => kmgr(args, { home, env });
  await startAgent(t, c.home, c.pp, [], env);
  const link = join(await tempDir(t, 'kmgr-link-'), 'home-link');
  await symlink(c.home, link);
  const f = await as(link, ['fetch', 'bank']);
  t.equal(f.code, 0, `fetch through the link, with no passphrase: the agent served it (${f.stderr.trim()})`);
  t.match(f.stdout, /BEGIN PRIVATE KEY/);
  t.equal((await as(link, ['agent', 'stop'])).code, 0, 'stop through the link');
  t.equal((await as(c.home, ['agent', 'status'])).code, 69, 'no agent any more');
});

t.test('without XDG_RUNTIME_DIR, a home reached through a symbolic link finds the agent in the real directory', async (t) => {
  const c = await setup(t);
  await startAgent(t, c.home, c.pp);
  const link = join(await tempDir(t, 'kmgr-link-'), 'home-link');
  await symlink(c.home, link);
  const as = (args: string[]): Promise<RunResult> => kmgr(args, { home: link });
  const f = await as(['fetch', 'bank']);
  t.equal(f.code, 0, `fetch through the link, with no passphrase: the agent served it (${f.stderr.trim()})`);
  const st = await as(['agent', 'status', '--json']);
  t.equal((JSON.parse(st.stdout) as { socket: string }).socket, join(c.home, 'agent.sock'), 'the socket in the real directory');
  t.equal((await as(['agent', 'stop'])).code, 0, 'stop through the link');
});

t.test('the agent fetches only for its own home and its own identity', async (t) => {
  const c = await setup(t);
  await startAgent(t, c.home, c.pp);
  const paths = homePaths(c.home);
  const conn = await AgentConnection.open(agentSocketPath(paths, {}));
  t.teardown(() => conn.close());
  await t.rejects(conn.request('fetch', { home: '/somewhere/else', name: 'bank' }), { code: 'integrity' }, 'another home: refused');
  await t.rejects(conn.request('fetch', { home: paths.dir, name: '../bank' }), { code: 'bad_request' }, 'a malformed partner name: refused');
  const before = await usesOf(c, 'bank');

  const cfgPath = join(c.home, 'config.json');
  const cfg = await readFile(cfgPath, 'utf8');
  await writeFile(cfgPath, cfg.replace(/"fingerprint": "[^"]+"/, '"fingerprint": "SHA256:not-this-agents-key"'), { mode: 0o600 });
  const r = await viaAgent(c, ['fetch', 'bank']);
  t.equal(r.code, 65, `a config naming another identity: 65 (${r.stderr.trim()})`);
  t.match(r.stderr, /different management key/);
  t.equal(r.stdoutBytes.length, 0);
  await writeFile(cfgPath, cfg, { mode: 0o600 });
  t.equal(await usesOf(c, 'bank'), before, 'nothing was counted');
});
