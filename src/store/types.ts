// The storage interface the server's handlers see. Each operation is a whole
// step ("record a use and return the blob, or refuse"), so that a second
// backend can be written without touching the handlers. Times are epoch ms.
import type { KeyTerms, LimitName, RefusalCode, Uses } from '../terms/judge.js';
import type { NoticeKind } from '../terms/notices.js';
import type { SignedBinding, SignedSuccession } from '../protocol/messages.js';

/** Fig. 17: the management key index. */
export interface PersonRecord {
  personId: string;
  keyId: string; // management key ID (1701)
  alg: 'ed25519';
  publicKey: string; // base64url raw Ed25519 (1703)
  createdAt: number;
  /** After kmgr rekey: the statement by which the previous key named this one. */
  succession?: SignedSuccession | null;
}

/** Fig. 15, plus algorithm and key version. */
export interface KeyRecord extends KeyTerms {
  personId: string; // 1502
  partnerId: string; // 1503
  keyId: string; // 1501
  alg: string;
  keyVersion: number;
  registeredAt: number;
  uses: Uses; // 1504-1507
  lastUsedAt: number | null; // 1509
  historySeq: number;
  /** Third embodiment: the public half (SPKI PEM) and the owner's signed binding statement. */
  publicKey?: string | null;
  binding?: SignedBinding | null;
  /** Public keys of earlier versions, so a verifier can be told "rotated" rather than "mismatch". */
  previousPublicKeys?: string[];
  /** Set by retireKey: the sealed blob is gone, the record and history stay, the partner may register anew. */
  retiredAt?: number | null;
  /** Offered by the owner's SSH agent (kmgr register --ssh, kmgr terms --ssh on). */
  ssh?: boolean;
  /** The certificate chain kept beside the key (public data). Only meant for keyVersion; a rotated key has none. */
  certificates?: StoredCertificates | null;
}

/** A certificate chain as stored: the PEM texts, leaf first, and what the server read from the leaf. */
export interface StoredCertificates {
  keyVersion: number;
  chain: string[];
  leaf: { subject: string; issuer: string; serial: string; notBefore: number; notAfter: number; fingerprint: string };
}

/** The signed request behind a use, kept so an owner can audit it later. */
export interface SignedRequestRecord {
  method: string;
  authority: string;
  path: string;
  contentDigest: string;
  /** The device label the request was signed with ('' if none). */
  device: string;
  signatureInput: string;
  signature: string;
}

export interface HistoryRecord {
  seq: number;
  at: number;
  keyVersion: number;
  result: 'served' | 'served_over_limit' | 'refused' | 'verify' | 'retired' | 'rekey';
  /** A refusal code, or for verify entries the answer given. */
  code?: string;
  overLimit?: LimitName[];
  remoteAddress: string;
  /** For verify entries: the application server that asked. */
  requester?: string;
  /** The owner's signed request; absent for verify entries. */
  request?: SignedRequestRecord;
}

/** A nonce claimed by one request; stored in the same write as what the request changes (threat 8). */
export interface NonceClaim {
  keyId: string;
  nonce: string;
  expiresAt: number;
}

export interface UseAttempt {
  at: number;
  nonce: NonceClaim;
  remoteAddress: string;
  request: SignedRequestRecord;
}

export type FetchOutcome =
  | { served: true; record: KeyRecord; blob: Uint8Array; overLimit: LimitName[] }
  | { served: false; record: KeyRecord; code: RefusalCode; message: string };

export interface Notice {
  id: string; // sortable: creation time, then a random suffix
  at: number;
  personId: string;
  partnerId: string;
  keyVersion: number;
  kind: NoticeKind;
  message: string;
  read: boolean;
}

/** What the owner may change on a key after registering it (kmgr terms, lock, unlock). */
export interface KeyPatch {
  inhibited?: boolean;
  expiresAt?: number | null;
  maxUses?: number | null;
  maxPerDay?: number | null;
  maxPerWeek?: number | null;
  maxPerMonth?: number | null;
  onLimit?: 'deny' | 'notify';
  publicKey?: string | null;
  binding?: SignedBinding | null;
  ssh?: boolean;
  certificates?: StoredCertificates | null;
}

export interface NextKey {
  keyId: string;
  alg: string;
  keyVersion: number;
  blob: Uint8Array;
  at: number;
  publicKey?: string | null;
  binding?: SignedBinding | null;
}

export interface TermsFinding {
  personId: string;
  partnerId: string;
  keyVersion: number;
  kind: 'expired' | 'expiring' | 'certificate_expired' | 'certificate_expiring';
  expiresAt: number;
  message: string;
  /** False when an earlier run already recorded this finding. */
  isNew: boolean;
}

/** Where a person's notices are delivered beyond the notice list. */
export interface NotifySettings {
  webhook: { url: string; secret: string } | null; // secret: base64, the owner holds it too
  email: string | null;
}

export type Channel = 'webhook' | 'email';

export interface ChannelState {
  attempts: number;
  nextAt: number;
  done: boolean;
  lastError: string | null;
}

/** A notice waiting to be delivered; removed once every channel is done or gave up. */
export interface PendingDelivery {
  key: string;
  personId: string;
  notice: Notice;
  channels: Partial<Record<Channel, ChannelState>>;
}

export interface DeliveryLogEntry {
  at: number;
  noticeId: string;
  channel: Channel;
  ok: boolean;
  attempt: number;
  error: string | null;
}

/** Fig. 16 on the server (second embodiment). */
export interface PartnerRecord {
  partnerId: string;
  name: string;
  displayName: string | null;
  appServer: string | null;
  business: string | null;
  /** The person whose private partner this is, or null for the operator's shared partners. */
  owner: string | null;
  createdAt: number;
}

export interface PartnerMeta {
  displayName?: string | null;
  appServer?: string | null;
  business?: string | null;
}

/** One re-wrapped key in a rekey: same version, same associated data, sealed under the new wrapping key. */
export interface RekeyedKey {
  partnerId: string;
  keyVersion: number;
  blob: Uint8Array;
  binding: SignedBinding | null;
}

/** The whole switch to a new management key, applied in one write or not at all. */
export interface RekeyChange {
  /** The key that signed the request; the switch is refused unless it is still the person's key. */
  oldKeyId: string;
  /** The person record under the new key (same personId, new keyId, publicKey and succession). */
  person: PersonRecord;
  keys: RekeyedKey[];
  revokeDevices: string[];
  at: number;
  remoteAddress: string;
  request: SignedRequestRecord;
}

export interface DeviceRecord {
  label: string;
  addedAt: number;
  lastUsedAt: number | null;
  /** The management key ID of the device's last request. */
  lastKeyId: string | null;
  via: 'init' | 'import' | 'recovery';
  revokedAt: number | null;
}

/** One page of a person's keys (GET /v1/keys?after=...&limit=...). */
export interface KeyPage {
  after?: string;
  limit: number;
}

/** What a backend reports as it works, for metrics (all optional, never IDs). */
export interface StorageEvents {
  /** One durable write made of `callers` coalesced commits. */
  commitBatch?(callers: number): void;
  /** A notice was recorded. */
  notice?(kind: NoticeKind): void;
}

/** What a store knows of its own health: /v1/health reports it, and a damaged store serves nothing. */
export type StorageState =
  | { ok: true }
  | { ok: false; problem: 'damaged' | 'write_failing'; message: string };

export interface IntegrityFinding {
  where: string;
  problem: string;
  personId?: string;
}

export interface IntegrityReport {
  findings: IntegrityFinding[];
  records: number;
}

export interface Storage {
  close(): Promise<void>;
  /** Optional so that a backend without self-checks still type-checks; absent means ok. */
  state?(): StorageState;
  /** The snapshot this database was last restored from (kmgrd restore), if it was: kmgrd says so at every start. */
  restoredFrom(): { snapshotId: string; takenAt: string; sourceId: string } | undefined;
  /** kmgrd backup: the database's identity, and every record from one consistent snapshot (src/store/backup-format.ts). */
  identity(): { id: string; store: string };
  exportRecords(): AsyncIterable<BackupRecord>;
  /** kmgrd restore: a backup's records into a new, empty database; returns how many. */
  importRecords(records: AsyncIterable<BackupRecord>): Promise<number>;
  /** kmgrd check-db: reads every record, reports each inconsistency (none: clean). */
  checkIntegrity(): Promise<IntegrityReport>;
  /**
   * Throws (or rejects with) auth_replay if the nonce was seen; otherwise holds it until it expires.
   * A backend may answer asynchronously (a look-up on disk for nonces claimed before it started).
   */
  claimNonce(claim: NonceClaim): void | Promise<void>;
  /** Resolves if storage is open and takes a durable write now; throws UnavailableError saying why not (GET /readyz). */
  ready(): Promise<void>;
  /** Entries in each bounded in-memory cache, by name, for metrics (backends without caches omit it). */
  cacheSizes?(): Record<string, number>;
  /** Makes a claimed nonce durable on its own (for requests that change nothing else). */
  persistNonce(claim: NonceClaim): Promise<void>;
  personByKeyId(keyId: string): Promise<PersonRecord | undefined>;
  personByPersonId(personId: string): Promise<PersonRecord | undefined>;
  /** Throws person_exists if the management key is already enrolled. */
  enrol(person: PersonRecord, nonce: NonceClaim): Promise<void>;
  /**
   * Throws key_exists if the partner already has a key. A retired key's place may be taken by a
   * higher version (version_conflict otherwise); its history continues under the new key.
   */
  registerKey(record: KeyRecord, blob: Uint8Array, nonce: NonceClaim): Promise<void>;
  /**
   * Retires the key (kmgr retire): destroys its sealed blob, keeps the record (retiredAt set) and its
   * history with a 'retired' entry, in one durable write. Fetch, terms and rotate then say unknown_key.
   */
  retireKey(personId: string, partnerId: string, attempt: UseAttempt): Promise<KeyRecord>;
  getKey(personId: string, partnerId: string): Promise<KeyRecord | undefined>;
  /** In partner ID order; with a page, at most `limit` records after the partner ID `after`. */
  listKeys(personId: string, page?: KeyPage): Promise<KeyRecord[]>;
  /** Checks the terms, counts, records history and the nonce durably, then returns the blob; or refuses (recorded too). */
  fetchKey(personId: string, partnerId: string, attempt: UseAttempt): Promise<FetchOutcome>;
  /** Changes terms or the permit/inhibit flag (1508). */
  updateKey(personId: string, partnerId: string, patch: KeyPatch, nonce: NonceClaim): Promise<KeyRecord>;
  /** Replaces the key with version current+1 under the same terms; history is kept. Throws version_conflict otherwise. */
  rotateKey(personId: string, partnerId: string, next: NextKey, nonce: NonceClaim): Promise<KeyRecord>;
  /** Newest first. */
  history(personId: string, partnerId: string, opts: { since?: number; before?: number; limit: number }): Promise<HistoryRecord[]>;
  /** Newest first; with `before` (a notice ID) only older ones; at most `limit` when given. */
  listNotices(personId: string, opts: { unreadOnly: boolean; before?: string; limit?: number }): Promise<Notice[]>;
  /** Marks the given notices read; returns how many changed. */
  ackNotices(personId: string, ids: string[], nonce: NonceClaim): Promise<number>;
  /**
   * Scans every key for expired and soon-expiring terms, recording each finding once as a notice.
   * With record false it only reports (isNew: would be new), for a check at a time other than now.
   */
  checkTerms(nowMs: number, warnMs: number, record?: boolean): Promise<TermsFinding[]>;
  /** Appends a verify question and its answer to the key's history (the owner sees who asked). */
  recordVerify(personId: string, partnerId: string, v: { at: number; result: string; requester: string; remoteAddress: string }): Promise<void>;

  /** The operator's shared partners (kmgrd partner add). Throws key_exists for a taken name. */
  addSharedPartner(name: string, meta: PartnerMeta, at: number): Promise<PartnerRecord>;
  listSharedPartners(): Promise<PartnerRecord[]>;
  sharedPartner(name: string): Promise<PartnerRecord | undefined>;
  /** Adds a partner to a person's list: the shared partner of that name if there is one, else a private one. */
  addPersonPartner(personId: string, name: string, meta: PartnerMeta, at: number, keepId?: string): Promise<PartnerRecord>;
  listPersonPartners(personId: string): Promise<PartnerRecord[]>;
  /** Removes a partner from a person's list (not their key). */
  removePersonPartner(personId: string, name: string): Promise<boolean>;

  getNotifySettings(personId: string): Promise<NotifySettings>;
  setNotifySettings(personId: string, s: NotifySettings, nonce: NonceClaim): Promise<void>;
  /** Deliveries due at or before `now`, oldest first. */
  dueDeliveries(now: number, limit: number): Promise<PendingDelivery[]>;
  /** Saves a delivery's progress (or removes it when finished) and logs the attempt. */
  saveDelivery(d: PendingDelivery, finished: boolean, log: DeliveryLogEntry[]): Promise<void>;
  deliveryLog(personId: string, limit: number): Promise<DeliveryLogEntry[]>;

  /** Every key of the person with its blob, for re-wrapping; records a 'rekey' entry (not a use) in each key's history. */
  rekeyExport(personId: string, attempt: UseAttempt): Promise<Array<{ record: KeyRecord; blob: Uint8Array }>>;
  /**
   * Switches the person to a new management key and replaces every blob and binding in one write.
   * Throws key_replaced if oldKeyId is no longer current, rekey_mismatch if the set of keys differs
   * from the stored one, version_conflict if a version does; nothing is changed then.
   */
  rekey(personId: string, change: RekeyChange, nonce: NonceClaim): Promise<void>;
  /** Announces a device export, accepted for one import until expiresAt. */
  addDeviceExport(personId: string, exportId: string, expiresAt: number, nonce: NonceClaim): Promise<void>;
  /** Adds a device; consumes exportId (export_used, export_expired, unknown_export otherwise). Throws device_exists for a label in use. */
  addDevice(personId: string, device: DeviceRecord, exportId: string | null, at: number, nonce: NonceClaim | null): Promise<DeviceRecord>;
  listDevices(personId: string): Promise<DeviceRecord[]>;
  /** Notes a request from a device (kept at minute precision) and returns its record, if the device is known. */
  touchDevice(personId: string, label: string, keyId: string, at: number): Promise<DeviceRecord | undefined>;
}

// ---- backups (src/store/backup-format.ts): the store-independent records ----

/** A restore this database went through, carried from backup to backup. */
export interface RestoreRecord {
  snapshotId: string;
  takenAt: string;
  restoredAt: string;
  sourceId: string;
}

export type BackupRecord =
  | { t: 'person'; person: PersonRecord }
  /** With its current counters. */
  | { t: 'key'; key: KeyRecord }
  | { t: 'blob'; personId: string; partnerId: string; keyVersion: number; blob: string /* base64 */ }
  | { t: 'history'; personId: string; partnerId: string; entry: HistoryRecord }
  | { t: 'notice'; notice: Notice }
  /** A fact already recorded as a notice (so it is not noticed twice). */
  | { t: 'notice-mark'; personId: string; partnerId: string; dedupe: string; noticeId: string }
  | { t: 'partner'; partner: PartnerRecord }
  | { t: 'shared-name'; name: string; partnerId: string }
  | { t: 'person-partner'; personId: string; name: string; partnerId: string }
  | { t: 'notify'; personId: string; settings: NotifySettings }
  | { t: 'pending'; delivery: PendingDelivery }
  | { t: 'delivery-log'; personId: string; entry: DeliveryLogEntry }
  /** Unexpired nonces: a request signed before the snapshot must not be replayable after the restore. */
  | { t: 'nonce'; claim: NonceClaim }
  | { t: 'restored'; restore: RestoreRecord }
  | { t: 'device'; personId: string; device: DeviceRecord }
  | { t: 'device-export'; personId: string; exportId: string; expiresAt: number; usedAt: number | null }
  /** A record this format version has no type for, kept verbatim so nothing is silently left out. */
  | { t: 'extra'; key: string; value: string };
