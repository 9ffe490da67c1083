// kmgr whoami: who this client is at which server; the fingerprint is what others pin.
import { homePaths } from '../../client/home.js';
import { loadConfig } from '../../client/config.js';
import { print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';

export async function run(g: GlobalOptions): Promise<number> {
  const paths = homePaths(g.home);
  const c = await loadConfig(paths);
  if (g.json) printJson({ personId: c.personId, server: c.server, keyId: c.keyId, fingerprint: c.fingerprint, home: paths.dir });
  else {
    print(`personal ID:  ${c.personId}`);
    print(`server:       ${c.server}`);
    print(`key ID:       ${c.keyId}`);
    print(`fingerprint:  ${c.fingerprint}`);
    print(`home:         ${paths.dir}`);
  }
  return EXIT.OK;
}
