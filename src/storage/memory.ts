/**
 * The in-memory engine: a sorted map applied synchronously. Used by the simulator and tests;
 * it passes the same contract suite as LmdbEngine (test/storage/contract.ts). "Durable" here
 * means nothing survives the process, so `sync` only counts.
 */
import { assert } from "../base/index.js";
import type { EngineStats, ScanOptions, StorageEngine, WriteOp } from "./engine.js";
import { checkOps, scanLimit } from "./ops.js";
import { SortedMap } from "./sorted.js";

export class MemoryEngine implements StorageEngine {
  private readonly data = new SortedMap<Uint8Array>();
  private syncs = 0;
  private batches = 0;
  private bytesWritten = 0;
  private closed = false;

  get(key: Uint8Array): Uint8Array | undefined {
    assert(!this.closed, "MemoryEngine is closed");
    // Copies in and out: a caller mutating a buffer must not change stored data (LMDB copies too).
    return this.data.get(key)?.slice();
  }

  scan(start: Uint8Array, end: Uint8Array, opts?: ScanOptions): [Uint8Array, Uint8Array][] {
    assert(!this.closed, "MemoryEngine is closed");
    const limit = scanLimit(opts);
    const [lo, hi] = this.data.range(start, end);
    const out: [Uint8Array, Uint8Array][] = [];
    const n = Math.min(hi - lo, limit);
    for (let j = 0; j < n; j++) {
      const i = opts?.reverse ? hi - 1 - j : lo + j;
      out.push([this.data.keyAt(i).slice(), this.data.valueAt(i).slice()]);
    }
    return out;
  }

  write(ops: readonly WriteOp[], opts: { readonly sync: boolean }): Promise<void> {
    assert(!this.closed, "MemoryEngine is closed");
    const bytes = checkOps(ops);
    for (const o of ops) {
      if (o.op === "put") this.data.set(o.key.slice(), o.value.slice());
      else if (o.op === "del") this.data.delete(o.key);
      else this.data.deleteRange(o.start, o.end);
    }
    this.batches++;
    this.bytesWritten += bytes;
    if (opts.sync) this.syncs++;
    return Promise.resolve();
  }

  stats(): EngineStats {
    return { syncs: this.syncs, batches: this.batches, bytesWritten: this.bytesWritten };
  }

  /** Number of keys stored (tests and metrics). */
  size(): number {
    return this.data.size;
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}
