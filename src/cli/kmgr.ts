// kmgr: the person's command line. Command modules are imported only when
// their command runs, so `kmgr fetch` loads no more than it needs.
import { Command, Option } from 'commander';
import { reportError } from './errors.js';
import { EXIT } from './exit-codes.js';
import { parseCount } from './parse.js';
import { KEY_TYPES } from '../protocol/messages.js';
import { OUTPUT_FORMATS } from '../crypto/txkey.js';
import { UsageError } from '../protocol/errors.js';

export interface GlobalOptions {
  home?: string;
  json?: boolean;
}

const PASSPHRASE_HELP = 'passphrase sources, in order: --passphrase-file, --passphrase-fd, KMGR_PASSPHRASE (least safe), a no-echo prompt';

function withPassphrase(c: Command): Command {
  return c
    .option('--passphrase-file <file>', 'read the passphrase from a file (first line)')
    .option('--passphrase-fd <n>', 'read the passphrase from an inherited file descriptor');
}

export async function main(argv: string[]): Promise<number> {
  let result: Promise<number> = Promise.resolve(EXIT.OK);
  const program = new Command('kmgr')
    .description('keep one management key; let a key server keep, count and limit every other key')
    .version('0.1.0')
    .option('--home <dir>', 'state directory (default $KMGR_HOME, else $XDG_CONFIG_HOME/kmgr, else ~/.config/kmgr)')
    .option('--json', 'print results, and errors, as JSON')
    .exitOverride()
    .showHelpAfterError('(run kmgr help for usage)')
    .addHelpText('after', `\n${PASSPHRASE_HELP}.\nExit codes: 0 ok, 64 usage, 65 integrity/tamper, 66 unknown partner or key, 69 server unreachable,\n70 internal, 73 already exists, 77 refused (passphrase, authentication, key terms), 78 configuration.`);

  // Each action only records which module to run; main awaits it below.
  const run =
    (load: () => Promise<{ run: (g: GlobalOptions, ...a: any[]) => Promise<number> }>) =>
    (...args: any[]): void => {
      const cmd = args[args.length - 1] as Command;
      const g = cmd.optsWithGlobals() as GlobalOptions;
      result = load().then((m) => m.run(g, ...args.slice(0, -1)));
    };

  withPassphrase(
    program
      .command('init')
      .description('create the management key, keep it in a passphrase-encrypted keystore and enrol at the server')
      .requiredOption('--server <url>', 'key server URL, https://host:port')
      .option('--ca <file>', "PEM certificate to trust for the server (kmgrd's DIR/tls/cert.pem when self-signed)")
      .option('--force', 'replace an existing keystore (the old files are kept beside it, renamed)')
      .addOption(new Option('--kdf-cost <logN>', 'scrypt cost as log2(N), 15-22').default(17).argParser(parseKdfCost)),
  ).action(run(() => import('./commands/init.js')));

  const partner = program.command('partner').description('manage the business partner index (Fig. 16)');
  partner
    .command('add <name>')
    .description('add a business partner')
    .option('--name <text>', 'display name, e.g. "Bank A"')
    .option('--app-server <name>', 'application server name')
    .option('--business <text>', 'business contents')
    .action(run(() => import('./commands/partner.js').then((m) => ({ run: m.add }))));
  partner.command('list').description('list partners').action(run(() => import('./commands/partner.js').then((m) => ({ run: m.list }))));
  partner.command('show <name>').description('show one partner').action(run(() => import('./commands/partner.js').then((m) => ({ run: m.show }))));
  partner
    .command('rm <name>')
    .description('remove a partner from the local index')
    .option('--force', 'remove it even though a key is registered for it')
    .action(run(() => import('./commands/partner.js').then((m) => ({ run: m.rm }))));

  withPassphrase(
    program
      .command('register <name>')
      .description('generate (or import) a transaction key for a partner, seal it and register it with its use terms; prints the public key')
      .addOption(new Option('--type <type>', 'key type (default: ed25519, or what --import holds)').choices(KEY_TYPES))
      .option('--import <file>', 'register an existing private key (PEM or JWK) instead of generating one')
      .option('--expires <date>', 'valid through this date (YYYY-MM-DD, UTC) or until this date-time (with a zone)')
      .option('--valid-for <duration>', 'valid for this long from now: 90d, 12h, 2w')
      .option('--max-uses <n>', 'maximum cumulative uses', parseCount('--max-uses'))
      .option('--max-per-day <n>', 'maximum uses per day', parseCount('--max-per-day'))
      .option('--max-per-week <n>', 'maximum uses per ISO week', parseCount('--max-per-week'))
      .option('--max-per-month <n>', 'maximum uses per month', parseCount('--max-per-month'))
      .addOption(new Option('--on-limit <policy>', 'deny: refuse past a limit; notify: serve and record the overuse').choices(['deny', 'notify']).default('deny'))
      .option('--name <text>', 'display name, when the partner is new')
      .option('--app-server <name>', 'application server name, when the partner is new')
      .option('--business <text>', 'business contents, when the partner is new'),
  ).action(run(() => import('./commands/register.js')));

  withPassphrase(
    program
      .command('fetch <name>')
      .description("fetch a partner's transaction key, decrypt it locally and print the private key")
      .addOption(new Option('--format <format>', 'output format (aes256 keys have no PEM)').choices(OUTPUT_FORMATS))
      .option('--force', 'write key material even when stdout is a terminal'),
  ).action(run(() => import('./commands/fetch.js')));

  program.command('list').description('list partners and their keys (local index)').action(run(() => import('./commands/list.js')));
  program.command('whoami').description('show the personal ID, server and management key fingerprint').action(run(() => import('./commands/whoami.js')));

  let json = argv.includes('--json');
  try {
    await program.parseAsync(argv, { from: 'user' });
    json = Boolean(program.opts().json);
    return await result;
  } catch (e) {
    return reportError(e, 'kmgr', json);
  }
}

function parseKdfCost(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 15 || n > 22) throw new UsageError(`--kdf-cost takes a whole number from 15 to 22, not ${JSON.stringify(v)}`);
  return n;
}
