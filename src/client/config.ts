// config.json: where the server is, how to trust it, and who we are there.
import { array, obj, str, int, nullable, optional, oneOf, type Infer } from '../protocol/schema.js';
import { DEVICE_LABEL } from '../protocol/sigbase.js';
import { MGMT_KEY_ID, PERSON_ID } from '../protocol/messages.js';
import { ConfigError } from '../protocol/errors.js';
import { writeFileAtomic } from '../io/atomic-file.js';
import { loadJsonFile } from './files.js';
import type { HomePaths } from './home.js';

export const ClientConfig = obj({
  v: int({ min: 1, max: 1 }),
  server: str({ max: 2048, pattern: /^https:\/\//, name: 'https URL' }),
  /** A CA file copied into the home directory at init, or null for the system's CAs. */
  ca: nullable(str({ max: 4096 })),
  personId: str({ max: 24, pattern: PERSON_ID, name: 'person ID' }),
  keyId: str({ max: 25, pattern: MGMT_KEY_ID, name: 'management key ID' }),
  fingerprint: str({ max: 64 }),
  createdAt: str({ max: 30 }),
  /** This device's label, sent with every request and shown in the server's history. */
  device: optional(str({ max: 40, pattern: DEVICE_LABEL, name: 'device label' })),
  /** Where the partner index lives: this file (first embodiment) or the server (second). */
  partners: optional(oneOf(['local', 'server'] as const)),
  /** Management keys this person used before a kmgr rekey, so the audit can check uses they signed. */
  previousKeys: optional(array(obj({ keyId: str({ max: 25, pattern: MGMT_KEY_ID, name: 'management key ID' }), publicKey: str({ min: 43, max: 43, pattern: /^[A-Za-z0-9_-]{43}$/, name: 'Ed25519 public key' }) }), 1000)),
});
export type ClientConfig = Infer<typeof ClientConfig>;

export async function loadConfig(paths: HomePaths): Promise<ClientConfig> {
  const c = await loadJsonFile(paths.config, ClientConfig, 'config');
  if (c === undefined) throw new ConfigError(`kmgr is not initialised in ${paths.dir}; run kmgr init --server URL`, 'not_initialised');
  return c;
}

export function saveConfig(paths: HomePaths, c: ClientConfig): Promise<void> {
  return writeFileAtomic(paths.config, JSON.stringify(c, null, 2) + '\n');
}
