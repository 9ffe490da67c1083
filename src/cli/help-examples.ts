// The examples that end every command's --help, for kmgr and kmgrd, kept in
// one table so that a new command without examples is caught by its test
// (test/cli-help.test.ts walks every command).
import type { Command } from 'commander';

export const KMGR_EXAMPLES: Record<string, string[]> = {
  kmgr: ['kmgr init --server https://keys.example:8443 --ca cert.pem', 'kmgr register bank-a --max-uses 1000 && kmgr fetch bank-a | app-client'],
  init: ['kmgr init --server https://keys.example:8443 --ca /var/lib/kmgr/tls/cert.pem', 'kmgr init --server https://keys.example:8443 --partners server --device laptop'],
  partner: ['kmgr partner add bank-a --name "Bank A"', 'kmgr partner list'],
  'partner add': ['kmgr partner add bank-a --name "Bank A" --app-server pay.bank-a.example'],
  'partner list': ['kmgr partner list', 'kmgr --json partner list'],
  'partner show': ['kmgr partner show bank-a'],
  'partner rm': ['kmgr partner rm bank-a'],
  'partner push': ['kmgr partner push'],
  register: ['kmgr register bank-a --type p256 --valid-for 90d --max-per-day 50', 'kmgr register legacy --import legacy.pem --out legacy.pub'],
  fetch: ['kmgr fetch bank-a | app-client --key-stdin', 'kmgr fetch bank-a --format p12 --out bank-a.p12'],
  csr: ['kmgr csr bank-a --subject "CN=client.example,O=Example" --san DNS:client.example > bank-a.csr'],
  cert: ['kmgr cert import bank-a bank-a.crt ca-chain.pem', 'kmgr cert show bank-a'],
  'cert import': ['kmgr cert import bank-a bank-a.crt ca-chain.pem'],
  'cert show': ['kmgr cert show bank-a', 'kmgr --json cert show bank-a'],
  'cert get': ['kmgr cert get bank-a > bank-a-chain.pem'],
  exec: ['kmgr exec bank-a --file TLS_KEY -- ./client --key-file-env TLS_KEY', 'kmgr exec bank-a shop -- ./batch-job   # KMGR_KEY_BANK_A, KMGR_KEY_SHOP'],
  pubkey: ['kmgr pubkey bank-a', 'kmgr pubkey deploy --format ssh >> ~/.ssh/authorized_keys'],
  status: ['kmgr status bank-a', 'kmgr --json status bank-a | jq .uses'],
  history: ['kmgr history bank-a --limit 20', 'kmgr history bank-a --since 2027-01-01 --json'],
  terms: ['kmgr terms bank-a --max-per-day 100 --valid-for 30d', 'kmgr terms bank-a --max-uses none --expires never'],
  lock: ['kmgr lock bank-a'],
  unlock: ['kmgr unlock bank-a'],
  notices: ['kmgr notices', 'kmgr notices --all --ack'],
  notify: ['kmgr notify --webhook https://hooks.example/kmgr --secret-out webhook.secret', 'kmgr notify --email ops@example.com'],
  audit: ['kmgr audit', 'kmgr audit bank-a --json'],
  rotate: ['kmgr rotate bank-a', 'kmgr rotate bank-a --type p256'],
  retire: ['kmgr retire bank-a', 'kmgr retire bank-a --yes   # in a script'],
  passwd: ['kmgr passwd', 'kmgr passwd --passphrase-file old.txt --new-passphrase-file new.txt'],
  device: ['kmgr device export --out laptop.kmgr', 'kmgr device import laptop.kmgr --label phone'],
  'device export': ['kmgr device export --out laptop.kmgr'],
  'device import': ['kmgr device import laptop.kmgr --label phone'],
  'device list': ['kmgr device list', 'kmgr --json device list'],
  'device revoke': ['kmgr device revoke old-laptop', 'kmgr device export --out phone.kmgr   # then import it, with --force, on each remaining device'],
  rekey: ['kmgr rekey && kmgr recovery-kit --out ~/kmgr-recovery.json'],
  'recovery-kit': ['kmgr recovery-kit --out /media/usb/kmgr-kit.json   # then write the code on paper'],
  recover: ['kmgr recover /media/usb/kmgr-kit.json --label new-laptop'],
  verify: [
    'kmgr verify --server https://keys.example:8443 --person p_... --partner bank-a --public-key client.pub --owner SHA256:...',
  ],
  agent: ['export KMGR_AGENT_SOCK=$(kmgr agent start --ttl 2h)', 'kmgr agent status'],
  'agent start': ['kmgr agent start --ttl 2h', 'kmgr agent start --ssh   # also an SSH agent for keys registered with --ssh'],
  'agent stop': ['kmgr agent stop'],
  'agent status': ['kmgr agent status --json'],
  config: ['kmgr config show', 'kmgr config set ca /tmp/new-cert.pem'],
  'config show': ['kmgr config show', 'kmgr --json config show'],
  'config set': ['kmgr config set server https://keys2.example:8443', 'kmgr config set ca new-cert.pem   # shows its fingerprint, then asks'],
  list: ['kmgr list', 'kmgr --json list'],
  whoami: ['kmgr whoami'],
  completion: ['source <(kmgr completion bash)', 'kmgr completion fish > ~/.config/fish/completions/kmgr.fish'],
};

export const KMGRD_EXAMPLES: Record<string, string[]> = {
  kmgrd: ['kmgrd serve --data /var/lib/kmgr --listen 0.0.0.0:8443', 'kmgrd check-terms --data /var/lib/kmgr'],
  serve: ['kmgrd serve --data /var/lib/kmgr --listen 0.0.0.0:8443', 'kmgrd serve --data ./kmgr-data --tls-cert cert.pem --tls-key key.pem'],
  'check-terms': ['kmgrd check-terms --data /var/lib/kmgr   # from cron', 'kmgrd check-terms --data /var/lib/kmgr --at 2027-06-01T00:00:00Z --all'],
  partner: ['kmgrd partner add bank-a --name "Bank A"', 'kmgrd partner list'],
  'partner add': ['kmgrd partner add bank-a --name "Bank A" --app-server pay.bank-a.example'],
  'partner list': ['kmgrd partner list --json'],
  'check-db': ['kmgrd check-db --data /var/lib/kmgrd || echo "restore a backup: see kmgrd(8)"'],
  backup: ['15 3 * * * kmgrd backup --data /var/lib/kmgrd --out /var/backups/kmgrd/kmgrd-$(date +\\%a).kmgrbak   # cron, nightly'],
  restore: [
    'kmgrd restore /var/backups/kmgrd/kmgrd-Mon.kmgrbak --data /var/lib/kmgrd.restored',
    'kmgrd restore /var/backups/kmgrd/kmgrd-Mon.kmgrbak --database-url postgres://kmgr@db.internal/kmgr_restored',
  ],
  migrate: ['systemctl stop kmgrd && kmgrd migrate --data /var/lib/kmgrd --database-url postgres://kmgr@db.internal/kmgr'],
};

/** The path of a command below the program, e.g. "partner add"; the program's own name for the program. */
function commandPath(c: Command): string {
  const names: string[] = [];
  for (let x: Command | null = c; x?.parent; x = x.parent) names.unshift(x.name());
  return names.length === 0 ? c.name() : names.join(' ');
}

/** Ends every command's --help with its examples. */
export function addExamples(program: Command, table: Record<string, string[]>): void {
  const walk = (c: Command): void => {
    const ex = table[commandPath(c)];
    if (ex) c.addHelpText('after', `\nExamples:\n${ex.map((e) => `  $ ${e}`).join('\n')}`);
    for (const sub of c.commands) walk(sub);
  };
  walk(program);
}
