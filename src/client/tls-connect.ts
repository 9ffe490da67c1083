// Opening the TLS connection to the key server.
//
// Why not let node:https do it: whatever trust store it is given (`ca`, or the
// system's), node:tls first parses its ~140 bundled root certificates, ~30 ms
// of a ~60 ms `kmgr fetch` on these machines. Most homes trust the server by
// the very certificate `kmgr init --ca` saved (kmgrd's self-signed default), so
// we first handshake with an empty trust store and accept the connection only
// if the server's certificate is byte for byte one we saved, is within its
// validity period and names the host we dialled — the checks the standard
// path makes of a self-signed certificate. TLS 1.3's CertificateVerify has by
// then proved the peer holds that certificate's private key (OpenSSL checks it
// whatever the verify mode), and no byte of the request has been sent, so a
// man in the middle learns nothing and gets no signed request to replay.
// Anything else (a CA-issued certificate, a replaced one, the system's CAs) is
// verified the standard way on a fresh connection, with the standard errors.
import { connect, checkServerIdentity, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';

export interface TlsTarget {
  /** https://host:port */
  server: string;
  /** The PEM the home trusts, or undefined for the system's CAs. */
  ca: string | undefined;
}

/** A warmed connection is used only while the server surely still waits for its request (kmgrd waits 10 s). */
export const FRESH_MS = 5_000;

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function pinnedCertificates(ca: string): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const m of ca.match(PEM_CERT) ?? []) {
    try {
      out.push(new X509Certificate(m));
    } catch {
      // Not parseable here: the standard path below reports it.
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

function pinMatches(s: TLSSocket, pins: X509Certificate[], hostname: string, now: number): boolean {
  const peer = s.getPeerX509Certificate();
  if (!peer || !pins.some((p) => p.raw.equals(peer.raw))) return false;
  const from = Date.parse(peer.validFrom);
  const to = Date.parse(peer.validTo);
  if (!(from <= now && now <= to)) return false;
  // The same host check the standard path makes (getPeerCertificate() is empty without a trust store).
  return checkServerIdentity(hostname, peer.toLegacyObject()) === undefined;
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
  const pins = t.ca === undefined ? [] : pinnedCertificates(t.ca);
  if (pins.length > 0) {
    // An empty list, not undefined: node:tls then loads no root store at all.
    const s = await handshake({ ...base, ca: [], rejectUnauthorized: false }, timeoutMs);
    if (pinMatches(s, pins, hostname, now())) return s;
    s.destroy();
  }
  return handshake({ ...base, ...(t.ca !== undefined ? { ca: t.ca } : {}), rejectUnauthorized: true }, timeoutMs);
}

/**
 * A connection opened ahead of need, while the CLI does its local work (reading
 * files, asking the agent to sign, the durable sent log): the handshake then
 * costs no wall time. Unreferenced until taken, so it never keeps a process alive.
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
   * The warmed connection, once: undefined if it went stale or closed (the
   * caller connects anew, nothing having been sent on it), or the error it met.
   */
  async take(): Promise<TLSSocket | undefined> {
    const p = this.pending;
    this.pending = undefined;
    if (!p) return undefined;
    const s = await p;
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
