// kmgr exec NAME... [--env [NAME=]VAR] [--file [NAME=]VAR] -- COMMAND ARGS...:
// fetch each key (a counted use, like kmgr fetch) and run COMMAND with it in
// its environment or in a private file (src/client/exec-run.ts). kmgr's exit
// status is COMMAND's.
import { homePaths } from '../../client/home.js';
import { fetchKeys } from '../../client/fetch-keys.js';
import { checkCommand, runWithKeys, type HandedKey } from '../../client/exec-run.js';
import type { OutputFormat } from '../../crypto/formats.js';
import { UsageError } from '../../protocol/errors.js';
import { warn } from '../output.js';
import type { GlobalOptions } from '../options.js';
import { openSession } from '../session.js';
import type { PassphraseSource } from '../../client/passphrase.js';

interface ExecOptions extends PassphraseSource {
  env?: string[];
  file?: string[];
  format?: OutputFormat;
}

const VAR = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The variable a key gets when no option names one: KMGR_KEY_BANK_A for bank-a. */
const defaultVariable = (name: string): string => `KMGR_KEY_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;

const FILE_EXT: Record<OutputFormat, string> = { pem: 'pem', jwk: 'jwk', raw: 'key', hex: 'hex', base64: 'b64', openssh: 'ssh' };

/** Which key goes where, from the command line; every mistake is a usage error before anything is fetched. */
function placements(names: string[], o: ExecOptions): Array<{ name: string; variable: string; how: 'env' | 'file' }> {
  const chosen = new Map<string, { variable: string; how: 'env' | 'file' }>();
  const take = (spec: string, how: 'env' | 'file'): void => {
    const eq = spec.indexOf('=');
    let name: string;
    let variable: string;
    if (eq >= 0) {
      name = spec.slice(0, eq);
      variable = spec.slice(eq + 1);
      if (!names.includes(name)) throw new UsageError(`--${how} ${spec}: ${name} is not one of the keys named (${names.join(', ')})`);
    } else {
      if (names.length !== 1) throw new UsageError(`with several keys, say which one each variable is for: --${how} NAME=${spec}`);
      name = names[0]!;
      variable = spec;
    }
    if (!VAR.test(variable)) throw new UsageError(`--${how}: ${JSON.stringify(variable)} is not a valid environment variable name`);
    if (chosen.has(name)) throw new UsageError(`${name} is given more than one variable`);
    if ([...chosen.values()].some((c) => c.variable === variable)) throw new UsageError(`${variable} is given to more than one key`);
    chosen.set(name, { variable, how });
  };
  for (const s of o.env ?? []) take(s, 'env');
  for (const s of o.file ?? []) take(s, 'file');
  return names.map((name) => {
    const c = chosen.get(name) ?? { variable: defaultVariable(name), how: 'env' as const };
    // An environment variable is a C string: raw bytes with a NUL in them would be cut short.
    if (c.how === 'env' && o.format === 'raw') throw new UsageError(`--format raw cannot go in an environment variable; use --file ${names.length > 1 ? `${name}=` : ''}${c.variable}`);
    return { name, ...c };
  });
}

export async function run(g: GlobalOptions, names: string[], o: ExecOptions, command: string[] | undefined): Promise<number> {
  if (!command || command.length === 0) throw new UsageError('give the command to run after --: kmgr exec NAME -- COMMAND ARGS...');
  const where = placements(names, o);
  checkCommand(command[0]!);
  const paths = homePaths(g.home);
  const agentFetch = process.env.KMGR_NO_AGENT ? undefined : (await import('../../agent/connection.js')).agentFetch;
  const results = await fetchKeys(
    paths,
    names.map((name) => ({ name, format: o.format })),
    (config) => openSession(paths, o, config),
    agentFetch ? (name, format) => agentFetch(paths, name, format) : undefined,
  );
  const keys: HandedKey[] = where.map((w, i) => ({
    variable: w.variable,
    how: w.how,
    fileName: `${w.name}.${o.format ? FILE_EXT[o.format] : 'key'}`,
    bytes: results[i]!.bytes,
  }));
  for (const r of results) for (const w of r.warnings) warn(w);
  // The keystore passphrase is kmgr's, not the program's: it is not passed on.
  const env = { ...process.env };
  delete env.KMGR_PASSPHRASE;
  return runWithKeys(command[0]!, command.slice(1), keys, { env, warn });
}
