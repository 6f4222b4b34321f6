/**
 * `ChunkStore`: the node-local home of object chunks. Every chunk is one file named by the
 * lowercase hex of its SHA-256, under a two-level fan-out (`<dir>/ab/cd/abcd…`), so no directory
 * grows beyond ~65k entries per 4 billion chunks and a partition of the hash space (the top bits,
 * see `partitionOf`) is a contiguous set of directories.
 *
 * Invariants:
 * - **Durable before acknowledged.** `put` writes a temp file in the chunk's own directory,
 *   fsyncs it, renames it over the final name and fsyncs the directory (and the parents of a
 *   directory it had to create) before it resolves `ok`. A crash leaves either nothing, a
 *   stale temp file (removed by `open`) or the complete chunk; never a torn chunk under its name.
 * - **A name is a promise about the content.** `put` refuses data whose SHA-256 is not the
 *   name; `get` re-hashes every read and never returns bytes that do not match. A file that does
 *   not match is moved to `<dir>/quarantine/` (kept for post-mortems, at most
 *   `quarantineFilesMax` files, then deleted instead) and reported `CORRUPT`.
 * - **Per-hash mutual exclusion.** Writes, deletes and quarantines of one hash run one at a
 *   time. A quarantine only moves the very file that was read (same inode), so a repair that
 *   replaced it meanwhile is never thrown away. A conditional delete (`olderThanMs`) re-checks
 *   the mtime under the lock, and a `put` of a chunk that already exists refreshes its mtime
 *   under the same lock (unless the caller preserves a source mtime): the garbage collector's
 *   grace period therefore always covers a chunk that a writer has just been told is stored.
 * - Operating errors (missing file, disk error, bad hash) are typed results; only broken
 *   invariants (a hash that is not 32 bytes, a chunk over `CHUNK_BYTES_MAX`) throw.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Stats } from "node:fs";
import { mkdir, open, readdir, rename, stat, unlink, utimes } from "node:fs/promises";
import { join } from "node:path";
import { assert } from "../base/index.js";
import { partitionOf } from "../placement/index.js";
import { fromHex, toHex } from "../storage/index.js";

/** The largest chunk a store accepts (the S3 layer cuts bodies into ~1 MiB chunks). */
export const CHUNK_BYTES_MAX = 8 * 1024 * 1024;
/** A chunk's name: its SHA-256. */
export const HASH_BYTES = 32;
export const QUARANTINE_DIR = "quarantine";
const QUARANTINE_FILES_MAX_DEFAULT = 1000;

const HEX_CHUNK = /^[0-9a-f]{64}$/;
const HEX_FANOUT = /^[0-9a-f]{2}$/;
const TEMP_MARK = ".tmp-";

export function sha256(data: Uint8Array): Buffer {
  return createHash("sha256").update(data).digest();
}

/** The file name of a hash (asserts it is a 32-byte hash). */
export function hashHex(hash: Uint8Array): string {
  assert(hash.byteLength === HASH_BYTES, () => `a chunk hash has 32 bytes, not ${hash.byteLength}`);
  return toHex(hash);
}

export function isHashHex(s: string): boolean {
  return HEX_CHUNK.test(s);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

export type ChunkIoError = {
  readonly ok: false;
  readonly code: "IO_ERROR";
  readonly message: string;
};

export type ChunkPutResult =
  /** `created`: false when the chunk was already there (and valid). */
  | { readonly ok: true; readonly created: boolean }
  | { readonly ok: false; readonly code: "HASH_MISMATCH"; readonly message: string }
  | { readonly ok: false; readonly code: "TOO_LARGE"; readonly message: string }
  | ChunkIoError;

export type ChunkGetResult =
  | { readonly ok: true; readonly data: Buffer; readonly mtimeMs: number }
  | { readonly ok: false; readonly code: "NOT_FOUND"; readonly message: string }
  /** The file did not match its name: it has been quarantined (it is gone from the store). */
  | { readonly ok: false; readonly code: "CORRUPT"; readonly message: string }
  | ChunkIoError;

export type ChunkDeleteResult =
  /** DELETED; MISSING: there was no such chunk; YOUNG: kept, modified after `olderThanMs`. */
  { readonly ok: true; readonly outcome: "DELETED" | "MISSING" | "YOUNG" } | ChunkIoError;

export interface ChunkInfo {
  readonly hash: Buffer;
  readonly hex: string;
  readonly bytes: number;
  readonly mtimeMs: number;
}

export interface ChunkFilter {
  /** Only the chunks of this partition (needs `partitions`). */
  readonly partition?: number;
  readonly partitions?: number;
  /** Only hashes sorting strictly after this hex name (a cursor). */
  readonly after?: string;
}

export interface ChunkStoreStats {
  readonly chunks: number;
  readonly bytes: number;
  /** Files moved to (or, beyond the quarantine bound, deleted instead of) quarantine. */
  readonly quarantined: number;
  readonly quarantineFiles: number;
  /** Stale temp files removed by `open`. */
  readonly tempFilesRemoved: number;
}

export interface ChunkStoreOptions {
  /** fsync files and directories (default true). Only benchmarks should turn it off. */
  readonly fsync?: boolean;
  readonly quarantineFilesMax?: number;
}

export interface PutOptions {
  /**
   * Give a newly created file this mtime instead of now, and leave an existing file's mtime
   * alone. For repair transfers, which must not make an old chunk look freshly written (the
   * garbage collector's grace period is about client writes).
   */
  readonly mtimeMs?: number;
  /**
   * The caller computed the hash from these very bytes in this process (the gateway's own
   * replica): hashing them again would only cost CPU. Never set for bytes from the network.
   */
  readonly hashVerified?: boolean;
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function errCode(e: unknown): string | undefined {
  return typeof e === "object" && e !== null && "code" in e
    ? String((e as { code: unknown }).code)
    : undefined;
}

async function readdirOrEmpty(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch (e) {
    if (errCode(e) === "ENOENT" || errCode(e) === "ENOTDIR") return [];
    throw e;
  }
}

async function statOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch (e) {
    if (errCode(e) === "ENOENT") return undefined;
    throw e;
  }
}

export class ChunkStore {
  private readonly fsync: boolean;
  private readonly quarantineFilesMax: number;
  /** Fan-out directories known to exist (and to be durable). */
  private readonly dirsKnown = new Set<string>();
  /** Per-hash lock: the tail of the chain of operations on that hash. */
  private readonly locks = new Map<string, Promise<void>>();
  private readonly counters = {
    chunks: 0,
    bytes: 0,
    quarantined: 0,
    quarantineFiles: 0,
    tempFilesRemoved: 0,
  };

  private constructor(
    readonly dir: string,
    options: ChunkStoreOptions,
  ) {
    this.fsync = options.fsync ?? true;
    this.quarantineFilesMax = options.quarantineFilesMax ?? QUARANTINE_FILES_MAX_DEFAULT;
  }

  /**
   * Opens (creating) a store in `dir`: removes stale temp files left by a crash, and counts the
   * chunks and bytes (one walk over the directory tree).
   */
  static async open(dir: string, options: ChunkStoreOptions = {}): Promise<ChunkStore> {
    const s = new ChunkStore(dir, options);
    await mkdir(join(dir, QUARANTINE_DIR), { recursive: true });
    s.counters.quarantineFiles = (await readdirOrEmpty(join(dir, QUARANTINE_DIR))).length;
    for (const a of (await readdirOrEmpty(dir)).filter((n) => HEX_FANOUT.test(n))) {
      for (const b of (await readdirOrEmpty(join(dir, a))).filter((n) => HEX_FANOUT.test(n))) {
        const leaf = join(dir, a, b);
        s.dirsKnown.add(`${a}/${b}`);
        for (const f of await readdirOrEmpty(leaf)) {
          if (f.includes(TEMP_MARK)) {
            await unlink(join(leaf, f)).catch(() => {});
            s.counters.tempFilesRemoved++;
          } else if (HEX_CHUNK.test(f)) {
            const st = await statOrUndefined(join(leaf, f));
            if (st?.isFile()) {
              s.counters.chunks++;
              s.counters.bytes += st.size;
            }
          }
        }
      }
    }
    return s;
  }

  /**
   * The chunk files under a store directory, by hash (hex) → path, without opening a store:
   * for audits from outside the node (the chaos runner, tests). Quarantine and temp files are
   * not chunks.
   */
  static async filesIn(dir: string): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const a of (await readdirOrEmpty(dir)).filter((n) => HEX_FANOUT.test(n))) {
      for (const b of (await readdirOrEmpty(join(dir, a))).filter((n) => HEX_FANOUT.test(n))) {
        for (const f of await readdirOrEmpty(join(dir, a, b))) {
          if (HEX_CHUNK.test(f)) out.set(f, join(dir, a, b, f));
        }
      }
    }
    return out;
  }

  /** The path of a chunk's file (whether or not it exists). */
  pathOf(hash: Uint8Array | string): string {
    const hex = typeof hash === "string" ? hash : hashHex(hash);
    assert(HEX_CHUNK.test(hex), () => `not a chunk name: ${hex}`);
    return join(this.dir, hex.slice(0, 2), hex.slice(2, 4), hex);
  }

  stats(): ChunkStoreStats {
    return { ...this.counters };
  }

  /** Stores `data` under `hash` durably; a no-op (refreshing the mtime) if already there. */
  async put(hash: Uint8Array, data: Uint8Array, options: PutOptions = {}): Promise<ChunkPutResult> {
    const hex = hashHex(hash);
    if (data.byteLength > CHUNK_BYTES_MAX) {
      const message = `chunk of ${data.byteLength} bytes is over ${CHUNK_BYTES_MAX}`;
      return { ok: false, code: "TOO_LARGE", message };
    }
    if (options.hashVerified !== true && !sha256(data).equals(hash)) {
      return { ok: false, code: "HASH_MISMATCH", message: `data does not hash to ${hex}` };
    }
    return this.withLock(hex, async () => {
      const path = this.pathOf(hex);
      try {
        const existing = await statOrUndefined(path);
        if (existing !== undefined) {
          if (existing.size === data.byteLength && (await this.sameContent(path, data))) {
            if (options.mtimeMs === undefined) {
              const nowS = Date.now() / 1000;
              await utimes(path, nowS, nowS);
            }
            return { ok: true, created: false };
          }
          // A damaged copy: keep it for a post-mortem and write the good one.
          await this.quarantineLocked(hex, existing.ino);
        }
        await this.writeDurably(hex, path, data, options.mtimeMs);
        this.counters.chunks++;
        this.counters.bytes += data.byteLength;
        return { ok: true, created: true };
      } catch (e) {
        return { ok: false, code: "IO_ERROR", message: `put ${hex}: ${errMessage(e)}` };
      }
    });
  }

  /** Reads and verifies a chunk; a file that does not match its name is quarantined. */
  async get(hash: Uint8Array): Promise<ChunkGetResult> {
    const hex = hashHex(hash);
    const path = this.pathOf(hex);
    let data: Buffer | undefined;
    let ino: number;
    let mtimeMs: number;
    try {
      const fh = await open(path, "r");
      try {
        const st = await fh.stat();
        ino = st.ino;
        mtimeMs = st.mtimeMs;
        // An oversized file cannot be a chunk: do not even read it.
        if (st.size <= CHUNK_BYTES_MAX) data = await fh.readFile();
      } finally {
        await fh.close();
      }
    } catch (e) {
      if (errCode(e) === "ENOENT") {
        return { ok: false, code: "NOT_FOUND", message: `no chunk ${hex}` };
      }
      return { ok: false, code: "IO_ERROR", message: `get ${hex}: ${errMessage(e)}` };
    }
    if (data !== undefined && sha256(data).equals(hash)) return { ok: true, data, mtimeMs };
    try {
      await this.withLock(hex, () => this.quarantineLocked(hex, ino));
    } catch (e) {
      return { ok: false, code: "IO_ERROR", message: `quarantine ${hex}: ${errMessage(e)}` };
    }
    return { ok: false, code: "CORRUPT", message: `chunk ${hex} does not match its hash` };
  }

  /** Whether a file exists under the hash's name (its content is not checked). */
  async has(hash: Uint8Array): Promise<boolean> {
    try {
      return (await statOrUndefined(this.pathOf(hash))) !== undefined;
    } catch {
      return false;
    }
  }

  /** The size of the chunk's file, or undefined if there is none. */
  async size(hash: Uint8Array): Promise<number | undefined> {
    return (await this.stat(hash))?.bytes;
  }

  async stat(hash: Uint8Array): Promise<ChunkInfo | undefined> {
    const hex = hashHex(hash);
    try {
      const st = await statOrUndefined(this.pathOf(hex));
      if (st === undefined) return undefined;
      return { hash: Buffer.from(hash), hex, bytes: st.size, mtimeMs: st.mtimeMs };
    } catch {
      return undefined;
    }
  }

  /**
   * Deletes a chunk. With `olderThanMs`, only if its mtime is at or before that time, checked
   * under the hash's lock (so a concurrent `put` that refreshed it wins).
   */
  async delete(
    hash: Uint8Array,
    options: { olderThanMs?: number } = {},
  ): Promise<ChunkDeleteResult> {
    const hex = hashHex(hash);
    return this.withLock(hex, async () => {
      const path = this.pathOf(hex);
      try {
        const st = await statOrUndefined(path);
        if (st === undefined) return { ok: true, outcome: "MISSING" };
        if (options.olderThanMs !== undefined && st.mtimeMs > options.olderThanMs) {
          return { ok: true, outcome: "YOUNG" };
        }
        await unlink(path);
        this.counters.chunks--;
        this.counters.bytes -= st.size;
        return { ok: true, outcome: "DELETED" };
      } catch (e) {
        if (errCode(e) === "ENOENT") return { ok: true, outcome: "MISSING" };
        return { ok: false, code: "IO_ERROR", message: `delete ${hex}: ${errMessage(e)}` };
      }
    });
  }

  /**
   * The stored hashes (hex), in ascending order, optionally of one partition and/or after a
   * cursor. Reads directories only (no stat per file). A chunk written or deleted during the
   * walk may or may not be seen.
   */
  async *hashes(filter: ChunkFilter = {}): AsyncGenerator<string> {
    const { partition, partitions, after } = filter;
    assert(
      (partition === undefined) === (partitions === undefined),
      "hashes(): partition and partitions go together",
    );
    assert(after === undefined || HEX_CHUNK.test(after), "hashes(): `after` is a chunk name");
    const inPartition = (lo: string, hi: string): boolean =>
      partition === undefined ||
      partitions === undefined ||
      (partitionOf(lo, partitions) <= partition && partition <= partitionOf(hi, partitions));
    const l1 = (await readdirOrEmpty(this.dir)).filter((n) => HEX_FANOUT.test(n)).sort();
    for (const a of l1) {
      if (after !== undefined && a < after.slice(0, 2)) continue;
      if (!inPartition(`${a}000000`, `${a}ffffff`)) continue;
      const l2 = (await readdirOrEmpty(join(this.dir, a))).filter((n) => HEX_FANOUT.test(n)).sort();
      for (const b of l2) {
        if (after !== undefined && a + b < after.slice(0, 4)) continue;
        if (!inPartition(`${a}${b}0000`, `${a}${b}ffff`)) continue;
        const files = (await readdirOrEmpty(join(this.dir, a, b)))
          .filter((n) => HEX_CHUNK.test(n))
          .sort();
        for (const f of files) {
          if (after !== undefined && f <= after) continue;
          if (partition !== undefined && partitions !== undefined) {
            if (partitionOf(f, partitions) !== partition) continue;
          }
          yield f;
        }
      }
    }
  }

  /** The inventory: stored chunks with their sizes and mtimes, in ascending hash order. */
  async *list(filter: ChunkFilter = {}): AsyncGenerator<ChunkInfo> {
    for await (const hex of this.hashes(filter)) {
      let st: Stats | undefined;
      try {
        st = await statOrUndefined(this.pathOf(hex));
      } catch {
        st = undefined;
      }
      if (st === undefined) continue; // deleted since the directory was read
      yield { hash: Buffer.from(fromHex(hex)), hex, bytes: st.size, mtimeMs: st.mtimeMs };
    }
  }

  /** `list` collected into an array (for small stores and tests). */
  async listAll(filter: ChunkFilter = {}): Promise<ChunkInfo[]> {
    const out: ChunkInfo[] = [];
    for await (const info of this.list(filter)) out.push(info);
    return out;
  }

  // ---- internals ----

  private async sameContent(path: string, data: Uint8Array): Promise<boolean> {
    const fh = await open(path, "r");
    try {
      return bytesEqual(data, await fh.readFile());
    } finally {
      await fh.close();
    }
  }

  private async writeDurably(
    hex: string,
    path: string,
    data: Uint8Array,
    mtimeMs: number | undefined,
  ): Promise<void> {
    const leaf = await this.ensureFanout(hex);
    const tmp = join(leaf, `${hex}${TEMP_MARK}${randomBytes(6).toString("hex")}`);
    try {
      const fh = await open(tmp, "wx", 0o644);
      try {
        await fh.writeFile(data);
        if (this.fsync) await fh.sync();
      } finally {
        await fh.close();
      }
      if (mtimeMs !== undefined) {
        const s = Math.min(mtimeMs, Date.now()) / 1000;
        await utimes(tmp, s, s);
      }
      await rename(tmp, path);
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw e;
    }
    await this.syncDir(leaf);
  }

  /** Creates `<dir>/ab/cd` if needed; a new directory's parents are fsynced (its entry). */
  private async ensureFanout(hex: string): Promise<string> {
    const rel = `${hex.slice(0, 2)}/${hex.slice(2, 4)}`;
    const leaf = join(this.dir, hex.slice(0, 2), hex.slice(2, 4));
    if (this.dirsKnown.has(rel)) return leaf;
    const created = await mkdir(leaf, { recursive: true });
    if (created !== undefined) {
      await this.syncDir(join(this.dir, hex.slice(0, 2)));
      await this.syncDir(this.dir);
    }
    this.dirsKnown.add(rel);
    return leaf;
  }

  /**
   * fsyncs a directory. Concurrent callers share work: a caller whose rename happened while a
   * sync of the directory was already running waits for the next one (which starts after the
   * running one and covers every rename made before it started); every caller that arrives
   * meanwhile shares that next sync. Under many concurrent chunk writes into one directory,
   * this is one directory fsync per round instead of one per chunk.
   */
  private syncDir(path: string): Promise<void> {
    if (!this.fsync) return Promise.resolve();
    const st = this.dirSyncs.get(path);
    if (st === undefined) {
      const entry: { running: Promise<void>; next: Promise<void> | undefined } = {
        running: this.syncDirNow(path).finally(() => {
          if (entry.next === undefined) this.dirSyncs.delete(path);
        }),
        next: undefined,
      };
      this.dirSyncs.set(path, entry);
      return entry.running;
    }
    st.next ??= st.running
      .catch(() => {})
      .then(() => {
        const running = this.syncDirNow(path);
        st.running = running;
        st.next = undefined;
        return running.finally(() => {
          if (st.next === undefined && st.running === running) this.dirSyncs.delete(path);
        });
      });
    return st.next;
  }

  private readonly dirSyncs = new Map<
    string,
    { running: Promise<void>; next: Promise<void> | undefined }
  >();

  private async syncDirNow(path: string): Promise<void> {
    const fh = await open(path, "r");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Moves the chunk file out of the store if it is still the inode `ino`. Hold the lock. */
  private async quarantineLocked(hex: string, ino: number): Promise<void> {
    const path = this.pathOf(hex);
    const st = await statOrUndefined(path);
    if (st === undefined || st.ino !== ino) return; // replaced or removed meanwhile
    if (this.counters.quarantineFiles < this.quarantineFilesMax) {
      const name = `${hex}.${Date.now()}.${randomBytes(4).toString("hex")}`;
      await rename(path, join(this.dir, QUARANTINE_DIR, name));
      this.counters.quarantineFiles++;
    } else {
      await unlink(path);
    }
    await this.syncDir(join(this.dir, hex.slice(0, 2), hex.slice(2, 4)));
    this.counters.quarantined++;
    this.counters.chunks--;
    this.counters.bytes -= st.size;
  }

  private async withLock<T>(hex: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(hex) ?? Promise.resolve();
    let release = (): void => {};
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => mine);
    this.locks.set(hex, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(hex) === tail) this.locks.delete(hex);
    }
  }
}
