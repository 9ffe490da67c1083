// Delivers queued notices to each person's webhook and e-mail address, with
// retries and backoff; every attempt is logged for the owner (kmgr notify).
// A notice is queued in the same durable write that records it, so a crash
// loses no delivery; a crash mid-send may deliver one twice (receivers dedupe
// by notice ID).
import { fromB64 } from '../../crypto/bytes.js';
import type { Channel, DeliveryLogEntry, PendingDelivery, Storage } from '../../store/types.js';
import type { Logger } from '../logger.js';
import { postWebhook } from './webhook.js';
import { sendMail, type MailConfig } from './mail.js';

/** 1 s doubling to the one-hour cap (at the 13th attempt): about six hours of trying in all. */
const MAX_ATTEMPTS = 16;
const DELIVERY_CONCURRENCY = 8;
/** 1 s, 2 s, 4 s ... capped at an hour. */
const backoffMs = (attempt: number): number => Math.min(3_600_000, 1000 * 2 ** (attempt - 1));

interface DelivererOptions {
  mail?: MailConfig;
  /** Which webhook URLs may be called: https only, to public addresses (default), or any http(s) URL. */
  webhooks: 'https' | 'any';
  /** A one-off pass (check-terms without a daemon) leaves channels it cannot serve for the daemon instead of failing them. */
  skipUnconfigured?: boolean;
  clock: () => number;
  log: Logger;
  /** Told of each attempt's outcome (metrics). */
  onAttempt?: (channel: Channel, ok: boolean) => void;
}

export class Deliverer {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly storage: Storage,
    private readonly opts: DelivererOptions,
  ) {}

  start(everyMs = 1000): void {
    this.timer = setInterval(() => void this.tick(), everyMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  /** One pass over what is due; overlapping passes are skipped. */
  tick(): Promise<void> {
    if (!this.running) {
      this.running = this.runOnce()
        .then(() => undefined, (e: Error) => void this.opts.log.error({ err: e.message }, 'notice delivery pass failed'))
        .finally(() => (this.running = undefined));
    }
    return this.running;
  }

  async runOnce(): Promise<number> {
    const now = this.opts.clock();
    const due = await this.storage.dueDeliveries(now, 100);
    // A few at a time: one slow webhook (10 s timeout) must not hold up everyone else's notices.
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < due.length) await this.deliver(due[next++]!, now);
    };
    await Promise.all(Array.from({ length: Math.min(DELIVERY_CONCURRENCY, due.length) }, worker));
    return due.length;
  }

  private async deliver(d: PendingDelivery, now: number): Promise<void> {
    const settings = await this.storage.getNotifySettings(d.personId);
    const wanted: Channel[] = [];
    if (settings.webhook) wanted.push('webhook');
    if (settings.email) wanted.push('email');
    for (const c of wanted) d.channels[c] ??= { attempts: 0, nextAt: now, done: false, lastError: null };
    const log: DeliveryLogEntry[] = [];
    for (const c of wanted) {
      const st = d.channels[c]!;
      if (st.done || st.nextAt > now) continue;
      if (c === 'email' && !this.opts.mail && this.opts.skipUnconfigured) continue;
      st.attempts++;
      try {
        if (c === 'webhook') {
          const { url, secret } = settings.webhook!;
          if (this.opts.webhooks === 'https' && !url.startsWith('https://')) throw new Error('this server only calls https:// webhooks');
          const key = fromB64(secret);
          if (!key || key.length !== 32) throw new Error('the webhook secret is not 32 bytes');
          await postWebhook(url, key, d.notice, now, { publicOnly: this.opts.webhooks === 'https' });
        } else {
          await sendMail(this.opts.mail ?? { from: '' }, settings.email!, d.notice, now);
        }
        st.done = true;
        st.lastError = null;
        log.push({ at: now, noticeId: d.notice.id, channel: c, ok: true, attempt: st.attempts, error: null });
      } catch (e) {
        st.lastError = (e as Error).message.slice(0, 300);
        st.done = st.attempts >= MAX_ATTEMPTS; // gives up, and says so in the log
        st.nextAt = now + backoffMs(st.attempts);
        log.push({ at: now, noticeId: d.notice.id, channel: c, ok: false, attempt: st.attempts, error: st.lastError });
      }
    }
    // The channels set when a pass reaches the notice are the ones tried; a notice
    // reached while none is set is finished (it stays in the notice list).
    const finished = wanted.every((c) => d.channels[c]!.done);
    await this.storage.saveDelivery(d, finished, log);
    for (const e of log) this.opts.onAttempt?.(e.channel, e.ok);
  }
}
