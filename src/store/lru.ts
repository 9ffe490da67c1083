// A bounded cache that evicts the least recently used entry. Entries a caller
// says are pinned (an operation holds them until its write is durable) are
// never evicted: the cache may then run over its bound until they are released.
// Why pinning: LevelStorage changes a key's record in memory and then awaits
// the disk; evicting it in between and reloading it from disk would bring back
// the counts from before the change (a lost use, threat 9).
/** Entries a cache holds by default (kmgrd serve --cache-keys): a key record is about 2.5 KB. */
export const DEFAULT_CACHE_ENTRIES = 50_000;

export class BoundedCache<K, V> {
  private readonly map = new Map<K, V>();

  constructor(
    readonly capacity: number,
    private readonly pinned: (v: V) => boolean = () => false,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('a cache holds at least one entry');
  }

  get size(): number {
    return this.map.size;
  }

  /** The entry, now the most recently used. */
  get(k: K): V | undefined {
    const v = this.map.get(k);
    if (v !== undefined) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }

  /** The entry, without counting as a use (scans must not flush the cache's working set). */
  peek(k: K): V | undefined {
    return this.map.get(k);
  }

  /** Every entry, without counting as a use (a rekey looks for a person's registrations in flight). */
  entries(): IterableIterator<[K, V]> {
    return this.map.entries();
  }

  has(k: K): boolean {
    return this.map.has(k);
  }

  /** Adds or replaces an entry; it is never the one evicted to make room for itself. */
  set(k: K, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
    this.trim(k);
  }

  delete(k: K): void {
    this.map.delete(k);
  }

  /** Drops every entry, pinned or not (the store is starting over from disk). */
  clear(): void {
    this.map.clear();
  }

  /** Evicts least recently used, unpinned entries until the cache is within its bound. */
  trim(keep?: K): void {
    if (this.map.size <= this.capacity) return;
    for (const [k, v] of this.map) {
      if (this.map.size <= this.capacity) return;
      if (k !== keep && !this.pinned(v)) this.map.delete(k);
    }
  }
}
