// kmgr csr NAME --subject DN [--san ...]: a PKCS#10 request signed with the
// transaction key, for a CA to certify it. Signing is a use of the key, so the
// key is fetched through the normal path: counted, limited and in the history.
import { homePaths } from '../../client/home.js';
import { fetchKeys } from '../../client/fetch-keys.js';
import { checkCsrKeyType, makeCsr, parseSan, parseSubject } from '../../client/csr.js';
import { findPartner, loadPartners } from '../../client/partners.js';
import { importTransactionKey } from '../../crypto/txkey.js';
import { wipe } from '../../crypto/bytes.js';
import { IntegrityError } from '../../protocol/errors.js';
import { print, printJson, warn } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { openSession } from '../session.js';
import type { GlobalOptions } from '../options.js';
import type { PassphraseSource } from '../../client/passphrase.js';

interface CsrOptions extends PassphraseSource {
  subject: string;
  san?: string[];
}

export async function run(g: GlobalOptions, name: string, o: CsrOptions): Promise<number> {
  // The user's words are checked before anything is counted.
  parseSubject(o.subject);
  for (const s of o.san ?? []) parseSan(s);
  const paths = homePaths(g.home);
  const known = findPartner(await loadPartners(paths), name)?.key;
  if (known) checkCsrKeyType(known.alg, name);
  const agentFetch = process.env.KMGR_NO_AGENT ? undefined : (await import('../../agent/connection.js')).agentFetch;
  const [result] = await fetchKeys(
    paths,
    [{ name, format: 'pem' }],
    (config) => openSession(paths, o, config),
    agentFetch ? (n, f) => agentFetch(paths, n, f) : undefined,
  );
  for (const w of result!.warnings) warn(w);
  const pem = Buffer.from(result!.bytes).toString('utf8');
  result!.bytes.fill(0);
  const key = importTransactionKey(pem);
  try {
    checkCsrKeyType(key.type, name);
    if (known && known.alg !== key.type) throw new IntegrityError(`the fetched key of ${name} is ${key.type}, not ${known.alg}`);
    const csr = await makeCsr(key.secret, key.type, o.subject, o.san ?? []);
    if (g.json) printJson({ partner: name, type: key.type, csr });
    else print(csr);
  } finally {
    wipe(key.secret);
  }
  return EXIT.OK;
}
