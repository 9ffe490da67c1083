// Prometheus metrics (kmgrd serve --metrics-listen). Labels name routes,
// results, error codes, notice kinds and channels only: never a person, key or
// partner ID, so a scrape (often readable by more people than the data) tells
// nobody who uses which key, and label cardinality stays fixed however many
// keys exist.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly fetches = new Counter({
    name: 'kmgrd_fetches_total',
    help: 'Judged fetches: served, served past a notify limit, or refused by the terms (code: the refusal)',
    labelNames: ['result', 'code'] as const,
    registers: [this.registry],
  });
  readonly requests = new Counter({
    name: 'kmgrd_http_requests_total',
    help: 'HTTP requests answered, by route pattern and status',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'kmgrd_http_request_duration_seconds',
    help: 'Time from request to reply, by route pattern',
    labelNames: ['route'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  });
  readonly commitBatches = new Counter({
    name: 'kmgrd_group_commit_batches_total',
    help: 'Synced storage writes made by group commit',
    registers: [this.registry],
  });
  readonly commitBatchSize = new Histogram({
    name: 'kmgrd_group_commit_batch_size',
    help: 'Commits coalesced into one synced storage write',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
    registers: [this.registry],
  });
  readonly notices = new Counter({
    name: 'kmgrd_notices_total',
    help: 'Notices recorded for key owners, by kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly deliveries = new Counter({
    name: 'kmgrd_deliveries_total',
    help: 'Notice delivery attempts, by channel and result (ok or failed)',
    labelNames: ['channel', 'result'] as const,
    registers: [this.registry],
  });
  readonly certExpiry = new Gauge({
    name: 'kmgrd_tls_certificate_expiry_timestamp_seconds',
    help: 'When the TLS certificate being served expires (Unix time)',
    registers: [this.registry],
  });
  readonly auditFailures = new Counter({
    name: 'kmgrd_audit_log_failures_total',
    help: 'Requests refused because their audit line could not be written',
    registers: [this.registry],
  });

  constructor(sources: { verifyQueueDepth: () => number; cacheEntries: () => Record<string, number> }) {
    new Gauge({
      name: 'kmgrd_verify_queue_depth',
      help: 'Signatures waiting for or under verification on worker threads',
      registers: [this.registry],
      collect() {
        this.set(sources.verifyQueueDepth());
      },
    });
    new Gauge({
      name: 'kmgrd_cache_entries',
      help: 'Entries held by each bounded in-memory cache',
      labelNames: ['cache'] as const,
      registers: [this.registry],
      collect() {
        for (const [cache, n] of Object.entries(sources.cacheEntries())) this.set({ cache }, n);
      },
    });
    collectDefaultMetrics({ register: this.registry });
  }
}
