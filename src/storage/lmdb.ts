/**
 * The LMDB engine (lmdb-js), for real nodes.
 *
 * Durability mechanism (see docs/storage.md, "Why a write buffer"): lmdb-js offers per-batch
 * durability only through MDB_NOSYNC transactions (env `noSync`, or `transactionSync` with the
 * NO_SYNC flag) followed by an explicit `env.sync()`. LMDB documents that NOSYNC commits can
 * corrupt the whole database on an OS crash or power loss (a later commit may overwrite pages the
 * last synced snapshot still uses), which is not acceptable for a store that acknowledges
 * writes. In its safe default mode (`overlappingSync`), every commit is fsynced inside
 * `mdb_txn_commit` and the write promise resolves only after that fsync (measured: commit and
 * `flushed` resolve together, also with `separateFlushed`).
 *
 * So the engine never hands LMDB an unsynced commit. Instead it keeps batches that are visible
 * but not yet committed in an in-memory write buffer (point writes plus range tombstones, read
 * through by `get`/`scan`), and commits the buffer as ONE LMDB transaction (one fsync) when a
 * `sync: true` batch asks for it, when the buffer grows past `flushBytes`, or `flushDelayMs` after
 * the first buffered `sync: false` batch. At most one commit is in flight; batches written
 * meanwhile join the next one (group commit). So:
 * - a batch is visible as soon as `write()` is called, in call order;
 * - `sync: true` resolves once the commit holding it (and everything before it) is durable;
 * - `sync: false` resolves at once (unless the buffer is over `bufferBytesMax`: backpressure) and
 *   becomes durable with the next commit;
 * - every LMDB transaction holds whole batches, so batches are atomic across kill -9 and power loss;
 * - `stats().syncs` counts LMDB commits, each of which is exactly one fsynced transaction.
 *
 * A failed commit is fatal (fail-stop): the engine rejects every later write with
 * `EngineFailedError`, because the buffer and the disk may now disagree.
 */
import { statSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { open, type RootDatabase } from "lmdb";
import { assert } from "../base/index.js";
import type { EngineStats, ScanOptions, StorageEngine, WriteOp } from "./engine.js";
import { compareBytes } from "./keys.js";
import { checkOps, scanLimit } from "./ops.js";
import { SortedMap } from "./sorted.js";

export interface LmdbEngineOptions {
  /**
   * A `sync: false` batch is committed (durably) at most this long after it was written
   * (Infinity: only by size, sync batches, flush() and close()).
   */
  readonly flushDelayMs?: number;
  /** Buffered (uncommitted) bytes that start a commit without waiting for a sync batch. */
  readonly flushBytes?: number;
  /** Beyond this many buffered bytes, `write()` waits until its batch is committed. */
  readonly bufferBytesMax?: number;
}

const DEFAULTS = {
  flushDelayMs: 50,
  flushBytes: 4 << 20,
  bufferBytesMax: 32 << 20,
} as const;

/** Per-op bookkeeping charged against the buffer bounds, beyond the keys' and values' bytes. */
const OP_OVERHEAD_BYTES = 64;

/** The engine could not commit to disk; it refuses every later write. */
export class EngineFailedError extends Error {
  override name = "EngineFailedError";
  readonly code = "ENGINE_FAILED";
  constructor(readonly reason: unknown) {
    super(`storage engine failed: ${reason instanceof Error ? reason.message : String(reason)}`);
  }
}

/** A buffered point write; `value` null is a delete. `gen` is the commit generation it joins. */
interface Pending {
  readonly value: Uint8Array | null;
  readonly gen: number;
}

/** A buffered delRange, hiding committed keys in [start, end) until its generation commits. */
interface Tombstone {
  readonly start: Uint8Array;
  readonly end: Uint8Array;
  readonly gen: number;
}

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A write whose caller stopped listening must not crash the process when the engine fails.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/** A view of a Buffer as a plain Uint8Array, so both engines return the same type. */
function plain(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Directories with an open engine in this process. lmdb-js would hand a second open() the same
 * environment, but each engine has its own write buffer: two would disagree on what is stored.
 */
const openDirs = new Set<string>();

export class LmdbEngine implements StorageEngine {
  private readonly flushDelayMs: number;
  private readonly flushBytes: number;
  private readonly bufferBytesMax: number;

  // The write buffer: everything written but not yet committed (open or in-flight generation).
  private readonly points = new SortedMap<Pending>();
  private tombstones: Tombstone[] = [];
  /** The generation new batches join; it is frozen (and a new one opened) when a commit starts. */
  private openGen = 1;
  private openBatches = 0;
  private openBytes = 0;
  private inflightBytes = 0;
  /** Every generation <= committedGen is durable in LMDB. */
  private committedGen = 0;
  /** A commit of every generation <= requestedGen has been asked for. */
  private requestedGen = 0;
  private committing = false;
  private readonly waiters = new Map<number, Deferred>();
  private timer: NodeJS.Timeout | undefined;
  private failure: EngineFailedError | undefined;
  private closed = false;

  private syncs = 0;
  private batches = 0;
  private bytesWritten = 0;

  private constructor(
    readonly dir: string,
    private readonly db: RootDatabase<Buffer, Buffer>,
    opts: Required<LmdbEngineOptions>,
  ) {
    this.flushDelayMs = opts.flushDelayMs;
    this.flushBytes = opts.flushBytes;
    this.bufferBytesMax = opts.bufferBytesMax;
  }

  /** Opens (creating if needed) the LMDB environment in directory `dir`. */
  static async open(dir: string, opts: LmdbEngineOptions = {}): Promise<LmdbEngine> {
    const o = {
      flushDelayMs: opts.flushDelayMs ?? DEFAULTS.flushDelayMs,
      flushBytes: opts.flushBytes ?? DEFAULTS.flushBytes,
      bufferBytesMax: opts.bufferBytesMax ?? DEFAULTS.bufferBytesMax,
    };
    // setTimeout fires at once for delays beyond 2^31-1 ms: only Infinity means "never".
    const delayOk = o.flushDelayMs === Number.POSITIVE_INFINITY || o.flushDelayMs < 2 ** 31;
    assert(o.flushDelayMs >= 0 && delayOk && o.flushBytes > 0, "bad LmdbEngine flush options");
    assert(o.bufferBytesMax >= o.flushBytes, "bufferBytesMax must be >= flushBytes");
    const path = resolve(dir);
    assert(!openDirs.has(path), () => `an LmdbEngine is already open on ${path}`);
    openDirs.add(path);
    try {
      await mkdir(path, { recursive: true });
      return new LmdbEngine(path, LmdbEngine.openEnv(path), o);
    } catch (err) {
      openDirs.delete(path);
      throw err;
    }
  }

  private static openEnv(dir: string): RootDatabase<Buffer, Buffer> {
    return open<Buffer, Buffer>({
      path: dir,
      // Without this, a directory name containing a dot would be taken for a file name.
      noSubdir: false,
      keyEncoding: "binary",
      encoding: "binary",
      // The crash-safe commit mode (see the file comment); explicit so a platform default
      // cannot silently change it.
      overlappingSync: true,
      noSync: false,
      noMetaSync: false,
      cache: false,
    });
  }

  // ------------------------------------------------------------------ reads

  get(key: Uint8Array): Uint8Array | undefined {
    assert(!this.closed, "LmdbEngine is closed");
    const p = this.points.get(key);
    if (p) return p.value ? p.value.slice() : undefined;
    if (this.tombstoned(key)) return undefined;
    const v = this.db.get(Buffer.from(key.buffer, key.byteOffset, key.byteLength));
    return v === undefined ? undefined : plain(v);
  }

  scan(start: Uint8Array, end: Uint8Array, opts?: ScanOptions): [Uint8Array, Uint8Array][] {
    assert(!this.closed, "LmdbEngine is closed");
    const limit = scanLimit(opts);
    const reverse = opts?.reverse ?? false;
    const out: [Uint8Array, Uint8Array][] = [];
    if (limit === 0 || compareBytes(start, end) >= 0) return out;

    // Merge the committed keys (LMDB) with the write buffer, the buffer winning on equal keys.
    const [lo, hi] = this.points.range(start, end);
    let i = reverse ? hi - 1 : lo;
    // lmdb-js reverse ranges go from `start` down to `end`: flip the bound inclusivity so
    // the range is still [start, end).
    const range = reverse
      ? this.db.getRange({
          start: Buffer.from(end),
          end: Buffer.from(start),
          reverse: true,
          exclusiveStart: true,
          inclusiveEnd: true,
        })
      : this.db.getRange({ start: Buffer.from(start), end: Buffer.from(end) });
    const it = range[Symbol.iterator]();
    const nextBase = (): { key: Uint8Array; value: Uint8Array } | undefined => {
      for (;;) {
        const r = it.next();
        if (r.done) return undefined;
        const key = r.value.key;
        // Keys the buffer holds are merged from the buffer; tombstoned ones are gone.
        if (this.points.get(key) !== undefined || this.tombstoned(key)) continue;
        return { key: plain(key), value: plain(r.value.value) };
      }
    };
    try {
      let base = nextBase();
      while (out.length < limit) {
        const bufferLeft = reverse ? i >= lo : i < hi;
        if (bufferLeft) {
          const k = this.points.keyAt(i);
          const takeBuffer =
            base === undefined ||
            (reverse ? compareBytes(k, base.key) > 0 : compareBytes(k, base.key) < 0);
          if (takeBuffer) {
            const v = this.points.valueAt(i).value;
            if (v) out.push([k.slice(), v.slice()]);
            i += reverse ? -1 : 1;
            continue;
          }
        }
        if (base === undefined) break;
        out.push([base.key, base.value]);
        base = nextBase();
      }
    } finally {
      it.return?.();
    }
    return out;
  }

  // ------------------------------------------------------------------ writes

  write(ops: readonly WriteOp[], opts: { readonly sync: boolean }): Promise<void> {
    assert(!this.closed, "LmdbEngine is closed");
    if (this.failure) return Promise.reject(this.failure);
    const bytes = checkOps(ops);
    const gen = this.openGen;
    for (const o of ops) {
      if (o.op === "put") this.points.set(o.key.slice(), { value: o.value.slice(), gen });
      else if (o.op === "del") this.points.set(o.key.slice(), { value: null, gen });
      else if (compareBytes(o.start, o.end) < 0) {
        // Buffered writes in the range are gone (an in-flight commit still holds its own copy
        // of them); the tombstone hides committed keys until this generation commits.
        this.points.deleteRange(o.start, o.end);
        this.tombstones.push({ start: o.start.slice(), end: o.end.slice(), gen });
      }
    }
    this.batches++;
    this.bytesWritten += bytes;
    if (ops.length === 0) {
      // Nothing to commit: a sync barrier only waits for what is already buffered.
      if (!opts.sync) return Promise.resolve();
      if (this.openBatches > 0) return this.durable(gen);
      return this.waitFor(gen - 1);
    }
    this.openBatches++;
    this.openBytes += bytes + ops.length * OP_OVERHEAD_BYTES;
    if (opts.sync) return this.durable(gen);
    if (this.openBytes + this.inflightBytes > this.bufferBytesMax) return this.durable(gen);
    if (this.openBytes >= this.flushBytes) this.requestCommit(gen);
    else this.armTimer();
    return Promise.resolve();
  }

  /** Commits every buffered batch (durably) and waits for it. */
  flush(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return this.openBatches > 0 ? this.durable(this.openGen) : this.waitFor(this.openGen - 1);
  }

  private tombstoned(key: Uint8Array): boolean {
    for (const t of this.tombstones) {
      if (compareBytes(key, t.start) >= 0 && compareBytes(key, t.end) < 0) return true;
    }
    return false;
  }

  private durable(gen: number): Promise<void> {
    this.requestCommit(gen);
    return this.waitFor(gen);
  }

  private waitFor(gen: number): Promise<void> {
    if (gen <= this.committedGen) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    let d = this.waiters.get(gen);
    if (!d) {
      d = deferred();
      this.waiters.set(gen, d);
    }
    return d.promise;
  }

  private requestCommit(gen: number): void {
    if (gen > this.requestedGen) this.requestedGen = gen;
    if (this.committing) return;
    this.committing = true;
    // Start on a microtask, so that every batch written in the same synchronous run joins.
    queueMicrotask(() => void this.commitLoop());
  }

  private armTimer(): void {
    if (this.timer || this.flushDelayMs === Number.POSITIVE_INFINITY) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.openBatches > 0 && !this.failure && !this.closed) this.requestCommit(this.openGen);
    }, this.flushDelayMs);
    // A pending flush must not keep the process alive; exiting without close() is a crash.
    this.timer.unref();
  }

  private async commitLoop(): Promise<void> {
    try {
      while (!this.failure && this.committedGen < this.requestedGen) {
        // Freeze the open generation: with one commit in flight, every older generation is
        // committed, so the whole buffer belongs to it.
        const gen = this.openGen;
        this.openGen++;
        const batches = this.openBatches;
        this.inflightBytes = this.openBytes;
        this.openBatches = 0;
        this.openBytes = 0;
        if (this.timer) {
          clearTimeout(this.timer);
          this.timer = undefined;
        }
        const ranges = this.tombstones.filter((t) => t.gen === gen);
        const puts: [Buffer, Buffer | null][] = [];
        for (let i = 0; i < this.points.size; i++) {
          const p = this.points.valueAt(i);
          if (p.gen !== gen) continue;
          puts.push([Buffer.from(this.points.keyAt(i)), p.value ? Buffer.from(p.value) : null]);
        }
        if (batches > 0) {
          // A child transaction aborts as a whole if the callback throws, so a commit can never
          // be partial. Range deletes read the keys inside the transaction: exactly what is
          // committed, since older generations are all committed by now.
          await this.db.childTransaction(() => {
            for (const t of ranges) {
              const keys = Array.from(
                this.db.getKeys({ start: Buffer.from(t.start), end: Buffer.from(t.end) }),
              );
              for (const k of keys) this.db.remove(k);
            }
            for (const [k, v] of puts) {
              if (v) this.db.put(k, v);
              else this.db.remove(k);
            }
          });
          this.syncs++;
        }
        this.committedGen = gen;
        this.inflightBytes = 0;
        this.points.filter((_, p) => p.gen > gen);
        this.tombstones = this.tombstones.filter((t) => t.gen > gen);
        for (const [g, d] of this.waiters) {
          if (g > gen) continue;
          this.waiters.delete(g);
          d.resolve();
        }
      }
    } catch (err) {
      this.failure = new EngineFailedError(err);
      for (const d of this.waiters.values()) d.reject(this.failure);
      this.waiters.clear();
    } finally {
      this.committing = false;
    }
    if (!this.failure && this.openBatches > 0) this.armTimer();
  }

  // ------------------------------------------------------------------ the rest

  stats(): EngineStats {
    return { syncs: this.syncs, batches: this.batches, bytesWritten: this.bytesWritten };
  }

  /** The write buffer: batches written but not yet committed (open and in flight; metrics). */
  bufferStats(): { bytes: number; keys: number; tombstones: number } {
    return {
      bytes: this.openBytes + this.inflightBytes,
      keys: this.points.size,
      tombstones: this.tombstones.length,
    };
  }

  /** Size of the LMDB data file on disk (metrics). */
  dataBytes(): number {
    return statSync(join(this.dir, "data.mdb")).size;
  }

  /** Commits everything buffered, then closes the environment. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } finally {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.closed = true;
      try {
        await this.db.close();
      } finally {
        openDirs.delete(this.dir);
      }
    }
  }
}
