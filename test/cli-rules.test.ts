// One set of rules across commands: one duration parser whose errors say what
// is wrong; a missing input file is 66 everywhere; warnings a person can act
// on ("in 5 hours", the last permitted use, a limit set below what is used);
// refusals carry the key's status in the shape kmgr status --json prints;
// passphrase rules (a floor for new ones, empty KMGR_PASSPHRASE is unset,
// --passphrase-fd 0).
import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { existsSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { startServer, newHome, tempDir, PASSPHRASE, kmgr, pp, jsonError, snapshot, sameSnapshot } from './support/index.js';
import { parseDuration, parseTimeout } from '../src/cli/parse.js';
import { plural, timeAhead } from '../src/protocol/words.js';
import { checkNewPassphrase } from '../src/client/passphrase.js';

t.jobs = 2;

t.test('durations: s, m, h, d, w everywhere; each refusal says what is wrong', async (t) => {
  t.equal(parseDuration('--x', '90s'), 90_000);
  t.equal(parseDuration('--x', '15m'), 900_000);
  t.equal(parseDuration('--x', '12h'), 43_200_000);
  t.equal(parseDuration('--x', '90d'), 90 * 86_400_000);
  t.equal(parseDuration('--x', '2w'), 14 * 86_400_000);
  const why = (v: string, range?: { min?: number; max?: number }): string => {
    try {
      parseDuration('--x', v, range);
      return 'accepted';
    } catch (e) {
      return (e as Error).message;
    }
  };
  t.match(why('90'), /needs a unit: 90s, 90m/);
  t.match(why('5x'), /unknown unit "x"/);
  t.match(why('0d'), /zero is not a duration/);
  t.match(why('1.5h'), /whole number with a smaller unit/);
  t.match(why('-1m'), /cannot be negative/);
  t.match(why(''), /empty/);
  t.match(why('8d', { max: 7 * 86_400_000 }), /longer than the most allowed, 1 week/);
  t.match(why('500ms'), /unknown unit "ms"/);
  // --timeout: bare seconds as KMGR_TIMEOUT takes them, or any duration the one parser takes.
  t.equal(parseTimeout('30'), 30_000, '--timeout 30 is seconds');
  t.equal(parseTimeout('2.5'), 2_500, 'with decimals');
  t.equal(parseTimeout('2m'), 120_000, '--timeout 2m is a duration');
  t.throws(() => parseTimeout('0'), /from 0\.1 to 3600/, '--timeout 0 is refused, saying the range');
  t.throws(() => parseTimeout('2h'), /--timeout "2h": longer than the most allowed, 1 hour/, 'over an hour: the duration parser says why');
  t.throws(() => parseTimeout('1.5h'), /whole number with a smaller unit/, 'and the same refusals as every duration');

  const home = join(await tempDir(t), 'h');
  const r = await kmgr(['register', 'x', '--valid-for', '90'], { home });
  t.equal(r.code, 64, 'register --valid-for 90: 64 before anything else');
  t.match(r.stderr, /--valid-for "90": the number needs a unit/);
  const a = await kmgr(['agent', 'start', '--ttl', '3x'], { home });
  t.equal(a.code, 64);
  t.match(a.stderr, /--ttl "3x": unknown unit/);
});

t.test('words: never "1 days"', async (t) => {
  t.equal(plural(1, 'day'), '1 day');
  t.equal(plural(3, 'day'), '3 days');
  t.equal(timeAhead(10 * 60_000), 'in 10 minutes');
  t.equal(timeAhead(60_000), 'in 1 minute');
  t.equal(timeAhead(5 * 3_600_000), 'in 5 hours');
  t.equal(timeAhead(3 * 86_400_000), 'in 3 days');
});

t.test('warnings: expiry in hours, the last permitted use, a limit set below what is used; refusal details in the status shape', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  t.equal((await c.run(['register', 'soon', '--valid-for', '5h'])).code, 0, 'register --valid-for 5h, on the command line');
  const s = await c.run(['fetch', 'soon']);
  t.match(s.stderr, /soon: the key expires at .* \(in 5 hours\)/, 'expiry in hours, not "0 days"');

  t.ok(await c.register('two', { maxUses: 2 }));
  t.match((await c.run(['fetch', 'two'])).stderr, /two: 1 use left of its total limit of 2\n/);
  const last = await c.run(['fetch', 'two']);
  t.equal(last.code, 0);
  t.match(last.stderr, /two: that was the last use its total limit of 2 permits; the next fetch is refused/, 'the fetch taking the last use says so');
  const refused = await kmgr(['--json', 'fetch', 'two', ...pp(c)], { home: c.home });
  t.equal(refused.code, 77);
  const details = (JSON.parse(refused.stderr) as { error: { details: { status: Record<string, unknown> } } }).error.details;
  const status = JSON.parse((await c.run(['status', 'two', '--json'])).stdout) as Record<string, unknown>;
  t.same(Object.keys(details.status).sort(), Object.keys(status).sort(), 'the refusal carries the status in the shape status --json prints');
  t.equal(details.status.partner, 'two');

  t.ok(await c.register('day', { maxPerDay: 10 }));
  for (let i = 0; i < 3; i++) t.equal((await c.run(['fetch', 'day'])).code, 0);
  const lower = await c.run(['terms', 'day', '--max-per-day', '2']);
  t.equal(lower.code, 0);
  t.match(lower.stderr, /day: its per-day limit of 2 is already reached \(3 uses today\); further fetches are refused/);
});

t.test('a missing or unreadable input file is 66, whichever option names it', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  const nope = join(dirname(c.pp), 'no-such-file');
  const pub = join(dirname(c.pp), 'pub.pem');
  await writeFile(pub, generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }));
  for (const args of [
    ['register', 'x', '--import', nope, ...pp(c)],
    ['notices', '--passphrase-file', nope],
    ['verify', '--server', server.url, '--ca', server.ca, '--person', 'p_AAAAAAAAAAAAAAAAAAAAAA', '--partner-id', 'abc', '--public-key', nope],
    ['verify', '--server', server.url, '--ca', nope, '--person', 'p_AAAAAAAAAAAAAAAAAAAAAA', '--partner-id', 'abc', '--public-key', pub],
    ['config', 'set', 'ca', nope, '--yes'],
    ['init', '--server', server.url, '--ca', nope, '--passphrase-file', c.pp, '--force'],
  ]) {
    const r = await kmgr(['--json', ...args], { home: c.home });
    t.equal(r.code, 66, `${args.slice(0, 3).join(' ')}: 66`);
    t.equal(jsonError(r).code, 'no_input', 'no_input');
  }
});

t.test('passphrases: a floor for new ones (with an override), empty KMGR_PASSPHRASE is unset, --passphrase-fd 0', async (t) => {
  for (const weak of ['short', 'aaaaaaaaaaaaaaaa', 'abcdefghijklmnop', '1234567890123', 'abababababababab']) {
    t.throws(() => checkNewPassphrase(new TextEncoder().encode(weak), false), { code: 'weak_passphrase' }, weak);
  }
  t.doesNotThrow(() => checkNewPassphrase(new TextEncoder().encode(PASSPHRASE), false));
  t.doesNotThrow(() => checkNewPassphrase(new TextEncoder().encode('short'), true), 'the override');

  const server = await startServer(t);
  const dir = await tempDir(t);
  const weakFile = join(dir, 'weak');
  await writeFile(weakFile, 'password\n', { mode: 0o600 });
  const home = join(dir, 'h');
  const w = await kmgr(['--json', 'init', '--server', server.url, '--ca', server.ca, '--passphrase-file', weakFile, '--kdf-cost', '15'], { home });
  t.equal(w.code, 64, 'init with "password": 64');
  t.equal(jsonError(w).code, 'weak_passphrase');
  t.match(jsonError(w).message, /fewer than 12.*--allow-weak-passphrase/);
  t.notOk(existsSync(join(home, 'keystore.json')), 'nothing was made');
  const forced = await kmgr(['init', '--server', server.url, '--ca', server.ca, '--passphrase-file', weakFile, '--kdf-cost', '15', '--allow-weak-passphrase'], { home });
  t.equal(forced.code, 0, '--allow-weak-passphrase lets it through');

  const c = await newHome(t, server);
  const before = await snapshot(c.home);
  const pw = await kmgr(['passwd', ...pp(c), '--new-passphrase-file', weakFile], { home: c.home });
  t.equal(pw.code, 64, 'passwd to a weak passphrase: 64');
  sameSnapshot(t, before, await snapshot(c.home), 'the keystore is unchanged');

  t.ok(await c.register('bank-a'));
  const empty = await kmgr(['fetch', 'bank-a', ...pp(c)], { home: c.home, env: { KMGR_PASSPHRASE: '' } });
  t.equal(empty.code, 0, 'an empty KMGR_PASSPHRASE is unset: the file is used');
  const emptyOnly = await kmgr(['fetch', 'bank-a'], { home: c.home, env: { KMGR_PASSPHRASE: '' } });
  t.equal(emptyOnly.code, 64, 'with nothing else: the prompt, and no terminal to ask on');
  t.match(emptyOnly.stderr, /no terminal/);

  const fd0 = await kmgr(['fetch', 'bank-a', '--passphrase-fd', '0'], { home: c.home, input: PASSPHRASE + '\n' });
  t.equal(fd0.code, 0, '--passphrase-fd 0 reads stdin');
  t.match(fd0.stdout, /PRIVATE KEY/);
  t.equal((await kmgr(['fetch', 'bank-a', '--passphrase-fd', '1'], { home: c.home })).code, 64, 'fd 1 is refused');

});
