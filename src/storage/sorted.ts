/**
 * A map from byte keys to values kept in bytewise key order: two parallel arrays and binary
 * search. Lookups are O(log n); inserts and deletes move the tail (O(n)), which is cheap for the
 * mostly-appending workloads it serves (Raft logs append at the end) and for the bounded write
 * buffer of LmdbEngine. Not a general-purpose index for millions of random keys.
 */
import { compareBytes } from "./keys.js";

export class SortedMap<V> {
  private keys: Uint8Array[] = [];
  private vals: V[] = [];

  get size(): number {
    return this.keys.length;
  }

  /** Index of the first key >= `key` (or `size`). */
  lowerBound(key: Uint8Array): number {
    let lo = 0;
    let hi = this.keys.length;
    // Appends are the common case: check the end first.
    if (hi > 0 && compareBytes(this.keys[hi - 1] as Uint8Array, key) < 0) return hi;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareBytes(this.keys[mid] as Uint8Array, key) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  get(key: Uint8Array): V | undefined {
    const i = this.lowerBound(key);
    if (i < this.keys.length && compareBytes(this.keys[i] as Uint8Array, key) === 0) {
      return this.vals[i];
    }
    return undefined;
  }

  /** Stores `value` under `key`. The map keeps `key` itself: the caller must not mutate it. */
  set(key: Uint8Array, value: V): void {
    const i = this.lowerBound(key);
    if (i < this.keys.length && compareBytes(this.keys[i] as Uint8Array, key) === 0) {
      this.vals[i] = value;
      return;
    }
    if (i === this.keys.length) {
      this.keys.push(key);
      this.vals.push(value);
    } else {
      this.keys.splice(i, 0, key);
      this.vals.splice(i, 0, value);
    }
  }

  delete(key: Uint8Array): boolean {
    const i = this.lowerBound(key);
    if (i < this.keys.length && compareBytes(this.keys[i] as Uint8Array, key) === 0) {
      this.keys.splice(i, 1);
      this.vals.splice(i, 1);
      return true;
    }
    return false;
  }

  /** Index bounds [lo, hi) of the keys in [start, end). */
  range(start: Uint8Array, end: Uint8Array): [number, number] {
    if (compareBytes(start, end) >= 0) return [0, 0];
    return [this.lowerBound(start), this.lowerBound(end)];
  }

  /** Deletes every key in [start, end); returns how many were deleted. */
  deleteRange(start: Uint8Array, end: Uint8Array): number {
    const [lo, hi] = this.range(start, end);
    if (hi > lo) {
      this.keys.splice(lo, hi - lo);
      this.vals.splice(lo, hi - lo);
    }
    return hi - lo;
  }

  keyAt(i: number): Uint8Array {
    return this.keys[i] as Uint8Array;
  }

  valueAt(i: number): V {
    return this.vals[i] as V;
  }

  /** Keeps only the pairs for which `keep` is true (one pass, O(n)). */
  filter(keep: (key: Uint8Array, value: V) => boolean): void {
    let w = 0;
    for (let r = 0; r < this.keys.length; r++) {
      const k = this.keys[r] as Uint8Array;
      const v = this.vals[r] as V;
      if (!keep(k, v)) continue;
      this.keys[w] = k;
      this.vals[w] = v;
      w++;
    }
    this.keys.length = w;
    this.vals.length = w;
  }

  clear(): void {
    this.keys = [];
    this.vals = [];
  }
}
