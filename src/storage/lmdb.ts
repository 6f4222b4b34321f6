/**
 * The LMDB engine (lmdb-js), for real nodes.
 *
 * Durability mechanism (see docs/storage.md, "Why a write buffer" and "The write-ahead log"):
 * lmdb-js offers per-batch durability only through MDB_NOSYNC transactions (env `noSync`, or
 * `transactionSync` with the NO_SYNC flag) followed by an explicit `env.sync()`. LMDB documents
 * that NOSYNC commits can corrupt the whole database on an OS crash or power loss (a later commit
 * may overwrite pages the last synced snapshot still uses), which is not acceptable for a store
 * that acknowledges writes. In its safe default mode (`overlappingSync`), every commit is fsynced
 * inside `mdb_txn_commit`, and costs far more than an append plus fdatasync.
 *
 * So the engine never hands LMDB an unsynced commit, and does not wait for LMDB to acknowledge a
 * batch either. Every batch goes to an in-memory write buffer (point writes plus range
 * tombstones, read through by `get`/`scan`) and to the write-ahead log (wal.ts): one segment per
 * buffer generation. The buffer drains into LMDB as ONE transaction per generation (group
 * commit), `flushDelayMs` after its first batch, when it grows past `flushBytes`, or on flush().
 * So:
 * - a batch is visible as soon as `write()` is called, in call order;
 * - `sync: true` resolves once a WAL round (write + fdatasync of every segment not yet in LMDB,
 *   oldest first; batches that arrive meanwhile share the next round) or the LMDB commit of its
 *   generation has made it, and everything before it, durable;
 * - `sync: false` resolves at once (unless the buffer is over `bufferBytesMax`: backpressure,
 *   it then waits for the LMDB commit) and becomes durable with the next round or commit;
 * - every LMDB transaction holds whole generations plus the meta key naming the newest one, and
 *   recovery replays only later segments, up to the first torn record: batches are atomic across
 *   kill -9 and power loss;
 * - `stats().syncs` counts WAL rounds plus LMDB commits.
 *
 * A failed commit, log write or fsync is fatal (fail-stop): the engine rejects every later
 * write with `EngineFailedError`, because the buffer and the disk may now disagree.
 */
import {
  close as closeFd,
  closeSync,
  fdatasync,
  fsync,
  mkdirSync,
  open as openFd,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  unlink,
  unlinkSync,
  write,
  writeSync,
} from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { open, type RootDatabase } from "lmdb";
import { assert } from "../base/index.js";
import type { EngineStats, ScanOptions, StorageEngine, WriteOp } from "./engine.js";
import { compareBytes, decodeU64, u64 } from "./keys.js";
import { checkOps, scanLimit } from "./ops.js";
import { SortedMap } from "./sorted.js";
import { decodeSegment, encodeRecord, segmentGen, segmentName } from "./wal.js";

const fdatasyncP = promisify(fdatasync);
const fsyncP = promisify(fsync);
const writeP = promisify(write);
/** WAL appends up to this size are written on the event loop (see writeQueued). */
const WAL_SYNC_WRITE_BYTES_MAX = 64 * 1024;
// Segment files are created, closed and removed off the event loop: on ext4 an unlink of a file
// just fdatasynced took about 1 ms of main-thread time (2% of a busy node's CPU profile).
const openP = promisify(openFd);
const closeP = promisify(closeFd);
const unlinkP = promisify(unlink);

/**
 * The newest write-buffer generation LMDB holds, written in the same transaction as the data
 * (see wal.ts). Outside every key Kumo writes (they start with a printable prefix); `scan` hides
 * it and `write` refuses it.
 */
const META_KEY = Buffer.from("\u0000kumo.wal.gen", "latin1");

function isMetaKey(k: Uint8Array): boolean {
  return k.length === META_KEY.length && k[0] === 0 && compareBytes(k, META_KEY) === 0;
}

/** One WAL segment: the records of one generation, not yet in LMDB. */
interface Segment {
  readonly gen: number;
  /** -1 until its first record is written. */
  fd: number;
  readonly path: string;
  /** Records not written to the file yet, in order. */
  queued: WriteOp[][];
  /** Bytes written to the file. */
  bytes: number;
  /** Its directory entry is durable. */
  dirSynced: boolean;
  /** Its generation is in LMDB: no longer synced, about to be closed and removed. */
  retired: boolean;
  /** An fdatasync of it in progress (the fd must stay open until it ends). */
  inflight: Promise<void> | undefined;
}

/** What recovery found in the WAL when the engine opened (logged by the node). */
export interface WalRecovery {
  readonly segments: number;
  readonly records: number;
  /** Bytes after the last intact record: a torn write that was never acknowledged. */
  readonly tornBytes: number;
}

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
  flushDelayMs: 100,
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
  /** What the last open() replayed from the WAL. */
  recovery: WalRecovery = { segments: 0, records: 0, tornBytes: 0 };
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

  // The write-ahead log: what makes a sync batch durable without waiting for an LMDB commit.
  private readonly walDir: string;
  private walDirFd = -1;
  /** Segments not yet in LMDB, oldest first (Map order is insertion order = generation order). */
  private readonly segments = new Map<number, Segment>();
  /** Records appended so far (one per non-empty batch). */
  private lastRec = 0;
  /** Every record <= durableRec is durable: in synced WAL segments or in LMDB. */
  private durableRec = 0;
  private requestedRec = 0;
  private walLoop: Promise<void> | undefined;
  private readonly recWaiters = new Map<number, Deferred>();

  private syncs = 0;
  private walSyncs = 0;
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
    this.walDir = join(dir, "wal");
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
      const engine = new LmdbEngine(path, LmdbEngine.openEnv(path), o);
      try {
        await engine.recover();
      } catch (err) {
        await engine.db.close().catch(() => {});
        throw err;
      }
      return engine;
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

  /**
   * Replays the WAL segments LMDB does not hold yet (generation > the meta key), in order, up to
   * the first torn record, in ONE LMDB transaction that also advances the meta key; then removes
   * every segment file. Replaying a segment twice is harmless (every op is a blind write), but it
   * never happens: the meta key says which generations LMDB has.
   */
  private async recover(): Promise<void> {
    mkdirSync(this.walDir, { recursive: true });
    this.walDirFd = openSync(this.walDir, "r");
    const meta = this.db.get(META_KEY);
    const inLmdb = meta ? decodeU64(meta) : 0;
    const gens = readdirSync(this.walDir)
      .map((n) => segmentGen(n))
      .filter((g): g is number => g !== undefined)
      .sort((a, b) => a - b);
    let newest = inLmdb;
    let torn = false;
    let records = 0;
    let tornBytes = 0;
    let segments = 0;
    const batches: WriteOp[][] = [];
    for (const gen of gens) {
      if (gen <= inLmdb || torn) continue;
      newest = Math.max(newest, gen);
      const buf = readFileSync(join(this.walDir, segmentName(gen)));
      const d = decodeSegment(buf);
      segments++;
      records += d.batches.length;
      batches.push(...d.batches);
      if (d.validBytes < buf.length) {
        // Nothing after a torn record was acknowledged (see wal.ts): drop it and what follows.
        torn = true;
        tornBytes = buf.length - d.validBytes;
      }
    }
    if (gens.length > 0) newest = Math.max(newest, gens[gens.length - 1] as number);
    if (newest > inLmdb) {
      await this.db.childTransaction(() => {
        for (const ops of batches) this.applyToLmdb(ops);
        this.db.put(META_KEY, Buffer.from(u64(newest)));
      });
      this.syncs++;
    }
    for (const gen of gens) unlinkSync(join(this.walDir, segmentName(gen)));
    if (gens.length > 0) await fsyncP(this.walDirFd);
    this.openGen = newest + 1;
    this.committedGen = newest;
    this.requestedGen = newest;
    this.recovery = { segments, records, tornBytes };
  }

  /** Applies one batch inside an LMDB transaction (the caller's). */
  private applyToLmdb(ops: readonly WriteOp[]): void {
    for (const o of ops) {
      if (o.op === "put") this.db.put(Buffer.from(o.key), Buffer.from(o.value));
      else if (o.op === "del") this.db.remove(Buffer.from(o.key));
      else {
        const keys = Array.from(
          this.db.getKeys({ start: Buffer.from(o.start), end: Buffer.from(o.end) }),
        );
        for (const k of keys) this.db.remove(k);
      }
    }
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
        if (this.points.get(key) !== undefined || this.tombstoned(key) || isMetaKey(key)) continue;
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
    for (const o of ops) assert(o.op === "delRange" || !isMetaKey(o.key), "reserved key");
    const gen = this.openGen;
    if (ops.length === 0) {
      this.batches++;
      // Nothing to write: a sync barrier only waits for what is already written.
      return opts.sync ? this.walDurable(this.lastRec) : Promise.resolve();
    }
    // One private copy of the batch, shared by the buffer and the log (neither mutates it).
    const own: WriteOp[] = ops.map((o) =>
      o.op === "put"
        ? { op: "put", key: o.key.slice(), value: o.value.slice() }
        : o.op === "del"
          ? { op: "del", key: o.key.slice() }
          : { op: "delRange", start: o.start.slice(), end: o.end.slice() },
    );
    for (const o of own) {
      if (o.op === "put") this.points.set(o.key, { value: o.value, gen });
      else if (o.op === "del") this.points.set(o.key, { value: null, gen });
      else if (compareBytes(o.start, o.end) < 0) {
        // Buffered writes in the range are gone (an in-flight commit still holds its own copy
        // of them); the tombstone hides committed keys until this generation commits.
        this.points.deleteRange(o.start, o.end);
        this.tombstones.push({ start: o.start, end: o.end, gen });
      }
    }
    const rec = this.append(gen, own);
    this.batches++;
    this.bytesWritten += bytes;
    this.openBatches++;
    this.openBytes += bytes + ops.length * OP_OVERHEAD_BYTES;
    // The buffer drains into LMDB by size and time; a full one holds the writer back (memory).
    if (this.openBytes + this.inflightBytes > this.bufferBytesMax) return this.durable(gen);
    if (this.openBytes >= this.flushBytes) this.requestCommit(gen);
    else this.armTimer();
    return opts.sync ? this.walDurable(rec) : Promise.resolve();
  }

  /**
   * Queues one record for generation `gen`'s segment; its number. Nothing touches the file
   * here: the next sync round writes the queue. A generation that reaches LMDB before any round
   * asks for it (sync: false batches) never costs a write to the log at all.
   */
  private append(gen: number, ops: WriteOp[]): number {
    let seg = this.segments.get(gen);
    if (!seg) {
      seg = {
        gen,
        fd: -1,
        path: join(this.walDir, segmentName(gen)),
        queued: [],
        bytes: 0,
        dirSynced: false,
        retired: false,
        inflight: undefined,
      };
      this.segments.set(gen, seg);
    }
    seg.queued.push(ops);
    this.lastRec++;
    return this.lastRec;
  }

  /** Writes a segment's queued records to its file (created on first use). */
  private async writeQueued(s: Segment): Promise<void> {
    if (s.fd < 0) {
      // "ax": a segment of this generation cannot exist (recovery removed every segment and
      // generations only grow); if one did, appending to it would mix two histories.
      s.fd = await openP(s.path, "ax");
    }
    const buf = Buffer.concat(s.queued.map((ops) => encodeRecord(ops)));
    s.queued = [];
    let at = 0;
    // A small append only copies into the page cache: done here it costs microseconds, where a
    // trip through the thread pool costs a hand-off and a wake-up before the fdatasync can
    // start, on the path of every durable write.
    if (buf.length <= WAL_SYNC_WRITE_BYTES_MAX) {
      while (at < buf.length) at += writeSync(s.fd, buf, at, buf.length - at);
    }
    while (at < buf.length) at += (await writeP(s.fd, buf, at, buf.length - at)).bytesWritten;
    s.bytes += buf.length;
  }

  /** Resolves once record `rec` (and so every earlier one) is durable. */
  private walDurable(rec: number): Promise<void> {
    if (rec <= this.durableRec) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    if (rec > this.requestedRec) this.requestedRec = rec;
    let d = this.recWaiters.get(rec);
    if (!d) {
      d = deferred();
      this.recWaiters.set(rec, d);
    }
    if (!this.walLoop) {
      // Start on a microtask, so that every batch written in the same synchronous run joins.
      this.walLoop = new Promise<void>((r) => queueMicrotask(r)).then(() => this.walSyncLoop());
    }
    return d.promise;
  }

  /**
   * Group commit on the WAL: one round fdatasyncs every segment written since its last sync,
   * oldest first (a record is durable only together with every older one), plus the directory
   * once for a new segment, then acknowledges every record written before the round started.
   */
  private async walSyncLoop(): Promise<void> {
    try {
      while (!this.failure && this.durableRec < this.requestedRec) {
        const upto = this.lastRec;
        for (const s of [...this.segments.values()]) {
          // Checked right before the I/O: a retired segment is in LMDB and may be closing.
          if (s.queued.length === 0 || s.retired) continue;
          s.inflight = this.writeQueued(s).then(() => fdatasyncP(s.fd));
          try {
            await s.inflight;
          } finally {
            s.inflight = undefined;
          }
          if (!s.dirSynced) {
            await fsyncP(this.walDirFd);
            s.dirSynced = true;
          }
        }
        this.syncs++;
        this.walSyncs++;
        this.advanceDurable(upto);
      }
    } catch (err) {
      this.fail(err);
    } finally {
      this.walLoop = undefined;
    }
  }

  private advanceDurable(rec: number): void {
    if (rec <= this.durableRec) return;
    this.durableRec = rec;
    for (const [r, d] of this.recWaiters) {
      if (r > rec) continue;
      this.recWaiters.delete(r);
      d.resolve();
    }
  }

  /** Fail-stop: the buffer, the log and LMDB may disagree now; refuse everything after. */
  private fail(err: unknown): void {
    if (!this.failure)
      this.failure = err instanceof EngineFailedError ? err : new EngineFailedError(err);
    for (const d of this.waiters.values()) d.reject(this.failure);
    this.waiters.clear();
    for (const d of this.recWaiters.values()) d.reject(this.failure);
    this.recWaiters.clear();
  }

  /** Closes and removes the segments of generations LMDB now holds. */
  private async retireSegments(gen: number): Promise<void> {
    for (const s of [...this.segments.values()]) {
      if (s.gen > gen) continue;
      s.retired = true;
      this.segments.delete(s.gen);
      await s.inflight?.catch(() => {});
      if (s.fd < 0) continue;
      const fd = s.fd;
      s.fd = -1;
      await closeP(fd);
      // Removal need not be durable: recovery skips generations the meta key covers.
      await unlinkP(s.path);
    }
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
        const recs = this.lastRec;
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
            // Last, so no range delete above can remove it: recovery's "LMDB has up to here".
            this.db.put(META_KEY, Buffer.from(u64(gen)));
          });
          this.syncs++;
        }
        this.committedGen = gen;
        this.advanceDurable(recs);
        this.inflightBytes = 0;
        this.points.filter((_, p) => p.gen > gen);
        this.tombstones = this.tombstones.filter((t) => t.gen > gen);
        for (const [g, d] of this.waiters) {
          if (g > gen) continue;
          this.waiters.delete(g);
          d.resolve();
        }
        await this.retireSegments(gen);
      }
    } catch (err) {
      this.fail(err);
    } finally {
      this.committing = false;
    }
    if (!this.failure && this.openBatches > 0) this.armTimer();
  }

  // ------------------------------------------------------------------ the rest

  stats(): EngineStats {
    return { syncs: this.syncs, batches: this.batches, bytesWritten: this.bytesWritten };
  }

  /** The write-ahead log: sync rounds so far and segments not yet in LMDB (metrics, tests). */
  walStats(): { syncs: number; segments: number } {
    return { syncs: this.walSyncs, segments: this.segments.size };
  }

  /** The write buffer: batches written but not yet committed (open and in flight; metrics). */
  bufferStats(): { bytes: number; keys: number; tombstones: number } {
    return {
      bytes: this.openBytes + this.inflightBytes,
      keys: this.points.size,
      tombstones: this.tombstones.length,
    };
  }

  /** Bytes on disk: the LMDB data file plus the WAL segments not yet in it (metrics). */
  dataBytes(): number {
    let wal = 0;
    for (const s of this.segments.values()) wal += s.bytes;
    return statSync(join(this.dir, "data.mdb")).size + wal;
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
      await this.walLoop?.catch(() => {});
      // After a clean flush no segment is left; after a failure they stay for recovery.
      for (const s of this.segments.values()) if (s.fd >= 0) closeSync(s.fd);
      this.segments.clear();
      if (this.walDirFd >= 0) closeSync(this.walDirFd);
      this.walDirFd = -1;
      try {
        await this.db.close();
      } finally {
        openDirs.delete(this.dir);
      }
    }
  }
}
