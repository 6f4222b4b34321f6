/**
 * The storage engine port: an ordered, byte-keyed KV store with atomic, optionally durable
 * write batches. One engine instance serves a whole node (every Raft group's log and every
 * shard's state machine), so one batch = one transaction = one fsync for all of them (group
 * commit). Implementations: `MemoryEngine` (simulation, tests) and `LmdbEngine` (real nodes);
 * both pass the same contract suite (test/storage/contract.ts).
 *
 * Reads are synchronous (LMDB serves them from memory-mapped pages) and see every write whose
 * promise has resolved. Keys compare bytewise (unsigned lexicographic).
 */

export type WriteOp =
  | { readonly op: "put"; readonly key: Uint8Array; readonly value: Uint8Array }
  | { readonly op: "del"; readonly key: Uint8Array }
  /** Deletes every key in [start, end). */
  | { readonly op: "delRange"; readonly start: Uint8Array; readonly end: Uint8Array };

export interface ScanOptions {
  /** At most this many pairs. */
  readonly limit?: number;
  /** Iterate from the end of the range backwards. */
  readonly reverse?: boolean;
}

export interface EngineStats {
  /** Durable commits (fsyncs) performed. */
  readonly syncs: number;
  /** Batches committed (durable or not). */
  readonly batches: number;
  readonly bytesWritten: number;
}

export interface StorageEngine {
  get(key: Uint8Array): Uint8Array | undefined;
  /** Pairs with start <= key < end, in key order (or reverse). */
  scan(start: Uint8Array, end: Uint8Array, opts?: ScanOptions): Iterable<[Uint8Array, Uint8Array]>;
  /**
   * Applies all ops atomically (all or nothing, also across a crash). Resolves once the batch is
   * visible to reads and, if `sync`, durable on disk. Batches become visible in call order.
   * A later durable batch also makes every earlier batch durable.
   */
  write(ops: readonly WriteOp[], opts: { readonly sync: boolean }): Promise<void>;
  stats(): EngineStats;
  close(): Promise<void>;
}
