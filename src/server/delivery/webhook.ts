// Webhook delivery: a JSON POST signed with the owner's HMAC secret, so the
// receiver can tell the notice came from this server and was not replayed
// (the signature covers a timestamp). undici is imported only here, by the
// daemon, never on the CLI's start-up path.
import { createHmac } from 'node:crypto';
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

export async function postWebhook(url: string, secret: Uint8Array, n: Notice, nowMs: number, timeoutMs = 10_000): Promise<void> {
  const { request } = await import('undici');
  const body = webhookBody(n);
  const ts = String(Math.floor(nowMs / 1000));
  const res = await request(url, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', [TIMESTAMP_HEADER]: ts, [SIGNATURE_HEADER]: webhookSignature(secret, ts, body) },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  // undici's request() does not follow redirects: a 3xx is a failure, never a hop to another address.
  await res.body.dump();
  if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`the webhook answered HTTP ${res.statusCode}`);
}
