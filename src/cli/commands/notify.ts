// kmgr notify: where the server delivers this person's notices beyond the
// notice list: a webhook (JSON POST signed with an HMAC secret the owner
// keeps) and/or an e-mail address; and how the latest deliveries went.
import { randomBytes } from '../../crypto/random.js';
import { toB64 } from '../../crypto/bytes.js';
import { UsageError } from '../../protocol/errors.js';
import { NotifyView, type NotifySettingsRequest } from '../../protocol/messages.js';
import { homePaths } from '../../client/home.js';
import { openSession } from '../session.js';
import { signedRequest } from '../../client/http.js';
import { writeFileAtomic } from '../../io/atomic-file.js';
import { info, print, printJson, printLine } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';
import type { PassphraseSource } from '../../client/passphrase.js';

interface NotifyOptions extends PassphraseSource {
  webhook?: string | false;
  email?: string | false;
  secretOut?: string;
}

export async function run(g: GlobalOptions, o: NotifyOptions): Promise<number> {
  const change: NotifySettingsRequest = {};
  let secret: string | undefined;
  if (typeof o.webhook === 'string') {
    let u: URL;
    try {
      u = new URL(o.webhook);
    } catch {
      throw new UsageError(`--webhook takes an http(s) URL, not ${JSON.stringify(o.webhook)}`);
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new UsageError('--webhook takes an http(s) URL');
    secret = toB64(randomBytes(32));
    change.webhook = { url: u.href, secret };
  } else if (o.webhook === false) change.webhook = null;
  if (typeof o.email === 'string') change.email = o.email;
  else if (o.email === false) change.email = null;
  if (o.secretOut !== undefined && secret === undefined) throw new UsageError('--secret-out goes with --webhook');

  const session = await openSession(homePaths(g.home), o);
  // The secret file first: if the server then refuses, the file holds an unused secret, never the reverse.
  if (secret !== undefined && o.secretOut !== undefined) await writeFileAtomic(o.secretOut, secret + '\n', 0o600);
  const changed = Object.keys(change).length > 0;
  const { body: view } = changed
    ? await signedRequest(session.endpoint, session.identity, 'PUT', '/v1/notify', change, NotifyView)
    : await signedRequest(session.endpoint, session.identity, 'GET', '/v1/notify', undefined, NotifyView);
  if (g.json) {
    printJson({ ...view, ...(secret !== undefined && o.secretOut === undefined ? { webhookSecret: secret } : {}) });
    return EXIT.OK;
  }
  print(`webhook:  ${view.webhook ? view.webhook.url : 'none'}`);
  print(`e-mail:   ${view.email ?? 'none'}`);
  if (secret !== undefined) {
    if (o.secretOut !== undefined) info(`The webhook secret is in ${o.secretOut}; the receiver checks kmgr-signature with it.`);
    else print(`webhook secret (shown once; the receiver checks the kmgr-signature header with it): ${secret}`);
  }
  if (view.deliveries.length > 0) {
    print('latest deliveries:');
    for (const d of view.deliveries) printLine(`  ${d.at}  ${d.channel}  ${d.ok ? 'delivered' : `failed (attempt ${d.attempt}): ${d.error}`}  notice ${d.noticeId}`);
  }
  return EXIT.OK;
}
