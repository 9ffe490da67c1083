// Opening the TLS connection to the key server.
//
// Why not let node:https do it: whatever trust store it is given (`ca`, or the
// system's), node:tls first parses its ~140 bundled root certificates, ~30 ms
// of a ~110 ms `kmgr fetch` on these machines. Most homes trust the server by
// the very certificate `kmgr init --ca` saved (kmgrd's self-signed default), so
// when the saved file holds a self-signed certificate that could pass the
// standard checks here — its self-signature verifies, it is valid now, it names
// the host we dial, and its extended key usage (if any) allows a TLS server —
// we handshake with an empty trust store and accept the connection only if the
// server presents exactly that certificate. TLS 1.3's CertificateVerify has by
// then proved the peer holds its private key (OpenSSL checks it whatever the
// verify mode), and no byte of the request has been sent, so a man in the
// middle learns nothing and gets no signed request to replay. Anything else (a
// CA-issued certificate, a replaced one, the system's CAs) is verified the
// standard way, with the standard errors.
import { connect, checkServerIdentity, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';

interface TlsTarget {
  /** https://host:port */
  server: string;
  /** The PEM the home trusts, or undefined for the system's CAs. */
  ca: string | undefined;
}

/** A warmed connection is used only while the server surely still waits for its request (kmgrd waits 10 s). */
export const FRESH_MS = 5_000;

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

/**
 * The saved certificates the fast path may accept: self-signed (the signature
 * verifies with its own key), valid now, naming `hostname`, and allowed for a
 * TLS server if it limits its use. A CA-issued certificate never qualifies, so
 * a file holding a leaf without its issuer still fails as it would without us.
 */
function pinnable(ca: string, hostname: string, now: number): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const m of ca.match(PEM_CERT) ?? []) {
    try {
      const c = new X509Certificate(m);
      if (c.issuer !== c.subject || !c.verify(c.publicKey)) continue;
      if (!(Date.parse(c.validFrom) <= now && now <= Date.parse(c.validTo))) continue;
      if (c.keyUsage !== undefined && !c.keyUsage.includes(SERVER_AUTH)) continue;
      if (checkServerIdentity(hostname, c.toLegacyObject()) !== undefined) continue;
      out.push(c);
    } catch {
      // Not parseable here: the standard path reports it.
    }
  }
  return out;
}

function handshake(opts: ConnectionOptions, timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = connect(opts);
    s.setTimeout(timeoutMs, () => s.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    s.once('error', reject);
    s.once('secureConnect', () => {
      s.setTimeout(0);
      s.removeListener('error', reject);
      // Until the HTTP client takes the socket, a reset must not become an uncaught
      // exception; the client sees the socket destroyed and reconnects.
      s.on('error', () => undefined);
      resolve(s);
    });
  });
}

function pinMatches(s: TLSSocket, pins: X509Certificate[]): boolean {
  const peer = s.getPeerX509Certificate();
  return peer !== undefined && pins.some((p) => p.raw.equals(peer.raw));
}

/** A TLS 1.3 connection to the server whose certificate the home trusts; rejects with the socket's error. */
export async function openTls(t: TlsTarget, timeoutMs: number, now: () => number = Date.now): Promise<TLSSocket> {
  const url = new URL(t.server);
  const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const base: ConnectionOptions = {
    host: hostname,
    port: Number(url.port || 443),
    minVersion: 'TLSv1.3',
    // SNI carries host names only (RFC 6066).
    ...(isIP(hostname) ? {} : { servername: hostname }),
  };
  // No candidate (a CA file, an expired or mismatched certificate): straight to the standard path, one handshake.
  const pins = t.ca === undefined ? [] : pinnable(t.ca, hostname, now());
  if (pins.length > 0) {
    // An empty list, not undefined: node:tls then loads no root store at all.
    const s = await handshake({ ...base, ca: [], rejectUnauthorized: false }, timeoutMs);
    if (pinMatches(s, pins)) return s;
    s.destroy();
  }
  return handshake({ ...base, ...(t.ca !== undefined ? { ca: t.ca } : {}), rejectUnauthorized: true }, timeoutMs);
}

/**
 * A connection opened ahead of need, so that the handshake costs no wall time:
 * the agent opens one while it reads the home's files and makes the sent log
 * durable, and one after each fetch for the next. Unreferenced once connected
 * (the handshake itself is bounded by its timeout), so an idle one never keeps
 * a process alive.
 */
export class Preconnect {
  private pending: Promise<TLSSocket> | undefined;
  private readonly startedAt: number;

  constructor(
    readonly target: TlsTarget,
    timeoutMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.startedAt = now();
    this.pending = openTls(target, timeoutMs, now);
    this.pending.then(
      (s) => {
        s.unref();
        // Read while idle, so that a server closing the connection is noticed
        // (a paused socket never sees the end) and take() makes a new one. The
        // server sends nothing before it gets a request.
        s.resume();
      },
      () => undefined, // reported to whoever takes it
    );
  }

  /**
   * The warmed connection, once; undefined if it is stale, closed or failed:
   * nothing was sent on it, so the caller connects anew (and meets any error
   * itself, now rather than whenever this one was opened).
   */
  async take(): Promise<TLSSocket | undefined> {
    const p = this.pending;
    this.pending = undefined;
    if (!p) return undefined;
    if (this.now() - this.startedAt > FRESH_MS) {
      p.then((s) => s.destroy(), () => undefined);
      return undefined;
    }
    let s: TLSSocket;
    try {
      s = await p;
    } catch {
      return undefined;
    }
    if (s.destroyed || !s.writable || this.now() - this.startedAt > FRESH_MS) {
      s.destroy();
      return undefined;
    }
    s.ref();
    return s;
  }

  /** Closes the connection if nobody took it. */
  discard(): void {
    const p = this.pending;
    this.pending = undefined;
    p?.then((s) => s.destroy(), () => undefined);
  }
}
