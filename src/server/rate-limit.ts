// Token buckets (threat 14): per client address before authentication, per
// management key after it. A refused request changes nothing (429, and no
// count, nonce or history is written).
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly sweeper: NodeJS.Timeout | undefined;

  /** rate: tokens per second (0 disables); burst: bucket size. */
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    /** Monotonic milliseconds (performance.now), never the wall clock. */
    private readonly clock: () => number = () => performance.now(),
    private readonly maxEntries = 100_000,
  ) {
    if (rate > 0) {
      this.sweeper = setInterval(() => this.sweep(), 10_000);
      this.sweeper.unref();
    }
  }

  get enabled(): boolean {
    return this.rate > 0;
  }

  /** Takes one token; false when the bucket is empty. */
  take(key: string): boolean {
    if (this.rate <= 0) return true;
    const now = this.clock();
    let b = this.buckets.get(key);
    if (!b) {
      // Bounded memory under a flood of new addresses: forget the idle ones first.
      if (this.buckets.size >= this.maxEntries) this.sweep();
      if (this.buckets.size >= this.maxEntries) return false;
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
    } else {
      // Never less than nothing: whatever clock is given, time going back refills nothing and takes nothing.
      b.tokens = Math.min(this.burst, b.tokens + (Math.max(0, now - b.at) / 1000) * this.rate);
      b.at = Math.max(b.at, now);
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Seconds until one token is available, for Retry-After. */
  retryAfter(key: string): number {
    const b = this.buckets.get(key);
    if (!b || this.rate <= 0) return 1;
    return Math.max(1, Math.ceil((1 - b.tokens) / this.rate));
  }

  private sweep(): void {
    const now = this.clock();
    for (const [k, b] of this.buckets) {
      if (b.tokens + (Math.max(0, now - b.at) / 1000) * this.rate >= this.burst) this.buckets.delete(k);
    }
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
  }
}
