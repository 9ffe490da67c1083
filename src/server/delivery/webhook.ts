// Webhook delivery: a JSON POST signed with the owner's HMAC secret, so the
// receiver can tell the notice came from this server and was not replayed
// (the signature covers a timestamp). undici is imported only here, by the
// daemon, never on the CLI's start-up path.
import { createHmac } from 'node:crypto';
import { lookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import type { Notice } from '../../store/types.js';

const SIGNATURE_HEADER = 'kmgr-signature';
const TIMESTAMP_HEADER = 'kmgr-timestamp';

/** "v1=" + hex HMAC-SHA256(secret, timestamp + "." + body). */
function webhookSignature(secret: Uint8Array, timestamp: string, body: string): string {
  return 'v1=' + createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
}

function webhookBody(n: Notice): string {
  return JSON.stringify({
    type: 'kmgr.notice',
    notice: { id: n.id, at: new Date(n.at).toISOString(), personId: n.personId, partnerId: n.partnerId, keyVersion: n.keyVersion, kind: n.kind, message: n.message },
  });
}

/**
 * Loopback, private, link-local, CGNAT, unique-local, multicast and mapped or
 * translated forms of them: a webhook must not let a person make the key
 * server probe its own network (SSRF). net.BlockList understands IPv4-mapped
 * IPv6 (::ffff:127.0.0.1 in any spelling), which string prefixes do not.
 */
const NON_PUBLIC = new BlockList();
for (const [net, bits] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 3]] as const) {
  NON_PUBLIC.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [['::', 127], ['64:ff9b::', 96], ['64:ff9b:1::', 48], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['2001:db8::', 32]] as const) {
  NON_PUBLIC.addSubnet(net, bits, 'ipv6');
}

export function isPublicAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  const v = ip.toLowerCase();
  // An IPv4-mapped IPv6 address is judged as the IPv4 address it carries.
  const mapped = /^::ffff:(?:0:)?([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(v);
  if (mapped) {
    const hi = parseInt(mapped[1]!, 16);
    const lo = parseInt(mapped[2]!, 16);
    return isPublicAddress(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`);
  }
  if (v.startsWith('::ffff:') && isIP(v.slice(7)) === 4) return isPublicAddress(v.slice(7));
  return !NON_PUBLIC.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

/** A DNS lookup that refuses non-public answers, checked at connect time so a rebinding DNS cannot slip past. */
function publicLookup(hostname: string, options: LookupOptions, cb: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void): void {
  lookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return cb(err, '');
    const ok = addresses.filter((a) => isPublicAddress(a.address));
    if (ok.length === 0) return cb(Object.assign(new Error(`${hostname} resolves only to non-public addresses`), { code: 'EADDRNOTPUBLIC' }), '');
    if (options.all) cb(null, ok);
    else cb(null, ok[0]!.address, ok[0]!.family);
  });
}

export async function postWebhook(url: string, secret: Uint8Array, n: Notice, nowMs: number, o: { publicOnly: boolean; timeoutMs?: number }): Promise<void> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const { request, Agent } = await import('undici');
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  if (o.publicOnly && isIP(host) && !isPublicAddress(host)) throw new Error('the webhook points at a non-public address');
  const dispatcher = o.publicOnly ? new Agent({ connect: { lookup: publicLookup } }) : undefined;
  const body = webhookBody(n);
  const ts = String(Math.floor(nowMs / 1000));
  const res = await request(url, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', [TIMESTAMP_HEADER]: ts, [SIGNATURE_HEADER]: webhookSignature(secret, ts, body) },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    ...(dispatcher ? { dispatcher } : {}),
  });
  // undici's request() does not follow redirects: a 3xx is a failure, never a hop to another address.
  await res.body.dump();
  await dispatcher?.close();
  if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`the webhook answered HTTP ${res.statusCode}`);
}
