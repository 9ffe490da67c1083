// kmgr rekey: replace the management key (signing and wrapping) and re-wrap
// every transaction key under it, in one switch at the server. Resumable:
// running it again after a crash finishes the job (see src/client/rekey.ts).
import { homePaths } from '../../client/home.js';
import { loadConfig } from '../../client/config.js';
import { readPassphrase, type PassphraseSource } from '../../client/passphrase.js';
import { unlockKeystore } from '../../client/keystore-file.js';
import { rekeyHome, type Failpoint, type RekeyOutcome } from '../../client/rekey.js';
import { info, print, printJson } from '../output.js';
import { EXIT } from '../exit-codes.js';
import type { GlobalOptions } from '../options.js';
import type { HomePaths } from '../../client/home.js';

/**
 * Test hook: KMGR_FAILPOINT=NAME kills this process (SIGKILL, no clean-up) at
 * that step, so the crash tests hit every window deterministically.
 */
function failpointFromEnv(): Failpoint | undefined {
  const at = process.env.KMGR_FAILPOINT;
  if (!at) return undefined;
  return (name) => {
    if (name === at) process.kill(process.pid, 'SIGKILL');
  };
}

/** A running agent still holds the old key; it is stopped so that it cannot serve a stale identity. */
async function stopStaleAgent(paths: HomePaths, before: Awaited<ReturnType<typeof loadConfig>>): Promise<void> {
  try {
    const { agentSession } = await import('../../agent/client.js');
    const agent = await agentSession(paths, before);
    if (agent) {
      await agent.stop();
      info('Stopped the running agent (it held the old key); start it again with kmgr agent start.');
    }
  } catch {
    // An agent for another identity, or none: nothing of ours to stop.
  }
}

/** `given`: a passphrase the caller already read (and wipes); otherwise it is read here. */
export async function rekeyAndReport(g: GlobalOptions, o: PassphraseSource, revokeDevices: string[], given?: Uint8Array): Promise<RekeyOutcome> {
  const paths = homePaths(g.home);
  const before = await loadConfig(paths);
  const passphrase = given ? Uint8Array.from(given) : await readPassphrase(o, `Passphrase for ${paths.keystore}: `);
  try {
    const failpoint = failpointFromEnv();
    const out = await rekeyHome(paths, passphrase, { revokeDevices, unlock: (p) => unlockKeystore(paths, p), ...(failpoint ? { failpoint } : {}) });
    await stopStaleAgent(paths, before);
    return out;
  } finally {
    passphrase.fill(0);
  }
}

export async function run(g: GlobalOptions, o: PassphraseSource): Promise<number> {
  const out = await rekeyAndReport(g, o, []);
  if (g.json) printJson({ ...out, recoveryKitsInvalidated: true });
  else {
    print(out.rekeyed === null ? `Finished the rekey begun earlier: the management key is now ${out.fingerprint}.` : `Rekeyed ${out.rekeyed} key(s): the management key is now ${out.fingerprint} (${out.keyId}).`);
    info(
      'The old management key is refused by the server from now on.\n' +
        'Recovery kits made before now no longer work: make a new one with kmgr recovery-kit --out FILE.\n' +
        'Other devices hold the old key: give each a fresh kmgr device export (kmgr device list shows them).\n' +
        'Verifiers that pinned the old fingerprint are led to the new one once, by a statement the old key signed; tell them the new fingerprint.',
    );
  }
  return EXIT.OK;
}
