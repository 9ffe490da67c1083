// Fetching several keys for one command (kmgr exec): every key is checked
// against the local index first, so a typo in the third name costs no counted
// use of the first two; then each is fetched through the normal fetch path
// (src/client/fetch.ts), by the agent when one serves this home, else with one
// unlocked session for all of them.
import type { OutputFormat } from '../crypto/formats.js';
import { UsageError } from '../protocol/errors.js';
import { fetchChecks, fetchWith, type FetchResult } from './fetch.js';
import { loadConfig, type ClientConfig } from './config.js';
import { checkPartnerName, loadPartners, requirePartner } from './partners.js';
import { withPartner, type Session } from './session.js';
import type { HomePaths } from './home.js';

/** A fetch made by someone else (the agent); undefined when nobody could. */
type OtherFetch = (name: string, format: OutputFormat | undefined) => Promise<FetchResult | undefined>;

export async function fetchKeys(
  paths: HomePaths,
  wanted: Array<{ name: string; format: OutputFormat | undefined }>,
  open: (config: ClientConfig) => Promise<Session>,
  other?: OtherFetch,
): Promise<FetchResult[]> {
  const config = await loadConfig(paths);
  const idx = await loadPartners(paths);
  const seen = new Set<string>();
  for (const w of wanted) {
    checkPartnerName(w.name);
    if (seen.has(w.name)) throw new UsageError(`${w.name} is named twice`);
    seen.add(w.name);
    if (config.partners !== 'server') fetchChecks(w.name, w.format)(requirePartner(idx, w.name), config);
  }
  const out: FetchResult[] = [];
  let session: Session | undefined;
  try {
    for (const w of wanted) {
      const viaOther = session ? undefined : await other?.(w.name, w.format);
      if (viaOther) {
        out.push(viaOther);
        continue;
      }
      const opened = await withPartner(paths, w.name, async (c) => (session ??= await open(c)), fetchChecks(w.name, w.format));
      out.push(await fetchWith(paths, opened.session, opened.partner, w.name, w.format));
    }
    return out;
  } catch (e) {
    for (const r of out) r.bytes.fill(0);
    throw e;
  }
}
