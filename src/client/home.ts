// Where the client keeps its state: $KMGR_HOME, else $XDG_CONFIG_HOME/kmgr, else ~/.config/kmgr.
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export interface HomePaths {
  dir: string;
  keystore: string;
  config: string;
  partners: string;
  fetchLog: string;
  sentLog: string;
  ca: string;
}

/** The names kmgr keeps in a home directory (ensureOwnDir leaves other directories alone). */
export function isHomeEntry(name: string): boolean {
  return /^(keystore|config|partners|out-files|verify-seen|verify-issued)\.json$|^fetch-(log|sent)\.jsonl$|^ca\.pem$|^agent\.sock$|\.old-|^\./.test(name);
}

export function homePaths(override?: string): HomePaths {
  const dir = resolve(
    override ?? process.env.KMGR_HOME ?? join(process.env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'kmgr'),
  );
  return {
    dir,
    keystore: join(dir, 'keystore.json'),
    config: join(dir, 'config.json'),
    partners: join(dir, 'partners.json'),
    fetchLog: join(dir, 'fetch-log.jsonl'),
    sentLog: join(dir, 'fetch-sent.jsonl'),
    ca: join(dir, 'ca.pem'),
  };
}
