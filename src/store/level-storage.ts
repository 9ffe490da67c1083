// The LevelDB backend, and the only importer of `level`. LevelDB admits one
// process and has no transactions, so each key's record lives in memory once
// loaded and is changed synchronously (check and count in one tick, threat 9);
// the change is then made durable by group commit before anyone is answered.
import { Level } from 'level';
import { GroupCommit, type Op } from './group-commit.js';
import * as K from './keys.js';
import { randomBytes } from 'node:crypto';
import { applyUse, newNotice, snapshotOf, useOutcome, VERIFY_RECORDS_PER_MINUTE } from './apply-use.js';
import { periodsAt } from '../terms/periods.js';
import { noticesForTerm, type NoticeDraft } from '../terms/notices.js';
import { AuthError, KmgrError, NotFoundError, UnavailableError } from '../protocol/errors.js';
import { markClosedCleanly, openLevel } from './level-open.js';
import { checkedEncodings, type CheckedEncodings, type StorageDamagedError } from './record-codec.js';
import type { DataMarker } from './marker.js';
import { checkLevelRecords } from './level-check.js';
import type {
  DeliveryLogEntry, FetchOutcome, HistoryRecord, KeyPatch, KeyRecord, NextKey, NonceClaim, Notice, NotifySettings, PartnerMeta, PartnerRecord,
  IntegrityReport, PendingDelivery, PersonRecord, Storage, StorageState, TermsFinding, UseAttempt,
} from './types.js';

import { countersOp, recordOps, type Counters } from './level-records.js';
import { exportLevel, importLevel } from './level-backup.js';
import type { BackupRecord } from './backup-format.js';

function partnerRecord(partnerId: string, name: string, meta: PartnerMeta, owner: string | null, at: number): PartnerRecord {
  return { partnerId, name, displayName: meta.displayName ?? null, appServer: meta.appServer ?? null, business: meta.business ?? null, owner, createdAt: at };
}

interface Cached {
  record: KeyRecord;
  blob: Uint8Array;
  /** Dedupe keys of the notices already recorded for this key. */
  noticed: Set<string>;
  /** Verify questions recorded in the current minute. */
  verifies: { minute: number; count: number };
}

export { VERIFY_RECORDS_PER_MINUTE };
const NONCE_HORIZON_KEY = 'meta!nonce-horizon';

export interface LevelStorageOptions {
  /** Time zone for per-day/week/month counters. */
  tz: string;
  clock: () => number;
  /** False for operator tools: a mistyped --data must not create an empty database. */
  createIfMissing?: boolean;
  /** For kmgrd restore: recorded in the new database's marker. */
  restoredFrom?: DataMarker['restoredFrom'];
}

export class LevelStorage implements Storage {
  private readonly keys = new Map<string, Cached | null>();
  private readonly loadingKeys = new Map<string, Promise<void>>();
  private readonly persons = new Map<string, PersonRecord>();
  private readonly nonces = new Map<string, number>();
  private gc: GroupCommit;
  private pruneTimer: NodeJS.Timeout | undefined;
  /** Partner-list changes are rare: one at a time is simplest and enough. */
  private partnerQueue: Promise<unknown> = Promise.resolve();
  private checkQueue: Promise<unknown> = Promise.resolve();

  /** The first failed checksum: from then on nothing is served (see state()). */
  private damage: StorageDamagedError | undefined;

  /** Set while writes fail (disk full): answered 503 at once, until recover() has reopened the database. */
  private writeFailure: string | undefined;
  private recovering: Promise<void> | undefined;
  private closed = false;

  private constructor(
    private db: Level<string, string>,
    private readonly opts: LevelStorageOptions,
    private readonly enc: CheckedEncodings,
    readonly marker: DataMarker,
    private readonly dir: string,
  ) {
    this.gc = this.newGroupCommit();
  }

  private newGroupCommit(): GroupCommit {
    return new GroupCommit((ops) => this.db.batch(this.encodeOps(ops) as never, { sync: true }));
  }

  /**
   * After a failed write LevelDB refuses every later one until reopened (the
   * log's tail is then unknown), so the store reopens itself, with backoff,
   * until a synced probe write succeeds: no restart needed once space returns.
   * What was cached is dropped: in memory, failed uses were already counted.
   */
  private onWriteFailure(): void {
    if (this.writeFailure || this.closed) return;
    this.writeFailure = 'storage writes are failing (the disk may be full); nothing was recorded, try again later';
    this.keys.clear();
    this.persons.clear();
    this.recovering = (async () => {
      for (let delay = 100; !this.closed; delay = Math.min(delay * 2, 5_000)) {
        await new Promise((r) => setTimeout(r, delay).unref());
        if (this.closed) return;
        try {
          await this.db.close().catch(() => undefined);
          const { db } = await openLevel(this.dir, { create: false, encodings: this.enc, afterFailedWrite: true });
          this.db = db;
          await db.put('meta!probe', String(this.opts.clock()), { sync: true });
          this.keys.clear();
          this.persons.clear();
          this.gc = this.newGroupCommit();
          this.writeFailure = undefined;
          return;
        } catch {
          // Still failing: try again later. The cause is what the health endpoint already reports.
        }
      }
    })();
  }

  /** Sealed blobs go through the checked byte encoding; text values use the database's default (checked text). */
  private encodeOps(ops: Op[]): unknown[] {
    return ops.map((o) => ('valueEncoding' in o ? { ...o, valueEncoding: this.enc.bytes } : o));
  }

  static async open(dir: string, opts: LevelStorageOptions): Promise<LevelStorage> {
    const made: { s?: LevelStorage } = {};
    const enc = checkedEncodings((e) => {
      if (made.s && !made.s.damage) made.s.damage = e;
    });
    const { db, marker } = await openLevel(dir, { create: opts.createIfMissing ?? true, encodings: enc, ...(opts.restoredFrom ? { restoredFrom: opts.restoredFrom } : {}) });
    const s = (made.s = new LevelStorage(db, opts, enc, marker, dir));
    await s.loadNonces();
    s.pruneTimer = setInterval(() => void s.pruneNonces().catch(() => undefined), 30_000);
    s.pruneTimer.unref();
    return s;
  }

  state(): StorageState {
    if (this.damage) return { ok: false, problem: 'damaged', message: this.damage.message };
    if (this.writeFailure) return { ok: false, problem: 'write_failing', message: this.writeFailure };
    return { ok: true };
  }

  identity(): { id: string; store: string } {
    return { id: this.marker.id, store: 'leveldb' };
  }

  /** Every record, from one snapshot (kmgrd backup). */
  exportRecords(): AsyncIterable<BackupRecord> {
    return exportLevel(this.db, this.enc);
  }

  /** Records of a backup into this (new, empty) database (kmgrd restore). */
  importRecords(records: AsyncIterable<BackupRecord>): Promise<number> {
    return importLevel(records, (ops) => this.commit(ops));
  }

  checkIntegrity(): Promise<IntegrityReport> {
    return checkLevelRecords(this.db);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.recovering;
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    await this.gc.idle();
    await this.db.close();
    if (!this.writeFailure && !this.damage) await markClosedCleanly(this.dir).catch(() => undefined);
  }

  // ---- nonces (threat 8) ----

  /**
   * Nonces are forgotten only once the latest time this server has seen is
   * past their expiry; the latest expiry ever forgotten is kept across
   * restarts (meta!nonce-horizon). Threat: a clock that jumps forward, prunes,
   * and steps back would otherwise make a captured, still-valid signed request
   * new again: one whose window ends at or before that horizon is refused as
   * stale, since its nonce may be among those forgotten.
   */
  private latestSeen = 0;
  private forgottenBefore = 0;

  private async loadNonces(): Promise<void> {
    const stored = await this.db.get(NONCE_HORIZON_KEY);
    this.forgottenBefore = stored === undefined ? 0 : Number(stored);
    this.latestSeen = this.opts.clock();
    await this.forgetNonces();
    for await (const key of this.db.keys(K.nonceRange)) {
      const [, exp, keyId, nonce] = key.split('!');
      this.nonces.set(`${keyId}!${nonce}`, Number(exp));
    }
  }

  private async pruneNonces(): Promise<void> {
    this.latestSeen = Math.max(this.latestSeen, this.opts.clock());
    await this.forgetNonces();
  }

  /** The horizon is durable before any nonce below it is deleted. */
  private async forgetNonces(): Promise<void> {
    const range = K.nonceExpiredRange(this.latestSeen);
    let latestGone = 0;
    for await (const key of this.db.keys({ ...range, reverse: true, limit: 1 })) latestGone = Number(key.split('!')[1]);
    for (const [k, exp] of this.nonces) {
      if (exp < this.latestSeen) {
        this.nonces.delete(k);
        if (exp > latestGone) latestGone = exp;
      }
    }
    if (latestGone > this.forgottenBefore) {
      await this.commit([{ type: 'put', key: NONCE_HORIZON_KEY, value: String(latestGone) }]);
      this.forgottenBefore = latestGone;
    }
    await this.db.clear(range);
  }

  claimNonce(c: NonceClaim): void {
    const now = this.opts.clock();
    if (now > this.latestSeen) this.latestSeen = now;
    if (c.expiresAt <= this.forgottenBefore) {
      throw new AuthError('auth_stale', "the request signature's time window ended before the latest time this server has seen (was its clock ahead?)");
    }
    const k = `${c.keyId}!${c.nonce}`;
    if (this.nonces.has(k)) throw new AuthError('auth_replay', 'this request was already used (replayed nonce)');
    this.nonces.set(k, c.expiresAt);
  }

  private nonceOp(c: NonceClaim): Op {
    return { type: 'put', key: K.nonceKey(c.expiresAt, c.keyId, c.nonce), value: '' };
  }

  persistNonce(c: NonceClaim): Promise<void> {
    return this.commit([this.nonceOp(c)]);
  }

  private async commit(ops: Op[]): Promise<void> {
    if (this.damage) throw this.damage;
    // The message names no path (LevelDB's does): it goes to clients. The cause is logged.
    if (this.writeFailure) throw new UnavailableError(this.writeFailure);
    try {
      await this.gc.commit(ops);
    } catch (e) {
      this.onWriteFailure();
      throw new UnavailableError(this.writeFailure ?? 'storage write failed').because(e);
    }
  }

  // ---- persons (Fig. 17) ----

  async personByKeyId(keyId: string): Promise<PersonRecord | undefined> {
    const cached = this.persons.get(keyId);
    if (cached) return cached;
    const personId = await this.db.get(K.mgmtKey(keyId));
    const raw = personId === undefined ? undefined : await this.db.get(K.personKey(personId));
    if (raw === undefined) return undefined; // misses are not cached: random key IDs must not grow memory
    const rec = JSON.parse(raw) as PersonRecord;
    if (!this.persons.has(keyId)) this.persons.set(keyId, rec);
    return this.persons.get(keyId) ?? undefined;
  }

  async personByPersonId(personId: string): Promise<PersonRecord | undefined> {
    const raw = await this.db.get(K.personKey(personId));
    return raw === undefined ? undefined : (JSON.parse(raw) as PersonRecord);
  }

  async enrol(p: PersonRecord, nonce: NonceClaim): Promise<void> {
    // Checked again after the await: a concurrent enrolment of the same key may have won.
    if ((await this.personByKeyId(p.keyId)) || this.persons.get(p.keyId)) throw new KmgrError('person_exists', 'this management key is already enrolled');
    this.persons.set(p.keyId, p);
    await this.commit([
      { type: 'put', key: K.personKey(p.personId), value: JSON.stringify(p) },
      { type: 'put', key: K.mgmtKey(p.keyId), value: p.personId },
      this.nonceOp(nonce),
    ]);
  }

  // ---- keys (Fig. 15) ----

  private async ensureKeyLoaded(k: string, personId: string, partnerId: string): Promise<void> {
    if (this.keys.has(k)) return;
    let loading = this.loadingKeys.get(k);
    if (!loading) {
      loading = (async () => {
        const raw = await this.db.get(k);
        let entry: Cached | null = null;
        if (raw !== undefined) {
          const record = await this.withCounters(JSON.parse(raw) as KeyRecord);
          const blob = await this.db.get<string, Uint8Array>(K.blobKey(personId, partnerId, record.keyVersion), { valueEncoding: this.enc.bytes as never });
          if (blob === undefined) throw new UnavailableError(`storage is inconsistent: the blob of ${partnerId} is missing`);
          const noticed = new Set<string>();
          const range = K.noticeDedupeRange(personId, partnerId);
          for await (const dk of this.db.keys(range)) noticed.add(dk.slice(range.gt.length));
          entry = { record, blob, noticed, verifies: { minute: 0, count: 0 } };
        }
        // Only keys that exist are cached: probes for random IDs must not grow memory.
        if (entry && !this.keys.has(k)) this.keys.set(k, entry);
      })().finally(() => this.loadingKeys.delete(k));
      this.loadingKeys.set(k, loading);
    }
    await loading;
  }

  /** A record read from disk, with its counters (which a fetch writes on their own). */
  private async withCounters(r: KeyRecord): Promise<KeyRecord> {
    const raw = await this.db.get(K.countersKey(r.personId, r.partnerId));
    return raw === undefined ? r : { ...r, ...(JSON.parse(raw) as Counters) };
  }

  async registerKey(record: KeyRecord, blob: Uint8Array, nonce: NonceClaim): Promise<void> {
    const k = K.keyRecordKey(record.personId, record.partnerId);
    await this.ensureKeyLoaded(k, record.personId, record.partnerId);
    // Re-read after the await: a concurrent register may have won.
    if (this.keys.get(k)) throw new KmgrError('key_exists', `partner ${record.partnerId} already has a registered key`);
    this.keys.set(k, { record, blob, noticed: new Set(), verifies: { minute: 0, count: 0 } });
    await this.commit([
      ...recordOps(k, record),
      { type: 'put', key: K.blobKey(record.personId, record.partnerId, record.keyVersion), value: blob, valueEncoding: 'view' },
      this.nonceOp(nonce),
    ]);
  }

  async getKey(personId: string, partnerId: string): Promise<KeyRecord | undefined> {
    const k = K.keyRecordKey(personId, partnerId);
    await this.ensureKeyLoaded(k, personId, partnerId);
    return this.keys.get(k)?.record;
  }

  async listKeys(personId: string): Promise<KeyRecord[]> {
    const out: KeyRecord[] = [];
    for await (const [k, raw] of this.db.iterator(K.keyRecordRange(personId))) {
      out.push(this.keys.get(k)?.record ?? (await this.withCounters(JSON.parse(raw) as KeyRecord)));
    }
    return out;
  }

  async fetchKey(personId: string, partnerId: string, attempt: UseAttempt): Promise<FetchOutcome> {
    const k = K.keyRecordKey(personId, partnerId);
    await this.ensureKeyLoaded(k, personId, partnerId);
    // From here to commit() nothing awaits: the check and the count are one step.
    const entry = this.keys.get(k);
    if (!entry) throw new NotFoundError('unknown_key', `no key is registered for partner ${partnerId}`);
    const rec = entry.record;
    const { verdict, hist, drafts } = applyUse(rec, attempt, this.opts.tz);
    // Snapshot what this use answers with: a rotation may replace the entry while we wait for the disk.
    const blob = entry.blob;
    const snapshot = snapshotOf(rec);
    await this.commit([
      countersOp(rec),
      { type: 'put', key: K.historyKey(personId, partnerId, hist.seq), value: JSON.stringify(hist) },
      this.nonceOp(attempt.nonce),
      ...this.noticeOps(entry, drafts, attempt.at),
    ]);
    return useOutcome(verdict, snapshot, blob);
  }

  /** Ops recording the drafts not yet recorded for this key; marks them recorded at once (no await between). */
  private noticeOps(entry: Cached, drafts: NoticeDraft[], at: number): Op[] {
    const ops: Op[] = [];
    const { personId, partnerId, keyVersion } = entry.record;
    for (const d of drafts) {
      if (entry.noticed.has(d.dedupe)) continue;
      entry.noticed.add(d.dedupe);
      const notice = newNotice({ personId, partnerId, keyVersion }, d, at);
      ops.push(
        { type: 'put', key: K.noticeKey(personId, notice.id), value: JSON.stringify(notice) },
        { type: 'put', key: K.noticeDedupeKey(personId, partnerId, d.dedupe), value: notice.id },
        this.pendingOp(notice),
      );
    }
    return ops;
  }

  /** Every notice is queued for delivery in the same write that records it; the deliverer decides the channels. */
  private pendingOp(n: Notice): Op {
    const p: PendingDelivery = { key: K.pendingKey(n.id, n.personId), personId: n.personId, notice: n, channels: {} };
    return { type: 'put', key: p.key, value: JSON.stringify(p) };
  }

  private async entryOf(personId: string, partnerId: string): Promise<{ k: string; entry: Cached }> {
    const k = K.keyRecordKey(personId, partnerId);
    await this.ensureKeyLoaded(k, personId, partnerId);
    const entry = this.keys.get(k);
    if (!entry) throw new NotFoundError('unknown_key', `no key is registered for partner ${partnerId}`);
    return { k, entry };
  }

  async updateKey(personId: string, partnerId: string, patch: KeyPatch, nonce: NonceClaim): Promise<KeyRecord> {
    const { k, entry } = await this.entryOf(personId, partnerId);
    const rec = entry.record;
    for (const [f, v] of Object.entries(patch)) if (v !== undefined) (rec as unknown as Record<string, unknown>)[f] = v;
    const snapshot: KeyRecord = { ...rec, uses: { ...rec.uses } };
    await this.commit([...recordOps(k, rec), this.nonceOp(nonce)]);
    return snapshot;
  }

  async rotateKey(personId: string, partnerId: string, next: NextKey, nonce: NonceClaim): Promise<KeyRecord> {
    const { k, entry } = await this.entryOf(personId, partnerId);
    const rec = entry.record;
    if (next.keyVersion !== rec.keyVersion + 1) {
      throw new KmgrError('version_conflict', `the key of ${partnerId} is at version ${rec.keyVersion}; a rotation must register version ${rec.keyVersion + 1}`);
    }
    const oldVersion = rec.keyVersion;
    const previous = [...(rec.previousPublicKeys ?? []), ...(rec.publicKey ? [rec.publicKey] : [])];
    // A new key starts its counts afresh under the same terms; its history continues.
    Object.assign(rec, {
      publicKey: next.publicKey ?? null,
      binding: next.binding ?? null,
      previousPublicKeys: previous,
      keyId: next.keyId,
      alg: next.alg,
      keyVersion: next.keyVersion,
      registeredAt: next.at,
      uses: { total: 0, day: 0, week: 0, month: 0, periods: periodsAt(next.at, this.opts.tz) },
      lastUsedAt: null,
    });
    entry.blob = next.blob;
    const snapshot: KeyRecord = { ...rec, uses: { ...rec.uses } };
    await this.commit([
      ...recordOps(k, rec),
      { type: 'put', key: K.blobKey(personId, partnerId, next.keyVersion), value: next.blob, valueEncoding: 'view' },
      // The old sealed key is of no further use to anyone; keeping it would only invite a rollback.
      { type: 'del', key: K.blobKey(personId, partnerId, oldVersion) },
      this.nonceOp(nonce),
    ]);
    return snapshot;
  }

  async history(personId: string, partnerId: string, opts: { since?: number; before?: number; limit: number }): Promise<HistoryRecord[]> {
    await this.entryOf(personId, partnerId);
    const out: HistoryRecord[] = [];
    const range = K.historyRange(personId, partnerId);
    const upper = opts.before !== undefined ? { lt: K.historyKey(personId, partnerId, opts.before) } : {};
    for await (const raw of this.db.values({ ...range, ...upper, reverse: true })) {
      const h = JSON.parse(raw) as HistoryRecord;
      if (opts.since !== undefined && h.at < opts.since) break;
      out.push(h);
      if (out.length >= opts.limit) break;
    }
    return out;
  }

  async listNotices(personId: string, opts: { unreadOnly: boolean }): Promise<Notice[]> {
    const out: Notice[] = [];
    for await (const raw of this.db.values({ ...K.noticeRange(personId), reverse: true })) {
      const n = JSON.parse(raw) as Notice;
      if (!opts.unreadOnly || !n.read) out.push(n);
    }
    return out;
  }

  async ackNotices(personId: string, ids: string[], nonce: NonceClaim): Promise<number> {
    const ops: Op[] = [this.nonceOp(nonce)];
    for (const id of ids) {
      const raw = await this.db.get(K.noticeKey(personId, id));
      if (raw === undefined) continue;
      const n = JSON.parse(raw) as Notice;
      if (n.read) continue;
      n.read = true;
      ops.push({ type: 'put', key: K.noticeKey(personId, id), value: JSON.stringify(n) });
    }
    await this.commit(ops);
    return ops.length - 1;
  }

  /**
   * One scan at a time: two overlapping runs (two cron jobs) would otherwise both
   * see a fact unrecorded, since its marker is written at the end of a scan.
   */
  checkTerms(nowMs: number, warnMs: number): Promise<TermsFinding[]> {
    const run = this.checkQueue.then(() => this.checkTermsNow(nowMs, warnMs));
    this.checkQueue = run.catch(() => undefined);
    return run;
  }

  private async checkTermsNow(nowMs: number, warnMs: number): Promise<TermsFinding[]> {
    const findings: TermsFinding[] = [];
    const recorded: Op[] = [];
    for await (const [k, raw] of this.db.iterator(K.allKeyRecordsRange)) {
      const rec = this.keys.get(k)?.record ?? (JSON.parse(raw) as KeyRecord);
      for (const d of noticesForTerm(rec.partnerId, rec.keyVersion, rec, nowMs, warnMs)) {
        const entry = this.keys.get(k);
        const seen = entry ? entry.noticed.has(d.dedupe) : (await this.db.get(K.noticeDedupeKey(rec.personId, rec.partnerId, d.dedupe))) !== undefined;
        findings.push({
          personId: rec.personId,
          partnerId: rec.partnerId,
          keyVersion: rec.keyVersion,
          kind: d.kind as TermsFinding['kind'],
          expiresAt: d.expiresAt ?? rec.expiresAt!,
          message: d.message,
          isNew: !seen,
        });
        if (seen) continue;
        if (entry) recorded.push(...this.noticeOps(entry, [d], nowMs));
        else {
          const notice = newNotice(rec, d, nowMs);
          recorded.push(
            { type: 'put', key: K.noticeKey(rec.personId, notice.id), value: JSON.stringify(notice) },
            { type: 'put', key: K.noticeDedupeKey(rec.personId, rec.partnerId, d.dedupe), value: notice.id },
            this.pendingOp(notice),
          );
        }
      }
    }
    if (recorded.length > 0) await this.commit(recorded);
    return findings;
  }

  async recordVerify(personId: string, partnerId: string, v: { at: number; result: string; requester: string; remoteAddress: string }): Promise<void> {
    const { entry } = await this.entryOf(personId, partnerId);
    // Anyone may ask: at most VERIFY_RECORDS_PER_MINUTE questions a minute are
    // recorded per key, so a flood cannot bury the owner's history or fill the disk.
    const minute = Math.floor(v.at / 60_000);
    if (entry.verifies.minute !== minute) entry.verifies = { minute, count: 0 };
    if (entry.verifies.count >= VERIFY_RECORDS_PER_MINUTE) return;
    entry.verifies.count++;
    const rec = entry.record;
    rec.historySeq += 1;
    const hist: HistoryRecord = {
      seq: rec.historySeq,
      at: v.at,
      keyVersion: rec.keyVersion,
      result: 'verify',
      code: v.result,
      remoteAddress: v.remoteAddress,
      requester: v.requester,
    };
    await this.commit([countersOp(rec), { type: 'put', key: K.historyKey(personId, partnerId, hist.seq), value: JSON.stringify(hist) }]);
  }

  // ---- partners on the server (second embodiment, Figs. 2, 10, 16) ----

  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.partnerQueue.then(fn, fn);
    this.partnerQueue = run.catch(() => undefined);
    return run;
  }

  private async newPartnerId(): Promise<string> {
    for (;;) {
      const id = randomBytes(16).toString('base64url');
      if ((await this.db.get(K.partnerKey(id))) === undefined) return id;
    }
  }

  private async partnerById(id: string): Promise<PartnerRecord | undefined> {
    const raw = await this.db.get(K.partnerKey(id));
    return raw === undefined ? undefined : (JSON.parse(raw) as PartnerRecord);
  }

  addSharedPartner(name: string, meta: PartnerMeta, at: number): Promise<PartnerRecord> {
    return this.serially(async () => {
      if ((await this.db.get(K.sharedNameKey(name))) !== undefined) throw new KmgrError('key_exists', `a shared partner named ${name} already exists`);
      const rec = partnerRecord(await this.newPartnerId(), name, meta, null, at);
      await this.commit([
        { type: 'put', key: K.partnerKey(rec.partnerId), value: JSON.stringify(rec) },
        { type: 'put', key: K.sharedNameKey(name), value: rec.partnerId },
      ]);
      return rec;
    });
  }

  async listSharedPartners(): Promise<PartnerRecord[]> {
    const out: PartnerRecord[] = [];
    for await (const id of this.db.values(K.sharedNameRange)) {
      const p = await this.partnerById(id);
      if (p) out.push(p);
    }
    return out;
  }

  async sharedPartner(name: string): Promise<PartnerRecord | undefined> {
    const id = await this.db.get(K.sharedNameKey(name));
    return id === undefined ? undefined : this.partnerById(id);
  }

  addPersonPartner(personId: string, name: string, meta: PartnerMeta, at: number, keepId?: string): Promise<PartnerRecord> {
    return this.serially(async () => {
      if ((await this.db.get(K.personPartnerKey(personId, name))) !== undefined) throw new KmgrError('key_exists', `partner ${name} is already in your list`);
      const shared = keepId === undefined ? await this.sharedPartner(name) : undefined;
      const ops: Op[] = [];
      let rec: PartnerRecord;
      if (shared) rec = shared;
      else {
        if (keepId !== undefined && (await this.db.get(K.partnerKey(keepId))) !== undefined) {
          throw new KmgrError('key_exists', `partner ID ${keepId} is already taken on this server`);
        }
        rec = partnerRecord(keepId ?? (await this.newPartnerId()), name, meta, personId, at);
        ops.push({ type: 'put', key: K.partnerKey(rec.partnerId), value: JSON.stringify(rec) });
      }
      ops.push({ type: 'put', key: K.personPartnerKey(personId, name), value: rec.partnerId });
      await this.commit(ops);
      return rec;
    });
  }

  async listPersonPartners(personId: string): Promise<PartnerRecord[]> {
    const out: PartnerRecord[] = [];
    for await (const [k, id] of this.db.iterator(K.personPartnerRange(personId))) {
      const p = await this.partnerById(id);
      // The person's own name for the partner wins over the record's.
      if (p) out.push({ ...p, name: k.slice(K.personPartnerRange(personId).gt.length) });
    }
    return out;
  }

  removePersonPartner(personId: string, name: string): Promise<boolean> {
    return this.serially(async () => {
      const id = await this.db.get(K.personPartnerKey(personId, name));
      if (id === undefined) return false;
      const p = await this.partnerById(id);
      const ops: Op[] = [{ type: 'del', key: K.personPartnerKey(personId, name) }];
      // A private partner goes with its only list entry; a shared one stays in the directory.
      if (p && p.owner === personId) ops.push({ type: 'del', key: K.partnerKey(id) });
      await this.commit(ops);
      return true;
    });
  }

  // ---- delivery of notices (webhook, e-mail) ----

  async getNotifySettings(personId: string): Promise<NotifySettings> {
    const raw = await this.db.get(K.notifyKey(personId));
    return raw === undefined ? { webhook: null, email: null } : (JSON.parse(raw) as NotifySettings);
  }

  setNotifySettings(personId: string, s: NotifySettings, nonce: NonceClaim): Promise<void> {
    return this.commit([{ type: 'put', key: K.notifyKey(personId), value: JSON.stringify(s) }, this.nonceOp(nonce)]);
  }

  async dueDeliveries(now: number, limit: number): Promise<PendingDelivery[]> {
    const out: PendingDelivery[] = [];
    for await (const raw of this.db.values(K.pendingRange)) {
      const p = JSON.parse(raw) as PendingDelivery;
      const states = Object.values(p.channels);
      if (states.length === 0 || states.some((c) => !c.done && c.nextAt <= now)) out.push(p);
      if (out.length >= limit) break;
    }
    return out;
  }

  saveDelivery(d: PendingDelivery, finished: boolean, log: DeliveryLogEntry[]): Promise<void> {
    const ops: Op[] = [finished ? { type: 'del', key: d.key } : { type: 'put', key: d.key, value: JSON.stringify(d) }];
    for (const e of log) ops.push({ type: 'put', key: K.deliveryLogKey(d.personId, e.at, randomBytes(4).toString('hex')), value: JSON.stringify(e) });
    return this.commit(ops);
  }

  async deliveryLog(personId: string, limit: number): Promise<DeliveryLogEntry[]> {
    const out: DeliveryLogEntry[] = [];
    for await (const raw of this.db.values({ ...K.deliveryLogRange(personId), reverse: true, limit })) out.push(JSON.parse(raw) as DeliveryLogEntry);
    return out;
  }
}
