// kmgr verify: for an application server (Figs. 3, 10, 11). Needs no keystore.
// With --owner, the answer is checked against the owner's signed binding
// statement and pinned fingerprint; without it, it rests on trusting the server.
import { readFile } from 'node:fs/promises';
import { X509Certificate, createPublicKey } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ConfigError, KmgrError, UsageError } from '../../protocol/errors.js';
import { PARTNER_ID, PARTNER_NAME, PartnerView, VerifyResponse } from '../../protocol/messages.js';
import { unsignedRequest, type Endpoint } from '../../client/http.js';
import { homePaths } from '../../client/home.js';
import { readIfExists } from '../../client/files.js';
import { checkVerifyAnswer, type Seen } from '../../client/verify.js';
import { ensurePrivateDir, writeFileAtomic } from '../../io/atomic-file.js';
import { printJson, printLine, warn } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';

interface VerifyOptions {
  server: string;
  ca?: string;
  person: string;
  partner?: string;
  partnerId?: string;
  publicKey: string;
  owner?: string;
  requester?: string;
}

const FINGERPRINT = /^SHA256:[A-Za-z0-9_-]{43}$/;

async function resolvePartner(ep: Endpoint, partner: string): Promise<string> {
  if (PARTNER_NAME.test(partner)) {
    try {
      return (await unsignedRequest(ep, 'GET', `/v1/directory/${encodeURIComponent(partner)}`, undefined, PartnerView)).partnerId;
    } catch (e) {
      if (!(e instanceof KmgrError && e.code === 'unknown_partner')) throw e;
    }
  }
  if (!PARTNER_ID.test(partner)) throw new UsageError(`--partner ${partner} is neither a shared partner's name nor a partner ID`);
  return partner; // not in the directory: taken as a partner ID
}

export async function run(g: GlobalOptions, o: VerifyOptions): Promise<number> {
  if (!/^p_[A-Za-z0-9_-]{22}$/.test(o.person)) throw new UsageError('--person takes a personal ID (p_ and 22 characters, from the owner\'s kmgr whoami)');
  if (o.owner !== undefined && !FINGERPRINT.test(o.owner)) throw new UsageError('--owner takes a fingerprint as kmgr whoami prints it (SHA256:...)');
  let pem: string;
  try {
    pem = createPublicKey(await readFile(o.publicKey, 'utf8')).export({ type: 'spki', format: 'pem' }) as string;
  } catch (e) {
    throw new UsageError(`--public-key ${o.publicKey} is not a readable public key (${(e as NodeJS.ErrnoException).code ?? 'not a PEM public key'})`);
  }
  let ca: string | undefined;
  if (o.ca !== undefined) {
    try {
      ca = await readFile(o.ca, 'utf8');
      new X509Certificate(ca);
    } catch {
      throw new ConfigError(`--ca ${o.ca} is not a readable PEM certificate`);
    }
  }
  let server: URL;
  try {
    server = new URL(o.server);
  } catch {
    throw new UsageError(`--server must be a URL like https://keys.example:8443, not ${JSON.stringify(o.server)}`);
  }
  if (server.protocol !== 'https:') throw new UsageError('--server must use https://');
  if ((server.pathname !== '/' && server.pathname !== '') || server.search || server.hash || server.username) {
    throw new UsageError('--server must be just https://host[:port], without a path, query or credentials');
  }
  const ep: Endpoint = { server: server.origin, ca };
  if ((o.partner === undefined) === (o.partnerId === undefined)) throw new UsageError('give --partner NAME or --partner-id ID (one of them)');
  if (o.partnerId !== undefined && !PARTNER_ID.test(o.partnerId)) throw new UsageError(`--partner-id ${o.partnerId} is not a partner ID`);
  // An ID is used as given; a name is looked up in the operator's directory, which means trusting the server for it.
  const partnerId = o.partnerId ?? (await resolvePartner(ep, o.partner!));
  const requester = o.requester ?? hostname();
  const answer = await unsignedRequest(ep, 'POST', '/v1/verify', { personId: o.person, partnerId, publicKey: pem, requester }, VerifyResponse);

  let verified: boolean;
  let reason: string | undefined;
  if (o.owner !== undefined) {
    // The newest version this verifier has seen for the pair: a replayed older statement is refused (threat 5).
    const paths = homePaths(g.home);
    const seenPath = join(paths.dir, 'verify-seen.json');
    const issuedPath = join(paths.dir, 'verify-issued.json');
    // Each pair maps to the newest key version seen, and the issue time of its newest statement.
    const seen = JSON.parse((await readIfExists(seenPath)) ?? '{}') as Record<string, number>;
    const issued = JSON.parse((await readIfExists(issuedPath)) ?? '{}') as Record<string, string>;
    const pair = `${o.person}/${partnerId}`;
    const newestSeen: Seen = { version: seen[pair] ?? 0, ...(issued[pair] ? { issuedAt: issued[pair] } : {}) };
    const out = checkVerifyAnswer(answer, { personId: o.person, partnerId, publicKey: pem, owner: o.owner, newestSeen, now: Date.now() });
    verified = out.verified;
    reason = out.reason;
    if (out.keyVersion !== null && out.issuedAt !== undefined) {
      const newer = out.keyVersion > newestSeen.version || (out.keyVersion === newestSeen.version && out.issuedAt > (newestSeen.issuedAt ?? ''));
      if (newer) {
        seen[pair] = out.keyVersion;
        issued[pair] = out.issuedAt;
        await ensurePrivateDir(paths.dir);
        await writeFileAtomic(issuedPath, JSON.stringify(issued, null, 2) + '\n');
        await writeFileAtomic(seenPath, JSON.stringify(seen, null, 2) + '\n');
      }
    }
  } else {
    warn('no --owner fingerprint given: this answer rests on trusting the server');
    verified = answer.result === 'match';
    reason = verified ? undefined : answer.result;
  }
  if (g.json) printJson({ verified, result: answer.result, reason: reason ?? null, keyVersion: answer.keyVersion, ownerChecked: o.owner !== undefined, partnerId });
  else printLine(verified ? `verified: the key is ${o.person}'s current key for ${o.partner ?? o.partnerId} (v${answer.keyVersion})` : `not verified: ${reason}`);
  return verified ? EXIT.OK : EXIT.FINDINGS;
}
