// Getting started: every command's --help (kmgr and kmgrd) ends with examples,
// and kmgr completion prints scripts that bash accepts and that complete
// commands, options and partner names.
import t, { type Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { KMGR, KMGRD, startServer, newHome, tempDir, untracked } from './support/index.js';

function help(bin: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(...untracked(process.execPath, [bin, ...args, '--help']), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', () => resolve(out));
  });
}

/** The subcommand names listed in a --help text's Commands section. */
const commandsIn = (text: string): string[] =>
  [...(text.split('\nCommands:\n')[1] ?? '').matchAll(/^ {2}([a-z][a-z-]*)/gm)].map((m) => m[1]!).filter((c) => c !== 'help');

async function everyHelp(t: Test, bin: string, name: string): Promise<void> {
  const queue: string[][] = [[]];
  let n = 0;
  while (queue.length > 0) {
    const batch = queue.splice(0);
    const texts = await Promise.all(batch.map((args) => help(bin, args)));
    batch.forEach((args, i) => {
      const text = texts[i]!;
      n++;
      t.match(text.trimEnd().split('\nExamples:\n').at(-1), new RegExp(`^( {2}\\$ .*\\b${name}\\b.*\\n?){1,2}$`), `${[name, ...args].join(' ')} --help ends with one or two examples`);
      for (const sub of commandsIn(text)) queue.push([...args, sub]);
    });
  }
  t.ok(n > 5, `${n} help texts checked`);
}

t.test('every kmgr and kmgrd command --help ends with examples', async (t) => {
  await everyHelp(t, KMGR, 'kmgr');
  await everyHelp(t, KMGRD, 'kmgrd');
});

t.test('kmgr completion bash completes commands, options and partner names', async (t) => {
  const server = await startServer(t);
  const c = await newHome(t, server);
  for (const name of ['bank-a', 'bank-b']) t.equal((await c.run(['partner', 'add', name])).code, 0);
  const dir = await tempDir(t);
  await mkdir(join(dir, 'bin'));
  const shim = join(dir, 'bin', 'kmgr');
  await writeFile(shim, `#!/bin/sh\nexec '${process.execPath}' '${KMGR}' "$@"\n`);
  await chmod(shim, 0o755);
  const script = spawnSync(...untracked(process.execPath, [KMGR, 'completion', 'bash']), { encoding: 'utf8' }).stdout;
  const file = join(dir, 'kmgr.bash');
  await writeFile(file, script);
  t.equal(spawnSync('bash', ['--norc', '-n', file]).status, 0, 'bash accepts the script');
  const complete = (line: string): string => {
    const r = spawnSync(...untracked('bash', ['--norc', '-c', `source "$SCRIPT"; read -ra COMP_WORDS <<< "$LINE"; [[ $LINE == *" " ]] && COMP_WORDS+=(""); COMP_CWORD=$((\${#COMP_WORDS[@]}-1)); _kmgr; echo "\${COMPREPLY[*]}"`]), {
      encoding: 'utf8',
      env: { PATH: `${join(dir, 'bin')}:${process.env.PATH}`, KMGR_HOME: c.home, LINE: line, SCRIPT: file },
    });
    return r.stdout.trim();
  };
  t.equal(complete('kmgr fet'), 'fetch');
  t.equal(complete('kmgr partner '), 'add list show rm push');
  t.match(complete('kmgr fetch bank-a --fo'), /--format/);
  t.equal(complete('kmgr fetch '), 'bank-a bank-b', 'partner names from kmgr list');
  t.equal(complete('kmgr --json status bank-'), 'bank-a bank-b');
  for (const shell of ['zsh', 'fish']) {
    const r = spawnSync(...untracked(process.execPath, [KMGR, 'completion', shell]), { encoding: 'utf8' });
    t.equal(r.status, 0, `kmgr completion ${shell}`);
    t.match(r.stdout, shell === 'zsh' ? /^#compdef kmgr/ : /complete -c kmgr -n __fish_use_subcommand -a fetch/);
  }
  t.equal(spawnSync(...untracked(process.execPath, [KMGR, 'completion', 'tcsh'])).status, 64, 'an unknown shell: 64');
});
