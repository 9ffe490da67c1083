// kmgr cert import|show|get NAME: the certificate chain kept at the server
// beside a key. Certificates are public: none of this fetches or counts a use.
import { readFile } from 'node:fs/promises';
import { homePaths } from '../../client/home.js';
import { api } from '../../client/api.js';
import { checkedChain, publicKeyFor } from '../../client/certificates.js';
import { buildChain, parsePemCertificates, summarize, toPem, type CertSummary } from '../../crypto/certs.js';
import { ConfigError } from '../../protocol/errors.js';
import { print, printJson, warn } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { openForPartner } from '../session.js';
import type { GlobalOptions } from '../options.js';
import type { PassphraseSource } from '../../client/passphrase.js';

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

const days = (ms: number): number => Math.floor(ms / 86_400_000);

/** "valid until ... (in N days)", or EXPIRED / NOT YET VALID. */
export function validityText(notBefore: string, notAfter: string, now = Date.now()): string {
  const from = Date.parse(notBefore);
  const to = Date.parse(notAfter);
  if (now < from) return `${notBefore} to ${notAfter} (NOT YET VALID)`;
  if (now >= to) return `${notBefore} to ${notAfter} (EXPIRED ${days(now - to)} days ago)`;
  return `${notBefore} to ${notAfter} (${days(to - now)} days left)`;
}

function printSummary(c: CertSummary, label: string): void {
  print(`${label}subject:     ${c.subject}`);
  print(`  issuer:      ${c.issuer}`);
  print(`  serial:      ${c.serial}`);
  print(`  valid:       ${validityText(c.notBefore, c.notAfter)}`);
  print(`  sha256:      ${c.fingerprint}`);
  if (c.subjectAltName) print(`  alt names:   ${c.subjectAltName}`);
}

function printChain(name: string, summaries: CertSummary[], json: boolean): void {
  if (json) {
    printJson({ partner: name, certificates: summaries });
    return;
  }
  summaries.forEach((c, i) => printSummary(c, i === 0 ? '' : `issuer ${i}: `));
}

export async function importCert(g: GlobalOptions, name: string, certFile: string, chainFile: string | undefined, o: PassphraseSource): Promise<number> {
  const texts = [await readText(certFile), ...(chainFile !== undefined ? [await readText(chainFile)] : [])];
  const certs = [...parsePemCertificates(texts[0]!, certFile), ...(chainFile !== undefined ? parsePemCertificates(texts[1]!, chainFile) : [])];
  const { session, partner } = await openForPartner(homePaths(g.home), name, o);
  const status = await api.status(session, partner.id);
  const { publicKey, trusted } = publicKeyFor(partner, status, name);
  if (!trusted) warn(`${name}: this device did not register the key; its public key is the server's copy`);
  // Checked here for a clear error before sending; the server checks again.
  const chain = buildChain(certs, publicKey);
  const s = await api.putCertificates(session, partner.id, { keyVersion: status.keyVersion, certificates: chain.map(toPem) });
  if (g.json) printJson({ partner: name, keyVersion: s.keyVersion, certificates: chain.map(summarize) });
  else {
    print(`Kept ${chain.length} certificate(s) beside ${name} v${s.keyVersion}:`);
    printChain(name, chain.map(summarize), false);
  }
  return EXIT.OK;
}

export async function show(g: GlobalOptions, name: string, o: PassphraseSource): Promise<number> {
  const { session, partner } = await openForPartner(homePaths(g.home), name, o);
  const status = await api.status(session, partner.id);
  const chain = await checkedChain(session, partner, name, status);
  printChain(name, chain.map(summarize), Boolean(g.json));
  return EXIT.OK;
}

export async function get(g: GlobalOptions, name: string, o: PassphraseSource): Promise<number> {
  const { session, partner } = await openForPartner(homePaths(g.home), name, o);
  const status = await api.status(session, partner.id);
  const chain = await checkedChain(session, partner, name, status);
  process.stdout.write(chain.map(toPem).join(''));
  return EXIT.OK;
}
