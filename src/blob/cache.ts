/**
 * `ChunkCache`: a least-recently-used cache of verified chunks, bounded in bytes, for the
 * gateway's hot chunks (a burst of GETs for one object costs one fetch per chunk).
 *
 * Invariants: the accounted size (each entry's bytes plus a fixed per-entry overhead, so that
 * empty chunks cannot grow the map without bound) never exceeds `bytesMax` after a call returns;
 * an entry larger than the whole budget is not cached. Content-addressed entries never go stale:
 * a hash's bytes never change, so there is no invalidation, only eviction.
 */
import { assert } from "../base/index.js";

/** What an entry costs beyond its bytes (key, map slot, buffer header). */
export const CACHE_ENTRY_OVERHEAD_BYTES = 128;

export class ChunkCache {
  private readonly entries = new Map<string, Uint8Array>();
  private bytesNow = 0;
  private evictionsCount = 0;

  constructor(readonly bytesMax: number) {
    assert(Number.isInteger(bytesMax) && bytesMax >= 0, "cache bytesMax must be an integer >= 0");
  }

  /** The entry (marked most recently used), or undefined. */
  get(key: string): Uint8Array | undefined {
    const v = this.entries.get(key);
    if (v === undefined) return undefined;
    this.entries.delete(key);
    this.entries.set(key, v);
    return v;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Caches `value` (not copied: callers must not mutate it). False if it cannot fit at all. */
  set(key: string, value: Uint8Array): boolean {
    const cost = value.byteLength + CACHE_ENTRY_OVERHEAD_BYTES;
    if (cost > this.bytesMax) return false;
    this.delete(key);
    this.entries.set(key, value);
    this.bytesNow += cost;
    while (this.bytesNow > this.bytesMax) {
      const oldest = this.entries.keys().next();
      assert(!oldest.done, "cache over budget with no entries");
      this.delete(oldest.value);
      this.evictionsCount++;
    }
    return true;
  }

  delete(key: string): void {
    const v = this.entries.get(key);
    if (v === undefined) return;
    this.entries.delete(key);
    this.bytesNow -= v.byteLength + CACHE_ENTRY_OVERHEAD_BYTES;
  }

  /** The accounted bytes (entries plus overhead). */
  get bytes(): number {
    return this.bytesNow;
  }

  get size(): number {
    return this.entries.size;
  }

  get evictions(): number {
    return this.evictionsCount;
  }
}
