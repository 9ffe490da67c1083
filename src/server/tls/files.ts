// The daemon's TLS material: the operator's files, or a self-signed
// certificate made on first start at DIR/tls/cert.pem with its key beside it.
import { readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { ConfigError } from '../../protocol/errors.js';
import { ensurePrivateDir, writeFileAtomic } from '../../io/atomic-file.js';
import { makeSelfSignedCert } from './selfsigned.js';

interface TlsMaterial {
  cert: string;
  key: string;
  fingerprint256: string;
  certPath: string;
  generated: boolean;
}

async function readOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

export async function loadTls(dataDir: string, certFile?: string, keyFile?: string): Promise<TlsMaterial> {
  if ((certFile === undefined) !== (keyFile === undefined)) throw new ConfigError('--tls-cert and --tls-key go together');
  let certPath: string, keyPath: string;
  let generated = false;
  if (certFile && keyFile) {
    certPath = certFile;
    keyPath = keyFile;
  } else {
    const dir = join(dataDir, 'tls');
    certPath = join(dir, 'cert.pem');
    keyPath = join(dir, 'key.pem');
    if ((await readOrUndefined(certPath)) === undefined) {
      await ensurePrivateDir(dir);
      const made = makeSelfSignedCert();
      // Key first: a crash between the two leaves no certificate without its key.
      await writeFileAtomic(keyPath, made.keyPem, 0o600);
      await writeFileAtomic(certPath, made.certPem, 0o644);
      generated = true;
    }
  }
  const cert = await readOrUndefined(certPath);
  const key = await readOrUndefined(keyPath);
  if (cert === undefined) throw new ConfigError(`TLS certificate not found: ${certPath}`);
  if (key === undefined) throw new ConfigError(`TLS key not found: ${keyPath}`);
  let fingerprint256: string;
  try {
    fingerprint256 = new X509Certificate(cert).fingerprint256;
  } catch {
    throw new ConfigError(`${certPath} is not a PEM certificate`);
  }
  return { cert, key, fingerprint256, certPath, generated };
}
