// The LevelDB backend's side of backup and restore: its keys mapped to the
// store-independent records of backup-format.ts and back. Export reads one
// LevelDB snapshot, so a backup taken while kmgrd serves is consistent: each
// use is in it with its count and its history, or not at all.
import type { Level } from 'level';
import { randomBytes } from 'node:crypto';
import type { BackupRecord } from './backup-format.js';
import type { Op } from './group-commit.js';
import * as K from './keys.js';
import { recordOps } from './level-records.js';
import { checkBytes, checkText, StorageDamagedError, type CheckedEncodings } from './record-codec.js';
import { termInstants } from '../terms/notices.js';
import type { KeyRecord, PendingDelivery } from './types.js';

const RESTORED_PREFIX = 'meta!restored!';

export async function* exportLevel(db: Level<string, string>, enc: CheckedEncodings): AsyncGenerator<BackupRecord> {
  const snapshot = db.snapshot();
  try {
    for await (const [k, raw] of db.iterator<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view', snapshot })) {
      const p = k.split('!');
      const kind = p[0]!;
      if (kind === 'blob') {
        const blob = checkBytes(raw);
        if (!blob) throw new StorageDamagedError(`record ${k} fails its checksum; no backup was written (run kmgrd check-db)`);
        yield { t: 'blob', personId: p[1]!, partnerId: p[2]!, keyVersion: Number(p[3]), blob: Buffer.from(blob).toString('base64') };
        continue;
      }
      const text = checkText(Buffer.from(raw.buffer, raw.byteOffset, raw.length).toString('utf8'));
      if (text === undefined) throw new StorageDamagedError(`record ${k} fails its checksum; no backup was written (run kmgrd check-db)`);
      const json = (): never => JSON.parse(text) as never;
      switch (kind) {
        case 'ctr': // merged into its key record below
        case 'mk': // derived from the person record
        case 'exp': // the check-terms index: rebuilt from each key record on import
        case 'probe': // scratch writes of the readiness probe
          continue;
        case 'dev':
          yield { t: 'device', personId: p[1]!, device: json() };
          continue;
        case 'devexp': {
          const e = json() as { expiresAt: number; usedAt: number | null };
          yield { t: 'device-export', personId: p[1]!, exportId: p.slice(2).join('!'), expiresAt: e.expiresAt, usedAt: e.usedAt };
          continue;
        }
        case 'meta':
          if (k.startsWith(RESTORED_PREFIX)) yield { t: 'restored', restore: json() };
          continue; // meta!id is the database's own identity, not carried over
        case 'key': {
          const rec = json() as KeyRecord;
          const ctr = await db.get(K.countersKey(p[1]!, p[2]!), { snapshot, valueEncoding: enc.text as never });
          yield { t: 'key', key: ctr === undefined ? rec : { ...rec, ...(JSON.parse(ctr) as object) } };
          continue;
        }
        case 'person':
          yield { t: 'person', person: json() };
          continue;
        case 'hist':
          yield { t: 'history', personId: p[1]!, partnerId: p[2]!, entry: json() };
          continue;
        case 'notice':
          yield { t: 'notice', notice: json() };
          continue;
        case 'noticekey':
          yield { t: 'notice-mark', personId: p[1]!, partnerId: p[2]!, dedupe: p.slice(3).join('!'), noticeId: text };
          continue;
        case 'partner':
          yield { t: 'partner', partner: json() };
          continue;
        case 'pname':
          yield { t: 'shared-name', name: p.slice(1).join('!'), partnerId: text };
          continue;
        case 'ppartner':
          yield { t: 'person-partner', personId: p[1]!, name: p.slice(2).join('!'), partnerId: text };
          continue;
        case 'notify':
          yield { t: 'notify', personId: p[1]!, settings: json() };
          continue;
        case 'pending':
          yield { t: 'pending', delivery: json() };
          continue;
        case 'dlog':
          yield { t: 'delivery-log', personId: p[1]!, entry: json() };
          continue;
        case 'nonce':
          yield { t: 'nonce', claim: { expiresAt: Number(p[1]), keyId: p[2]!, nonce: p.slice(3).join('!') } };
          continue;
        default:
          yield { t: 'extra', key: k, value: text };
      }
    }
  } finally {
    await snapshot.close();
  }
}

/** The LevelDB writes for one record (text values; the storage's encodings add the checksums). */
export function importOps(r: BackupRecord): Op[] {
  switch (r.t) {
    case 'person':
      return [
        { type: 'put', key: K.personKey(r.person.personId), value: JSON.stringify(r.person) },
        { type: 'put', key: K.mgmtKey(r.person.keyId), value: r.person.personId },
        // The key a rekey replaced keeps naming the person, so its requests are told "replaced" after a restore too.
        ...(r.person.succession ? [{ type: 'put' as const, key: K.mgmtKey(r.person.succession.statement.oldKeyId), value: r.person.personId }] : []),
      ];
    case 'key':
      return [
        ...recordOps(K.keyRecordKey(r.key.personId, r.key.partnerId), r.key),
        // The check-terms index, made from the record itself (a retired key has no term left).
        ...(r.key.retiredAt ? [] : termInstants(r.key.keyVersion, r.key)).map((at): Op => ({ type: 'put', key: K.expiryKey(at, r.key.personId, r.key.partnerId), value: '' })),
      ];
    case 'blob':
      return [{ type: 'put', key: K.blobKey(r.personId, r.partnerId, r.keyVersion), value: new Uint8Array(Buffer.from(r.blob, 'base64')), valueEncoding: 'view' }];
    case 'history':
      return [{ type: 'put', key: K.historyKey(r.personId, r.partnerId, r.entry.seq), value: JSON.stringify(r.entry) }];
    case 'notice':
      return [{ type: 'put', key: K.noticeKey(r.notice.personId, r.notice.id), value: JSON.stringify(r.notice) }];
    case 'notice-mark':
      return [{ type: 'put', key: K.noticeDedupeKey(r.personId, r.partnerId, r.dedupe), value: r.noticeId }];
    case 'partner':
      return [{ type: 'put', key: K.partnerKey(r.partner.partnerId), value: JSON.stringify(r.partner) }];
    case 'shared-name':
      return [{ type: 'put', key: K.sharedNameKey(r.name), value: r.partnerId }];
    case 'person-partner':
      return [{ type: 'put', key: K.personPartnerKey(r.personId, r.name), value: r.partnerId }];
    case 'notify':
      return [{ type: 'put', key: K.notifyKey(r.personId), value: JSON.stringify(r.settings) }];
    case 'pending': {
      // The key is this backend's own: made afresh, whatever store the backup came from.
      const d: PendingDelivery = { ...r.delivery, key: K.pendingKey(r.delivery.notice.id, r.delivery.personId) };
      return [{ type: 'put', key: d.key, value: JSON.stringify(d) }];
    }
    case 'delivery-log':
      return [{ type: 'put', key: K.deliveryLogKey(r.personId, r.entry.at, randomBytes(4).toString('hex')), value: JSON.stringify(r.entry) }];
    case 'nonce':
      return [{ type: 'put', key: K.nonceKey(r.claim.expiresAt, r.claim.keyId, r.claim.nonce), value: '' }];
    case 'restored':
      return [{ type: 'put', key: RESTORED_PREFIX + r.restore.restoredAt, value: JSON.stringify(r.restore) }];
    case 'device':
      return [{ type: 'put', key: K.deviceKey(r.personId, r.device.label), value: JSON.stringify(r.device) }];
    case 'device-export':
      return [{ type: 'put', key: K.deviceExportKey(r.personId, r.exportId), value: JSON.stringify({ expiresAt: r.expiresAt, usedAt: r.usedAt }) }];
    case 'extra':
      return [{ type: 'put', key: r.key, value: r.value }];
  }
}

/** Writes the records in batches of ~1000 ops, each durable before the next is read. */
export async function importLevel(records: AsyncIterable<BackupRecord>, write: (ops: Op[]) => Promise<void>): Promise<number> {
  let ops: Op[] = [];
  let n = 0;
  for await (const r of records) {
    ops.push(...importOps(r));
    n++;
    if (ops.length >= 1000) {
      await write(ops);
      ops = [];
    }
  }
  if (ops.length > 0) await write(ops);
  return n;
}
