// A test's kmgr home: initialised against a server (or a double in front of one),
// with its passphrase in a file, and the one way to run kmgr in it.
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { createHome } from '../../src/client/create-home.js';
import { homePaths } from '../../src/client/home.js';
import { generateTransactionKey, importTransactionKey, type KeyType } from '../../src/crypto/txkey.js';
import { registerKey } from '../../src/client/register.js';
import { termsFrom } from '../../src/cli/commands/register.js';
import { checkServerUrl } from '../../src/cli/commands/init.js';
import { statusJson, withLocalPublicKey } from '../../src/cli/commands/status.js';
import { rememberSecrets, session } from './sessions.js';
import type { StatusJson } from './cli-json.js';
import { kmgr, type RunResult } from './cli.js';
import { readJson, tempDir, writePassphrase, type Teardown } from './files.js';
import { PASSPHRASE } from './paths.js';
import type { ServerAddress } from './server.js';

export interface Home {
  home: string;
  /** The passphrase file. */
  pp: string;
  personId: string;
  fingerprint: string;
  device: string;
  /** Runs kmgr in this home, with the passphrase file where kmgr takes one and the test named no source of its own (see withPassphrase). */
  run(args: string[], env?: Record<string, string>): Promise<RunResult>;
  /**
   * Runs `kmgr ARGS --json` and expects exit `code`; gives stdout parsed (or, when code is not 0,
   * the JSON error from stderr) as the type the caller names: the command's own output type, checked by the test's assertions.
   */
  json<T>(args: string[], code?: number): Promise<T>;
  /**
   * Registers a key for partner `name` in this process, with the code `kmgr register` runs
   * (src/client/register.ts) and the home's passphrase: for a test whose subject is what
   * comes after. Gives what `kmgr register NAME --json` prints; throws what it would report.
   */
  register<T extends StatusJson = StatusJson>(name: string, o?: KeyOptions): Promise<T>;
}

/** `kmgr register`'s options, as a test gives them in-process (see Home.register). */
export interface KeyOptions {
  type?: KeyType;
  /** --import: a file holding the key. */
  importFile?: string;
  maxUses?: number;
  maxPerDay?: number;
  /** --valid-for, as the command line takes it (90s, 5h, 3d). */
  validFor?: string;
  onLimit?: 'deny' | 'notify';
  ssh?: boolean;
}

/**
 * The commands that take no passphrase options: src/cli/kmgr.ts gives --passphrase-file and
 * --passphrase-fd (withPassphrase) to every other one. A group (config) stands for all its commands.
 */
const NO_PASSPHRASE = new Set(['verify', 'whoami', 'list', 'completion', 'help', 'config', 'agent stop', 'agent status']);
/** kmgr's options before the command that take a value. */
const GLOBAL_WITH_VALUE = new Set(['--home', '--timeout']);
const SOURCES = ['--passphrase-file', '--passphrase-fd'];

/**
 * args with `--passphrase-file pp` added (before a `--` that ends kmgr's own arguments), unless
 * the command takes none or the test chose a source itself: the home supplies its passphrase
 * only where the test did not decide how the passphrase comes in.
 */
export function withPassphrase(args: string[], pp: string): string[] {
  let i = 0;
  while (i < args.length && args[i]!.startsWith('-')) i += GLOBAL_WITH_VALUE.has(args[i]!) ? 2 : 1;
  const cmd = args[i];
  if (cmd === undefined || NO_PASSPHRASE.has(cmd) || NO_PASSPHRASE.has(`${cmd} ${args[i + 1]}`)) return args;
  const end = args.indexOf('--') < 0 ? args.length : args.indexOf('--');
  const own = args.slice(0, end);
  if (own.some((a) => SOURCES.some((s) => a === s || a.startsWith(`${s}=`)))) return args;
  return [...own, '--passphrase-file', pp, ...args.slice(end)];
}

/** A Home for a directory that already holds (or will hold) a kmgr home, with the passphrase in pp. */
export function homeFor(home: string, pp: string, personId = '', fingerprint = '', device = ''): Home {
  const run = (args: string[], env?: Record<string, string>): Promise<RunResult> => kmgr(withPassphrase(args, pp), { home, ...(env ? { env } : {}) });
  return {
    home,
    pp,
    personId,
    fingerprint,
    device,
    run,
    async register<T extends StatusJson = StatusJson>(name: string, o: KeyOptions = {}): Promise<T> {
      const key = o.importFile !== undefined ? importTransactionKey(await readFile(o.importFile, 'utf8'), o.type) : generateTransactionKey(o.type ?? 'ed25519');
      // The terms as kmgr register makes them from its options (src/cli/commands/register.ts).
      const terms = termsFrom({ validFor: o.validFor, maxUses: o.maxUses, maxPerDay: o.maxPerDay, onLimit: o.onLimit ?? 'deny' }, Date.now());
      const r = await registerKey(await session({ home, pp }), name, key, { terms, meta: {}, ssh: o.ssh });
      // As printed and read back, so the test sees exactly the --json form.
      return JSON.parse(JSON.stringify(statusJson(name, withLocalPublicKey(r.status, r.partner)))) as T;
    },
    async json<T>(args: string[], code = 0): Promise<T> {
      const r = await run([...args, '--json']);
      if (r.code !== code) throw new Error(`kmgr ${args.join(' ')} --json: exit ${r.code}, expected ${code}: ${r.stderr.trim()}`);
      if (code !== 0) return (JSON.parse(r.stderr) as { error: T }).error;
      return JSON.parse(r.stdout) as T;
    },
  };
}

/** Where a new test home goes: a temporary directory, its passphrase file beside it, and its device label. */
async function homePlace(t: Teardown, passphrase: string, device = 'primary'): Promise<{ home: string; pp: string; device: string }> {
  const base = await tempDir(t, 'kmgr-home-');
  return { home: join(base, 'home'), pp: await writePassphrase(base, 'passphrase', passphrase), device };
}

/** A client home initialised against `server`, as `kmgr init --kdf-cost 15` makes one. */
export async function newHome(
  t: Teardown,
  server: ServerAddress,
  o: { partners?: 'local' | 'server'; device?: string; passphrase?: string } = {},
): Promise<Home> {
  const { home, pp, device } = await homePlace(t, o.passphrase ?? PASSPHRASE, o.device);
  // Made in this process with the code kmgr init runs (src/client/create-home.ts), KDF cost at
  // the floor: a test home is where a test starts, and `kmgr init` itself is tested on its own.
  const made = await createHome(
    homePaths(home),
    { server: checkServerUrl(server.url), caPem: await readFile(server.ca, 'utf8'), passphrase: new TextEncoder().encode(o.passphrase ?? PASSPHRASE), kdfCost: 15, device, partners: o.partners ?? 'local' },
    () => undefined,
  );
  await rememberSecrets(home, pp, made.secrets);
  return homeFor(home, pp, made.personId, made.fingerprint, device);
}

/**
 * A home made by `kmgr init --json` itself, for a test that means the command line's own
 * path from the start (newHome makes one in-process with the same code).
 */
export async function initHome(
  t: Teardown,
  server: ServerAddress,
  o: { partners?: 'local' | 'server'; device?: string } = {},
): Promise<Home> {
  const { home, pp, device } = await homePlace(t, PASSPHRASE, o.device);
  const r = await kmgr(
    ['--json', 'init', '--server', server.url, '--ca', server.ca, '--passphrase-file', pp, '--kdf-cost', '15', '--partners', o.partners ?? 'local', '--device', device],
    { home },
  );
  if (r.code !== 0) throw new Error(`kmgr init failed (${r.code}): ${r.stderr}`);
  const info = JSON.parse(r.stdout) as { personId: string; fingerprint: string; device: string; partners: string; home: string };
  if (info.device !== device || info.partners !== (o.partners ?? 'local') || info.home !== home) throw new Error(`kmgr init --json printed ${r.stdout}`);
  return homeFor(home, pp, info.personId, info.fingerprint, device);
}

/** `--passphrase-file` and the home's file, for a command line a test builds itself. */
export function pp(h: Pick<Home, 'pp'>): string[] {
  return ['--passphrase-file', h.pp];
}

/** The partner ID the home's local index gives a partner name. */
export async function partnerId(h: Pick<Home, 'home'>, name: string): Promise<string> {
  const idx = await readJson<{ partners: Array<{ name: string; id: string }> }>(join(h.home, 'partners.json'));
  const p = idx.partners.find((x) => x.name === name);
  if (!p) throw new Error(`no partner ${name}`);
  return p.id;
}
