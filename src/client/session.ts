// An unlocked client: config, endpoint, the management secrets and a request signer.
import { isAbsolute, join } from 'node:path';
import { fingerprint, signerFromSeed, type SignatureTag, type Signer } from '../crypto/sign.js';
import type { ManagementSecrets } from '../crypto/keystore.js';
import { ConfigError, IntegrityError } from '../protocol/errors.js';
import { checkNotWritableByOthers, readIfExists } from './files.js';
import { loadConfig, type ClientConfig } from './config.js';
import type { PassphraseSource } from './passphrase.js';
import type { Endpoint, Identity } from './http.js';
import type { HomePaths } from './home.js';
import type { BlobContext } from '../crypto/blob.js';
import type { PartnerEntry } from './partners.js';

/** The wrap key's two operations, done locally or by the agent (which never hands out the key). */
interface SessionKeys {
  /** The caller owns (and wipes) the result. label: shown by `agent start --confirm`, e.g. the partner name. */
  openBlob(ctx: BlobContext, blob: Uint8Array, label?: string): Promise<Uint8Array>;
  sealBlob(ctx: BlobContext, secret: Uint8Array, label?: string): Promise<Uint8Array>;
}

/**
 * The management key held by another process (the agent), as a session uses
 * it. The client does not import the agent: the command line passes an opener
 * in (src/cli/session.ts), so the dependency points one way.
 */
export interface HeldKeys extends SessionKeys {
  /** Raw Ed25519 public key; the opener has checked it against config.fingerprint. */
  publicKey: Uint8Array;
  signer: Identity['signer'];
  signAsync(tag: SignatureTag, payload: Uint8Array, label?: string): Promise<Uint8Array>;
}

/** Finds a key holder for this home, or undefined when none runs (then the passphrase is asked). */
type HeldKeysOpener = (paths: HomePaths, config: ClientConfig) => Promise<HeldKeys | undefined>;

export interface Session {
  paths: HomePaths;
  config: ClientConfig;
  endpoint: Endpoint;
  identity: Identity;
  /** The unlocked secrets; undefined when the agent holds them. */
  secrets: ManagementSecrets | undefined;
  /** Open and seal blobs with the wrap key, wherever it is. */
  keys: SessionKeys;
  /** The management public key (Ed25519, raw). */
  publicKey: Uint8Array;
  /** Signs with the management key under a purpose tag (locally, or by the agent). */
  sign(tag: SignatureTag, payload: Uint8Array): Promise<Uint8Array>;
}

export async function endpointFor(paths: HomePaths, config: ClientConfig): Promise<Endpoint> {
  if (config.ca === null) return { server: config.server, ca: undefined };
  const caPath = isAbsolute(config.ca) ? config.ca : join(paths.dir, config.ca);
  const ca = await readIfExists(caPath);
  if (ca === undefined) throw new ConfigError(`cannot read the server's CA file ${caPath}: ENOENT`);
  // Whoever can write the trusted certificate can put a man in the middle: checked as the other state files are.
  await checkNotWritableByOthers(caPath, { rootMayOwn: isAbsolute(config.ca) });
  return { server: config.server, ca };
}

/** This device's identity in requests, signing with `signer`. */
function identityFor(config: ClientConfig, signer: Identity['signer']): Identity {
  return { keyId: config.keyId, signer, ...(config.device ? { device: config.device } : {}) };
}

/**
 * A session whose keys are in this process: the CLI's once it has unlocked the
 * keystore, the agent's for a fetch it makes. `wrapKey` is read at each use
 * (the agent's throws once it is wiped).
 */
export async function sessionWithKeys(
  paths: HomePaths,
  config: ClientConfig,
  endpoint: Endpoint,
  signer: Signer,
  wrapKey: () => Uint8Array,
  secrets?: ManagementSecrets,
): Promise<Session> {
  const { openBlob, sealBlob } = await import('../crypto/blob.js');
  return {
    paths,
    config,
    endpoint,
    identity: identityFor(config, signer),
    secrets,
    keys: {
      openBlob: async (ctx, blob) => openBlob(wrapKey(), ctx, blob),
      sealBlob: async (ctx, secret) => sealBlob(wrapKey(), ctx, secret),
    },
    publicKey: signer.publicKey,
    sign: async (tag, payload) => signer.sign(tag, payload),
  };
}

/**
 * `held`: where else the keys may be (the agent), asked first; null to always
 * unlock the keystore. `loaded`: config.json as the caller already read it, so
 * that both describe the same file.
 */
export async function openSession(paths: HomePaths, src: PassphraseSource, held: HeldKeysOpener | null, loaded?: ClientConfig): Promise<Session> {
  const config = loaded ?? (await loadConfig(paths));
  const endpoint = await endpointFor(paths, config);
  const agent = held ? await held(paths, config) : undefined;
  if (agent) {
    return {
      paths,
      config,
      endpoint,
      identity: identityFor(config, agent.signer),
      secrets: undefined,
      keys: agent,
      publicKey: agent.publicKey,
      sign: (tag, payload) => agent.signAsync(tag, payload),
    };
  }
  // Loaded only without an agent: the agent path should start as little as it can.
  const { unlockAsking } = await import('./keystore-file.js');
  const secrets = await unlockAsking(paths, src);
  const signer = signerFromSeed(secrets.signingSeed);
  // The keystore and the config must describe the same identity; a swapped
  // config would otherwise send our signatures under someone else's name.
  if (fingerprint(signer.publicKey) !== config.fingerprint) {
    throw new IntegrityError(`${paths.config} names a different management key than the keystore`);
  }
  return sessionWithKeys(paths, config, endpoint, signer, () => secrets.wrapKey, secrets);
}

/**
 * The partner named on the command line, then an unlocked session (so a typo
 * in the local index costs no passphrase). `check` sees the local entry first,
 * so the caller's own usage errors come before any passphrase or connection.
 * With the partner index on the server (second embodiment), a partner this
 * device has not seen yet is looked up there and remembered.
 */
export function openForPartner(paths: HomePaths, name: string, src: PassphraseSource, held: HeldKeysOpener | null, check?: PartnerCheck) {
  return withPartner(paths, name, (config) => openSession(paths, src, held, config), check);
}

export type PartnerCheck = (partner: PartnerEntry, config: ClientConfig) => void;

/** openForPartner with the session made by `open` from the config read here (the agent makes its own from the keys it holds). */
export async function withPartner(paths: HomePaths, name: string, open: (config: ClientConfig) => Promise<Session>, check?: PartnerCheck) {
  const { loadPartners, requirePartner, findPartner, checkPartnerName } = await import('./partners.js');
  const config = await loadConfig(paths);
  const idx = await loadPartners(paths);
  checkPartnerName(name);
  if (config.partners !== 'server' || findPartner(idx, name)) {
    const partner = requirePartner(idx, name);
    check?.(partner, config);
    return { idx, partner, session: await open(config) };
  }
  const session = await open(config);
  const { resolveServerPartner } = await import('./server-partners.js');
  const partner = await resolveServerPartner(session, idx, name);
  check?.(partner, config);
  return { idx, partner, session };
}
