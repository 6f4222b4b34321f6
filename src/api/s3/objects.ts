/**
 * The object index: S3 objects, versions and multipart uploads as entries of one
 * range-sharded keyspace ("_s3"), whose shards split by size like any other, so one bucket
 * scales over many shards and lists in key order. Bodies live in content-addressed chunks
 * (src/blob/), written to a quorum of their ring nodes before the index points at them.
 *
 * Entries (bucket id = BucketRecord.id, keys are UTF-8 and never contain NUL):
 *
 *   h/<bid>/<key>                  the current version (an ObjectRecord; maybe a delete marker)
 *   v/<bid>/<key>\0<sortId>        every version of a bucket with versioning on (newest first)
 *   d/<dataId>/<page:8 hex>        the chunk list of one body: up to PAGE_CHUNKS (hash, size)
 *   r/<chunk hash hex>/<dataId>    a reference from a body to a chunk (garbage collection)
 *   u/<bid>/<key>\0<uploadId>      an open multipart upload
 *   p/<uploadId>/<partNo:5>        an uploaded part (its own body)
 *   n/<dataId>                     a body being written (a BirthRecord), until the entry that
 *                                  references it is written
 *
 * Why a chunk list in pages, and references apart: appending a chunk never rewrites the list
 * (a 10 GiB object is 40 page writes, not a 300 KiB record rewritten 10,000 times), and the
 * garbage collector asks "is this chunk referenced?" with one prefix lookup.
 *
 * Order of writes, which is what makes crashes harmless: chunks (on a quorum) → pages and
 * references → the head entry (the commit point, a compare-and-set). A crash before the head
 * write leaves unreferenced pages and references (a leak, never a loss); the references keep
 * the chunks alive. Removing a body (overwrite, delete, abort) happens after the head entry
 * no longer points at it: pages and references go, then the chunk collector deletes chunks
 * that nothing references any more, after a grace period that covers uploads in flight.
 *
 * Bodies that never commit (the node writing them crashed): every chunked body has a birth
 * record `n/<dataId>` from before its first reference until the entry that references it is
 * written. The sweeper (`sweepOrphans`, run by the metadata leader) takes a birth record older
 * than the upload deadline ("writing" → "sweeping", a compare-and-set) and removes that body's
 * pages and references. The writer moves its record "writing" → "committing" (a compare-and-set
 * too) just before the referencing entry is written: exactly one of the two wins, so the
 * sweeper never removes a body an entry references, and an upload that outlasted the deadline
 * fails (EXPIRED) instead of committing a body the sweeper is removing.
 */
import { createHash, randomBytes } from "node:crypto";
import { forEachLimited } from "../../base/index.js";
import type { KvItem } from "../../shard/index.js";
import type { KvError, KvService, Rollup } from "../kv/service.js";

export const INDEX_KEYSPACE = "_s3";
/** Bodies up to this size live inside the index entry (no chunk round trips). */
export const INLINE_BYTES_MAX = 4096;
/** Chunk size of larger bodies. */
export const CHUNK_BYTES = 1 << 20;
/** Chunks per chunk-list page (36 bytes each: about 9 KiB). */
export const PAGE_CHUNKS = 256;
/** Chunk writes in flight per upload (the upload's memory: about this many MiB). */
export const PUT_INFLIGHT_CHUNKS = 4;
/**
 * Chunk bytes being written by all uploads of this node together. Past it, uploads stop
 * reading their bodies (TCP backpressure to the clients) instead of queueing more chunk
 * transfers than the network drains within their deadlines.
 */
export const CHUNK_INFLIGHT_BYTES_MAX = 64 << 20;

/** A counting semaphore over bytes, first come first served. */
export class ByteBudget {
  private used = 0;
  private readonly waiting: { bytes: number; go: () => void }[] = [];

  constructor(readonly bytesMax: number) {}

  acquire(bytes: number): Promise<void> {
    // A request larger than the whole budget still runs, alone.
    const n = Math.min(bytes, this.bytesMax);
    if (this.waiting.length === 0 && this.used + n <= this.bytesMax) {
      this.used += n;
      return Promise.resolve();
    }
    return new Promise((go) => this.waiting.push({ bytes: n, go }));
  }

  release(bytes: number): void {
    this.used -= Math.min(bytes, this.bytesMax);
    while (this.waiting.length > 0) {
      const next = this.waiting[0] as { bytes: number; go: () => void };
      if (this.used + next.bytes > this.bytesMax) break;
      this.waiting.shift();
      this.used += next.bytes;
      next.go();
    }
  }
}
/** Chunk reads ahead of the one being sent, per download. */
const GET_READAHEAD_CHUNKS = 3;
/** Index writes in flight when writing or removing references. */
const REF_WRITES_INFLIGHT = 16;
/** S3's part count limit. */
export const PARTS_MAX = 10_000;
/** Entries fetched per index scan. */
const SCAN_LIMIT = 1000;
/** Abandoned bodies removed per sweep (the rest wait for the next one). */
export const SWEEP_BODIES_MAX = 1000;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** One body: its chunk list is `pages` pages under `d/<id>/`. */
export interface DataRef {
  readonly id: string;
  readonly size: number;
  readonly pages: number;
  /**
   * The replication class of its chunks (the bucket's `chunkReplicas` when it was written);
   * absent: the ring's default (src/blob/classes.ts).
   */
  readonly replicas?: number;
}

export interface ObjectRecord {
  readonly key: string;
  /** "null" for objects written while versioning was off or suspended. */
  readonly versionId: string;
  /** The version's place among the key's versions (v/ entries), when it has one. */
  readonly sortId?: string;
  readonly deleteMarker?: boolean;
  readonly size: number;
  /** Quoted, as in the ETag header. */
  readonly etag: string;
  readonly lastModifiedMs: number;
  /** Content-Type and the other stored standard headers (lower-case names). */
  readonly headers: Readonly<Record<string, string>>;
  /** x-amz-meta-* (lower-case names, with the prefix). */
  readonly meta: Readonly<Record<string, string>>;
  /** Checksums the client asked for (algorithm → base64), and their type. */
  readonly checksums?: Readonly<Record<string, string>>;
  readonly checksumType?: "FULL_OBJECT" | "COMPOSITE";
  /** The body itself (base64) when it is small. */
  readonly inline?: string;
  /** The body in chunks: one DataRef per part (one for a single-part upload). */
  readonly parts?: readonly DataRef[];
  /** For multipart objects: the number of parts (x-amz-mp-parts-count). */
  readonly partsCount?: number;
}

export interface UploadRecord {
  readonly key: string;
  readonly uploadId: string;
  readonly initiatedMs: number;
  readonly initiator: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly meta: Readonly<Record<string, string>>;
  readonly checksumAlgorithm?: string;
  /** Set while a CompleteMultipartUpload is writing the object (aborts then refuse). */
  readonly completingMs?: number;
}

export interface PartRecord {
  readonly partNumber: number;
  readonly data: DataRef;
  /** Quoted MD5 of the part. */
  readonly etag: string;
  readonly size: number;
  readonly lastModifiedMs: number;
  readonly checksums?: Readonly<Record<string, string>>;
}

/** A body being written (`n/<dataId>`): see "Bodies that never commit" above. */
interface BirthRecord {
  readonly state: "writing" | "committing" | "sweeping";
  /** When the record entered this state (the writer's or the sweeper's clock). */
  readonly sinceMs: number;
}

/** What one sweep did. */
export interface SweepReport {
  /** Abandoned bodies whose pages and references were removed. */
  readonly swept: number;
  /** Birth records of bodies whose commit outcome is unknown, dropped (their bodies kept). */
  readonly settled: number;
  /** References read to find the abandoned bodies' ones. */
  readonly refsScanned: number;
}

/** The chunk layer, as the index needs it (src/blob/ implements it). */
export interface ChunkPort {
  put(
    data: Uint8Array,
    opts?: { readonly writeQuorum?: number; readonly replicas?: number },
  ): Promise<{ ok: true; hash: Uint8Array } | { ok: false; message: string }>;
  get(
    hash: Uint8Array,
    opts?: { readonly replicas?: number },
  ): Promise<{ ok: true; data: Uint8Array } | { ok: false; code: string; message: string }>;
}

/** A bucket's chunk settings as `writeBody` takes them. */
export function chunkPlacement(b: {
  readonly chunkWriteQuorum?: number;
  readonly chunkReplicas?: number;
}): ChunkPlacement {
  return {
    ...(b.chunkWriteQuorum !== undefined ? { writeQuorum: b.chunkWriteQuorum } : {}),
    ...(b.chunkReplicas !== undefined ? { replicas: b.chunkReplicas } : {}),
  };
}

/** How a body's chunks are written: the bucket's settings (undefined: the nodes' defaults). */
export interface ChunkPlacement {
  /** Copies durable before a chunk counts as written (W). */
  readonly writeQuorum?: number;
  /** Copies kept (N, the replication class). */
  readonly replicas?: number;
}

export type IndexError =
  | KvError
  | { readonly ok: false; readonly code: "CHUNKS_UNAVAILABLE"; readonly message: string }
  | { readonly ok: false; readonly code: "TOO_LARGE"; readonly message: string }
  | { readonly ok: false; readonly code: "CONFLICT"; readonly message: string }
  /** The body outlasted the upload deadline and was swept: nothing was committed. */
  | { readonly ok: false; readonly code: "EXPIRED"; readonly message: string };

/** What `commit` answers: the replaced record, an error, or the condition's refusal. */
export type CommitResult<E> =
  | { ok: true; replaced: ObjectRecord | undefined; removable: ObjectRecord[] }
  | IndexError
  | { ok: false; refused: E };

/** What a write condition callback answers: go on, or refuse with this (the caller's) error. */
export type Check<E> = (current: ObjectRecord | undefined) => E | undefined;

// ------------------------------------------------------------------ keys

const headKey = (bid: string, key: string) => enc.encode(`h/${bid}/${key}`);
const headPrefix = (bid: string) => `h/${bid}/`;
const versionPrefix = (bid: string) => `v/${bid}/`;
const versionKey = (bid: string, key: string, sortId: string) =>
  enc.encode(`v/${bid}/${key}\0${sortId}`);
const pageKey = (dataId: string, page: number) =>
  enc.encode(`d/${dataId}/${page.toString(16).padStart(8, "0")}`);
const refKey = (hash: Uint8Array, dataId: string) =>
  enc.encode(`r/${Buffer.from(hash).toString("hex")}/${dataId}`);
const uploadKey = (bid: string, key: string, uploadId: string) =>
  enc.encode(`u/${bid}/${key}\0${uploadId}`);
const partPrefix = (uploadId: string) => `p/${uploadId}/`;
const birthKey = (dataId: string) => enc.encode(`n/${dataId}`);
const BIRTH_PREFIX = "n/";
const trashKey = (uploadId: string, dataId: string) => enc.encode(`t/${uploadId}/${dataId}`);
const partKey = (uploadId: string, n: number) =>
  enc.encode(`${partPrefix(uploadId)}${String(n).padStart(5, "0")}`);

/**
 * Version ids sort newest first: the inverted time in ms, then randomness (two versions in one
 * millisecond keep an arbitrary but fixed order; the head entry says which one is current).
 */
export function newSortId(nowMs: number): string {
  const inv = (0xffffffffffff - nowMs).toString(16).padStart(12, "0");
  return inv + randomBytes(4).toString("hex");
}

/** The sort id of a null version recorded late (it sorts after versions of the same ms). */
const nullSortId = (ms: number) =>
  `${(0xffffffffffff - ms).toString(16).padStart(12, "0")}ffffffff`;

const newDataId = () => randomBytes(12).toString("hex");
export const newUploadId = () => randomBytes(16).toString("hex");

function parse<T>(v: Uint8Array): T {
  return JSON.parse(dec.decode(v)) as T;
}
const json = (x: unknown) => enc.encode(JSON.stringify(x));

/** Bytes sorting after every UTF-8 string that starts with `s` (UTF-8 never has 0xFF). */
function afterAllWithPrefix(s: string): Uint8Array {
  const b = enc.encode(s);
  const out = new Uint8Array(b.byteLength + 1);
  out.set(b);
  out[b.byteLength] = 0xff;
  return out;
}

/** Runs `f` over `items` with at most `n` in flight; the first failure is returned. */
async function boundedAll<T, R extends { ok: boolean }>(
  items: readonly T[],
  n: number,
  f: (x: T) => Promise<R>,
): Promise<R | undefined> {
  let failed: R | undefined;
  await forEachLimited(items, n, async (x) => {
    if (failed) return;
    const r = await f(x);
    if (!r.ok) failed ??= r;
  });
  return failed;
}

// ------------------------------------------------------------------ the index

export interface WrittenBody {
  readonly size: number;
  /** Hex MD5 of the body. */
  readonly md5: string;
  readonly inline?: Uint8Array;
  readonly data?: DataRef;
}

export interface VersionEntry {
  readonly key: string;
  readonly record: ObjectRecord;
  /** The key's current version. */
  readonly latest: boolean;
}

export interface ListEntry {
  readonly key: string;
  readonly record: ObjectRecord;
}

export interface ListPage {
  readonly entries: ListEntry[];
  readonly prefixes: string[];
  readonly truncated: boolean;
  /** The last key or common prefix returned (the next page starts after it). */
  readonly last: string | undefined;
}

/** How long after a version stops existing its body is removed (see retireLater). */
const RETIRE_DELAY_MS = 3_000;

export class ObjectIndex {
  /** Bodies this node is writing: data id → revision of its birth record. */
  private readonly births = new Map<string, number>();

  constructor(
    private readonly kv: KvService,
    private readonly chunks: ChunkPort,
    private readonly budget = new ByteBudget(CHUNK_INFLIGHT_BYTES_MAX),
    private readonly clock: () => number = Date.now,
  ) {}

  /** Writes a body's birth record; before any of its references exists. */
  private async begin(dataId: string): Promise<IndexError | undefined> {
    const w = await this.kv.put(
      INDEX_KEYSPACE,
      birthKey(dataId),
      json({ state: "writing", sinceMs: this.clock() } satisfies BirthRecord),
      { kind: "ifAbsent" },
    );
    if (!w.ok) return w;
    this.births.set(dataId, w.revision);
    return undefined;
  }

  /**
   * Moves the birth records of the bodies among `ids` that this node is writing to
   * "committing", before an entry referencing them is written. Fails with EXPIRED when the
   * sweeper took one first.
   */
  private async claimBodies(ids: readonly string[]): Promise<IndexError | undefined> {
    for (const id of ids) {
      const revision = this.births.get(id);
      if (revision === undefined) continue; // not a new body (a part, a body already committed)
      const w = await this.kv.put(
        INDEX_KEYSPACE,
        birthKey(id),
        json({ state: "committing", sinceMs: this.clock() } satisfies BirthRecord),
        { kind: "ifRevision", revision },
      );
      if (w.ok) {
        this.births.set(id, w.revision);
        continue;
      }
      if (w.code === "PRECONDITION_FAILED")
        return {
          ok: false,
          code: "EXPIRED",
          message:
            "the upload outlasted the upload deadline and its data was removed; upload it again",
        };
      return w;
    }
    return undefined;
  }

  /** The entry referencing these bodies is written: their birth records go. */
  private settleBodies(ids: readonly string[]): void {
    for (const id of ids) {
      const revision = this.births.get(id);
      if (revision === undefined) continue;
      this.births.delete(id);
      // Best effort, and off the request's path: a record left behind is dropped by the
      // sweeper (the body kept).
      void this.kv.delete(INDEX_KEYSPACE, birthKey(id), { kind: "ifRevision", revision });
    }
  }

  /**
   * The entry referencing these bodies may or may not have been written: they are kept (the
   * caller does not remove them), and their "committing" records are left to the sweeper.
   */
  private forgetBodies(ids: readonly string[]): void {
    for (const id of ids) this.births.delete(id);
  }

  /** Bodies being written by this node (for the tests and metrics). */
  bodiesInFlight(): number {
    return this.births.size;
  }

  /**
   * Removes the bodies of uploads that never committed (their node crashed, or they outlasted
   * `deadlineMs`): see "Bodies that never commit" above. At most SWEEP_BODIES_MAX bodies per
   * call. Their references are found by one pass over all references (`r/`): abandoned bodies
   * are rare, and their chunk list was not necessarily written.
   */
  async sweepOrphans(deadlineMs: number): Promise<({ ok: true } & SweepReport) | KvError> {
    const taken = await this.takeAbandoned(deadlineMs);
    if (!taken.ok) return taken;
    const removed = await this.removeAbandoned(taken.orphans);
    if (!removed.ok) return removed;
    return {
      ok: true,
      swept: taken.orphans.size,
      settled: taken.settled,
      refsScanned: removed.refsScanned,
    };
  }

  /**
   * The sweep's first half: birth records older than `deadlineMs` become the sweeper's
   * ("writing" → "sweeping" by compare-and-set; a "sweeping" one whose sweeper stopped halfway
   * is taken over); "committing" ones are dropped with their bodies kept.
   */
  private async takeAbandoned(
    deadlineMs: number,
  ): Promise<{ ok: true; orphans: Set<string>; settled: number } | KvError> {
    const now = this.clock();
    const orphans = new Set<string>();
    let settled = 0;
    for await (const page of this.scan(BIRTH_PREFIX)) {
      if (!page.ok) return page;
      for (const i of page.items) {
        const b = parse<BirthRecord>(i.value);
        if (now - b.sinceMs < deadlineMs) continue;
        const revision = { kind: "ifRevision" as const, revision: i.revision };
        if (b.state === "committing") {
          // The referencing entry may or may not have been written: the body stays (a leak
          // at worst), the record goes.
          if ((await this.kv.delete(INDEX_KEYSPACE, i.key, revision)).ok) settled++;
          continue;
        }
        if (b.state === "writing") {
          const sweeping: BirthRecord = { state: "sweeping", sinceMs: now };
          const w = await this.kv.put(INDEX_KEYSPACE, i.key, json(sweeping), revision);
          if (!w.ok) continue; // its writer claimed it just now
        }
        orphans.add(dec.decode(i.key).slice(BIRTH_PREFIX.length));
        if (orphans.size >= SWEEP_BODIES_MAX) return { ok: true, orphans, settled };
      }
    }
    return { ok: true, orphans, settled };
  }

  /**
   * The sweep's second half: the pages, references and birth records of `orphans`. The
   * references are found by one pass over all of them (an abandoned body's chunk list may not
   * have been written).
   */
  private async removeAbandoned(
    orphans: ReadonlySet<string>,
  ): Promise<{ ok: true; refsScanned: number } | KvError> {
    if (orphans.size === 0) return { ok: true, refsScanned: 0 };
    const remove = async (items: readonly { key: Uint8Array }[]) => {
      const failed = await boundedAll(items, REF_WRITES_INFLIGHT, (i) =>
        this.kv.delete(INDEX_KEYSPACE, i.key, { kind: "none" }),
      );
      return failed && !failed.ok && failed.code !== "NOT_FOUND" ? failed : undefined;
    };
    for (const id of orphans) {
      for await (const page of this.scan(`d/${id}/`)) {
        if (!page.ok) return page;
        await remove(page.items); // (a page left behind is harmless: nothing reads it)
      }
    }
    let refsScanned = 0;
    for await (const page of this.scan("r/")) {
      if (!page.ok) return page;
      refsScanned += page.items.length;
      const failed = await remove(
        page.items.filter((i) => {
          const k = dec.decode(i.key);
          return orphans.has(k.slice(k.lastIndexOf("/") + 1));
        }),
      );
      if (failed) return failed;
    }
    for (const id of orphans) await this.kv.delete(INDEX_KEYSPACE, birthKey(id), { kind: "none" });
    return { ok: true, refsScanned };
  }

  /**
   * The index entries under `prefix` (after `startAfter`), a page of up to `limit` at a time,
   * linearizably; a failed read is the last thing yielded.
   */
  private async *scan(
    prefix: string,
    startAfter?: Uint8Array,
    limit = SCAN_LIMIT,
  ): AsyncGenerator<{ ok: true; items: KvItem[] } | KvError> {
    let after = startAfter;
    for (;;) {
      const r = await this.kv.list(
        INDEX_KEYSPACE,
        { prefix: enc.encode(prefix), startAfter: after, limit },
        "linearizable",
      );
      yield r;
      if (!r.ok || !r.more || r.items.length === 0) return;
      after = r.items[r.items.length - 1]?.key;
    }
  }

  // ---------------------------------------------------------------- bodies

  /**
   * Stores a body: small ones are returned inline, larger ones are cut into chunks written to
   * a quorum (a few in flight: the upload's memory stays at a few MiB whatever its size), with
   * their chunk list and references. `observe` sees every byte (digests); `sizeMax` bounds it.
   */
  async writeBody(
    body: AsyncIterable<Uint8Array>,
    sizeMax: number,
    observe: (chunk: Uint8Array) => void = () => {},
    /** Small bodies inline (objects); false for parts, whose bodies are always chunked. */
    inline = true,
    /** The bucket's W and N. */
    placement: ChunkPlacement = {},
  ): Promise<{ ok: true; body: WrittenBody } | IndexError> {
    const replicas = placement.replicas;
    const putOpts = {
      ...(placement.writeQuorum !== undefined ? { writeQuorum: placement.writeQuorum } : {}),
      ...(replicas !== undefined ? { replicas } : {}),
    };
    const md5 = createHash("md5");
    const dataId = newDataId();
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    let size = 0;
    const refs: { hash: Uint8Array; size: number }[] = [];
    const inflight = new Set<Promise<void>>();
    let failure: IndexError | undefined;
    const refWrites: Promise<void>[] = [];
    let born: Promise<IndexError | undefined> | undefined;
    const storeChunk = async (data: Uint8Array, slot: number) => {
      // The birth record is written alongside the first chunk, and exists before the first
      // reference (the sweeper's only way in).
      born ??= this.begin(dataId);
      const birth = born;
      await this.budget.acquire(data.byteLength);
      const p = this.chunks.put(data, putOpts).then((r) => {
        this.budget.release(data.byteLength);
        if (!r.ok) {
          failure ??= { ok: false, code: "CHUNKS_UNAVAILABLE", message: r.message };
          return;
        }
        refs[slot] = { hash: r.hash, size: data.byteLength };
        // The reference is written in the background: the slot (and the chunk's memory) is
        // free once the chunk is durable; the head entry waits for every reference below.
        refWrites.push(
          birth.then(async (b) => {
            if (b) {
              failure ??= b;
              return;
            }
            const w = await this.kv.put(INDEX_KEYSPACE, refKey(r.hash, dataId), new Uint8Array(0), {
              kind: "none",
            });
            if (!w.ok) failure ??= w;
          }),
        );
      });
      const tracked = p.finally(() => inflight.delete(tracked));
      inflight.add(tracked);
      // Nothing returned: returning `tracked` from this async function would make the caller's
      // `await` wait for the chunk to be stored, one chunk at a time (the pipeline of up to
      // PUT_INFLIGHT_CHUNKS would never fill).
    };

    let slots = 0;
    const cut = async (final: boolean) => {
      while (pendingBytes >= CHUNK_BYTES || (final && pendingBytes > 0)) {
        const all = Buffer.concat(pending, pendingBytes);
        const take = Math.min(CHUNK_BYTES, all.byteLength);
        const chunk = all.subarray(0, take);
        const rest = all.subarray(take);
        pending = rest.byteLength > 0 ? [rest] : [];
        pendingBytes = rest.byteLength;
        await storeChunk(chunk, slots++);
        if (inflight.size >= PUT_INFLIGHT_CHUNKS) await Promise.race(inflight);
        if (failure) return;
      }
    };

    for await (const piece of body) {
      if (failure) break;
      size += piece.byteLength;
      if (size > sizeMax) {
        failure = {
          ok: false,
          code: "TOO_LARGE",
          message: `the body exceeds ${sizeMax} bytes`,
        };
        break;
      }
      md5.update(piece);
      observe(piece);
      pending.push(Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength));
      pendingBytes += piece.byteLength;
      if (pendingBytes >= CHUNK_BYTES && size > INLINE_BYTES_MAX) await cut(false);
    }
    if (inline && !failure && size <= INLINE_BYTES_MAX && slots === 0) {
      const bytes = Buffer.concat(pending, pendingBytes);
      return { ok: true, body: { size, md5: md5.digest("hex"), inline: bytes } };
    }
    if (!failure) await cut(true);
    await Promise.all(inflight);
    await Promise.all(refWrites);
    // The chunk list is written once every chunk is stored (chunks finish out of order), in
    // pages of PAGE_CHUNKS written together.
    const pages = Math.ceil(refs.length / PAGE_CHUNKS);
    if (!failure) {
      const written = await Promise.all(
        Array.from({ length: pages }, (_, p) =>
          this.writePage(dataId, p, refs.slice(p * PAGE_CHUNKS, (p + 1) * PAGE_CHUNKS)),
        ),
      );
      for (const w of written) if (!w.ok) failure ??= w;
    }
    const data: DataRef = {
      id: dataId,
      size,
      pages,
      ...(replicas !== undefined ? { replicas } : {}),
    };
    if (failure) {
      // Nothing points at this body: drop what was written of it (best effort; a leftover
      // reference only delays the collection of its chunk).
      refs.length = slots;
      void this.removeBody(data, refs);
      return failure;
    }
    return { ok: true, body: { size, md5: md5.digest("hex"), data } };
  }

  private async writePage(
    dataId: string,
    page: number,
    refs: readonly { hash: Uint8Array; size: number }[],
  ): Promise<{ ok: true } | KvError> {
    const out = Buffer.alloc(refs.length * 36);
    refs.forEach((r, i) => {
      out.set(r.hash, i * 36);
      out.writeUInt32BE(r.size, i * 36 + 32);
    });
    const w = await this.kv.put(INDEX_KEYSPACE, pageKey(dataId, page), out, { kind: "none" });
    return w.ok ? { ok: true } : w;
  }

  private async readPage(
    dataId: string,
    page: number,
  ): Promise<{ ok: true; refs: { hash: Uint8Array; size: number }[] } | IndexError> {
    const r = await this.kv.get(INDEX_KEYSPACE, pageKey(dataId, page), "linearizable");
    if (!r.ok) return r;
    if (!r.item)
      return {
        ok: false,
        code: "CHUNKS_UNAVAILABLE",
        message: `chunk list ${dataId}/${page} missing`,
      };
    const v = Buffer.from(r.item.value);
    const refs: { hash: Uint8Array; size: number }[] = [];
    for (let o = 0; o + 36 <= v.byteLength; o += 36)
      refs.push({ hash: v.subarray(o, o + 32), size: v.readUInt32BE(o + 32) });
    return { ok: true, refs };
  }

  /** The chunks of a body, in order (one page at a time). */
  private async *chunkRefs(data: DataRef): AsyncGenerator<{ hash: Uint8Array; size: number }> {
    for (let p = 0; p < data.pages; p++) {
      const r = await this.readPage(data.id, p);
      if (!r.ok) throw new BodyReadError(r.message);
      yield* r.refs;
    }
  }

  /**
   * The bytes [start, end) of a record's body, chunk by chunk, each verified by the chunk layer
   * against its hash; a few chunks are fetched ahead. Throws BodyReadError when a chunk cannot
   * be read from any replica (the caller cuts the response).
   */
  async *readBody(rec: ObjectRecord, start: number, end: number): AsyncGenerator<Uint8Array> {
    if (rec.inline !== undefined) {
      const all = Buffer.from(rec.inline, "base64");
      yield all.subarray(start, end);
      return;
    }
    const wanted: { hash: Uint8Array; from: number; to: number }[] = [];
    let offset = 0;
    const ahead: Promise<Uint8Array>[] = [];
    const fetch = (hash: Uint8Array, replicas: number | undefined) =>
      this.chunks.get(hash, replicas === undefined ? {} : { replicas }).then((r) => {
        if (!r.ok) throw new BodyReadError(r.message);
        return r.data;
      });
    for (const part of rec.parts ?? []) {
      if (offset + part.size <= start) {
        offset += part.size;
        continue;
      }
      if (offset >= end) break;
      for await (const c of this.chunkRefs(part)) {
        const cStart = offset;
        offset += c.size;
        if (offset <= start) continue;
        if (cStart >= end) break;
        wanted.push({
          hash: c.hash,
          from: Math.max(0, start - cStart),
          to: Math.min(c.size, end - cStart),
        });
        const p = fetch(c.hash, part.replicas);
        p.catch(() => {}); // observed when its turn comes
        ahead.push(p);
        while (ahead.length > GET_READAHEAD_CHUNKS) {
          const w = wanted.shift() as (typeof wanted)[number];
          const data = await (ahead.shift() as Promise<Uint8Array>);
          yield data.subarray(w.from, w.to);
        }
      }
      if (offset < end && offset < start) continue;
    }
    while (ahead.length > 0) {
      const w = wanted.shift() as (typeof wanted)[number];
      const data = await (ahead.shift() as Promise<Uint8Array>);
      yield data.subarray(w.from, w.to);
    }
  }

  /** A copy of a body under a new id: new pages and references, the same chunks (no data copied). */
  async cloneBody(data: DataRef): Promise<{ ok: true; data: DataRef } | IndexError> {
    const id = newDataId();
    const b = await this.begin(id);
    if (b) return b;
    for (let p = 0; p < data.pages; p++) {
      const r = await this.readPage(data.id, p);
      if (!r.ok) return r;
      const failed = await boundedAll(r.refs, REF_WRITES_INFLIGHT, (c) =>
        this.kv.put(INDEX_KEYSPACE, refKey(c.hash, id), new Uint8Array(0), { kind: "none" }),
      );
      if (failed && !failed.ok) return failed as KvError;
      const w = await this.writePage(id, p, r.refs);
      if (!w.ok) return w;
    }
    return { ok: true, data: { ...data, id } };
  }

  /**
   * Removes a body's pages and references (its chunks become collectable). Best effort: what
   * fails is left for later (it only delays the collection of chunks).
   */
  async removeBody(
    data: DataRef,
    known?: readonly ({ hash: Uint8Array; size: number } | undefined)[],
  ): Promise<void> {
    const pages = known ? Math.ceil(known.length / PAGE_CHUNKS) : data.pages;
    for (let p = 0; p < pages; p++) {
      let refs: { hash: Uint8Array }[];
      if (known) {
        refs = known
          .slice(p * PAGE_CHUNKS, (p + 1) * PAGE_CHUNKS)
          .filter((x): x is { hash: Uint8Array; size: number } => x !== undefined);
      } else {
        const r = await this.readPage(data.id, p);
        if (!r.ok) continue;
        refs = r.refs;
      }
      await boundedAll(refs, REF_WRITES_INFLIGHT, (c) =>
        this.kv.delete(INDEX_KEYSPACE, refKey(c.hash, data.id), { kind: "none" }),
      );
      await this.kv.delete(INDEX_KEYSPACE, pageKey(data.id, p), { kind: "none" });
    }
    // Its birth record, when this node was writing it and it never committed.
    if (this.births.delete(data.id))
      await this.kv.delete(INDEX_KEYSPACE, birthKey(data.id), { kind: "none" });
  }

  /** Whether any body references the chunk (for the chunk collector; undefined: cannot tell). */
  async isReferenced(hash: Uint8Array): Promise<boolean | undefined> {
    const r = await this.kv.list(
      INDEX_KEYSPACE,
      {
        prefix: enc.encode(`r/${Buffer.from(hash).toString("hex")}/`),
        startAfter: undefined,
        limit: 1,
      },
      "linearizable",
    );
    return r.ok ? r.items.length > 0 : undefined;
  }

  // ---------------------------------------------------------------- heads and versions

  async head(
    bid: string,
    key: string,
  ): Promise<{ ok: true; record: ObjectRecord | undefined; revision: number } | KvError> {
    const r = await this.kv.get(INDEX_KEYSPACE, headKey(bid, key), "linearizable");
    if (!r.ok) return r;
    return r.item
      ? { ok: true, record: parse<ObjectRecord>(r.item.value), revision: r.item.revision }
      : { ok: true, record: undefined, revision: 0 };
  }

  /** A specific version ("null" included), current or not. */
  async version(
    bid: string,
    key: string,
    versionId: string,
  ): Promise<{ ok: true; record: ObjectRecord | undefined } | KvError> {
    const h = await this.head(bid, key);
    if (!h.ok) return h;
    if (h.record?.versionId === versionId) return { ok: true, record: h.record };
    const versions = await this.versionsOf(bid, key);
    if (!versions.ok) return versions;
    return {
      ok: true,
      record: versions.items.find((v) => v.record.versionId === versionId)?.record,
    };
  }

  /** Every v/ entry of one key, newest first. */
  private async versionsOf(
    bid: string,
    key: string,
  ): Promise<{ ok: true; items: { record: ObjectRecord; revision: number }[] } | KvError> {
    const out: { record: ObjectRecord; revision: number }[] = [];
    for await (const page of this.scan(`${versionPrefix(bid)}${key}\0`)) {
      if (!page.ok) return page;
      for (const i of page.items)
        out.push({ record: parse<ObjectRecord>(i.value), revision: i.revision });
    }
    return { ok: true, items: out };
  }

  /**
   * Makes `rec` the key's current version: `check` sees the current one and may refuse; the
   * head entry is then written with a compare-and-set on what `check` saw (retried when
   * another writer got in between, so `check` always judges the version actually replaced).
   * With `versioned`, the new version is also kept among the key's versions, and so is a
   * replaced null version that was never recorded there. Returns the replaced record, whose
   * body the caller removes unless it is still a version.
   */
  async commit<E>(
    bid: string,
    rec: ObjectRecord,
    versioning: "Enabled" | "Suspended" | undefined,
    check: Check<E>,
  ): Promise<CommitResult<E>> {
    const bodies = (rec.parts ?? []).map((p) => p.id);
    return this.whileClaimed(bodies, () => this.commitClaimed(bid, rec, versioning, check));
  }

  /**
   * Runs `write` (which writes an entry referencing `ids`) with the bodies claimed: see
   * "Bodies that never commit" above.
   */
  private async whileClaimed<R extends { ok: boolean }>(
    ids: readonly string[],
    write: () => Promise<R>,
  ): Promise<R | IndexError> {
    const claimFailed = await this.claimBodies(ids);
    if (claimFailed) {
      // Not committed. The caller removes the bodies (their records with them), except after
      // an unknown outcome: then the records are the sweeper's.
      if (claimFailed.code === "OUTCOME_UNKNOWN") this.forgetBodies(ids);
      return claimFailed;
    }
    const r = await write();
    if (r.ok) this.settleBodies(ids);
    else if ((r as { code?: string }).code === "OUTCOME_UNKNOWN") this.forgetBodies(ids);
    return r;
  }

  private async commitClaimed<E>(
    bid: string,
    rec: ObjectRecord,
    versioning: "Enabled" | "Suspended" | undefined,
    check: Check<E>,
  ): Promise<CommitResult<E>> {
    for (let attempt = 0; attempt < 8; attempt++) {
      const cur = await this.head(bid, rec.key);
      if (!cur.ok) return cur;
      const refused = check(cur.record);
      if (refused !== undefined) {
        await this.unrecordVersion(bid, rec);
        return { ok: false, refused };
      }
      const removable: ObjectRecord[] = [];
      if (versioning) {
        // A null version from before versioning was turned on becomes a recorded version.
        const old = cur.record;
        if (old && old.sortId === undefined && rec.versionId !== "null") {
          // Deterministic: a retried commit rewrites the same entry instead of adding a copy.
          const sortId = nullSortId(old.lastModifiedMs);
          const w = await this.kv.put(
            INDEX_KEYSPACE,
            versionKey(bid, old.key, sortId),
            json({ ...old, sortId }),
            { kind: "none" },
          );
          if (!w.ok) return w;
        }
        // A new null version (suspended) replaces the previous null version.
        if (rec.versionId === "null") {
          const vs = await this.versionsOf(bid, rec.key);
          if (!vs.ok) return vs;
          for (const v of vs.items) {
            if (v.record.versionId !== "null" || v.record.sortId === undefined) continue;
            await this.kv.delete(INDEX_KEYSPACE, versionKey(bid, rec.key, v.record.sortId), {
              kind: "none",
            });
            removable.push(v.record);
          }
          if (old && old.versionId === "null" && old.sortId === undefined) removable.push(old);
        }
        if (rec.sortId !== undefined) {
          const w = await this.kv.put(
            INDEX_KEYSPACE,
            versionKey(bid, rec.key, rec.sortId),
            json(rec),
            {
              kind: "none",
            },
          );
          if (!w.ok) return w;
        }
      } else if (cur.record) {
        removable.push(cur.record);
      }
      const w = await this.kv.put(
        INDEX_KEYSPACE,
        headKey(bid, rec.key),
        json(rec),
        cur.record ? { kind: "ifRevision", revision: cur.revision } : { kind: "ifAbsent" },
      );
      if (w.ok) return { ok: true, replaced: cur.record, removable };
      if (w.code !== "PRECONDITION_FAILED") {
        // Certainly not current: its version entry goes too (unknown outcome: it stays).
        if (w.code !== "OUTCOME_UNKNOWN") await this.unrecordVersion(bid, rec);
        return w;
      }
    }
    await this.unrecordVersion(bid, rec);
    return { ok: false, code: "CONFLICT", message: "the object kept changing; retry" };
  }

  /** Drops the v/ entry of a version that did not become current (its body is removed). */
  private async unrecordVersion(bid: string, rec: ObjectRecord): Promise<void> {
    if (rec.sortId === undefined) return;
    await this.kv.delete(INDEX_KEYSPACE, versionKey(bid, rec.key, rec.sortId), { kind: "none" });
  }

  /**
   * Removes the bodies of versions that stopped existing, RETIRE_DELAY_MS later: a node whose
   * bucket cache lags a versioning change by up to a second may have replaced a version that
   * another node recorded meanwhile, and `removeReplaced` then finds that version and keeps the
   * body. Used by every writer of objects (the S3 door, the console).
   */
  retireLater(bid: string, recs: readonly ObjectRecord[], onError: (err: unknown) => void): void {
    if (recs.length === 0) return;
    setTimeout(() => {
      for (const rec of recs) this.removeReplaced(bid, rec).catch(onError);
    }, RETIRE_DELAY_MS).unref();
  }

  /**
   * Removes the bodies of a record that stopped being current, unless a version entry of its
   * key still points at them (a node whose cache had not yet seen versioning turned on may
   * replace a version another node already recorded).
   */
  async removeReplaced(bid: string, rec: ObjectRecord): Promise<void> {
    const ids = new Set((rec.parts ?? []).map((p) => p.id));
    if (ids.size === 0) return;
    const vs = await this.versionsOf(bid, rec.key);
    if (!vs.ok) return; // cannot tell: keep (a leak at worst)
    for (const v of vs.items) for (const p of v.record.parts ?? []) ids.delete(p.id);
    const h = await this.head(bid, rec.key);
    if (!h.ok) return;
    for (const p of h.record?.parts ?? []) ids.delete(p.id);
    for (const p of rec.parts ?? []) if (ids.has(p.id)) await this.removeBody(p);
  }

  /**
   * Deletes the current version (unversioned: the head goes and its body is returned for
   * removal; versioned: a delete marker becomes current). Deleting a key that does not exist
   * succeeds (S3).
   */
  async deleteCurrent(
    bid: string,
    key: string,
    versioning: "Enabled" | "Suspended" | undefined,
    nowMs: number,
  ): Promise<{ ok: true; marker?: ObjectRecord; removable: ObjectRecord[] } | IndexError> {
    if (versioning) {
      const sortId = newSortId(nowMs);
      const marker: ObjectRecord = {
        key,
        versionId: versioning === "Enabled" ? sortId : "null",
        sortId,
        deleteMarker: true,
        size: 0,
        etag: "",
        lastModifiedMs: nowMs,
        headers: {},
        meta: {},
      };
      const r = await this.commit(bid, marker, versioning, () => undefined);
      if (!r.ok) return "refused" in r ? { ok: false, code: "CONFLICT", message: "refused" } : r;
      return { ok: true, marker, removable: r.removable };
    }
    for (let attempt = 0; attempt < 8; attempt++) {
      const cur = await this.head(bid, key);
      if (!cur.ok) return cur;
      if (!cur.record) return { ok: true, removable: [] };
      const d = await this.kv.delete(INDEX_KEYSPACE, headKey(bid, key), {
        kind: "ifRevision",
        revision: cur.revision,
      });
      if (d.ok || d.code === "NOT_FOUND") return { ok: true, removable: d.ok ? [cur.record] : [] };
      if (d.code !== "PRECONDITION_FAILED") return d;
    }
    return { ok: false, code: "CONFLICT", message: "the object kept changing; retry" };
  }

  /**
   * Deletes one version for good. When it was the current one, the newest remaining version
   * becomes current (or the key disappears).
   */
  async deleteVersion(
    bid: string,
    key: string,
    versionId: string,
  ): Promise<{ ok: true; deleted: ObjectRecord | undefined } | IndexError> {
    for (let attempt = 0; attempt < 8; attempt++) {
      const cur = await this.head(bid, key);
      if (!cur.ok) return cur;
      const vs = await this.versionsOf(bid, key);
      if (!vs.ok) return vs;
      const target =
        vs.items.find((v) => v.record.versionId === versionId)?.record ??
        (cur.record?.versionId === versionId ? cur.record : undefined);
      if (!target) return { ok: true, deleted: undefined };
      if (target.sortId !== undefined) {
        const d = await this.kv.delete(INDEX_KEYSPACE, versionKey(bid, key, target.sortId), {
          kind: "none",
        });
        if (!d.ok && d.code !== "NOT_FOUND") return d;
      }
      const wasCurrent = cur.record?.versionId === versionId;
      if (!wasCurrent) return { ok: true, deleted: target };
      const next = vs.items.find((v) => v.record.versionId !== versionId)?.record;
      const w = next
        ? await this.kv.put(INDEX_KEYSPACE, headKey(bid, key), json(next), {
            kind: "ifRevision",
            revision: cur.revision,
          })
        : await this.kv.delete(INDEX_KEYSPACE, headKey(bid, key), {
            kind: "ifRevision",
            revision: cur.revision,
          });
      if (w.ok) return { ok: true, deleted: target };
      if (w.code !== "PRECONDITION_FAILED" && w.code !== "NOT_FOUND") return w;
    }
    return { ok: false, code: "CONFLICT", message: "the object kept changing; retry" };
  }

  // ---------------------------------------------------------------- listing

  /**
   * One page of current objects in key order (delete markers skipped), with keys that share
   * a prefix up to `delimiter` rolled into one common prefix. `after` is exclusive; when it
   * is itself a rolled-up prefix, everything under it is skipped.
   */
  async list(
    bid: string,
    o: { prefix: string; delimiter: string; after: string | undefined; max: number },
  ): Promise<{ ok: true; page: ListPage } | KvError> {
    const base = headPrefix(bid);
    return this.scanRollup(base, o, undefined, (item) => {
      const rec = parse<ObjectRecord>(item.value);
      return rec.deleteMarker ? undefined : rec;
    });
  }

  /**
   * One page of versions in S3's order (by key, newest first): v/ entries, then a null version
   * never recorded there. `max` counts versions and common prefixes; a page may end inside a
   * key's versions (`lastVersionId` then says where, for version-id-marker).
   */
  async listVersions(
    bid: string,
    o: {
      prefix: string;
      delimiter: string;
      after: string | undefined;
      /** With `after`: resume after this version of that key (version-id-marker). */
      afterVersionId?: string;
      max: number;
    },
  ): Promise<
    | {
        ok: true;
        entries: VersionEntry[];
        prefixes: string[];
        truncated: boolean;
        last: string | undefined;
        lastVersionId: string | undefined;
      }
    | KvError
  > {
    // Each key holds at least one version, so `max` keys of each source cover a page.
    const page = await this.list(bid, o);
    if (!page.ok) return page;
    // Keys whose head is a delete marker are skipped by `list`; fetch them through v/ scans.
    const keys = await this.scanRollup(
      versionPrefix(bid),
      o,
      0, // a v/ entry's key ends at NUL (the version's sort id follows)
      (item) => parse<ObjectRecord>(item.value),
    );
    if (!keys.ok) return keys;
    const names = new Set<string>([
      ...page.page.entries.map((e) => e.key),
      ...keys.page.entries.map((e) => e.key),
    ]);
    const prefixes = [...new Set([...page.page.prefixes, ...keys.page.prefixes])];
    const items = [
      ...[...names].map((k) => ({ k, prefix: false })),
      ...prefixes.map((k) => ({ k, prefix: true })),
    ].sort((a, b) => cmpUtf8(a.k, b.k));
    const out: VersionEntry[] = [];
    const outPrefixes: string[] = [];
    let last: string | undefined;
    let lastVersionId: string | undefined;
    const truncated = page.page.truncated || keys.page.truncated;
    const take = (v: VersionEntry): boolean => {
      if (out.length + outPrefixes.length >= o.max) return false;
      out.push(v);
      last = v.key;
      lastVersionId = v.record.versionId;
      return true;
    };
    const done = () => ({
      ok: true as const,
      entries: out,
      prefixes: outPrefixes,
      truncated: true,
      last,
      lastVersionId,
    });
    // The rest of the marker key's versions first.
    if (o.after !== undefined && o.afterVersionId !== undefined) {
      const vs = await this.versionsForListing(bid, o.after);
      if (!vs.ok) return vs;
      const at = vs.versions.findIndex((v) => v.record.versionId === o.afterVersionId);
      for (const v of at >= 0 ? vs.versions.slice(at + 1) : []) if (!take(v)) return done();
    }
    for (const it of items) {
      if (out.length + outPrefixes.length >= o.max) return done();
      if (it.prefix) {
        outPrefixes.push(it.k);
        last = it.k;
        lastVersionId = undefined;
        continue;
      }
      const vs = await this.versionsForListing(bid, it.k);
      if (!vs.ok) return vs;
      for (const v of vs.versions) if (!take(v)) return done();
    }
    return { ok: true, entries: out, prefixes: outPrefixes, truncated, last, lastVersionId };
  }

  /** One key's versions as listed: v/ entries (newest first), then an unrecorded null version. */
  private async versionsForListing(
    bid: string,
    key: string,
  ): Promise<{ ok: true; versions: VersionEntry[] } | KvError> {
    const h = await this.head(bid, key);
    if (!h.ok) return h;
    const vs = await this.versionsOf(bid, key);
    if (!vs.ok) return vs;
    const records = vs.items.map((v) => v.record);
    if (h.record && h.record.sortId === undefined) records.push(h.record);
    return {
      ok: true,
      versions: records.map((record) => ({
        key,
        record,
        latest: h.record?.versionId === record.versionId,
      })),
    };
  }

  /**
   * One page of keys under `base + o.prefix`, rolled up at `o.delimiter`. The replicas roll
   * keys up where they scan them (KV `Rollup`), so a page of 1,000 common prefixes is one read;
   * keys that come back plain with a delimiter (a replica of an older version) are rolled up
   * here, with a fresh read past them. `keyEnd`: the byte where an index key's object key ends
   * (v/ entries carry a version after it).
   */
  private async scanRollup(
    base: string,
    o: { prefix: string; delimiter: string; after: string | undefined; max: number },
    keyEnd: number | undefined,
    recordOf: (item: { key: Uint8Array; value: Uint8Array }) => ObjectRecord | undefined,
  ): Promise<{ ok: true; page: ListPage } | KvError> {
    const keyOf = (rest: string) =>
      keyEnd === undefined ? rest : rest.slice(0, rest.indexOf(String.fromCharCode(keyEnd)));
    const entries: ListEntry[] = [];
    const prefixes: string[] = [];
    const full = enc.encode(base + o.prefix);
    const rollup = rollupOf(full, o.delimiter, keyEnd);
    let cursor: Uint8Array | undefined;
    if (o.after !== undefined) {
      const rest = o.after.slice(o.prefix.length);
      const rolled =
        o.delimiter !== "" && o.after.startsWith(o.prefix) && rest.includes(o.delimiter)
          ? o.prefix + rest.slice(0, rest.indexOf(o.delimiter) + o.delimiter.length)
          : undefined;
      cursor = rolled !== undefined ? afterAllWithPrefix(base + rolled) : afterKey(base + o.after);
    }
    let last: string | undefined;
    let lastSeenKey: string | undefined;
    /** Lists common prefix `cp` and reads on past it; false when the page is already full. */
    const addPrefix = (cp: string): boolean => {
      if (entries.length + prefixes.length >= o.max) return false;
      prefixes.push(cp);
      last = cp;
      cursor = afterAllWithPrefix(base + cp);
      return true;
    };
    for (;;) {
      const want = o.max - entries.length - prefixes.length;
      const r = await this.kv.list(
        INDEX_KEYSPACE,
        {
          prefix: full,
          startAfter: cursor,
          limit: Math.min(SCAN_LIMIT, want + 1),
          ...(rollup ? { rollup } : {}),
        },
        "linearizable",
      );
      if (!r.ok) return r;
      let jumped = false;
      for (const item of r.items) {
        if (item.rolledUp) {
          const cp = dec.decode(item.key).slice(base.length);
          if (!addPrefix(cp))
            return { ok: true, page: { entries, prefixes, truncated: true, last } };
          lastSeenKey = cp;
          continue;
        }
        const key = keyOf(dec.decode(item.key).slice(base.length));
        cursor = item.key;
        if (key === lastSeenKey) continue; // versions of one key
        const rest = key.slice(o.prefix.length);
        const d = o.delimiter === "" ? -1 : rest.indexOf(o.delimiter);
        if (d >= 0) {
          // A plain key under a common prefix (a replica that does not roll up): list the
          // prefix, then read again from past it.
          if (!addPrefix(o.prefix + rest.slice(0, d + o.delimiter.length)))
            return { ok: true, page: { entries, prefixes, truncated: true, last } };
          lastSeenKey = key;
          jumped = true;
          break;
        }
        const rec = recordOf(item);
        lastSeenKey = key;
        if (!rec) continue;
        if (entries.length + prefixes.length >= o.max)
          return { ok: true, page: { entries, prefixes, truncated: true, last } };
        entries.push({ key, record: rec });
        last = key;
      }
      if (!jumped && (!r.more || r.items.length === 0))
        return { ok: true, page: { entries, prefixes, truncated: false, last } };
    }
  }

  /** Whether the bucket holds no object, version or upload (it may then be deleted). */
  async isEmpty(bid: string): Promise<boolean | KvError> {
    for (const p of [headPrefix(bid), versionPrefix(bid), `u/${bid}/`]) {
      const r = await this.kv.list(
        INDEX_KEYSPACE,
        { prefix: enc.encode(p), startAfter: undefined, limit: 1 },
        "linearizable",
      );
      if (!r.ok) return r;
      if (r.items.length > 0) return false;
    }
    return true;
  }

  // ---------------------------------------------------------------- multipart

  async createUpload(bid: string, up: UploadRecord): Promise<{ ok: true } | KvError> {
    const w = await this.kv.put(INDEX_KEYSPACE, uploadKey(bid, up.key, up.uploadId), json(up), {
      kind: "ifAbsent",
    });
    return w.ok ? { ok: true } : w;
  }

  async upload(
    bid: string,
    key: string,
    uploadId: string,
  ): Promise<{ ok: true; upload: UploadRecord | undefined; revision: number } | KvError> {
    const r = await this.kv.get(INDEX_KEYSPACE, uploadKey(bid, key, uploadId), "linearizable");
    if (!r.ok) return r;
    return {
      ok: true,
      upload: r.item ? parse<UploadRecord>(r.item.value) : undefined,
      revision: r.item?.revision ?? 0,
    };
  }

  /** Records a part; a part uploaded again under the same number replaces the old one. */
  async putPart(uploadId: string, part: PartRecord): Promise<{ ok: true } | IndexError> {
    return this.whileClaimed([part.data.id], () => this.putPartClaimed(uploadId, part));
  }

  private async putPartClaimed(
    uploadId: string,
    part: PartRecord,
  ): Promise<{ ok: true } | KvError> {
    const key = partKey(uploadId, part.partNumber);
    const old = await this.kv.get(INDEX_KEYSPACE, key, "linearizable");
    if (!old.ok) return old;
    // The replaced body is not removed now: a Complete running concurrently may have chosen
    // it. It goes to the upload's trash, emptied when the upload ends (minus what the object
    // references).
    if (old.item) {
      const prev = parse<PartRecord>(old.item.value).data;
      const t = await this.kv.put(INDEX_KEYSPACE, trashKey(uploadId, prev.id), json(prev), {
        kind: "none",
      });
      if (!t.ok) return t;
    }
    const w = await this.kv.put(INDEX_KEYSPACE, key, json(part), { kind: "none" });
    return w.ok ? { ok: true } : w;
  }

  /**
   * Claims an upload for completion (a compare-and-set on its record): an abort then refuses
   * instead of removing the parts the new object is about to reference.
   */
  async claimUpload(
    bid: string,
    up: UploadRecord,
    revision: number,
    nowMs: number,
  ): Promise<{ ok: true; revision: number } | KvError> {
    const w = await this.kv.put(
      INDEX_KEYSPACE,
      uploadKey(bid, up.key, up.uploadId),
      json({ ...up, completingMs: nowMs }),
      { kind: "ifRevision", revision },
    );
    return w.ok ? { ok: true, revision: w.revision } : w;
  }

  /** Gives a claimed upload back (the completion failed before the object was written). */
  async unclaimUpload(bid: string, up: UploadRecord, revision: number): Promise<void> {
    const { completingMs: _c, ...rest } = up;
    await this.kv.put(INDEX_KEYSPACE, uploadKey(bid, up.key, up.uploadId), json(rest), {
      kind: "ifRevision",
      revision,
    });
  }

  async parts(
    uploadId: string,
    after = 0,
    max = PARTS_MAX,
  ): Promise<{ ok: true; parts: PartRecord[]; truncated: boolean } | KvError> {
    const out: PartRecord[] = [];
    const from = after > 0 ? partKey(uploadId, after) : undefined;
    for await (const page of this.scan(partPrefix(uploadId), from, Math.min(SCAN_LIMIT, max + 1))) {
      if (!page.ok) return page;
      for (const i of page.items) {
        if (out.length >= max) return { ok: true, parts: out, truncated: true };
        out.push(parse<PartRecord>(i.value));
      }
    }
    return { ok: true, parts: out, truncated: false };
  }

  /**
   * Ends an upload: its record and part records go; the bodies of parts not in `keep` are
   * removed (abort: keep none; complete: the object now references the others).
   */
  async endUpload(
    bid: string,
    up: UploadRecord,
    keep: ReadonlySet<string>,
    revision?: number,
  ): Promise<{ ok: true } | KvError> {
    const d = await this.kv.delete(
      INDEX_KEYSPACE,
      uploadKey(bid, up.key, up.uploadId),
      revision === undefined ? { kind: "none" } : { kind: "ifRevision", revision },
    );
    // Another request ended the upload first: its parts are its business (a completed
    // object may reference them).
    if (!d.ok && d.code === "NOT_FOUND" && revision !== undefined) return { ok: true };
    if (!d.ok && d.code !== "NOT_FOUND") return d;
    const parts = await this.parts(up.uploadId);
    if (!parts.ok) return parts;
    for (const p of parts.parts) {
      await this.kv.delete(INDEX_KEYSPACE, partKey(up.uploadId, p.partNumber), { kind: "none" });
      if (!keep.has(p.data.id)) await this.removeBody(p.data);
    }
    const trash = await this.kv.list(
      INDEX_KEYSPACE,
      { prefix: enc.encode(`t/${up.uploadId}/`), startAfter: undefined, limit: PARTS_MAX },
      "linearizable",
    );
    if (!trash.ok) return trash;
    for (const t of trash.items) {
      const data = parse<DataRef>(t.value);
      if (!keep.has(data.id)) await this.removeBody(data);
      await this.kv.delete(INDEX_KEYSPACE, t.key, { kind: "none" });
    }
    return { ok: true };
  }

  async listUploads(
    bid: string,
    o: {
      prefix: string;
      delimiter: string;
      after: string | undefined;
      /** With `after`: resume after this upload of that key (upload-id-marker). */
      afterUploadId?: string;
      max: number;
    },
  ): Promise<
    { ok: true; uploads: UploadRecord[]; prefixes: string[]; truncated: boolean } | KvError
  > {
    const base = `u/${bid}/`;
    const uploads: UploadRecord[] = [];
    const prefixes: string[] = [];
    let startAfter: Uint8Array | undefined =
      o.after === undefined
        ? undefined
        : o.afterUploadId !== undefined
          ? enc.encode(`${base}${o.after}\0${o.afterUploadId}`)
          : afterKey(base + o.after);
    // Rolled up by the replicas, as in scanRollup (an upload's key ends at NUL).
    const full = enc.encode(base + o.prefix);
    const rollup = rollupOf(full, o.delimiter, 0);
    for (;;) {
      const r = await this.kv.list(
        INDEX_KEYSPACE,
        {
          prefix: full,
          startAfter,
          limit: SCAN_LIMIT,
          ...(rollup ? { rollup } : {}),
        },
        "linearizable",
      );
      if (!r.ok) return r;
      let jumped = false;
      for (const i of r.items) {
        if (i.rolledUp) {
          if (uploads.length + prefixes.length >= o.max)
            return { ok: true, uploads, prefixes, truncated: true };
          const cp = dec.decode(i.key).slice(base.length);
          if (prefixes[prefixes.length - 1] !== cp) prefixes.push(cp);
          startAfter = afterAllWithPrefix(base + cp);
          continue;
        }
        startAfter = i.key;
        const up = parse<UploadRecord>(i.value);
        const rest = up.key.slice(o.prefix.length);
        const d = o.delimiter === "" ? -1 : rest.indexOf(o.delimiter);
        if (uploads.length + prefixes.length >= o.max)
          return { ok: true, uploads, prefixes, truncated: true };
        if (d >= 0) {
          const cp = o.prefix + rest.slice(0, d + o.delimiter.length);
          if (prefixes[prefixes.length - 1] !== cp) prefixes.push(cp);
          startAfter = afterAllWithPrefix(base + cp);
          jumped = true;
          break;
        }
        uploads.push(up);
      }
      if (!jumped && (!r.more || r.items.length === 0))
        return { ok: true, uploads, prefixes, truncated: false };
    }
  }
}

/**
 * The KV rollup of a listing under the index prefix `full` at `delimiter` (none without one);
 * `keyEnd`: the byte that ends the object key inside an index key (v/ and u/ entries).
 */
function rollupOf(full: Uint8Array, delimiter: string, keyEnd?: number): Rollup | undefined {
  if (delimiter === "") return undefined;
  return {
    from: full.byteLength,
    delimiter: enc.encode(delimiter),
    ...(keyEnd !== undefined ? { stopAt: keyEnd } : {}),
  };
}

/** Bytes after every entry of `key` itself (its v/ and u/ suffixes after NUL included). */
function afterKey(s: string): Uint8Array {
  const b = enc.encode(s);
  const out = new Uint8Array(b.byteLength + 2);
  out.set(b);
  out[b.byteLength] = 0x00;
  out[b.byteLength + 1] = 0xff;
  return out;
}

export function cmpUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export class BodyReadError extends Error {
  override name = "BodyReadError";
}
