// Helpers shared by tests of keys in use (certificates, kmgr exec).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openSession } from '../src/client/session.js';
import { homePaths } from '../src/client/home.js';
import { api } from '../src/client/api.js';
import type { Client } from './cli-util.js';

/**
 * Reads a key's total use count from the server with a real signed request
 * made in this process (one session for the whole test, so that checking a
 * count does not cost a kmgr process).
 */
export async function statusReader(c: Client): Promise<(name: string) => Promise<number>> {
  const session = await openSession(homePaths(c.home), { passphraseFile: c.pp }, null);
  return async (name) => {
    const idx = JSON.parse(await readFile(join(c.home, 'partners.json'), 'utf8')) as { partners: Array<{ name: string; id: string }> };
    const id = idx.partners.find((p) => p.name === name)!.id;
    return (await api.status(session, id)).uses.total;
  };
}
