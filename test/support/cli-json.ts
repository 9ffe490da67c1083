// What kmgr prints with --json, as the tests read it. src/cli builds these objects
// inline (Record<string, unknown>), so their shapes are written down here, each
// beside the code that prints it; the tests' assertions check the values.
import type { DeviceView, HistoryEntry, KeyStatus, NoticeView, VerifyResult } from '../../src/protocol/messages.js';
import type { AuditLine, ServedUse } from '../../src/client/audit.js';

/** kmgr status, register and terms (statusJson in src/cli/commands/status.ts). */
export interface StatusJson {
  partner: string;
  partnerId: string;
  keyId: string;
  type: KeyStatus['alg'];
  keyVersion: number;
  registeredAt: string;
  uses: KeyStatus['uses'];
  limits: KeyStatus['limits'];
  onLimit: KeyStatus['onLimit'];
  expiresAt: string | null;
  inhibited: boolean;
  lastUsedAt: string | null;
  publicKey: string | null;
  retiredAt: string | null;
  ssh: boolean;
  certificate: KeyStatus['certificate'] | null;
}

/** One entry of kmgr history (src/cli/commands/history.ts). */
export type HistoryJsonEntry = Pick<HistoryEntry, 'seq' | 'at' | 'result' | 'code' | 'overLimit' | 'keyVersion' | 'remoteAddress' | 'requester'> & { device: string | null };
export interface HistoryJson {
  partner: string;
  history: HistoryJsonEntry[];
}

/** kmgr notices (src/cli/commands/notices.ts): the server's notices with the owner's partner names. */
export interface NoticesJson {
  notices: Array<NoticeView & { partner: string | null }>;
  acknowledged: number;
}

/** kmgr partner add, show, and each of partner list (partnerView in src/cli/commands/partner.ts). */
export interface PartnerJson {
  name: string;
  partnerId: string;
  displayName?: string;
  appServer?: string;
  business?: string;
  key: { keyId: string; type: KeyStatus['alg']; version: number; registeredAt: string } | null;
}
export interface PartnerListJson {
  partners: PartnerJson[];
}

/** kmgr partner push. */
export interface PartnerPushJson {
  moved: number;
  total: number;
}

/** kmgr device list (src/cli/commands/device.ts). */
export interface DeviceListJson {
  devices: Array<DeviceView & { thisDevice: boolean }>;
}

/** kmgr whoami. */
export interface WhoamiJson {
  personId: string;
  server: string;
  keyId: string;
  fingerprint: string;
  home: string;
}

/** kmgr verify (src/cli/commands/verify.ts). */
export interface VerifyJson {
  verified: boolean;
  result: VerifyResult;
  reason: string | null;
  keyVersion: number | null;
  ownerChecked: boolean;
  partnerId: string;
  ownerReplacedBy: string | null;
}

/** kmgr audit (src/cli/commands/audit.ts): per partner, the uses the server has and what the audit found. */
export interface AuditJson {
  clean: boolean;
  partners: Array<{
    partner: string;
    uses: number;
    ours: number;
    otherDevices: number;
    fromOtherDevices: AuditLine[];
    unfinished: number;
    counted: number;
    findings: AuditLine[];
    countMismatch: boolean;
    missing: Array<ServedUse & { why: string }>;
  }>;
}

/** The error a --json command writes to stderr (src/cli/errors.ts). */
export interface ErrorJson {
  code: string;
  message: string;
}

/** kmgr register and status for a key pair (every key type but aes256): the public half is there. */
export type KeyPairStatusJson = StatusJson & { publicKey: string };
