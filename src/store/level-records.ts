// How the LevelDB backend writes a key record: shared by the storage and by restore.
import type { Op } from './group-commit.js';
import * as K from './keys.js';
import type { KeyRecord } from './types.js';

/**
 * The part of a key record that every use changes, stored under its own key so
 * that a fetch writes ~150 bytes rather than the whole record with its binding
 * statement (the benchmark showed JSON and batch encoding on every fetch).
 */
export type Counters = Pick<KeyRecord, 'uses' | 'lastUsedAt' | 'historySeq'>;
const countersJson = (r: KeyRecord): string => JSON.stringify({ uses: r.uses, lastUsedAt: r.lastUsedAt, historySeq: r.historySeq });
export const countersOp = (r: KeyRecord): Op => ({ type: 'put', key: K.countersKey(r.personId, r.partnerId), value: countersJson(r) });
export const recordOps = (k: string, r: KeyRecord): Op[] => [{ type: 'put', key: k, value: JSON.stringify(r) }, countersOp(r)];
