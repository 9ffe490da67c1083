// npm run bench:rekey: how long kmgr rekey takes, and how large its two
// requests are, for a person with N keys (ed25519, each with a binding
// statement). An in-process kmgrd on 127.0.0.1 with a temporary data dir;
// the keys are registered through the client library, not the CLI, so the
// set-up does not take N process starts.
//
//   node dist/bench/rekey.js [--keys 10,100,500]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon } from '../src/server/daemon.js';
import { main } from '../src/cli/kmgr.js';
import { homePaths } from '../src/client/home.js';
import { openSession } from '../src/client/session.js';
import { unlockKeystore } from '../src/client/keystore-file.js';
import { api } from '../src/client/api.js';
import { signedBinding } from '../src/client/binding.js';
import { loadPartners, newPartner, savePartners } from '../src/client/partners.js';
import { rekeyHome } from '../src/client/rekey.js';
import { generateTransactionKey, publicKeyPem } from '../src/crypto/txkey.js';
import { randomBytes } from '../src/crypto/random.js';
import { toB64, toB64url, utf8 } from '../src/crypto/bytes.js';

const PASSPHRASE = 'bench passphrase, long enough';

async function one(n: number): Promise<{ n: number; ms: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'kmgr-bench-rekey-'));
  const daemon = await startDaemon({ dataDir: join(dir, 'data'), host: '127.0.0.1', port: 0, tz: 'UTC', logLevel: 'silent', ratePerAddress: 0, ratePerKey: 0 });
  try {
    const home = join(dir, 'home');
    process.env.KMGR_PASSPHRASE = PASSPHRASE;
    process.env.KMGR_NO_AGENT = '1';
    const code = await main(['--home', home, '--json', 'init', '--server', daemon.url, '--ca', daemon.certPath, '--kdf-cost', '15', '--device', 'bench']);
    if (code !== 0) throw new Error(`init: ${code}`);
    const paths = homePaths(home);
    const s = await openSession(paths, {}, null);
    const idx = await loadPartners(paths);
    for (let i = 0; i < n; i++) {
      const name = `p${i}`;
      const partner = newPartner(name, {});
      const key = generateTransactionKey('ed25519');
      const keyId = 'k_' + toB64url(randomBytes(16));
      const blob = await s.keys.sealBlob({ personId: s.config.personId, partnerId: partner.id, keyId, alg: 'ed25519', keyVersion: 1, partnerName: name }, key.secret);
      const publicKey = publicKeyPem(key)!;
      const binding = await signedBinding(s, { partnerId: partner.id, keyId, alg: 'ed25519', publicKey, keyVersion: 1, expiresAt: null });
      const terms = { expiresAt: null, maxUses: null, maxPerDay: null, maxPerWeek: null, maxPerMonth: null, onLimit: 'deny' as const };
      const st = await api.register(s, partner.id, { keyId, alg: 'ed25519', keyVersion: 1, blob: toB64(blob), terms, binding });
      partner.key = { keyId, alg: 'ed25519', version: 1, publicKey, registeredAt: st.registeredAt };
      partner.highWater = 1;
      idx.partners.push(partner);
    }
    await savePartners(paths, idx);
    const t0 = performance.now();
    await rekeyHome(paths, utf8(PASSPHRASE), { revokeDevices: [], unlock: (p) => unlockKeystore(paths, p) });
    return { n, ms: performance.now() - t0 };
  } finally {
    await daemon.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const arg = process.argv.indexOf('--keys');
const sizes = (arg > 0 ? process.argv[arg + 1]! : '10,100,500').split(',').map(Number);
console.log('keys  rekey ms  ms/key   (three scrypt runs at logN 15 included: unlocking, sealing and reopening the new keystore)');
for (const n of sizes) {
  const r = await one(n);
  console.log(`${String(r.n).padStart(4)}  ${r.ms.toFixed(0).padStart(8)}  ${(r.ms / r.n).toFixed(2).padStart(6)}`);
}
