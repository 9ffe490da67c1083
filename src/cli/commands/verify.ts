// kmgr verify: for an application server (Figs. 3, 10, 11). Needs no keystore.
// With --owner, the answer is checked against the owner's signed binding
// statement and pinned fingerprint; without it, it rests on trusting the server.
import { readInputFile } from '../input-file.js';
import { X509Certificate, createPublicKey } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ConfigError, KmgrError, NotFoundError, UsageError } from '../../protocol/errors.js';
import { PARTNER_ID, PARTNER_NAME, PartnerView, VerifyResponse } from '../../protocol/messages.js';
import { unsignedRequest, type Endpoint } from '../../client/http.js';
import { homePaths } from '../../client/home.js';
import { readJsonFile } from '../../client/files.js';
import { UNKNOWN_REASON, checkVerifyAnswer, type Seen } from '../../client/verify.js';
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

/** The shape of the partner IDs kmgr makes (16 random bytes, base64url): a --partner of this shape was meant as an ID. */
const GENERATED_ID = /^[A-Za-z0-9_-]{22}$/;

/** The partner ID for --partner; `inDirectory` false when it was taken as an ID. */
async function resolvePartner(ep: Endpoint, partner: string): Promise<{ id: string; inDirectory: boolean }> {
  if (PARTNER_NAME.test(partner)) {
    try {
      return { id: (await unsignedRequest(ep, 'GET', `/v1/directory/${encodeURIComponent(partner)}`, undefined, PartnerView)).partnerId, inDirectory: true };
    } catch (e) {
      if (!(e instanceof KmgrError && e.code === 'unknown_partner')) throw e;
    }
  }
  if (!PARTNER_ID.test(partner)) throw new NotFoundError('unknown_partner', `unknown partner ${partner}: it is not in the server's directory of shared partners, nor a partner ID (the owner's kmgr partner show NAME prints it)`);
  return { id: partner, inDirectory: false }; // not in the directory: taken as a partner ID
}

export async function run(g: GlobalOptions, o: VerifyOptions): Promise<number> {
  if (!/^p_[A-Za-z0-9_-]{22}$/.test(o.person)) throw new UsageError('--person takes a personal ID (p_ and 22 characters, from the owner\'s kmgr whoami)');
  if (o.owner !== undefined && !FINGERPRINT.test(o.owner)) throw new UsageError('--owner takes a fingerprint as kmgr whoami prints it (SHA256:...)');
  let pem: string;
  const pubText = await readInputFile(o.publicKey, 'the public key');
  try {
    pem = createPublicKey(pubText).export({ type: 'spki', format: 'pem' }) as string;
  } catch {
    throw new UsageError(`--public-key ${o.publicKey} is not a PEM public key`);
  }
  let ca: string | undefined;
  if (o.ca !== undefined) {
    ca = await readInputFile(o.ca, 'the certificate');
    try {
      new X509Certificate(ca);
    } catch {
      throw new ConfigError(`--ca ${o.ca} is not a PEM certificate`);
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
  const resolved = o.partnerId !== undefined ? { id: o.partnerId, inDirectory: false } : await resolvePartner(ep, o.partner!);
  const partnerId = resolved.id;
  const requester = o.requester ?? hostname();
  const answer = await unsignedRequest(ep, 'POST', '/v1/verify', { personId: o.person, partnerId, publicKey: pem, requester }, VerifyResponse);
  // A --partner name the directory does not know, and no key under it as an ID: a typo, most likely.
  if (o.partner !== undefined && !resolved.inDirectory && !GENERATED_ID.test(o.partner) && answer.result === 'unknown') {
    throw new NotFoundError('unknown_partner', `unknown partner ${o.partner}: not in the server's directory of shared partners, and ${o.person} has no key under that partner ID`);
  }

  let verified: boolean;
  let reason: string | undefined;
  let followed: { from: string; to: string; issuedAt: string } | undefined;
  if (o.owner !== undefined) {
    // The newest version this verifier has seen for the pair: a replayed older statement is refused (threat 5).
    const paths = homePaths(g.home);
    const seenPath = join(paths.dir, 'verify-seen.json');
    const issuedPath = join(paths.dir, 'verify-issued.json');
    // Each pair maps to the newest key version seen, and the issue time of its newest statement.
    const seen = ((await readJsonFile(seenPath)) ?? {}) as Record<string, number>;
    const issued = ((await readJsonFile(issuedPath)) ?? {}) as Record<string, string>;
    const pair = `${o.person}/${partnerId}`;
    const newestSeen: Seen = { version: seen[pair] ?? 0, ...(issued[pair] ? { issuedAt: issued[pair] } : {}) };
    const out = checkVerifyAnswer(answer, { personId: o.person, partnerId, publicKey: pem, owner: o.owner, newestSeen, now: Date.now() });
    verified = out.verified;
    reason = out.reason;
    followed = out.followed;
    if (followed) warn(`the owner replaced the management key ${followed.from} with ${followed.to} (a statement signed by the pinned key, ${followed.issuedAt}); pin the new fingerprint: --owner ${followed.to}`);
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
    const why: Record<string, string> = {
      unknown_person: `the server knows no person ${o.person}`,
      unknown: UNKNOWN_REASON,
      retired: 'the owner retired the key for this partner',
      mismatch: "the public key is not the owner's key for this partner",
      rotated: 'the public key was replaced by a newer version',
      expired: 'the key is past its valid term',
      locked: 'the owner has locked the key',
    };
    reason = verified ? undefined : (why[answer.result] ?? answer.result);
  }
  if (g.json) printJson({ verified, result: answer.result, reason: reason ?? null, keyVersion: answer.keyVersion, ownerChecked: o.owner !== undefined, partnerId, ownerReplacedBy: followed?.to ?? null });
  else printLine(verified ? `verified: the key is ${o.person}'s current key for ${o.partner ?? o.partnerId} (v${answer.keyVersion})` : `not verified: ${reason}`);
  return verified ? EXIT.OK : EXIT.FINDINGS;
}
