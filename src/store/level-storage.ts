// The LevelDB backend, and the only importer of `level`. LevelDB admits one
// process and has no transactions, so each key's record lives in memory once
// loaded and is changed synchronously (check and count in one tick, threat 9);
// the change is then made durable by group commit before anyone is answered.
import { Level } from 'level';
import { GroupCommit, type Op } from './group-commit.js';
import { SerialQueue } from '../io/serial-queue.js';
import * as K from './keys.js';
import { BoundedCache, DEFAULT_CACHE_ENTRIES } from './lru.js';
import { randomBytes } from 'node:crypto';
import { applyUse, eventEntry, matchRekey, newNotice, noKey, rotated, snapshotOf, termsFinding, useOutcome } from './apply-use.js';
import { recordVerifyIn } from '../terms/verify-flood.js';
import { noticesForTerm, termInstants, type NoticeDraft } from '../terms/notices.js';
import { AuthError, KmgrError, NotFoundError, UnavailableError } from '../protocol/errors.js';
import { markClosedCleanly, openLevel } from './level-open.js';
import { checkedEncodings, type CheckedEncodings, type StorageDamagedError } from './record-codec.js';
import type { DataMarker } from './marker.js';
import { checkLevelRecords } from './level-check.js';
import type {
  DeviceRecord, RekeyChange,
  DeliveryLogEntry, FetchOutcome, HistoryRecord, KeyPatch, KeyRecord, NextKey, NonceClaim, Notice, NotifySettings, PartnerMeta, PartnerRecord,
  IntegrityReport, KeyPage, PendingDelivery, PersonRecord, Storage, StorageEvents, StorageState, TermsFinding, UseAttempt,
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
  /** Operations holding this entry until their write is durable: it is not evicted meanwhile (see lru.ts). */
  pins: number;
}

export const DEFAULT_CACHE_KEYS = DEFAULT_CACHE_ENTRIES;
/** Queue entries one delivery pass reads at most. */
export const DELIVERY_SCAN_MAX = 5000;

const NONCE_HORIZON_KEY = 'meta!nonce-horizon';

export interface LevelStorageOptions {
  /** Time zone for per-day/week/month counters. */
  tz: string;
  clock: () => number;
  /** False for operator tools: a mistyped --data must not create an empty database. */
  createIfMissing?: boolean;
  /** Told of commits and notices, for metrics. */
  events?: StorageEvents;
  /** At most this many key records (and as many persons) in memory; least recently used are evicted. */
  cacheKeys?: number;
  /** For kmgrd restore: recorded in the new database's marker. */
  restoredFrom?: DataMarker['restoredFrom'];
}


export class LevelStorage implements Storage {
  private readonly keys: BoundedCache<string, Cached>;
  private readonly loadingKeys = new Map<string, Promise<boolean>>();
  private readonly persons: BoundedCache<string, PersonRecord>;
  /** Enrolments not yet durable, by management key ID: never evicted, so a second enrolment of the key sees them. */
  private readonly enrolling = new Map<string, PersonRecord>();
  /**
   * personId -> its management key ID, set by a rekey: a change signed by the key it
   * replaced, authenticated just before the switch, is refused. Only persons rekeyed
   * since start-up are held (a restart reads the person record, which names the new key).
   */
  private readonly currentKey = new Map<string, string>();
  /** Devices by person, loaded on first use (a handful per person). */
  private readonly devices = new Map<string, Map<string, DeviceRecord>>();
  /** Persons whose rekey is being written: a second one, or a registration, at the same time is refused. */
  private readonly rekeying = new Set<string>();
  private readonly nonces = new Map<string, number>();
  /** Where the next dueDeliveries scan starts (undefined: at the beginning of the queue). */
  private pendingCursor: string | undefined;
  /** The latest expiry among nonces claimed before this start (0: none). */
  private oldNoncesUntil = 0;
  private gc: GroupCommit;
  private pruneTimer: NodeJS.Timeout | undefined;
  /** Partner-list changes are rare: one at a time is simplest and enough. */
  private readonly partnerQueue = new SerialQueue();
  private readonly checkQueue = new SerialQueue();

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
    const cap = opts.cacheKeys ?? DEFAULT_CACHE_KEYS;
    this.keys = new BoundedCache<string, Cached>(cap, (e) => e.pins > 0);
    this.persons = new BoundedCache<string, PersonRecord>(cap);
  }

  /** How full each in-memory cache is (kmgrd_cache_entries). */
  cacheSizes(): { keys: number; persons: number } {
    return { keys: this.keys.size, persons: this.persons.size };
  }

  private newGroupCommit(): GroupCommit {
    return new GroupCommit((ops) => this.db.batch(this.encodeOps(ops) as never, { sync: true }), (callers) => this.opts.events?.commitBatch?.(callers));
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
    // A failed rekey or device write may have changed these in memory only: disk is the truth again.
    this.currentKey.clear();
    this.devices.clear();
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
    await s.buildExpiryIndex();
    s.pruneTimer = setInterval(() => void s.pruneNonces().catch(() => undefined), 30_000);
    s.pruneTimer.unref();
    return s;
  }

  state(): StorageState {
    if (this.damage) return { ok: false, problem: 'damaged', message: this.damage.message };
    if (this.writeFailure) return { ok: false, problem: 'write_failing', message: this.writeFailure };
    return { ok: true };
  }

  restoredFrom(): DataMarker['restoredFrom'] {
    return this.marker.restoredFrom;
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
    // Nonces claimed before this start stay on disk and are not loaded (start-up must not grow
    // with the request rate). Nonce keys sort by expiry, so one read finds the latest expiry among
    // them: a claim expiring later cannot be one of them; claims up to it are also looked up on disk.
    for await (const key of this.db.keys({ ...K.nonceRange, reverse: true, limit: 1 })) this.oldNoncesUntil = Number(key.split('!')[1]);
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

  claimNonce(c: NonceClaim): void | Promise<void> {
    const now = this.opts.clock();
    if (now > this.latestSeen) this.latestSeen = now;
    if (c.expiresAt <= this.forgottenBefore) {
      throw new AuthError('auth_stale', "the request signature's time window ended before the latest time this server has seen (was its clock ahead?)");
    }
    const k = `${c.keyId}!${c.nonce}`;
    const replay = (): AuthError => new AuthError('auth_replay', 'this request was already used (replayed nonce)');
    // Claimed in memory first, in this tick: two copies of one request racing here cannot both pass.
    if (this.nonces.has(k)) throw replay();
    this.nonces.set(k, c.expiresAt);
    if (c.expiresAt > this.oldNoncesUntil) return;
    // It may have been claimed before this process started (a replay across a restart).
    return this.db.get(K.nonceKey(c.expiresAt, c.keyId, c.nonce)).then((v) => {
      if (v !== undefined) throw replay();
    });
  }

  private nonceOp(c: NonceClaim): Op {
    return { type: 'put', key: K.nonceKey(c.expiresAt, c.keyId, c.nonce), value: '' };
  }

  async ready(): Promise<void> {
    const st = this.state();
    if (!st.ok) throw new UnavailableError(st.message);
    if (this.db.status !== 'open') throw new UnavailableError(`the database is ${this.db.status}`);
    await this.commit([{ type: 'put', key: K.readyProbeKey, value: String(this.opts.clock()) }]);
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
    const cached = this.persons.get(keyId) ?? this.enrolling.get(keyId);
    if (cached) return cached;
    const personId = await this.db.get(K.mgmtKey(keyId));
    const raw = personId === undefined ? undefined : await this.db.get(K.personKey(personId));
    if (raw === undefined) return undefined; // misses are not cached: random key IDs must not grow memory
    const rec = JSON.parse(raw) as PersonRecord;
    if (!this.persons.has(keyId)) this.persons.set(keyId, rec);
    return rec;
  }

  async personByPersonId(personId: string): Promise<PersonRecord | undefined> {
    const raw = await this.db.get(K.personKey(personId));
    return raw === undefined ? undefined : (JSON.parse(raw) as PersonRecord);
  }

  async enrol(p: PersonRecord, nonce: NonceClaim): Promise<void> {
    // Checked again after the await: a concurrent enrolment of the same key may have won.
    if ((await this.personByKeyId(p.keyId)) || this.persons.get(p.keyId) || this.enrolling.has(p.keyId)) {
      throw new KmgrError('person_exists', 'this management key is already enrolled');
    }
    this.enrolling.set(p.keyId, p);
    try {
      await this.commit([
        { type: 'put', key: K.personKey(p.personId), value: JSON.stringify(p) },
        { type: 'put', key: K.mgmtKey(p.keyId), value: p.personId },
        this.nonceOp(nonce),
      ]);
      this.persons.set(p.keyId, p);
    } finally {
      this.enrolling.delete(p.keyId);
    }
  }

  /**
   * A request authenticated just before a rekey was written must not change
   * anything after it: a blob registered under the old wrapping key would open
   * for a revoked device, and a fetch would count a use of a key it can't open.
   */
  private checkCurrentKey(personId: string, nonce: NonceClaim): void {
    const cur = this.currentKey.get(personId);
    if (cur !== undefined && cur !== nonce.keyId) throw new AuthError('key_replaced', 'this management key was replaced by kmgr rekey; it is no longer accepted');
  }

  // ---- keys (Fig. 15) ----

  /**
   * The cached entry of a key, pinned until release(): loaded from disk if need be.
   * Pinned in the same tick it is found, so no eviction can come between.
   */
  private async acquire(k: string, personId: string, partnerId: string): Promise<Cached | undefined> {
    for (;;) {
      const hit = this.keys.get(k);
      if (hit) {
        hit.pins++;
        return hit;
      }
      // Loaded, then perhaps evicted before we resume (other keys came in): look again.
      if (!(await this.ensureKeyLoaded(k, personId, partnerId))) return undefined;
    }
  }

  private release(e: Cached): void {
    e.pins--;
    if (e.pins === 0) this.keys.trim();
  }

  /** Whether the key exists; if so it is in the cache (unless evicted since). */
  private async ensureKeyLoaded(k: string, personId: string, partnerId: string): Promise<boolean> {
    if (this.keys.has(k)) return true;
    let loading = this.loadingKeys.get(k);
    if (!loading) {
      loading = (async () => {
        const raw = await this.db.get(k);
        let entry: Cached | null = null;
        if (raw !== undefined) {
          const record = await this.withCounters(JSON.parse(raw) as KeyRecord);
          const blob = record.retiredAt ? new Uint8Array(0) : await this.db.get<string, Uint8Array>(K.blobKey(personId, partnerId, record.keyVersion), { valueEncoding: this.enc.bytes as never });
          if (blob === undefined) throw new UnavailableError(`storage is inconsistent: the blob of ${partnerId} is missing`);
          const noticed = new Set<string>();
          const range = K.noticeDedupeRange(personId, partnerId);
          for await (const dk of this.db.keys(range)) noticed.add(dk.slice(range.gt.length));
          entry = { record, blob, noticed, verifies: { minute: 0, count: 0 }, pins: 0 };
        }
        // Only keys that exist are cached: probes for random IDs must not grow memory.
        if (entry && !this.keys.has(k)) this.keys.set(k, entry);
        return entry !== null;
      })().finally(() => this.loadingKeys.delete(k));
      this.loadingKeys.set(k, loading);
    }
    return loading;
  }

  /** A record read from disk, with its counters (which a fetch writes on their own). */
  private async withCounters(r: KeyRecord): Promise<KeyRecord> {
    const raw = await this.db.get(K.countersKey(r.personId, r.partnerId));
    return raw === undefined ? r : { ...r, ...(JSON.parse(raw) as Counters) };
  }

  async registerKey(record: KeyRecord, blob: Uint8Array, nonce: NonceClaim): Promise<void> {
    const k = K.keyRecordKey(record.personId, record.partnerId);
    const existing = await this.acquire(k, record.personId, record.partnerId);
    if (existing) {
      try {
        if (!existing.record.retiredAt) throw new KmgrError('key_exists', `partner ${record.partnerId} already has a registered key`);
        return await this.registerAfterRetired(k, existing, record, blob, nonce);
      } finally {
        this.release(existing);
      }
    }
    if (this.rekeying.has(record.personId)) throw new KmgrError('version_conflict', 'a rekey of this person is being written; register again when it is done');
    this.checkCurrentKey(record.personId, nonce);
    // Re-read after the await: a concurrent register may have won.
    if (this.keys.get(k)) throw new KmgrError('key_exists', `partner ${record.partnerId} already has a registered key`);
    const entry: Cached = { record, blob, noticed: new Set(), verifies: { minute: 0, count: 0 }, pins: 1 };
    this.keys.set(k, entry);
    try {
      await this.commit(this.newKeyOps(k, record, blob, nonce));
    } finally {
      this.release(entry);
    }
  }

  /** The one write that makes a newly registered key durable: record, counters, expiry index, blob and nonce. */
  private newKeyOps(k: string, record: KeyRecord, blob: Uint8Array, nonce: NonceClaim): Op[] {
    return [
      ...recordOps(k, record),
      ...this.expiryOps(record, []),
      { type: 'put', key: K.blobKey(record.personId, record.partnerId, record.keyVersion), value: blob, valueEncoding: 'view' },
      this.nonceOp(nonce),
    ];
  }

  /**
   * A new key for a partner whose key was retired: one version up (never a rollback, which would
   * let an old sealed blob be replayed), whose history continues. The pinned entry is changed in
   * place with no await before the check, so a second register racing this one finds key_exists.
   */
  private async registerAfterRetired(k: string, entry: Cached, record: KeyRecord, blob: Uint8Array, nonce: NonceClaim): Promise<void> {
    const old = entry.record;
    if (record.keyVersion <= old.keyVersion) {
      throw new KmgrError('version_conflict', `partner ${record.partnerId} had version ${old.keyVersion} (retired); a new key must be version ${old.keyVersion + 1} or later`);
    }
    record.historySeq = old.historySeq;
    record.previousPublicKeys = [...(old.previousPublicKeys ?? []), ...(old.publicKey ? [old.publicKey] : [])];
    const oldBlob = entry.blob;
    entry.record = record;
    entry.blob = blob;
    try {
      await this.commit(this.newKeyOps(k, record, blob, nonce));
    } catch (e) {
      // Not durable: the cache must keep saying what the disk says (retired).
      entry.record = old;
      entry.blob = oldBlob;
      throw e;
    }
  }

  async getKey(personId: string, partnerId: string): Promise<KeyRecord | undefined> {
    const k = K.keyRecordKey(personId, partnerId);
    const entry = await this.acquire(k, personId, partnerId);
    if (!entry) return undefined;
    this.release(entry);
    return entry.record;
  }

  async listKeys(personId: string, page?: KeyPage): Promise<KeyRecord[]> {
    const out: KeyRecord[] = [];
    const range = K.keyRecordRange(personId);
    const from = page?.after !== undefined ? { gt: K.keyRecordKey(personId, page.after) } : {};
    for await (const [k, raw] of this.db.iterator({ ...range, ...from, ...(page ? { limit: page.limit } : {}) })) {
      out.push(this.keys.peek(k)?.record ?? (await this.withCounters(JSON.parse(raw) as KeyRecord)));
    }
    return out;
  }

  async fetchKey(personId: string, partnerId: string, attempt: UseAttempt): Promise<FetchOutcome> {
    const k = K.keyRecordKey(personId, partnerId);
    const entry = await this.acquire(k, personId, partnerId);
    if (!entry) throw noKey(partnerId, undefined);
    try {
      // A retired key is refused: its sealed blob is gone, and the answer says when it went.
      if (entry.record.retiredAt) throw noKey(partnerId, entry.record);
      return await this.fetchPinned(entry, personId, partnerId, attempt);
    } finally {
      this.release(entry);
    }
  }

  private async fetchPinned(entry: Cached, personId: string, partnerId: string, attempt: UseAttempt): Promise<FetchOutcome> {
    // From here to commit() nothing awaits: the check and the count are one step.
    this.checkCurrentKey(personId, attempt.nonce);
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
      this.opts.events?.notice?.(d.kind);
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

  /** Runs fn with the key's entry pinned (not evicted) until fn's write is durable; unknown_key if there is none. */
  private async withEntry<T>(personId: string, partnerId: string, fn: (k: string, entry: Cached) => Promise<T>, opts: { retired?: boolean } = {}): Promise<T> {
    const k = K.keyRecordKey(personId, partnerId);
    const entry = await this.acquire(k, personId, partnerId);
    if (!entry) throw noKey(partnerId, undefined);
    try {
      // A retired key takes no further change (update, rotate, verify); only its history is still read.
      if (entry.record.retiredAt && !opts.retired) throw noKey(partnerId, entry.record);
      return await fn(k, entry);
    } finally {
      this.release(entry);
    }
  }

  retireKey(personId: string, partnerId: string, attempt: UseAttempt): Promise<KeyRecord> {
    return this.withEntry(personId, partnerId, async (k, entry) => {
      // From here to commit() nothing awaits: a fetch racing the retirement either is served before it or finds no key.
      const rec = entry.record;
      const version = rec.keyVersion;
      const oldInstants = termInstants(version, rec);
      rec.retiredAt = attempt.at;
      const hist = eventEntry(rec, { at: attempt.at, result: 'retired', remoteAddress: attempt.remoteAddress, request: attempt.request });
      entry.blob = new Uint8Array(0);
      const snapshot = snapshotOf(rec);
      await this.commit([
        ...recordOps(k, rec),
        // A retired key has no term left to warn about: check-terms must not find it in the index.
        ...oldInstants.map((at): Op => ({ type: 'del', key: K.expiryKey(at, personId, partnerId) })),
        // The sealed key itself is destroyed: nobody, the owner included, can fetch it again.
        { type: 'del', key: K.blobKey(personId, partnerId, version) },
        { type: 'put', key: K.historyKey(personId, partnerId, hist.seq), value: JSON.stringify(hist) },
        this.nonceOp(attempt.nonce),
      ]);
      return snapshot;
    });
  }

  /**
   * Keeps the expiry index (check-terms reads only what expires) in step with a
   * record's expiry and its certificate's renewal point (termInstants).
   */
  private expiryOps(rec: KeyRecord, old: number[]): Op[] {
    const now = termInstants(rec.keyVersion, rec);
    const ops: Op[] = [];
    for (const at of old) if (!now.includes(at)) ops.push({ type: 'del', key: K.expiryKey(at, rec.personId, rec.partnerId) });
    for (const at of now) if (!old.includes(at)) ops.push({ type: 'put', key: K.expiryKey(at, rec.personId, rec.partnerId), value: '' });
    return ops;
  }

  updateKey(personId: string, partnerId: string, patch: KeyPatch, nonce: NonceClaim): Promise<KeyRecord> {
    return this.withEntry(personId, partnerId, async (k, entry) => {
      this.checkCurrentKey(personId, nonce);
      const rec = entry.record;
      const oldInstants = termInstants(rec.keyVersion, rec);
      for (const [f, v] of Object.entries(patch)) if (v !== undefined) (rec as unknown as Record<string, unknown>)[f] = v;
      const snapshot = snapshotOf(rec);
      await this.commit([...recordOps(k, rec), ...this.expiryOps(rec, oldInstants), this.nonceOp(nonce)]);
      return snapshot;
    });
  }

  rotateKey(personId: string, partnerId: string, next: NextKey, nonce: NonceClaim): Promise<KeyRecord> {
    return this.withEntry(personId, partnerId, (k, entry) => this.rotatePinned(k, entry, personId, partnerId, next, nonce));
  }

  private async rotatePinned(k: string, entry: Cached, personId: string, partnerId: string, next: NextKey, nonce: NonceClaim): Promise<KeyRecord> {
    this.checkCurrentKey(personId, nonce);
    const rec = entry.record;
    const oldInstants = termInstants(rec.keyVersion, rec);
    if (next.keyVersion !== rec.keyVersion + 1) {
      throw new KmgrError('version_conflict', `the key of ${partnerId} is at version ${rec.keyVersion}; a rotation must register version ${rec.keyVersion + 1}`);
    }
    const oldVersion = rec.keyVersion;
    rotated(rec, next, this.opts.tz);
    entry.blob = next.blob;
    const snapshot = snapshotOf(rec);
    await this.commit([
      ...recordOps(k, rec),
      // A certificate of the old version is no longer noticed (noticesForCertificate): its index entry goes.
      ...this.expiryOps(rec, oldInstants),
      { type: 'put', key: K.blobKey(personId, partnerId, next.keyVersion), value: next.blob, valueEncoding: 'view' },
      // The old sealed key is of no further use to anyone; keeping it would only invite a rollback.
      { type: 'del', key: K.blobKey(personId, partnerId, oldVersion) },
      this.nonceOp(nonce),
    ]);
    return snapshot;
  }

  async history(personId: string, partnerId: string, opts: { since?: number; before?: number; limit: number }): Promise<HistoryRecord[]> {
    // A retired key's history is kept, and shown.
    await this.withEntry(personId, partnerId, async () => undefined, { retired: true });
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

  async listNotices(personId: string, opts: { unreadOnly: boolean; before?: string; limit?: number }): Promise<Notice[]> {
    const out: Notice[] = [];
    const upper = opts.before !== undefined ? { lt: K.noticeKey(personId, opts.before) } : {};
    for await (const raw of this.db.values({ ...K.noticeRange(personId), ...upper, reverse: true })) {
      const n = JSON.parse(raw) as Notice;
      if (!opts.unreadOnly || !n.read) out.push(n);
      if (opts.limit !== undefined && out.length >= opts.limit) break;
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
  checkTerms(nowMs: number, warnMs: number, record = true): Promise<TermsFinding[]> {
    return this.checkQueue.run(() => this.checkTermsNow(nowMs, warnMs, record));
  }

  /**
   * Reads the expiry index up to now + warnMs: the keys expired or expiring, and
   * no others, so a run over a million keys with a handful expiring reads a
   * handful. Each key is handled through its cached entry (pinned until the
   * notices are durable), as fetches are: one copy of the notice markers.
   * With record false (check-terms --at, a look at another instant) nothing is written.
   */
  private async checkTermsNow(nowMs: number, warnMs: number, record: boolean): Promise<TermsFinding[]> {
    const findings: TermsFinding[] = [];
    let recorded: Op[] = [];
    let held: Cached[] = [];
    const flush = async (): Promise<void> => {
      try {
        if (recorded.length > 0) await this.commit(recorded);
      } finally {
        for (const e of held) this.release(e);
        recorded = [];
        held = [];
      }
    };
    try {
      // A key may have two entries (its expiry, its certificate's renewal point): it is judged once a run.
      const judged = new Set<string>();
      for await (const ik of this.db.keys(K.expiryUntilRange(nowMs + warnMs))) {
        const [, at, personId, partnerId] = ik.split('!') as [string, string, string, string];
        const k = K.keyRecordKey(personId, partnerId);
        if (judged.has(k)) continue;
        const entry = await this.acquire(k, personId, partnerId);
        if (!entry) continue;
        held.push(entry);
        const rec = entry.record;
        // A retired key has no term left to warn about (its index entries went with it; this guards older data).
        if (rec.retiredAt) continue;
        // An entry left for an instant the key no longer has names nothing: the key has its own entries.
        if (!termInstants(rec.keyVersion, rec).includes(Number(at))) continue;
        judged.add(k);
        for (const d of noticesForTerm(rec.partnerId, rec.keyVersion, rec, nowMs, warnMs)) {
          const seen = entry.noticed.has(d.dedupe);
          findings.push(termsFinding(rec, d, !seen));
          if (!seen && record) recorded.push(...this.noticeOps(entry, [d], nowMs));
        }
        // In slices: a long run neither pins a large part of the cache nor holds one huge write.
        if (held.length >= 256) await flush();
      }
    } finally {
      await flush();
    }
    return findings;
  }

  /** Builds the expiry index over keys registered before it existed: once, at the first open that lacks it. */
  private async buildExpiryIndex(): Promise<void> {
    if ((await this.db.get(K.expiryIndexMarker)) !== undefined) return;
    let ops: Op[] = [];
    for await (const raw of this.db.values(K.allKeyRecordsRange)) {
      const rec = JSON.parse(raw) as KeyRecord;
      if (rec.retiredAt) continue;
      for (const at of termInstants(rec.keyVersion, rec)) ops.push({ type: 'put', key: K.expiryKey(at, rec.personId, rec.partnerId), value: '' });
      if (ops.length >= 10_000) {
        await this.commit(ops);
        ops = [];
      }
    }
    ops.push({ type: 'put', key: K.expiryIndexMarker, value: String(this.opts.clock()) });
    await this.commit(ops);
  }

  async recordVerify(personId: string, partnerId: string, v: { at: number; result: string; requester: string; remoteAddress: string }): Promise<void> {
    return this.withEntry(personId, partnerId, (_k, entry) => this.recordVerifyPinned(entry, personId, partnerId, v));
  }

  private async recordVerifyPinned(entry: Cached, personId: string, partnerId: string, v: { at: number; result: string; requester: string; remoteAddress: string }): Promise<void> {
    // A flood of questions must not bury the owner's history (src/terms/verify-flood.ts).
    const { record, window } = recordVerifyIn(entry.verifies, v.at);
    entry.verifies = window;
    if (!record) return;
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
    return this.partnerQueue.run(fn);
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

  /**
   * Reads at most DELIVERY_SCAN_MAX queue entries a call, going on next call
   * where this one stopped (wrapping at the end): a queue grown long with
   * deliveries waiting out their backoff costs each pass the same.
   */
  async dueDeliveries(now: number, limit: number): Promise<PendingDelivery[]> {
    const out: PendingDelivery[] = [];
    let scanned = 0;
    let last: string | undefined;
    const from = this.pendingCursor !== undefined ? { gt: this.pendingCursor } : {};
    for await (const [k, raw] of this.db.iterator({ ...K.pendingRange, ...from, limit: DELIVERY_SCAN_MAX })) {
      scanned++;
      last = k;
      const p = JSON.parse(raw) as PendingDelivery;
      const states = Object.values(p.channels);
      if (states.length === 0 || states.some((c) => !c.done && c.nextAt <= now)) out.push(p);
      if (out.length >= limit) break;
    }
    this.pendingCursor = out.length < limit && scanned < DELIVERY_SCAN_MAX ? undefined : last;
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

  // ---- management-key rotation (kmgr rekey) ----

  /**
   * Every key entry of the person, pinned (each must be release()d): the records on
   * disk, read through acquire() since the bounded cache holds only some of them,
   * and registrations still in flight, which are only in the cache (pinned by their
   * writer until durable). The caller must have marked the person as rekeying
   * first, so no new registration starts while this runs.
   */
  private async pinAllKeys(personId: string): Promise<Map<string, { k: string; entry: Cached }>> {
    const prefix = K.keyRecordRange(personId).gt;
    const out = new Map<string, { k: string; entry: Cached }>();
    const pin = (k: string, entry: Cached): void => {
      if (out.has(entry.record.partnerId)) return;
      entry.pins++;
      out.set(entry.record.partnerId, { k, entry });
    };
    try {
      // In flight now: pinned at once, before an await lets their writes finish and the entries be evicted.
      // A retired key has no sealed blob left to re-wrap: a rekey neither hands it out nor expects it.
      for (const [k, entry] of this.keys.entries()) if (k.startsWith(prefix) && entry.pins > 0 && !entry.record.retiredAt) pin(k, entry);
      for await (const k of this.db.keys(K.keyRecordRange(personId))) {
        const partnerId = k.slice(prefix.length);
        if (out.has(partnerId)) continue;
        const entry = await this.acquire(k, personId, partnerId);
        if (!entry) continue;
        if (out.has(partnerId) || entry.record.retiredAt) this.release(entry);
        else out.set(partnerId, { k, entry });
      }
    } catch (e) {
      this.releaseAll(out);
      throw e;
    }
    return out;
  }

  private releaseAll(held: Map<string, { k: string; entry: Cached }>): void {
    for (const { entry } of held.values()) this.release(entry);
  }

  private rekeyHistoryOp(entry: Cached, at: number, code: string, remoteAddress: string, request: RekeyChange['request']): Op {
    const rec = entry.record;
    const hist = eventEntry(rec, { at, result: 'rekey', code, remoteAddress, request });
    return { type: 'put', key: K.historyKey(rec.personId, rec.partnerId, hist.seq), value: JSON.stringify(hist) };
  }

  async rekeyExport(personId: string, attempt: UseAttempt): Promise<Array<{ record: KeyRecord; blob: Uint8Array }>> {
    // Marked for the pinning below (no registration may slip past it); a rekey under way is refused.
    if (this.rekeying.has(personId)) throw new KmgrError('version_conflict', 'a rekey of this person is being written; try again');
    this.rekeying.add(personId);
    try {
      const held = await this.pinAllKeys(personId);
      try {
        this.checkCurrentKey(personId, attempt.nonce);
        const out: Array<{ record: KeyRecord; blob: Uint8Array }> = [];
        const ops: Op[] = [this.nonceOp(attempt.nonce)];
        // Handing out every blob is not a use (nothing is counted), but the owner sees it in each key's history.
        for (const { entry } of held.values()) {
          ops.push(this.rekeyHistoryOp(entry, attempt.at, 'exported', attempt.remoteAddress, attempt.request), countersOp(entry.record));
          out.push({ record: { ...entry.record, uses: { ...entry.record.uses } }, blob: entry.blob });
        }
        await this.commit(ops);
        return out;
      } finally {
        this.releaseAll(held);
      }
    } finally {
      this.rekeying.delete(personId);
    }
  }

  async rekey(personId: string, ch: RekeyChange, nonce: NonceClaim): Promise<void> {
    if (this.rekeying.has(personId)) throw new KmgrError('version_conflict', 'another rekey of this person is being written; try again');
    this.rekeying.add(personId);
    try {
      // Every entry the rekey changes stays pinned until the write is durable: an evicted
      // entry reloaded from disk meanwhile would bring back the old blob.
      const held = await this.pinAllKeys(personId);
      try {
        const devs = await this.loadDevices(personId);
        const person = await this.personByPersonId(personId);
        // From here to the in-memory switch nothing awaits: the check and the switch are one step.
        const cur = this.currentKey.get(personId) ?? person?.keyId;
        if (cur !== ch.oldKeyId) throw new AuthError('key_replaced', 'this management key was replaced by an earlier rekey');
        const given = matchRekey(new Map([...held].map(([p, { entry }]) => [p, entry.record])), ch.keys);
        const ops: Op[] = [
          { type: 'put', key: K.personKey(personId), value: JSON.stringify(ch.person) },
          { type: 'put', key: K.mgmtKey(ch.person.keyId), value: personId },
          this.nonceOp(nonce),
        ];
        for (const { k, entry } of held.values()) {
          const g = given.get(entry.record.partnerId)!;
          entry.blob = g.blob;
          entry.record.binding = g.binding;
          ops.push(
            this.rekeyHistoryOp(entry, ch.at, 'rewrapped', ch.remoteAddress, ch.request),
            ...recordOps(k, entry.record),
            // Same version, same key name: the new blob replaces the old in the same write.
            { type: 'put', key: K.blobKey(personId, entry.record.partnerId, entry.record.keyVersion), value: g.blob, valueEncoding: 'view' },
          );
        }
        for (const label of ch.revokeDevices) {
          const d = devs.get(label);
          if (!d || d.revokedAt !== null) continue;
          d.revokedAt = ch.at;
          ops.push({ type: 'put', key: K.deviceKey(personId, label), value: JSON.stringify(d) });
        }
        // The old key ID keeps pointing at the person, so its requests are told "replaced", not "unknown".
        this.persons.set(ch.oldKeyId, ch.person);
        this.persons.set(ch.person.keyId, ch.person);
        this.currentKey.set(personId, ch.person.keyId);
        await this.commit(ops);
      } finally {
        this.releaseAll(held);
      }
    } finally {
      this.rekeying.delete(personId);
    }
  }

  // ---- devices ----

  private async loadDevices(personId: string): Promise<Map<string, DeviceRecord>> {
    let m = this.devices.get(personId);
    if (m) return m;
    const loaded = new Map<string, DeviceRecord>();
    for await (const raw of this.db.values(K.deviceRange(personId))) {
      const d = JSON.parse(raw) as DeviceRecord;
      loaded.set(d.label, d);
    }
    m = this.devices.get(personId);
    if (m) return m;
    this.devices.set(personId, loaded);
    return loaded;
  }

  async addDeviceExport(personId: string, exportId: string, expiresAt: number, nonce: NonceClaim): Promise<void> {
    this.checkCurrentKey(personId, nonce);
    await this.commit([{ type: 'put', key: K.deviceExportKey(personId, exportId), value: JSON.stringify({ expiresAt, usedAt: null }) }, this.nonceOp(nonce)]);
  }

  async addDevice(personId: string, device: DeviceRecord, exportId: string | null, at: number, nonce: NonceClaim | null): Promise<DeviceRecord> {
    const devs = await this.loadDevices(personId);
    const exp = exportId === null ? undefined : await this.db.get(K.deviceExportKey(personId, exportId));
    // No await from here to the in-memory change: two imports of one export cannot both pass.
    if (nonce) this.checkCurrentKey(personId, nonce);
    const existing = devs.get(device.label);
    if (existing && existing.revokedAt === null) throw new KmgrError('device_exists', `this person already has a device labelled ${device.label}; choose another --label`);
    if (existing) throw new KmgrError('device_exists', `the label ${device.label} belonged to a revoked device; choose another --label`);
    const ops: Op[] = [];
    if (exportId !== null) {
      if (exp === undefined) throw new NotFoundError('unknown_export', 'the server knows no such device export (made by an older kmgr, or for another person)');
      const e = JSON.parse(exp) as { expiresAt: number; usedAt: number | null };
      if (e.usedAt !== null) throw new KmgrError('export_used', 'this device export was already imported once; make a new one with kmgr device export');
      if (at >= e.expiresAt) throw new KmgrError('export_expired', 'this device export has expired; make a new one with kmgr device export');
      e.usedAt = at;
      // Kept (used) rather than deleted, so a second import is told "already imported", not "unknown".
      ops.push({ type: 'put', key: K.deviceExportKey(personId, exportId), value: JSON.stringify(e) });
    }
    devs.set(device.label, device);
    ops.push({ type: 'put', key: K.deviceKey(personId, device.label), value: JSON.stringify(device) });
    if (nonce) ops.push(this.nonceOp(nonce));
    await this.commit(ops);
    return { ...device };
  }

  async listDevices(personId: string): Promise<DeviceRecord[]> {
    return [...(await this.loadDevices(personId)).values()].map((d) => ({ ...d })).sort((a, b) => a.addedAt - b.addedAt);
  }

  async touchDevice(personId: string, label: string, keyId: string, at: number): Promise<DeviceRecord | undefined> {
    const d = (await this.loadDevices(personId)).get(label);
    if (!d) return undefined;
    // Last use at minute precision: a write per request would cost a sync per request.
    const stale = d.lastUsedAt === null || at - d.lastUsedAt >= 60_000 || d.lastKeyId !== keyId;
    if (stale && d.revokedAt === null) {
      d.lastUsedAt = at;
      d.lastKeyId = keyId;
      void this.commit([{ type: 'put', key: K.deviceKey(personId, label), value: JSON.stringify(d) }]).catch(() => undefined);
    }
    return { ...d };
  }
}
