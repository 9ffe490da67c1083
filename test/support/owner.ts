// A home's owner acting in this process, through the real client library and the
// home's own keystore: for checks that follow a CLI step (the CLI form of each read
// is tested on its own), so a test spends its time on the commands under test
// rather than on process starts, and for requests signed with the home's key.
import { readFile } from 'node:fs/promises';
import { api } from '../../src/client/api.js';
import type { Endpoint, Identity as ClientIdentity } from '../../src/client/http.js';
import { signerFromSeed, type Signer } from '../../src/crypto/sign.js';
import { toB64url } from '../../src/crypto/bytes.js';
import { partnerId, type Home } from './home.js';
import type { Identity } from './raw-client.js';
import type { ServerAddress } from './server.js';
import { session } from './sessions.js';

type Owner = Pick<Home, 'home' | 'pp'>;

/** The owner's reads (status, history, notices) through the client library. */
export async function ownerView(h: Owner) {
  const s = await session(h);
  return {
    session: s,
    status: (partnerId: string) => api.status(s, partnerId),
    history: (partnerId: string, q: Parameters<typeof api.history>[2] = {}) => api.history(s, partnerId, q),
    notices: (unreadOnly = true) => api.notices(s, unreadOnly),
  };
}

/**
 * Reads a key's total use count, by partner name, from the server (one session for the
 * whole test, so that checking a count does not cost a kmgr process).
 */
export async function statusReader(h: Owner): Promise<(name: string) => Promise<number>> {
  const s = await session(h);
  return async (name) => (await api.status(s, await partnerId(h, name))).uses.total;
}

/** A raw-client identity that signs with a home's own management key. */
export async function rawIdentity(h: Owner): Promise<Identity> {
  const s = await session(h);
  const signer = signerFromSeed(s.secrets!.signingSeed);
  return { signer, keyId: s.config.keyId, publicKey: toB64url(signer.publicKey), personId: s.config.personId };
}

/** A signing client-library identity with the home's management key, recording every signature it makes. */
export async function directClient(h: Owner, server?: ServerAddress): Promise<{ ep: Endpoint; id: ClientIdentity; signatures: string[] }> {
  const s = await session(h);
  const inner: Signer = signerFromSeed(s.secrets!.signingSeed);
  const signatures: string[] = [];
  const signer: Signer = {
    publicKey: inner.publicKey,
    sign(tag, payload) {
      const sig = inner.sign(tag, payload);
      signatures.push(Buffer.from(sig).toString('base64'));
      return sig;
    },
  };
  const ep: Endpoint = server ? { server: server.url, ca: await readFile(server.ca, 'utf8') } : s.endpoint;
  return { ep, id: { keyId: s.identity.keyId, signer }, signatures };
}
