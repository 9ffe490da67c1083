// kmgr completion bash|zsh|fish: a completion script made from the command
// definitions themselves, so it never lags behind a new command or option.
// Partner names are completed from `kmgr list --json` (local, no passphrase).
import type { Command } from 'commander';
import { UsageError } from '../../protocol/errors.js';
import { print } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';

interface Node {
  path: string[];
  description: string;
  options: string[];
  /** Takes a partner name as its first argument. */
  takesName: boolean;
  children: Node[];
}

function tree(c: Command, path: string[] = []): Node {
  return {
    path,
    description: c.description().split(';')[0]!.replace(/'/g, ''),
    options: c.options.map((o) => o.long).filter((l): l is string => Boolean(l)),
    takesName: c.registeredArguments?.[0]?.name() === 'name',
    children: c.commands.filter((s) => s.name() !== 'help').map((s) => tree(s, [...path, s.name()])),
  };
}

const flat = (n: Node): Node[] => [n, ...n.children.flatMap(flat)];
const NAMES = `kmgr list --json 2>/dev/null | sed -n 's/^ *"name": "\\(.*\\)",$/\\1/p'`;

function bash(root: Node): string {
  const global = root.options.join(' ');
  const cases = flat(root)
    .filter((n) => n.path.length > 0)
    .map((n) => {
      const words = n.children.length > 0 ? n.children.map((c) => c.path.at(-1)).join(' ') : '';
      return `    '${n.path.join(' ')}') opts='${n.options.join(' ')}'; subs='${words}'; names=${n.takesName ? 1 : 0} ;;`;
    })
    .join('\n');
  return `# kmgr completion for bash: source <(kmgr completion bash)
_kmgr() {
  local cur=\${COMP_WORDS[COMP_CWORD]} path='' w i opts subs names
  local known='|${flat(root).filter((n) => n.path.length > 0).map((n) => n.path.join(' ')).join('|')}|'
  # The command path is the leading words that name commands; options and their values are not.
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=\${COMP_WORDS[i]}
    [[ $known == *"|\${path:+$path }$w|"* ]] && path="\${path:+$path }$w"
  done
  opts='${global}'; subs='${root.children.map((c) => c.path[0]).join(' ')}'; names=0
  case "$path" in
    '') ;;
${cases}
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts --help" -- "$cur"))
  elif [[ -n $subs ]]; then
    COMPREPLY=($(compgen -W "$subs" -- "$cur"))
  elif [[ $names == 1 ]]; then
    COMPREPLY=($(compgen -W "$(${NAMES})" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -F _kmgr kmgr
`;
}

function zsh(root: Node): string {
  // zsh runs the bash function through its bashcompinit layer: one script to keep true.
  return `#compdef kmgr
# kmgr completion for zsh: kmgr completion zsh > "\${fpath[1]}/_kmgr", or source <(kmgr completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bash(root)}`;
}

function fish(root: Node): string {
  const q = (s: string): string => `'${s.replace(/'/g, "\\'")}'`;
  const lines = ['# kmgr completion for fish: kmgr completion fish > ~/.config/fish/completions/kmgr.fish', 'complete -c kmgr -f'];
  for (const o of root.options) lines.push(`complete -c kmgr -l ${o.slice(2)}`);
  for (const n of root.children) lines.push(`complete -c kmgr -n __fish_use_subcommand -a ${n.path[0]} -d ${q(n.description)}`);
  for (const n of flat(root).filter((x) => x.path.length > 0)) {
    const cond = `__fish_seen_subcommand_from ${n.path.at(-1)}`;
    for (const c of n.children) lines.push(`complete -c kmgr -n ${q(cond)} -a ${c.path.at(-1)} -d ${q(c.description)}`);
    for (const o of n.options) lines.push(`complete -c kmgr -n ${q(cond)} -l ${o.slice(2)}`);
    if (n.takesName) lines.push(`complete -c kmgr -n ${q(cond)} -a ${q(`(${NAMES})`)}`);
  }
  return lines.join('\n') + '\n';
}

export async function run(_g: GlobalOptions, shell: string, program: Command): Promise<number> {
  const root = tree(program);
  const make = { bash, zsh, fish }[shell as 'bash' | 'zsh' | 'fish'];
  if (!make) throw new UsageError(`kmgr completion takes bash, zsh or fish, not ${JSON.stringify(shell)}`);
  print(make(root));
  return EXIT.OK;
}
