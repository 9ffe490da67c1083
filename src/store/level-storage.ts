// The LevelDB backend, and the only importer of `level`. LevelDB admits one
// process and has no transactions, so each key's record lives in memory once
// loaded and is changed synchronously (check and count in one tick, threat 9);
// the change is then made durable by group commit before anyone is answered.
import { Level } from 'level';
import { GroupCommit, type Op } from './group-commit.js';
import * as K from './keys.js';
import { judgeUse } from '../terms/judge.js';
import { AuthError, KmgrError, NotFoundError, UnavailableError } from '../protocol/errors.js';
import type { FetchOutcome, HistoryRecord, KeyRecord, NonceClaim, PersonRecord, Storage, UseAttempt } from './types.js';

interface Cached {
  record: KeyRecord;
  blob: Uint8Array;
}

export interface LevelStorageOptions {
  /** Time zone for per-day/week/month counters. */
  tz: string;
  clock: () => number;
}

export class LevelStorage implements Storage {
  private readonly keys = new Map<string, Cached | null>();
  private readonly loadingKeys = new Map<string, Promise<void>>();
  private readonly persons = new Map<string, PersonRecord | null>();
  private readonly nonces = new Map<string, number>();
  private readonly gc: GroupCommit;
  private pruneTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly db: Level<string, string>,
    private readonly opts: LevelStorageOptions,
  ) {
    this.gc = new GroupCommit((ops) => db.batch(ops as never, { sync: true }));
  }

  static async open(dir: string, opts: LevelStorageOptions): Promise<LevelStorage> {
    const db = new Level<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' });
    try {
      await db.open();
    } catch (e) {
      const cause = (e as { cause?: { code?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED') throw new UnavailableError(`the database at ${dir} is in use by another process (is kmgrd already running?)`);
      throw new UnavailableError(`cannot open the database at ${dir}: ${(e as Error).message}`);
    }
    const s = new LevelStorage(db, opts);
    await s.loadNonces();
    s.pruneTimer = setInterval(() => void s.pruneNonces().catch(() => undefined), 30_000);
    s.pruneTimer.unref();
    return s;
  }

  async close(): Promise<void> {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    await this.gc.idle();
    await this.db.close();
  }

  // ---- nonces (threat 8) ----

  private async loadNonces(): Promise<void> {
    const now = this.opts.clock();
    await this.db.clear(K.nonceExpiredRange(now));
    for await (const key of this.db.keys(K.nonceRange)) {
      const [, exp, keyId, nonce] = key.split('!');
      this.nonces.set(`${keyId}!${nonce}`, Number(exp));
    }
  }

  private async pruneNonces(): Promise<void> {
    const now = this.opts.clock();
    for (const [k, exp] of this.nonces) if (exp < now) this.nonces.delete(k);
    await this.db.clear(K.nonceExpiredRange(now));
  }

  claimNonce(c: NonceClaim): void {
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
    try {
      await this.gc.commit(ops);
    } catch (e) {
      throw new UnavailableError(`storage write failed: ${(e as Error).message}`);
    }
  }

  // ---- persons (Fig. 17) ----

  async personByKeyId(keyId: string): Promise<PersonRecord | undefined> {
    const cached = this.persons.get(keyId);
    if (cached !== undefined) return cached ?? undefined;
    const personId = await this.db.get(K.mgmtKey(keyId));
    const raw = personId === undefined ? undefined : await this.db.get(K.personKey(personId));
    const rec = raw === undefined ? null : (JSON.parse(raw) as PersonRecord);
    if (!this.persons.has(keyId)) this.persons.set(keyId, rec);
    return this.persons.get(keyId) ?? undefined;
  }

  async enrol(p: PersonRecord, nonce: NonceClaim): Promise<void> {
    await this.personByKeyId(p.keyId);
    if (this.persons.get(p.keyId)) throw new KmgrError('person_exists', 'this management key is already enrolled');
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
          const record = JSON.parse(raw) as KeyRecord;
          const blob = await this.db.get<string, Uint8Array>(K.blobKey(personId, partnerId, record.keyVersion), { valueEncoding: 'view' });
          if (blob === undefined) throw new UnavailableError(`storage is inconsistent: the blob of ${partnerId} is missing`);
          entry = { record, blob };
        }
        if (!this.keys.has(k)) this.keys.set(k, entry);
      })().finally(() => this.loadingKeys.delete(k));
      this.loadingKeys.set(k, loading);
    }
    await loading;
  }

  async registerKey(record: KeyRecord, blob: Uint8Array, nonce: NonceClaim): Promise<void> {
    const k = K.keyRecordKey(record.personId, record.partnerId);
    await this.ensureKeyLoaded(k, record.personId, record.partnerId);
    // Re-read after the await: a concurrent register may have won.
    if (this.keys.get(k)) throw new KmgrError('key_exists', `partner ${record.partnerId} already has a registered key`);
    this.keys.set(k, { record, blob });
    await this.commit([
      { type: 'put', key: k, value: JSON.stringify(record) },
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
      out.push(this.keys.get(k)?.record ?? (JSON.parse(raw) as KeyRecord));
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
    const verdict = judgeUse(rec, rec.uses, attempt.at, this.opts.tz);
    rec.uses = verdict.uses;
    rec.historySeq += 1;
    if (verdict.serve) rec.lastUsedAt = attempt.at;
    const hist: HistoryRecord = {
      seq: rec.historySeq,
      at: attempt.at,
      keyVersion: rec.keyVersion,
      result: !verdict.serve ? 'refused' : verdict.overLimit.length > 0 ? 'served_over_limit' : 'served',
      ...(verdict.serve ? (verdict.overLimit.length > 0 ? { overLimit: verdict.overLimit } : {}) : { code: verdict.code }),
      remoteAddress: attempt.remoteAddress,
      request: attempt.request,
    };
    await this.commit([
      { type: 'put', key: k, value: JSON.stringify(rec) },
      { type: 'put', key: K.historyKey(personId, partnerId, hist.seq), value: JSON.stringify(hist) },
      this.nonceOp(attempt.nonce),
    ]);
    if (!verdict.serve) return { served: false, record: rec, code: verdict.code, message: verdict.message };
    return { served: true, record: rec, blob: entry.blob, overLimit: verdict.overLimit };
  }
}
