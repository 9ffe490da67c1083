// kmgr: the person's command line. Command modules are imported only when
// their command runs, so `kmgr fetch` loads no more than it needs.
import { Command, Option } from 'commander';
import { reportError } from './errors.js';
import { EXIT } from './exit-codes.js';
import { parseCount, parseLimit } from './parse.js';
import { KEY_TYPES } from '../protocol/messages.js';
import { OUTPUT_FORMATS } from '../crypto/txkey.js';
import { UsageError } from '../protocol/errors.js';
import type { GlobalOptions } from './options.js';
import { version } from '../io/version.js';


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
    .version(version())
    .option('--home <dir>', 'state directory (default $KMGR_HOME, else $XDG_CONFIG_HOME/kmgr, else ~/.config/kmgr)')
    .option('--json', 'print results, and errors, as JSON')
    .exitOverride()
    .configureOutput({ outputError: () => undefined })
    .addHelpText('after', `\n${PASSPHRASE_HELP}.\nExit codes: 0 ok, 64 usage, 65 integrity/tamper, 66 unknown partner or key, 69 server unreachable,\n70 internal, 73 already exists, 77 refused (passphrase, authentication, key terms), 78 configuration.`);

  // Each action only records which module to run; main awaits it below.
  const run =
    (load: () => Promise<{ run: (g: GlobalOptions, ...a: never[]) => Promise<number> }>) =>
    (...args: unknown[]): void => {
      const cmd = args[args.length - 1] as Command;
      const g = cmd.optsWithGlobals<GlobalOptions>();
      // commander passes the arguments and options each command declared, in order.
      result = load().then((m) => m.run(g, ...(args.slice(0, -1) as never[])));
    };

  withPassphrase(
    program
      .command('init')
      .description('create the management key, keep it in a passphrase-encrypted keystore and enrol at the server')
      .requiredOption('--server <url>', 'key server URL, https://host:port')
      .option('--ca <file>', "PEM certificate to trust for the server (kmgrd's DIR/tls/cert.pem when self-signed)")
      .option('--force', 'replace an existing keystore (the old files are kept beside it as *.old-TIME)')
      .addOption(new Option('--kdf-cost <logN>', 'scrypt cost as log2(N), 15-22').default(17).argParser(parseKdfCost))
      .addOption(new Option('--partners <where>', 'keep the partner index in this home (local) or on the server (server), for every device').choices(['local', 'server']).default('local'))
      .option('--device <label>', "this device's label, shown in the server's history (default: the host name)"),
  ).action(run(() => import('./commands/init.js')));

  const partner = program.command('partner').description('manage the business partner index (Fig. 16); with --partners server it lives on the server');
  const partnerCmd = (fn: 'add' | 'list' | 'show' | 'rm' | 'push') => run(() => import('./commands/partner.js').then((m) => ({ run: m[fn] })));
  withPassphrase(
    partner
      .command('add <name>')
      .description('add a business partner (on the server: a shared one of that name if the operator has it)')
      .option('--name <text>', 'display name, e.g. "Bank A"')
      .option('--app-server <name>', 'application server name')
      .option('--business <text>', 'business contents'),
  ).action(partnerCmd('add'));
  withPassphrase(partner.command('list').description('list partners')).action(partnerCmd('list'));
  withPassphrase(partner.command('show <name>').description('show one partner')).action(partnerCmd('show'));
  withPassphrase(
    partner.command('rm <name>').description('remove a partner from the index').option('--force', 'remove it even though a key is registered for it'),
  ).action(partnerCmd('rm'));
  withPassphrase(partner.command('push').description('move the local partner index to the server, once, for every device')).action(partnerCmd('push'));

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

  withPassphrase(program.command('status <name>').description("show a key's counts, limits, valid term, lock flag and last use")).action(
    run(() => import('./commands/status.js')),
  );
  withPassphrase(
    program
      .command('history <name>')
      .description('list every use and refused attempt of a key, newest first')
      .option('--since <date>', 'only entries at or after this date (YYYY-MM-DD, UTC) or date-time')
      .option('--limit <n>', 'at most this many entries', parseCount('--limit')),
  ).action(run(() => import('./commands/history.js')));
  withPassphrase(
    program
      .command('terms <name>')
      .description("change a key's use terms (a limit of none removes it; --expires never removes the expiry)")
      .option('--expires <date>', 'valid through this date (YYYY-MM-DD, UTC), until this date-time, or never')
      .option('--valid-for <duration>', 'valid for this long from now: 90d, 12h, 2w')
      .option('--max-uses <n|none>', 'maximum cumulative uses', parseLimit('--max-uses'))
      .option('--max-per-day <n|none>', 'maximum uses per day', parseLimit('--max-per-day'))
      .option('--max-per-week <n|none>', 'maximum uses per ISO week', parseLimit('--max-per-week'))
      .option('--max-per-month <n|none>', 'maximum uses per month', parseLimit('--max-per-month'))
      .addOption(new Option('--on-limit <policy>', 'deny or notify').choices(['deny', 'notify'])),
  ).action(run(() => import('./commands/terms.js')));
  withPassphrase(program.command('lock <name>').description('inhibit every use of a key until unlocked')).action(
    run(() => import('./commands/terms.js').then((m) => ({ run: m.lock }))),
  );
  withPassphrase(program.command('unlock <name>').description('permit use of a locked key again')).action(
    run(() => import('./commands/terms.js').then((m) => ({ run: m.unlock }))),
  );
  withPassphrase(
    program
      .command('notices')
      .description('list unread notices: expired and expiring keys, limits reached, refused attempts')
      .option('--all', 'include notices already read')
      .option('--ack', 'mark the listed notices read'),
  ).action(run(() => import('./commands/notices.js')));
  withPassphrase(
    program
      .command('notify')
      .description('show or set where notices are delivered: a signed webhook and/or an e-mail address')
      .option('--webhook <url>', 'POST each notice as JSON to this URL, signed with a new HMAC secret')
      .option('--no-webhook', 'stop webhook delivery')
      .option('--secret-out <file>', 'write the new webhook secret to this file (0600) instead of printing it')
      .option('--email <address>', 'e-mail each notice to this address (the server must be configured for mail)')
      .option('--no-email', 'stop e-mail delivery'),
  ).action(run(() => import('./commands/notify.js')));
  withPassphrase(
    program
      .command('audit [name]')
      .description("compare the server's history with this client's fetch log; exit 1 if it finds uses this client did not make"),
  ).action(run(() => import('./commands/audit.js')));
  withPassphrase(
    program
      .command('rotate <name>')
      .description('replace a partner\'s key with a new one (version + 1) under the same terms; prints the new public key')
      .addOption(new Option('--type <type>', 'key type of the new key (default: the current one)').choices(KEY_TYPES)),
  ).action(run(() => import('./commands/rotate.js')));
  withPassphrase(
    program
      .command('passwd')
      .description('change the keystore passphrase (the file is replaced atomically)')
      .option('--new-passphrase-file <file>', 'read the new passphrase from a file')
      .option('--new-passphrase-fd <n>', 'read the new passphrase from a file descriptor')
      .option('--kdf-cost <logN>', 'new scrypt cost as log2(N), 15-22 (default: keep the current one)', parseKdfCost),
  ).action(run(() => import('./commands/passwd.js')));

  const device = program.command('device').description('set up another device with this management key');
  withPassphrase(
    device
      .command('export')
      .description('write the management key and settings, sealed under a one-time code printed once')
      .option('--out <file>', 'write to this file (mode 0600) instead of stdout'),
  ).action(run(() => import('./commands/device.js').then((m) => ({ run: m.exportDevice }))));
  withPassphrase(
    device
      .command('import <file>')
      .description("set up this home from a device export; the passphrase options set this device's new passphrase")
      .option('--code-file <file>', 'read the one-time code from a file instead of a no-echo prompt')
      .option('--label <name>', "this device's label in the server's history (default: the host name)")
      .option('--force', 'replace an existing keystore (the old files are kept beside it as *.old-TIME)')
      .addOption(new Option('--kdf-cost <logN>', 'scrypt cost as log2(N), 15-22').default(17).argParser(parseKdfCost)),
  ).action(run(() => import('./commands/device.js').then((m) => ({ run: m.importDevice }))));

  program
    .command('verify')
    .description("check whether a public key is a person's current key for a partner (for application servers; no keystore needed)")
    .requiredOption('--server <url>', 'key server URL')
    .option('--ca <file>', 'PEM certificate to trust for the server')
    .requiredOption('--person <id>', "the owner's personal ID")
    .option('--partner <name|id>', "a shared partner's name (looked up in the server's directory), or a partner ID")
    .option('--partner-id <id>', 'the partner ID itself: nothing is looked up')
    .requiredOption('--public-key <file>', 'the public key to check (PEM)')
    .option('--owner <fingerprint>', "the owner's management key fingerprint, pinned out of band (kmgr whoami)")
    .option('--requester <name>', "this application server's name, recorded in the owner's history (default: the host name)")
    .action(run(() => import('./commands/verify.js')));

  const agent = program.command('agent').description('keep the management key unlocked in a background agent, like ssh-agent');
  withPassphrase(
    agent
      .command('start')
      .description('unlock once and start the agent; prints its socket path')
      .option('--ttl <duration>', 'wipe the key and exit after this long: 15m, 2h, 90s (default 15m, at most 7d)')
      .option('--confirm', 'ask on this terminal before each use of the key'),
  ).action(run(() => import('./commands/agent.js').then((m) => ({ run: m.start }))));
  agent.command('stop').description('stop the agent; it wipes the key').action(run(() => import('./commands/agent.js').then((m) => ({ run: m.stop }))));
  agent
    .command('status')
    .description('show whether an agent serves this home, its socket and time left (exit 69 if none)')
    .action(run(() => import('./commands/agent.js').then((m) => ({ run: m.status }))));

  program.command('list').description('list partners and their keys (local index)').action(run(() => import('./commands/list.js')));
  program.command('whoami').description('show the personal ID, server and management key fingerprint').action(run(() => import('./commands/whoami.js')));

  let json = argv.includes('--json');
  if (argv.length === 0) {
    process.stderr.write(program.helpInformation());
    return EXIT.USAGE;
  }
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
