// kmgrd: the key server's command line.
import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { UsageError } from '../protocol/errors.js';
import { reportError } from './errors.js';
import { EXIT } from './exit-codes.js';

export const DEFAULT_DATA = process.env.KMGRD_DATA ?? './kmgr-data';

function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`--listen must be HOST:PORT (for example 127.0.0.1:8443), not ${s}`);
  return { host: (m[1] ?? m[2])!, port };
}

export async function main(argv: string[]): Promise<number> {
  let json = false;
  const program = new Command('kmgrd')
    .description('kmgr key server: stores sealed keys, counts and limits every use')
    .version('0.1.0')
    .exitOverride()
    .showHelpAfterError('(run kmgrd --help for usage)');
  let result: Promise<number> = Promise.resolve(EXIT.OK);

  program
    .command('serve')
    .description('serve the HTTPS API until SIGTERM or SIGINT')
    .option('--data <dir>', 'data directory (LevelDB, TLS material)', DEFAULT_DATA)
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8443')
    .option('--tls-cert <file>', 'PEM certificate (default: self-signed, made in DIR/tls on first start)')
    .option('--tls-key <file>', 'PEM private key for --tls-cert')
    .option('--tz <zone>', 'time zone for per-day/week/month limits', 'UTC')
    .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug']).default('info'))
    .action((o: { data: string; listen: string; tlsCert?: string; tlsKey?: string; tz: string; logLevel: string }) => {
      result = serve(o);
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return await result;
  } catch (e) {
    return reportError(e, 'kmgrd', json);
  }
}

async function serve(o: { data: string; listen: string; tlsCert?: string; tlsKey?: string; tz: string; logLevel: string }): Promise<number> {
  const { host, port } = parseListen(o.listen);
  const { startDaemon } = await import('../server/daemon.js');
  const daemon = await startDaemon({
    dataDir: resolve(o.data),
    host,
    port,
    ...(o.tlsCert ? { tlsCert: o.tlsCert } : {}),
    ...(o.tlsKey ? { tlsKey: o.tlsKey } : {}),
    tz: o.tz,
    logLevel: o.logLevel,
  });
  await new Promise<void>((done) => {
    const stop = (signal: string): void => {
      daemon.log.info({ signal }, 'stopping: finishing in-flight requests');
      void daemon.stop().then(done);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return EXIT.OK;
}
