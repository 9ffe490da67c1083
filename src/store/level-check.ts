// kmgrd check-db for the LevelDB backend: every value's checksum, and the
// facts that must agree across records (threat: a damaged log or table that
// LevelDB skipped, leaving a counter lower than the uses it served).
// One pass in key order over one snapshot, so a running daemon's writes
// cannot make a consistent database look inconsistent. Memory: a few numbers
// per key, never the history itself.
import type { Level } from 'level';
import { checkBytes, checkText } from './record-codec.js';
import type { HistoryRecord, KeyRecord } from './types.js';

export interface DbFinding {
  /** What the finding is about: a file of db/, a person's key, or a stored record. */
  where: string;
  problem: string;
  /** The owner whose records are affected, when known. */
  personId?: string;
}

interface KeyFacts {
  lastSeq: number;
  gaps: number;
  served: Map<number, number>;
  counters?: Pick<KeyRecord, 'uses' | 'historySeq'>;
  record?: KeyRecord;
}

export async function checkLevelRecords(db: Level<string, string>): Promise<{ findings: DbFinding[]; records: number }> {
  const findings: DbFinding[] = [];
  const persons = new Set<string>();
  const blobs = new Set<string>();
  const keys = new Map<string, KeyFacts>();
  const facts = (id: string): KeyFacts => {
    let f = keys.get(id);
    if (!f) keys.set(id, (f = { lastSeq: 0, gaps: 0, served: new Map() }));
    return f;
  };
  let records = 0;
  for await (const [k, raw] of db.iterator<string, Uint8Array>({ keyEncoding: 'utf8', valueEncoding: 'view' })) {
    records++;
    const parts = k.split('!');
    const kind = parts[0]!;
    const personId = ['person', 'key', 'blob', 'hist', 'ctr', 'notice', 'noticekey', 'ppartner', 'notify', 'dlog'].includes(kind) ? parts[1] : undefined;
    const bad = (problem: string): void => void findings.push({ where: `record ${k}`, problem, ...(personId ? { personId } : {}) });
    if (kind === 'blob') {
      if (!checkBytes(raw)) bad('fails its checksum');
      else blobs.add(parts.slice(1, 4).join('!'));
      continue;
    }
    const text = checkText(Buffer.from(raw.buffer, raw.byteOffset, raw.length).toString('utf8'));
    if (text === undefined) {
      bad('fails its checksum');
      continue;
    }
    try {
      if (kind === 'person') persons.add(parts[1]!);
      else if (kind === 'hist') {
        const f = facts(`${parts[1]}!${parts[2]}`);
        const h = JSON.parse(text) as HistoryRecord;
        if (h.seq !== f.lastSeq + 1) {
          f.gaps++;
          findings.push({ where: `key ${parts[1]}/${parts[2]}`, problem: `its history jumps from entry ${f.lastSeq} to ${h.seq} (entries missing)`, personId: parts[1]! });
        }
        f.lastSeq = h.seq;
        if (h.result === 'served' || h.result === 'served_over_limit') f.served.set(h.keyVersion, (f.served.get(h.keyVersion) ?? 0) + 1);
      } else if (kind === 'ctr') facts(`${parts[1]}!${parts[2]}`).counters = JSON.parse(text) as KeyFacts['counters'];
      else if (kind === 'key') facts(`${parts[1]}!${parts[2]}`).record = JSON.parse(text) as KeyRecord;
      else if (text.startsWith('{')) JSON.parse(text);
    } catch {
      bad('passes its checksum but is not readable JSON');
    }
  }
  for (const [id, f] of keys) {
    const [personId, partnerId] = id.split('!') as [string, string];
    const where = `key ${personId}/${partnerId}`;
    const add = (problem: string): void => void findings.push({ where, problem, personId });
    if (!f.record) {
      add('has history or counters but no key record');
      continue;
    }
    if (!persons.has(personId)) add('belongs to a person with no person record');
    if (!blobs.has(`${personId}!${partnerId}!${String(f.record.keyVersion).padStart(10, '0')}`)) add(`has no sealed blob for its version ${f.record.keyVersion}`);
    const c = f.counters ?? f.record;
    if (c.historySeq !== f.lastSeq) add(`its counters say ${c.historySeq} history entries, the history has ${f.lastSeq}`);
    const served = f.served.get(f.record.keyVersion) ?? 0;
    if (c.uses.total !== served) add(`its counter says ${c.uses.total} uses of version ${f.record.keyVersion}, its history records ${served}`);
  }
  return { findings, records };
}
