// Webhook delivery: a JSON POST signed with the owner's HMAC secret, so the
// receiver can tell the notice came from this server and was not replayed
// (the signature covers a timestamp). undici is imported only here, by the
// daemon, never on the CLI's start-up path.
import { createHmac } from 'node:crypto';
import { lookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { isIP } from 'node:net';
import type { Notice } from '../../store/types.js';

export const SIGNATURE_HEADER = 'kmgr-signature';
export const TIMESTAMP_HEADER = 'kmgr-timestamp';

/** "v1=" + hex HMAC-SHA256(secret, timestamp + "." + body). */
export function webhookSignature(secret: Uint8Array, timestamp: string, body: string): string {
  return 'v1=' + createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
}

export function webhookBody(n: Notice): string {
  return JSON.stringify({
    type: 'kmgr.notice',
    notice: { id: n.id, at: new Date(n.at).toISOString(), personId: n.personId, partnerId: n.partnerId, keyVersion: n.keyVersion, kind: n.kind, message: n.message },
  });
}

/**
 * Loopback, private, link-local, CGNAT and unique-local addresses: a webhook
 * must not let a person make the key server probe its own network (SSRF).
 */
export function isPublicAddress(ip: string): boolean {
  if (isIP(ip) === 4) {
    const [a, b] = ip.split('.').map(Number) as [number, number];
    return !(a === 0 || a === 10 || a === 127 || (a === 100 && b >= 64 && b < 128) || (a === 169 && b === 254) || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168) || a >= 224);
  }
  const v = ip.toLowerCase();
  if (v.startsWith('::ffff:')) return isPublicAddress(v.slice(7));
  return !(v === '::' || v === '::1' || v.startsWith('fc') || v.startsWith('fd') || v.startsWith('fe80') || v.startsWith('ff'));
}

/** A DNS lookup that refuses non-public answers, checked at connect time so a rebinding DNS cannot slip past. */
function publicLookup(hostname: string, options: LookupOptions, cb: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void): void {
  lookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return cb(err, '');
    const ok = (addresses as LookupAddress[]).filter((a) => isPublicAddress(a.address));
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
