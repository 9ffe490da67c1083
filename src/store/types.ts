// The storage interface the server's handlers see. Each operation is a whole
// step ("record a use and return the blob, or refuse"), so that a second
// backend can be written without touching the handlers. Times are epoch ms.
import type { KeyTerms, LimitName, RefusalCode, Uses } from '../terms/judge.js';

/** Fig. 17: the management key index. */
export interface PersonRecord {
  personId: string;
  keyId: string; // management key ID (1701)
  alg: 'ed25519';
  publicKey: string; // base64url raw Ed25519 (1703)
  createdAt: number;
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
}

/** The signed request behind a use, kept so an owner can audit it later. */
export interface SignedRequestRecord {
  method: string;
  authority: string;
  path: string;
  contentDigest: string;
  signatureInput: string;
  signature: string;
}

export interface HistoryRecord {
  seq: number;
  at: number;
  keyVersion: number;
  result: 'served' | 'served_over_limit' | 'refused';
  code?: RefusalCode;
  overLimit?: LimitName[];
  remoteAddress: string;
  request: SignedRequestRecord;
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

export interface Storage {
  close(): Promise<void>;
  /** Throws auth_replay if the nonce was seen; otherwise holds it until it expires. */
  claimNonce(claim: NonceClaim): void;
  /** Makes a claimed nonce durable on its own (for requests that change nothing else). */
  persistNonce(claim: NonceClaim): Promise<void>;
  personByKeyId(keyId: string): Promise<PersonRecord | undefined>;
  /** Throws person_exists if the management key is already enrolled. */
  enrol(person: PersonRecord, nonce: NonceClaim): Promise<void>;
  /** Throws key_exists if the partner already has a key. */
  registerKey(record: KeyRecord, blob: Uint8Array, nonce: NonceClaim): Promise<void>;
  getKey(personId: string, partnerId: string): Promise<KeyRecord | undefined>;
  listKeys(personId: string): Promise<KeyRecord[]>;
  /** Checks the terms, counts, records history and the nonce durably, then returns the blob; or refuses (recorded too). */
  fetchKey(personId: string, partnerId: string, attempt: UseAttempt): Promise<FetchOutcome>;
}
