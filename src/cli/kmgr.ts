// kmgr: the person's command line. Command modules are imported only when
// their command runs, so `kmgr fetch` loads no more than it needs.
import { Command, Option } from 'commander';
import { reportError } from './errors.js';
import { EXIT } from './exit-codes.js';
import { parseCount, parseLimit } from './parse.js';
import { KEY_TYPES } from '../protocol/messages.js';
import { OUTPUT_FORMATS } from '../crypto/txkey.js';
import { UsageError } from '../protocol/errors.js';
import { parseTimeoutSeconds } from '../protocol/timeout.js';
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
    .option('--timeout <seconds>', 'give up on a key server request after this long, connecting included (default 30; also KMGR_TIMEOUT)')
    .exitOverride()
    .configureOutput({ outputError: () => undefined })
    .addHelpText('after', `\n${PASSPHRASE_HELP}.\nExit codes: 0 ok, 64 usage, 65 integrity/tamper, 66 unknown partner or key, 69 server unreachable,\n70 internal, 73 already exists, 77 refused (passphrase, authentication, key terms), 78 configuration.`);

  // Each action only records which module to run; main awaits it below.
  const run =
    (load: () => Promise<{ run: (g: GlobalOptions, ...a: never[]) => Promise<number> }>) =>
    (...args: unknown[]): void => {
      const cmd = args[args.length - 1] as Command;
      const g = cmd.optsWithGlobals<GlobalOptions & { timeout?: string }>();
      if (g.timeout !== undefined) {
        if (parseTimeoutSeconds(g.timeout) === undefined) throw new UsageError(`--timeout takes a number of seconds from 0.1 to 3600, not ${JSON.stringify(g.timeout)}`);
        // The request code reads it there (src/client/http.ts), in this process and in what it starts.
        process.env.KMGR_TIMEOUT = g.timeout;
      }
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
      .addOption(new Option('--kdf-cost <logN>', 'scrypt cost as log2(N), 15-20').default(17).argParser(parseKdfCost))
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
      .option('--business <text>', 'business contents, when the partner is new')
      .option('--ssh', "offer the key through this person's SSH agent (kmgr agent start --ssh; ed25519 and p256)"),
  ).action(run(() => import('./commands/register.js')));

  withPassphrase(
    program
      .command('fetch <name>')
      .description("fetch a partner's transaction key, decrypt it locally and print the private key")
      .addOption(new Option('--format <format>', 'output format (aes256 keys have no PEM); pem-chain and p12 add the certificate chain').choices([...OUTPUT_FORMATS, 'pem-chain', 'p12']))
      .option('--force', 'write key material even when stdout is a terminal')
      .option('--out <file>', 'with --format pem-chain or p12: write to this file (mode 0600) instead of stdout')
      .option('--p12-passphrase-file <file>', "with --format p12: the file's own passphrase, from a file (never the keystore's)")
      .option('--p12-passphrase-fd <n>', "with --format p12: the file's own passphrase, from an inherited file descriptor"),
  ).action(run(() => import('./commands/fetch.js')));

  withPassphrase(
    program
      .command('csr <name>')
      .description('print a PKCS#10 certificate request signed with the transaction key (a counted use of the key)')
      .requiredOption('--subject <dn>', 'subject distinguished name, e.g. "CN=bank-a client,O=Example Ltd,C=JP"')
      .option('--san <name>', 'subject alternative name: DNS:host, IP:address, email:address or URI:uri (repeatable)', collect)
      .addHelpText('after', '\nExample: kmgr csr bank-a --subject "CN=client.example,O=Example" --san DNS:client.example > bank-a.csr'),
  ).action(run(() => import('./commands/csr.js')));

  const cert = program.command('cert').description('keep the certificate chain of a key at the server, beside the key (public data; no counted use)');
  withPassphrase(
    cert
      .command('import <name> <cert> [chain]')
      .description("check that CERT certifies the registered key and that CHAIN links up to it, then keep them at the server")
      .addHelpText('after', '\nThe files may hold several PEM certificates, in any order. Example: kmgr cert import bank-a bank-a.crt ca-chain.pem'),
  ).action(run(() => import('./commands/cert.js').then((m) => ({ run: m.importCert }))));
  withPassphrase(cert.command('show <name>').description('show subject, issuer, serial, validity and fingerprint of each certificate')).action(
    run(() => import('./commands/cert.js').then((m) => ({ run: m.show }))),
  );
  withPassphrase(cert.command('get <name>').description('print the certificate chain as PEM, leaf first')).action(
    run(() => import('./commands/cert.js').then((m) => ({ run: m.get }))),
  );

  withPassphrase(
    program
      .command('exec <names...>')
      .description('fetch keys (each a counted use) and run a command with them in its environment or in private files')
      .usage('NAME [NAME...] [--env [NAME=]VAR] [--file [NAME=]VAR] -- COMMAND [ARGS...]')
      .option('--env <[name=]var>', 'put the key in this environment variable (default KMGR_KEY_<NAME>)', collect)
      .option('--file <[name=]var>', 'write the key to a 0600 file in a private memory-backed directory and put its path in this variable', collect)
      .addOption(new Option('--format <format>', 'key format (default pem; base64 for aes256)').choices(OUTPUT_FORMATS))
      .addHelpText(
        'after',
        '\nThe files are removed when COMMAND exits, however it exits; signals are passed on to COMMAND and its exit status is kmgr\'s\n(128+N when it dies of signal N; 127 when it is not found). The key is never in any argv.\nExample: kmgr exec bank-a --file TLS_KEY -- ./client --key-from-env TLS_KEY',
      ),
  ).action(run(() => import('./commands/exec.js').then((m) => ({ run: (g: GlobalOptions, names: string[], o: Parameters<typeof m.run>[2]) => m.run(g, names, o, afterDashes) }))));

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
      .addOption(new Option('--on-limit <policy>', 'deny or notify').choices(['deny', 'notify']))
      .addOption(new Option('--ssh <on|off>', "offer the key through this person's SSH agent, or stop").choices(['on', 'off'])),
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
      .option('--kdf-cost <logN>', 'new scrypt cost as log2(N), 15-20 (default: keep the current one)', parseKdfCost),
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
      .addOption(new Option('--kdf-cost <logN>', 'scrypt cost as log2(N), 15-20').default(17).argParser(parseKdfCost)),
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
      .option('--confirm', 'ask on this terminal before each use of the key')
      .option('--ssh', 'also serve the OpenSSH agent protocol for keys marked --ssh; prints SSH_AUTH_SOCK=...; export SSH_AUTH_SOCK; (eval it)'),
  ).action(run(() => import('./commands/agent.js').then((m) => ({ run: m.start }))));
  agent.command('stop').description('stop the agent; it wipes the key').action(run(() => import('./commands/agent.js').then((m) => ({ run: m.stop }))));
  agent
    .command('status')
    .description('show whether an agent serves this home, its socket and time left (exit 69 if none)')
    .action(run(() => import('./commands/agent.js').then((m) => ({ run: m.status }))));

  program.command('list').description('list partners and their keys (local index)').action(run(() => import('./commands/list.js')));
  program.command('whoami').description('show the personal ID, server and management key fingerprint').action(run(() => import('./commands/whoami.js')));

  // kmgr exec NAME -- COMMAND ARGS: everything after the first -- is the command, never kmgr's options.
  let afterDashes: string[] | undefined;
  const dd = argv.indexOf('--');
  if (argv[0] === 'exec' || (dd > 0 && argv.slice(0, dd).includes('exec'))) {
    if (dd >= 0) {
      afterDashes = argv.slice(dd + 1);
      argv = argv.slice(0, dd);
    }
  }
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

/** A repeatable option's values, in order. */
function collect(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), v];
}

function parseKdfCost(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 15 || n > 20) throw new UsageError(`--kdf-cost takes a whole number from 15 to 20, not ${JSON.stringify(v)}`);
  return n;
}
