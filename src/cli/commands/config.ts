// kmgr config: see and repair config.json without a new identity. When the
// server moves (set server) or its certificate changes (set ca), the user
// re-trusts it after seeing the new certificate's fingerprint, as ssh shows a
// changed host key: kmgr init --force would make a new management key and
// strand every key sealed under the old one.
import { readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { isAbsolute, join } from 'node:path';
import { homePaths, type HomePaths } from '../../client/home.js';
import { loadConfig, saveConfig, type ClientConfig } from '../../client/config.js';
import { writeFileAtomic } from '../../io/atomic-file.js';
import { UsageError } from '../../protocol/errors.js';
import { print, printJson, info } from '../output.js';
import { EXIT } from '../exit-codes.js';
import { checkServerUrl } from './init.js';
import { readInputFile } from '../input-file.js';
import { confirm } from '../confirm.js';
import type { GlobalOptions } from '../options.js';

interface CertInfo {
  file: string;
  fingerprint: string;
  subject: string;
  validTo: string;
}

function certInfo(file: string, pem: string): CertInfo {
  const c = new X509Certificate(pem);
  return { file, fingerprint: `SHA256:${c.fingerprint256}`, subject: c.subject.replace(/\n/g, ', '), validTo: new Date(c.validTo).toISOString() };
}

async function currentCa(paths: HomePaths, config: ClientConfig): Promise<CertInfo | null | { file: string; error: string }> {
  if (config.ca === null) return null;
  const file = isAbsolute(config.ca) ? config.ca : join(paths.dir, config.ca);
  try {
    return certInfo(file, await readFile(file, 'utf8'));
  } catch (e) {
    return { file, error: (e as NodeJS.ErrnoException).code ?? 'not a PEM certificate' };
  }
}

export async function show(g: GlobalOptions): Promise<number> {
  const paths = homePaths(g.home);
  const config = await loadConfig(paths);
  const ca = await currentCa(paths, config);
  if (g.json) {
    printJson({ home: paths.dir, server: config.server, ca, personId: config.personId, keyId: config.keyId, fingerprint: config.fingerprint, device: config.device ?? null, partners: config.partners ?? 'local', createdAt: config.createdAt });
    return EXIT.OK;
  }
  print(`home:         ${paths.dir}`);
  print(`server:       ${config.server}`);
  if (ca === null) print("ca:           the system's certificate authorities");
  else if ('error' in ca) print(`ca:           ${ca.file} (unreadable: ${ca.error})`);
  else {
    print(`ca:           ${ca.file}`);
    print(`              ${ca.fingerprint}`);
    print(`              ${ca.subject}, valid until ${ca.validTo}`);
  }
  print(`personal ID:  ${config.personId}`);
  print(`fingerprint:  ${config.fingerprint}`);
  print(`device:       ${config.device ?? '(none)'}`);
  print(`partners:     ${config.partners === 'server' ? 'on the server' : 'in this home directory'}`);
  return EXIT.OK;
}

export async function set(g: GlobalOptions, key: string, value: string, o: { yes?: boolean }): Promise<number> {
  const paths = homePaths(g.home);
  const config = await loadConfig(paths);
  if (key === 'server') {
    const server = checkServerUrl(value);
    await saveConfig(paths, { ...config, server });
    if (g.json) printJson({ server, previous: config.server });
    else info(`server: ${config.server} -> ${server}`);
    return EXIT.OK;
  }
  if (key !== 'ca') throw new UsageError(`kmgr config set takes server or ca, not ${JSON.stringify(key)}`);
  if (value === 'system') {
    await confirm(`Trust ${config.server} through the system's certificate authorities instead of ${config.ca ?? 'them'}?`, 'changing the trusted certificate', o.yes);
    await saveConfig(paths, { ...config, ca: null });
    if (g.json) printJson({ ca: null });
    else info("ca: the system's certificate authorities");
    return EXIT.OK;
  }
  const pem = await readInputFile(value, 'the certificate');
  let next: CertInfo;
  try {
    next = certInfo(value, pem);
  } catch {
    throw new UsageError(`${value} is not a PEM certificate`);
  }
  const before = await currentCa(paths, config);
  // Shown before asking, on stderr (stdout may be a pipe): what was trusted and what would be.
  if (before && !('error' in before)) info(`The certificate now trusted for ${config.server}:\n  ${before.fingerprint}\n  ${before.subject}`);
  info(`The new certificate ${value}:\n  ${next.fingerprint}\n  ${next.subject}, valid until ${next.validTo}`);
  if (before && !('error' in before) && before.fingerprint === next.fingerprint) {
    info('It is the certificate already trusted; nothing changed.');
    if (g.json) printJson({ ca: next, changed: false });
    return EXIT.OK;
  }
  await confirm(`Compare the fingerprint with the server operator's (kmgrd logs it as tlsFingerprint256 at start). Trust it for ${config.server}?`, 'changing the trusted certificate', o.yes);
  await writeFileAtomic(paths.ca, pem);
  if (config.ca !== 'ca.pem') await saveConfig(paths, { ...config, ca: 'ca.pem' });
  if (g.json) printJson({ ca: { ...next, file: paths.ca }, changed: true });
  else info(`Saved; kmgr now trusts ${next.fingerprint} for ${config.server}.`);
  return EXIT.OK;
}

