// Wire messages of the /v1 API, one schema each. See openapi.yaml.
import { array, bool, int, nullable, obj, oneOf, optional, str, SchemaError, type Infer, type Schema } from './schema.js';
import { PARTNER_NAME } from './names.js';

/** Largest request body the server reads (threat 14). */
export const MAX_BODY_BYTES = 64 * 1024;
export const KEY_TYPES = ['ed25519', 'p256', 'secp256k1', 'x25519', 'aes256'] as const;
export const LIMIT_POLICIES = ['deny', 'notify'] as const;
export const MAX_COUNT = 1_000_000_000;

export const B64URL_32 = /^[A-Za-z0-9_-]{43}$/;
export const PERSON_ID = /^p_[A-Za-z0-9_-]{22}$/;
export const MGMT_KEY_ID = /^mk_[A-Za-z0-9_-]{22}$/;
export const KEY_ID = /^k_[A-Za-z0-9_-]{22}$/;
/** Partner IDs are chosen by the client; the server only needs them to be path-safe. */
export const PARTNER_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** The partner-ID field, as every message that names a partner carries it. */
const partnerIdField = str({ max: 64, pattern: PARTNER_ID, name: 'partner ID' });
/** A plain e-mail address (no display name, comments or quoting): what notice delivery sends to. */
export const MAIL_ADDRESS = /^[^\s@<>()",;:\\[\]]+@[A-Za-z0-9.-]+$/;
const B64 = /^[A-Za-z0-9+/]*={0,2}$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?Z$/;

const PEM_PUBLIC = /^-----BEGIN PUBLIC KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END PUBLIC KEY-----\r?\n?$/;
export const publicKeyPem = str({ max: 4096, pattern: PEM_PUBLIC, name: 'SPKI PEM public key' });
const isoTimeText = str({ max: 30, pattern: ISO_TIME, name: 'UTC timestamp (YYYY-MM-DDTHH:MM:SSZ)' });
/** A UTC timestamp that names a real instant: 2027-02-31 or 99:99 would parse to NaN or roll over. */
const isoTime: Schema<string> = (v, path) => {
  const text = isoTimeText(v, path);
  const ms = Date.parse(text);
  if (Number.isNaN(ms) || new Date(ms).toISOString().slice(0, 19) !== text.slice(0, 19)) throw new SchemaError(path, 'is not a real date and time');
  return text;
};
const count = int({ min: 0, max: MAX_COUNT });
const limit = nullable(int({ min: 1, max: MAX_COUNT }));

export const EnrolRequest = obj({
  alg: oneOf(['ed25519'] as const),
  publicKey: str({ max: 43, min: 43, pattern: B64URL_32, name: 'Ed25519 public key (base64url)' }),
});
export type EnrolRequest = Infer<typeof EnrolRequest>;

export const PersonInfo = obj({
  personId: str({ max: 24, pattern: PERSON_ID, name: 'person ID' }),
  keyId: str({ max: 25, pattern: MGMT_KEY_ID, name: 'management key ID' }),
  alg: oneOf(['ed25519'] as const),
  createdAt: isoTime,
});
export type PersonInfo = Infer<typeof PersonInfo>;

// Fields that several messages share, defined once.
const keyIdField = str({ max: 24, pattern: KEY_ID, name: 'key ID' });
const blobField = str({ min: 4, max: 16384, pattern: B64, name: 'base64 blob' });
const keyVersionField = int({ min: 1, max: MAX_COUNT });
/** Lazy: SignedBinding is defined further down. */
const bindingField = optional(nullable((v: unknown, p: string) => SignedBinding(v, p)));

export const Terms = obj({
  expiresAt: nullable(isoTime),
  maxUses: limit,
  maxPerDay: limit,
  maxPerWeek: limit,
  maxPerMonth: limit,
  onLimit: oneOf(LIMIT_POLICIES),
});
export type Terms = Infer<typeof Terms>;

export const RegisterRequest = obj({
  keyId: keyIdField,
  alg: oneOf(KEY_TYPES),
  keyVersion: keyVersionField,
  blob: blobField,
  terms: Terms,
  /** Third embodiment: the public half in plaintext, with the owner's signed binding statement. */
  binding: bindingField,
  /** Offered by the owner's SSH agent (kmgr agent start --ssh). */
  ssh: optional(bool),
});
export type RegisterRequest = Infer<typeof RegisterRequest>;

const counts = obj({ total: count, day: count, week: count, month: count });
const limits = obj({ total: limit, day: limit, week: limit, month: limit });

/** The Fig. 15 key index record as the owner sees it. */
export const KeyStatus = obj({
  partnerId: partnerIdField,
  keyId: str({ max: 24, pattern: KEY_ID, name: 'key ID' }),
  alg: oneOf(KEY_TYPES),
  keyVersion: int({ min: 1, max: MAX_COUNT }),
  registeredAt: isoTime,
  inhibited: bool,
  expiresAt: nullable(isoTime),
  onLimit: oneOf(LIMIT_POLICIES),
  uses: counts,
  limits,
  lastUsedAt: nullable(isoTime),
  /** The public half, when the owner registered it with a binding statement. */
  publicKey: nullable(publicKeyPem),
  /** Offered by the owner's SSH agent. */
  ssh: optional(bool),
  /** The leaf of the certificate chain kept beside the key (kmgr cert import), as the server read it. */
  certificate: optional(nullable((v, p) => CertificateInfo(v, p))),
});
export type KeyStatus = Infer<typeof KeyStatus>;

export const FetchRequest = obj({});
export type FetchRequest = Infer<typeof FetchRequest>;

export const FetchResponse = obj({
  keyId: keyIdField,
  alg: oneOf(KEY_TYPES),
  keyVersion: keyVersionField,
  blob: blobField,
  /** Served past a limit under the notify policy (Fig. 9). */
  overLimit: optional(array(str({ max: 32 }), 8)),
  status: KeyStatus,
});
export type FetchResponse = Infer<typeof FetchResponse>;

export const KeyList = obj({ keys: array(KeyStatus, 100_000) });
export type KeyList = Infer<typeof KeyList>;

export const ErrorBody = obj({
  error: obj({
    code: str({ max: 64 }),
    message: str({ max: 1000 }),
    details: optional((v) => v as Record<string, unknown>),
  }),
});

/** PATCH /v1/keys/{partnerId}: change terms or lock/unlock. Absent fields stay as they are. */
export const KeyPatchRequest = obj({
  inhibited: optional(bool),
  expiresAt: optional(nullable(isoTime)),
  maxUses: optional(limit),
  maxPerDay: optional(limit),
  maxPerWeek: optional(limit),
  maxPerMonth: optional(limit),
  onLimit: optional(oneOf(LIMIT_POLICIES)),
  /** Offer the key through the owner's SSH agent, or stop. */
  ssh: optional(bool),
  /** A fresh binding statement when the valid term changes, so verifiers see the new term. */
  binding: optional((v, p) => SignedBinding(v, p)),
});
export type KeyPatchRequest = Infer<typeof KeyPatchRequest>;

/** POST /v1/keys/{partnerId}/rotate: the next version of the partner's key, sealed by the client. */
export const RotateRequest = obj({
  keyId: keyIdField,
  alg: oneOf(KEY_TYPES),
  keyVersion: int({ min: 2, max: MAX_COUNT }),
  blob: blobField,
  binding: bindingField,
});
export type RotateRequest = Infer<typeof RotateRequest>;

export const SignedRequestView = obj({
  method: str({ max: 16 }),
  authority: str({ max: 300 }),
  path: str({ max: 2048 }),
  contentDigest: str({ max: 100 }),
  device: str({ max: 40 }),
  signatureInput: str({ max: 1000 }),
  signature: str({ max: 200 }),
});
export type SignedRequestView = Infer<typeof SignedRequestView>;

export const HistoryEntry = obj({
  seq: int({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  at: isoTime,
  keyVersion: int({ min: 1, max: MAX_COUNT }),
  result: oneOf(['served', 'served_over_limit', 'refused', 'verify'] as const),
  code: nullable(str({ max: 64 })),
  overLimit: nullable(array(str({ max: 16 }), 4)),
  remoteAddress: str({ max: 64 }),
  /** For verify entries: the application server that asked (Fig. 11). */
  requester: nullable(str({ max: 200 })),
  /** Null for verify entries, which are not signed by the owner. */
  request: nullable(SignedRequestView),
});
export type HistoryEntry = Infer<typeof HistoryEntry>;
export const HistoryList = obj({ history: array(HistoryEntry, 1_000_000) });
export type HistoryList = Infer<typeof HistoryList>;
export const HISTORY_MAX_LIMIT = 100_000;

export const NoticeView = obj({
  id: str({ max: 40 }),
  at: isoTime,
  partnerId: partnerIdField,
  keyVersion: int({ min: 1, max: MAX_COUNT }),
  kind: oneOf(['expired', 'expiring', 'limit_reached', 'limit_passed', 'refused_attempt', 'restored', 'certificate_expired', 'certificate_expiring'] as const),
  message: str({ max: 1000 }),
  read: bool,
});
export type NoticeView = Infer<typeof NoticeView>;
export const NoticeList = obj({ notices: array(NoticeView, 1_000_000) });
export type NoticeList = Infer<typeof NoticeList>;
export const AckRequest = obj({ ids: array(str({ max: 40, pattern: /^\d{15}-[0-9a-f]{8}$/, name: 'notice ID' }), 10_000) });
export type AckRequest = Infer<typeof AckRequest>;
export const AckResponse = obj({ acknowledged: int({ min: 0, max: 10_000 }) });


export const BindingStatementSchema = obj({
  personId: str({ max: 24, pattern: PERSON_ID, name: 'person ID' }),
  partnerId: partnerIdField,
  keyId: str({ max: 24, pattern: KEY_ID, name: 'key ID' }),
  alg: oneOf(KEY_TYPES),
  publicKey: publicKeyPem,
  keyVersion: int({ min: 1, max: MAX_COUNT }),
  issuedAt: isoTime,
  expiresAt: nullable(isoTime),
  locked: optional(bool),
});
export const SignedBinding = obj({
  statement: BindingStatementSchema,
  signature: str({ min: 88, max: 88, pattern: B64, name: 'base64 Ed25519 signature' }),
});
export type SignedBinding = Infer<typeof SignedBinding>;

export const VERIFY_RESULTS = ['match', 'mismatch', 'expired', 'locked', 'rotated', 'unknown'] as const;
export type VerifyResult = (typeof VERIFY_RESULTS)[number];

/** POST /v1/verify (Fig. 11): is this public key person X's current key for partner Y? */
export const VerifyRequest = obj({
  personId: str({ max: 24, pattern: PERSON_ID, name: 'person ID' }),
  partnerId: partnerIdField,
  publicKey: publicKeyPem,
  // Printable ASCII only: it is shown on the owner's terminal, and anyone may send it.
  requester: str({ min: 1, max: 200, pattern: /^[\x20-\x7e]+$/, name: 'requesting server name (printable ASCII)' }),
});
export type VerifyRequest = Infer<typeof VerifyRequest>;

export const VerifyResponse = obj({
  result: oneOf(VERIFY_RESULTS),
  keyVersion: nullable(int({ min: 1, max: MAX_COUNT })),
  /** The owner's management public key (raw Ed25519, base64url), for checking against a pinned fingerprint. */
  ownerPublicKey: nullable(str({ max: 43, min: 43, pattern: B64URL_32, name: 'Ed25519 public key' })),
  binding: nullable(SignedBinding),
});
export type VerifyResponse = Infer<typeof VerifyResponse>;

export { PARTNER_NAME };
const text200 = nullable(str({ max: 200 }));

/** A partner as the server keeps it (Fig. 16), in a person's list or the operator's directory. */
export const PartnerView = obj({
  partnerId: partnerIdField,
  name: str({ max: 64, pattern: PARTNER_NAME, name: 'partner name' }),
  displayName: text200,
  appServer: text200,
  business: text200,
  /** True for partners the operator registered for the whole deployment. */
  shared: bool,
});
export type PartnerView = Infer<typeof PartnerView>;
export const PartnerList = obj({ partners: array(PartnerView, 100_000) });

export const AddPartnerRequest = obj({
  name: str({ max: 64, pattern: PARTNER_NAME, name: 'partner name' }),
  displayName: optional(text200),
  appServer: optional(text200),
  business: optional(text200),
  /** Only for `kmgr partner push`: keep the ID a local index already used. */
  partnerId: optional(partnerIdField),
});
export type AddPartnerRequest = Infer<typeof AddPartnerRequest>;

/** PUT /v1/notify: where notices go beyond the notice list; absent fields stay, null removes. The secret is the owner's, for checking webhook signatures. */
export const NotifySettingsRequest = obj({
  webhook: optional(nullable(
    obj({
      url: str({ max: 2048, pattern: /^https?:\/\/[^\s]+$/, name: 'http(s) URL' }),
      secret: str({ min: 44, max: 44, pattern: B64, name: 'base64 32-byte secret' }),
    }),
  )),
  email: optional(nullable(str({ max: 254, pattern: MAIL_ADDRESS, name: 'e-mail address' }))),
});
export type NotifySettingsRequest = Infer<typeof NotifySettingsRequest>;

export const DeliveryView = obj({
  at: isoTime,
  noticeId: str({ max: 40 }),
  channel: oneOf(['webhook', 'email'] as const),
  ok: bool,
  attempt: int({ min: 1, max: 1000 }),
  error: nullable(str({ max: 400 })),
});
export const NotifyView = obj({
  webhook: nullable(obj({ url: str({ max: 2048 }) })),
  email: nullable(str({ max: 254 })),
  /** The latest delivery attempts, newest first. */
  deliveries: array(DeliveryView, 100),
});
export type NotifyView = Infer<typeof NotifyView>;

// ---------- certificates beside a key (public data: never in the sealed blob) ----------
const PEM_CERTIFICATE = /^-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----\r?\n?$/;
export const certificatePem = str({ max: 12_000, pattern: PEM_CERTIFICATE, name: 'PEM certificate' });

/** A certificate as the server summarises it in a key's status. */
export const CertificateInfo = obj({
  subject: str({ max: 2000 }),
  issuer: str({ max: 2000 }),
  serial: str({ max: 100 }),
  notBefore: isoTime,
  notAfter: isoTime,
  fingerprint: str({ max: 100 }),
});
export type CertificateInfo = Infer<typeof CertificateInfo>;

/** PUT /v1/keys/{partnerId}/certificates: the chain for this key version, leaf first; an empty list removes it. */
export const CertificatesRequest = obj({
  keyVersion: keyVersionField,
  certificates: array(certificatePem, 8),
});
export type CertificatesRequest = Infer<typeof CertificatesRequest>;

/** GET /v1/keys/{partnerId}/certificates */
export const CertificatesView = obj({
  keyVersion: keyVersionField,
  certificates: array(certificatePem, 8),
});
export type CertificatesView = Infer<typeof CertificatesView>;
