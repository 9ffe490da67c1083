// Reads a whole LevelDB deployment (key layout: keys.ts) as plain records, for moving it to another
// backend (kmgrd migrate). Read only; LevelDB's lock means no daemon may be
// running on it meanwhile, so the copy is of one consistent moment.
import { Level } from 'level';
import { existsSync } from 'node:fs';
import { ConfigError, UnavailableError } from '../protocol/errors.js';
import { checkBytes, checkText, StorageDamagedError } from './record-codec.js';
import type { DeliveryLogEntry, HistoryRecord, KeyRecord, Notice, NotifySettings, PartnerRecord, PendingDelivery, PersonRecord } from './types.js';

export interface KeyDump {
  record: KeyRecord;
  blob: Uint8Array;
  history: HistoryRecord[];
  /** The facts already noticed for this key (so none is noticed twice after the move). */
  dedupe: Array<{ dedupe: string; noticeId: string }>;
}

export interface StoreDump {
  persons: PersonRecord[];
  keys: KeyDump[];
  nonces: Array<{ keyId: string; nonce: string; expiresAt: number }>;
  notices: Notice[];
  partners: PartnerRecord[];
  sharedNames: Array<{ name: string; partnerId: string }>;
  personPartners: Array<{ personId: string; name: string; partnerId: string }>;
  notify: Array<{ personId: string; settings: NotifySettings }>;
  pending: PendingDelivery[];
  deliveryLog: Array<{ personId: string; entry: DeliveryLogEntry }>;
}

const split = (k: string, n: number): string[] => {
  const parts = k.split('!');
  return [...parts.slice(0, n), parts.slice(n).join('!')];
};

export async function dumpLevel(dir: string): Promise<StoreDump> {
  if (!existsSync(dir)) throw new ConfigError(`there is no kmgrd database at ${dir} (check --data)`);
  const db = new Level<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8', createIfMissing: false });
  try {
    await db.open();
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause;
    if (cause?.code === 'LEVEL_LOCKED') throw new UnavailableError(`the database at ${dir} is in use (stop kmgrd before migrating)`);
    throw new UnavailableError(`cannot open the database at ${dir}: ${(e as Error).message}`);
  }
  try {
    const out: StoreDump = { persons: [], keys: [], nonces: [], notices: [], partners: [], sharedNames: [], personPartners: [], notify: [], pending: [], deliveryLog: [] };
    const keys = new Map<string, KeyDump>();
    const counters = new Map<string, Pick<KeyRecord, 'uses' | 'lastUsedAt' | 'historySeq'>>();
    const blobs = new Map<string, Uint8Array>();
    const hist = new Map<string, HistoryRecord[]>();
    const dedupe = new Map<string, KeyDump['dedupe']>();
    const push = <T>(m: Map<string, T[]>, k: string, v: T): void => void (m.get(k) ?? m.set(k, []).get(k)!).push(v);
    // Every value carries its checksum (record-codec.ts): a damaged record stops the move.
    const damaged = (k: string): never => {
      throw new StorageDamagedError(`the record ${k.slice(0, k.indexOf('!'))} at ${dir} failed its checksum; run kmgrd check-db, nothing was copied`);
    };
    for await (const [k, raw] of db.iterator()) {
      const kind = k.slice(0, k.indexOf('!'));
      if (kind === 'blob' || kind === 'meta') continue;
      const v = checkText(raw) ?? damaged(k);
      if (kind === 'person') out.persons.push(JSON.parse(v) as PersonRecord);
      else if (kind === 'key') keys.set(k.slice(4), { record: JSON.parse(v) as KeyRecord, blob: new Uint8Array(0), history: [], dedupe: [] });
      else if (kind === 'ctr') counters.set(k.slice(4), JSON.parse(v) as Pick<KeyRecord, 'uses' | 'lastUsedAt' | 'historySeq'>);
      else if (kind === 'hist') {
        const [, p, partner] = split(k, 3);
        push(hist, `${p}!${partner}`, JSON.parse(v) as HistoryRecord);
      } else if (kind === 'nonce') {
        const [, exp, keyId, nonce] = split(k, 3);
        out.nonces.push({ keyId: keyId!, nonce: nonce!, expiresAt: Number(exp) });
      } else if (kind === 'notice') out.notices.push(JSON.parse(v) as Notice);
      else if (kind === 'noticekey') {
        const [, p, partner, d] = split(k, 3);
        push(dedupe, `${p}!${partner}`, { dedupe: d!, noticeId: v });
      } else if (kind === 'partner') out.partners.push(JSON.parse(v) as PartnerRecord);
      else if (kind === 'pname') out.sharedNames.push({ name: k.slice(6), partnerId: v });
      else if (kind === 'ppartner') {
        const [, p, name] = split(k, 2);
        out.personPartners.push({ personId: p!, name: name!, partnerId: v });
      } else if (kind === 'notify') out.notify.push({ personId: k.slice(7), settings: JSON.parse(v) as NotifySettings });
      else if (kind === 'pending') out.pending.push(JSON.parse(v) as PendingDelivery);
      else if (kind === 'dlog') out.deliveryLog.push({ personId: split(k, 2)[1]!, entry: JSON.parse(v) as DeliveryLogEntry });
    }
    for await (const [k, raw] of db.iterator<string, Uint8Array>({ gt: 'blob!', lt: 'blob!~', valueEncoding: 'view' })) {
      const [, p, partner, ver] = split(k, 3);
      blobs.set(`${p}!${partner}!${Number(ver)}`, checkBytes(raw) ?? damaged(k));
    }
    for (const [pk, d] of keys) {
      Object.assign(d.record, counters.get(pk) ?? {});
      const blob = blobs.get(`${pk}!${d.record.keyVersion}`);
      if (!blob) throw new UnavailableError(`the database is inconsistent: the blob of ${d.record.partnerId} is missing`);
      d.blob = blob;
      d.history = (hist.get(pk) ?? []).sort((a, b) => a.seq - b.seq);
      d.dedupe = dedupe.get(pk) ?? [];
      out.keys.push(d);
    }
    return out;
  } finally {
    await db.close();
  }
}
