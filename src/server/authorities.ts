// The names this kmgrd answers to. A signed request names the authority it was
// meant for; without this check a request signed for one kmgrd (or for
// evil.example, sent with that Host) is accepted by any other kmgrd where the
// same management key is enrolled: a captured `lock` or `register` replays
// across servers. kmgrd accepts only its own authorities: the --listen
// address, the names in its certificate (at the port it listens on) and every
// --public-url it is reached by behind a proxy or load balancer.
import { X509Certificate } from 'node:crypto';
import { ConfigError, UsageError } from '../protocol/errors.js';

/** `host[:port]` as a URL spells it: lower case, IPv6 compressed and bracketed, no :443. Undefined if it is no authority. */
function normaliseAuthority(authority: string): string | undefined {
  // Only host and port characters: no path, user info or whitespace can hide in a Host header.
  if (!/^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::\d{1,5})?$/.test(authority)) return undefined;
  try {
    return new URL(`https://${authority}`).host;
  } catch {
    return undefined;
  }
}

/** The host names and IP addresses in a certificate's subjectAltName (or its CN when it has none). */
export function certificateNames(certPem: string): string[] {
  const c = new X509Certificate(certPem);
  const san = c.subjectAltName;
  if (san === undefined) {
    const cn = /(?:^|\n)CN=([^\n]+)/.exec(c.subject)?.[1];
    return cn ? [cn] : [];
  }
  const out: string[] = [];
  for (const part of san.split(/,\s*/)) {
    const m = /^(DNS|IP Address):(.+)$/.exec(part.trim());
    if (m) out.push(m[1] === 'IP Address' && m[2]!.includes(':') ? `[${m[2]}]` : m[2]!);
  }
  return out;
}

export class Authorities {
  private readonly exact = new Set<string>();
  /** Wildcard certificate names: `*.example.com` at a port, stored as `.example.com:port`. */
  private readonly suffixes = new Set<string>();

  /** A name with a port (`host:port`), or a URL whose authority is added as is. */
  add(authority: string): void {
    const n = normaliseAuthority(authority);
    if (n === undefined) throw new ConfigError(`not a host name or address: ${authority}`);
    this.exact.add(n);
  }

  addUrl(url: string): void {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new UsageError(`--public-url must be an https URL such as https://kmgr.example.com, not ${url}`);
    }
    if (u.protocol !== 'https:' || u.username !== '' || u.password !== '' || (u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '') {
      throw new UsageError(`--public-url must be an https URL with no path, such as https://kmgr.example.com, not ${url}`);
    }
    this.exact.add(u.host);
  }

  /** A certificate name at the port kmgrd listens on. */
  addCertificateName(name: string, port: number): void {
    if (name.startsWith('*.')) {
      const n = normaliseAuthority(`${name.slice(2)}:${port}`);
      if (n !== undefined) this.suffixes.add('.' + n);
      return;
    }
    const n = normaliseAuthority(`${name}:${port}`);
    if (n !== undefined) this.exact.add(n);
  }

  has(authority: string): boolean {
    const n = normaliseAuthority(authority);
    if (n === undefined) return false;
    if (this.exact.has(n)) return true;
    // A wildcard covers exactly one label (RFC 6125 6.4.3).
    const dot = n.indexOf('.');
    return dot > 0 && this.suffixes.has(n.slice(dot));
  }

  list(): string[] {
    return [...this.exact, ...[...this.suffixes].map((s) => '*' + s)];
  }
}
