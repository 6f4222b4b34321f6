/**
 * `BlobService`: a node's chunk service. It serves the `blob.*` calls of other nodes from the
 * local `ChunkStore`, and offers the object layer `putChunk`/`getChunk` over the chunk ring:
 * a chunk's partition (`partitionOf(hash)`) names its N owners, writes go to all of them and
 * succeed on W durable acknowledgements, reads take any replica whose bytes hash to the name.
 * Behind that, four loops keep every owner holding a good copy: the resync queue (replicas
 * known to be missing), the scrubber (re-hashes local files), anti-entropy (compares partition
 * digests with the other owners, and offloads chunks of partitions this node no longer owns),
 * and GC (deletes old unreferenced chunks).
 *
 * Invariants and rules:
 * - **Nothing acknowledged before durable on W owners.** `putChunk` resolves ok only after W
 *   owners (the local store counts when this node is one) answered that the chunk is on disk
 *   and fsynced. The other writes continue; owners that fail go to the resync queue.
 * - **Never trust bytes without their hash.** Every reply is re-hashed; a replica that serves
 *   a corrupt or no copy while another has a good one is queued for repair.
 * - **A replica is deleted only when it is provably redundant or provably garbage.** Offload
 *   deletes a local copy only after every current owner of its partition confirmed (`blob.has`)
 *   or received it; GC deletes only chunks older than the grace period whose reference check
 *   answered exactly `false`, and re-checks the age under the store's per-hash lock (a `put`
 *   of an existing chunk refreshes its mtime, so a writer's chunk is never collected under it).
 *   Repair transfers preserve the source replica's mtime, so re-replicating garbage does not
 *   make it young again.
 * - **Everything is bounded**: concurrent foreground operations (beyond: OVERLOADED), served
 *   requests (beyond: BUSY), background transfers, the resync queue, the cache's bytes, the
 *   hashes per `blob.has` and per inventory page, the chunks offloaded per round.
 * - Operating errors are typed results; `assert` guards invariants only. Background loops never
 *   overlap themselves, use unref'd timers, and report unexpected exceptions to `onError`.
 */
import { createHash } from "node:crypto";
import { assert, forEachLimited } from "../base/index.js";
import { partitionOf, type Ring } from "../placement/index.js";
import type { NodeId } from "../raft/index.js";
import { fromHex, toHex } from "../storage/index.js";
import { NoHandlerError, type Transport } from "../transport/index.js";
import { ChunkCache } from "./cache.js";
import { CHUNK_BYTES_MAX, type ChunkStore, hashHex, sha256 } from "./chunks.js";
import { type ResyncEntry, ResyncQueue } from "./resync.js";
import {
  type Answer,
  answerMessage,
  type BlobMethods,
  blobMethods,
  decodeAnswer,
  decodeBitmap,
  decodeDigests,
  decodeGet,
  decodeGetOk,
  decodeHas,
  decodeInventory,
  decodeListPage,
  decodePush,
  decodePut,
  encodeBitmap,
  encodeDigests,
  encodeGetOk,
  encodeHas,
  encodeInventory,
  encodeListPage,
  encodeOk,
  encodePush,
  encodePut,
  encodeStatus,
  HAS_HASHES_MAX,
  INVENTORY_DIGESTS_MAX,
  INVENTORY_PAGE_MAX,
  type PartitionDigest,
  Status,
} from "./wire.js";

/** The chunk ring as this node currently knows it. `ring.length === partitions`. */
export interface RingView {
  readonly ring: Ring;
  readonly partitions: number;
}

/** What the service needs of the transport. */
export type BlobTransport = Pick<Transport, "call" | "reachable">;

export type PutChunkResult =
  | { readonly ok: true; readonly hash: Buffer; readonly stored: readonly NodeId[] }
  | { readonly ok: false; readonly code: "QUORUM_FAILED"; readonly message: string }
  /** Too many chunk operations in flight on this node: nothing was written; retry later. */
  | { readonly ok: false; readonly code: "OVERLOADED"; readonly message: string };

export type GetChunkResult =
  /** `data` may be shared with the cache and other callers: never mutate it. */
  | { readonly ok: true; readonly data: Uint8Array }
  /** Every node that could hold the chunk answered that it has no good copy. */
  | { readonly ok: false; readonly code: "NOT_FOUND"; readonly message: string }
  /** No good copy found, and some node that might hold one did not answer. */
  | { readonly ok: false; readonly code: "UNAVAILABLE"; readonly message: string }
  | { readonly ok: false; readonly code: "OVERLOADED"; readonly message: string };

export interface BlobServiceOptions {
  readonly self: NodeId;
  readonly transport: BlobTransport;
  readonly store: ChunkStore;
  /** The current chunk ring, or undefined while the node does not know one yet. */
  readonly ring: () => RingView | undefined;
  /** W: durable acknowledgements a put needs (capped at the number of owners). Default 2. */
  readonly writeQuorum?: number;
  /** Deadline of each `blob.*` call. Default 5 s. */
  readonly callTimeoutMs?: number;
  /** The hot-chunk cache's bound (0 disables it). Default 64 MiB. */
  readonly cacheBytesMax?: number;
  /** Concurrent `putChunk`s plus uncoalesced `getChunk` fetches. Default 256. */
  readonly foregroundInflightMax?: number;
  /** Concurrent `blob.*` requests served for other nodes. Default 256. */
  readonly serveInflightMax?: number;
  /** Concurrent transfers/calls of each background loop. Default 8. */
  readonly backgroundConcurrency?: number;
  readonly resyncQueueMax?: number;
  readonly resyncBackoffMsMin?: number;
  readonly resyncBackoffMsMax?: number;
  readonly resyncAttemptsMax?: number;
  /** Resync entries run per `runResync` call by default. Default 1024. */
  readonly resyncBatchMax?: number;
  /** Hashes per inventory page asked of a peer (at most INVENTORY_PAGE_MAX, the default). */
  readonly inventoryPageHashes?: number;
  /** Local chunks of foreign partitions handled per anti-entropy round. Default 4096. */
  readonly offloadChunksPerRoundMax?: number;
  /**
   * When no owner has a good copy, ask every other node of the ring (a chunk may still sit on
   * an old owner during a ring change). Default true.
   */
  readonly fallbackToAllNodes?: boolean;
  /**
   * The prefix of this service's transport methods: "blob." (the default), or "blob.r<N>." for
   * a replication class (src/blob/classes.ts), so that several services share one transport.
   */
  readonly methodPrefix?: string;
  /** The clock of the resync backoff (ms). Default Date.now. */
  readonly now?: () => number;
  /** Unexpected exceptions in background loops (bugs, not operating errors). */
  readonly onError?: (what: string, error: unknown) => void;
}

export const BLOB_DEFAULTS = {
  writeQuorum: 2,
  callTimeoutMs: 5_000,
  cacheBytesMax: 64 * 1024 * 1024,
  foregroundInflightMax: 256,
  serveInflightMax: 256,
  backgroundConcurrency: 8,
  resyncBatchMax: 1024,
  offloadChunksPerRoundMax: 4096,
} as const;

export interface BackgroundOptions {
  /** Scrub rate; 0 disables the scrubber. Default 8 MiB/s. */
  readonly scrubBytesPerSec?: number;
  /** Default 1 s (each step scrubs rate × interval bytes). */
  readonly scrubIntervalMs?: number;
  /** 0 disables anti-entropy. Default 10 min. */
  readonly antiEntropyIntervalMs?: number;
  /** Default 1 s. */
  readonly resyncIntervalMs?: number;
  /** Garbage collection, when the object layer can tell whether a chunk is referenced. */
  readonly gc?: {
    readonly isReferenced: (hash: Uint8Array) => Promise<boolean | undefined>;
    readonly graceMs: number;
    readonly intervalMs: number;
  };
}

export interface ScrubReport {
  readonly chunks: number;
  readonly bytes: number;
  readonly corrupt: number;
  readonly repaired: number;
  /** The step reached the end of the store: the next one starts over. */
  readonly wrapped: boolean;
}

export interface ResyncReport {
  readonly attempted: number;
  readonly done: number;
  readonly failed: number;
}

export interface AntiEntropyReport {
  /** Partitions this node owns. */
  readonly partitions: number;
  /** (partition, peer) digests compared. */
  readonly compared: number;
  readonly differing: number;
  readonly peersFailed: number;
  /** Resync entries added. */
  readonly enqueued: number;
  /** Local chunks of foreign partitions deleted after every owner had them. */
  readonly offloaded: number;
  /** Local chunks of foreign partitions kept for now (an owner unreachable or a push failed). */
  readonly offloadPending: number;
}

export interface GcReport {
  readonly scanned: number;
  readonly young: number;
  readonly referenced: number;
  readonly unknown: number;
  readonly deleted: number;
}

export interface BlobStats {
  /** Chunk files created in the local store (any path). */
  readonly stored: number;
  readonly putOk: number;
  readonly putFailed: number;
  readonly getOk: number;
  readonly getFailed: number;
  /** `blob.get` calls made to other nodes. */
  readonly remoteFetches: number;
  readonly scrubbed: number;
  readonly scrubbedBytes: number;
  /** Replicas restored (resync, scrub repair, read repair). */
  readonly repaired: number;
  /** Corrupt replicas seen (local files, remote answers). */
  readonly corruptFound: number;
  readonly resyncQueueLength: number;
  readonly resyncDropped: number;
  readonly resyncGaveUp: number;
  readonly cacheHits: number;
  readonly cacheMisses: number;
  readonly cacheBytes: number;
  readonly cacheEvictions: number;
  /** `getChunk` calls that joined a fetch already in flight. */
  readonly coalesced: number;
  readonly antiEntropyRounds: number;
  readonly partitionsDiffering: number;
  readonly offloaded: number;
  readonly gcDeleted: number;
  /** Operations refused at a bound (OVERLOADED / BUSY). */
  readonly overloaded: number;
  readonly backgroundErrors: number;
  /** The local store. */
  readonly chunks: number;
  readonly bytes: number;
  readonly quarantined: number;
}

type CallOutcome =
  | { readonly ok: true; readonly answer: Answer }
  | { readonly ok: false; readonly message: string };

type Fetched =
  | { readonly kind: "OK"; readonly data: Uint8Array; readonly mtimeMs: number }
  | { readonly kind: "NOT_FOUND" }
  | { readonly kind: "CORRUPT" }
  | { readonly kind: "UNAVAILABLE"; readonly message: string };

interface Found {
  readonly copy: { readonly data: Uint8Array; readonly mtimeMs: number } | undefined;
  /** Owners that answered without a good copy (they need one). */
  readonly lacking: readonly NodeId[];
  /** Nodes that did not answer. */
  readonly unavailable: readonly string[];
}

export class BlobService {
  readonly self: NodeId;
  private readonly transport: BlobTransport;
  private readonly store: ChunkStore;
  private readonly ring: () => RingView | undefined;
  private readonly writeQuorum: number;
  private readonly callTimeoutMs: number;
  private readonly foregroundInflightMax: number;
  private readonly serveInflightMax: number;
  private readonly concurrency: number;
  private readonly resyncBatchMax: number;
  private readonly offloadChunksPerRoundMax: number;
  private readonly inventoryPageHashes: number;
  private readonly fallbackToAllNodes: boolean;
  private readonly now: () => number;
  private readonly onError: (what: string, error: unknown) => void;
  private readonly methods: BlobMethods;

  private readonly cache: ChunkCache;
  private readonly resync: ResyncQueue;
  /** Fetches in flight by hash: concurrent `getChunk`s of one hash share one. */
  private readonly fetching = new Map<string, Promise<GetChunkResult>>();
  private foreground = 0;
  private serving = 0;
  private scrubCursor: string | undefined;
  private stopping = false;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly running = new Map<string, Promise<void>>();
  private readonly allNodesMemo = new WeakMap<Ring, NodeId[]>();

  private readonly counters = {
    stored: 0,
    putOk: 0,
    putFailed: 0,
    getOk: 0,
    getFailed: 0,
    remoteFetches: 0,
    scrubbed: 0,
    scrubbedBytes: 0,
    repaired: 0,
    corruptFound: 0,
    cacheHits: 0,
    cacheMisses: 0,
    coalesced: 0,
    antiEntropyRounds: 0,
    partitionsDiffering: 0,
    offloaded: 0,
    gcDeleted: 0,
    overloaded: 0,
    backgroundErrors: 0,
  };

  constructor(options: BlobServiceOptions) {
    this.self = options.self;
    this.transport = options.transport;
    this.store = options.store;
    this.ring = options.ring;
    this.writeQuorum = options.writeQuorum ?? BLOB_DEFAULTS.writeQuorum;
    this.callTimeoutMs = options.callTimeoutMs ?? BLOB_DEFAULTS.callTimeoutMs;
    this.foregroundInflightMax =
      options.foregroundInflightMax ?? BLOB_DEFAULTS.foregroundInflightMax;
    this.serveInflightMax = options.serveInflightMax ?? BLOB_DEFAULTS.serveInflightMax;
    this.concurrency = options.backgroundConcurrency ?? BLOB_DEFAULTS.backgroundConcurrency;
    this.resyncBatchMax = options.resyncBatchMax ?? BLOB_DEFAULTS.resyncBatchMax;
    this.offloadChunksPerRoundMax =
      options.offloadChunksPerRoundMax ?? BLOB_DEFAULTS.offloadChunksPerRoundMax;
    this.inventoryPageHashes = options.inventoryPageHashes ?? INVENTORY_PAGE_MAX;
    this.fallbackToAllNodes = options.fallbackToAllNodes ?? true;
    this.now = options.now ?? Date.now;
    this.methods = blobMethods(options.methodPrefix);
    this.onError = options.onError ?? (() => {});
    this.cache = new ChunkCache(options.cacheBytesMax ?? BLOB_DEFAULTS.cacheBytesMax);
    this.resync = new ResyncQueue({
      ...(options.resyncQueueMax !== undefined ? { entriesMax: options.resyncQueueMax } : {}),
      ...(options.resyncBackoffMsMin !== undefined
        ? { backoffMsMin: options.resyncBackoffMsMin }
        : {}),
      ...(options.resyncBackoffMsMax !== undefined
        ? { backoffMsMax: options.resyncBackoffMsMax }
        : {}),
      ...(options.resyncAttemptsMax !== undefined
        ? { attemptsMax: options.resyncAttemptsMax }
        : {}),
    });
    assert(this.self !== "", "BlobService needs a node id");
    assert(Number.isInteger(this.writeQuorum) && this.writeQuorum >= 1, "writeQuorum >= 1");
    assert(this.callTimeoutMs > 0, "callTimeoutMs > 0");
    assert(this.foregroundInflightMax >= 1 && this.serveInflightMax >= 1, "inflight bounds >= 1");
    assert(this.concurrency >= 1 && this.resyncBatchMax >= 1, "background bounds >= 1");
    assert(
      this.inventoryPageHashes >= 1 && this.inventoryPageHashes <= INVENTORY_PAGE_MAX,
      "inventoryPageHashes in [1, INVENTORY_PAGE_MAX]",
    );
  }

  // ==== the object layer's API ====

  /**
   * Stores a chunk on its ring owners. Resolves when W owners have it durably (W = writeQuorum,
   * capped at the number of owners), or QUORUM_FAILED as soon as W can no longer be reached.
   */
  async putChunk(
    data: Uint8Array,
    /** A write quorum for this chunk instead of the service's (a bucket's setting). */
    opts: { readonly writeQuorum?: number } = {},
  ): Promise<PutChunkResult> {
    assert(
      data.byteLength <= CHUNK_BYTES_MAX,
      () => `putChunk: ${data.byteLength} bytes is over CHUNK_BYTES_MAX`,
    );
    const hash = sha256(data);
    const view = this.view();
    const owners = view === undefined ? [] : this.ownersOf(view, hash);
    if (owners.length === 0) {
      this.counters.putFailed++;
      const message =
        view === undefined ? "no chunk ring yet" : "the chunk's partition has no owner";
      return { ok: false, code: "QUORUM_FAILED", message };
    }
    if (this.foreground >= this.foregroundInflightMax) {
      this.counters.overloaded++;
      const message = `${this.foreground} chunk operations in flight already`;
      return { ok: false, code: "OVERLOADED", message };
    }
    this.foreground++;
    const w = Math.min(opts.writeQuorum ?? this.writeQuorum, owners.length);
    const body = encodePut(hash, data);
    const stored: NodeId[] = [];
    const failed: NodeId[] = [];
    const errors: string[] = [];
    return new Promise<PutChunkResult>((resolve) => {
      let settled = false;
      for (const owner of owners) {
        const write = this.writeReplica(owner, hash, data, body).catch(
          (e: unknown): { ok: false; message: string } => {
            this.onError("putChunk", e);
            return { ok: false, message: e instanceof Error ? e.message : String(e) };
          },
        );
        void write.then((r) => {
          if (r.ok) stored.push(owner);
          else {
            failed.push(owner);
            errors.push(`${owner}: ${r.message}`);
          }
          if (!settled && stored.length >= w) {
            settled = true;
            this.counters.putOk++;
            resolve({ ok: true, hash, stored: [...stored] });
          } else if (!settled && failed.length > owners.length - w) {
            settled = true;
            this.counters.putFailed++;
            const message = `${stored.length} of ${w} required replicas stored (${errors.join("; ")})`;
            resolve({ ok: false, code: "QUORUM_FAILED", message });
          }
          if (stored.length + failed.length === owners.length) {
            this.foreground--;
            // Only an acknowledged chunk is worth re-replicating; a failed one is garbage.
            if (stored.length >= w) for (const f of failed) this.enqueue(toHex(hash), f);
          }
        });
      }
    });
  }

  /**
   * Reads a chunk: the hot-chunk cache, then the local store, then the owners (reachable ones
   * first), then, if none has a good copy, every other node of the ring. Concurrent calls for
   * one hash share one fetch. Replicas found missing or corrupt on the way are queued for repair.
   */
  getChunk(hash: Uint8Array): Promise<GetChunkResult> {
    const hex = hashHex(hash);
    const cached = this.cache.get(hex);
    if (cached !== undefined) {
      this.counters.cacheHits++;
      this.counters.getOk++;
      return Promise.resolve({ ok: true, data: cached });
    }
    const inflight = this.fetching.get(hex);
    if (inflight !== undefined) {
      this.counters.coalesced++;
      return inflight;
    }
    if (this.foreground >= this.foregroundInflightMax) {
      this.counters.overloaded++;
      const message = `${this.foreground} chunk operations in flight already`;
      return Promise.resolve({ ok: false, code: "OVERLOADED", message });
    }
    this.counters.cacheMisses++;
    this.foreground++;
    const key = Buffer.from(hash);
    const p = (async (): Promise<GetChunkResult> => {
      try {
        return await this.fetch(key, hex);
      } finally {
        this.foreground--;
        this.fetching.delete(hex);
      }
    })().then((r) => {
      if (r.ok) this.counters.getOk++;
      else this.counters.getFailed++;
      return r;
    });
    this.fetching.set(hex, p);
    return p;
  }

  // ==== serving other nodes ====

  /**
   * Serves a `blob.*` call; undefined for any other method (the node's router tries others).
   * Malformed requests are answered BAD_REQUEST, requests beyond the serving bound BUSY.
   */
  handleCall(_from: NodeId, method: string, body: Uint8Array): Promise<Uint8Array> | undefined {
    const m = this.methods;
    if (!method.startsWith(m.prefix)) return undefined;
    let serve: ((b: Uint8Array) => Promise<Uint8Array>) | undefined;
    switch (method) {
      case m.put:
        serve = (b) => this.servePut(b, false);
        break;
      case m.push:
        serve = (b) => this.servePut(b, true);
        break;
      case m.get:
        serve = (b) => this.serveGet(b);
        break;
      case m.has:
        serve = (b) => this.serveHas(b);
        break;
      case m.inventory:
        serve = (b) => this.serveInventory(b);
        break;
      default:
        return Promise.reject(new NoHandlerError(method));
    }
    if (this.serving >= this.serveInflightMax) {
      this.counters.overloaded++;
      return Promise.resolve(encodeStatus(Status.BUSY, `${this.serving} requests in flight`));
    }
    this.serving++;
    return serve(body).finally(() => {
      this.serving--;
    });
  }

  // ==== background work (call directly, or via startBackground) ====

  /**
   * Runs the resync entries due at `nowMs` (at most `entriesMax`), `backgroundConcurrency` at a
   * time. An entry (hash, target) ends when the target has the chunk (or no longer owns its
   * partition); otherwise it is retried after a backoff.
   */
  async runResync(options: { nowMs?: number; entriesMax?: number } = {}): Promise<ResyncReport> {
    const nowMs = options.nowMs ?? this.now();
    const entries = this.resync.takeDue(nowMs, options.entriesMax ?? this.resyncBatchMax);
    const report = { attempted: entries.length, done: 0, failed: 0 };
    const view = this.view();
    await forEachLimited(entries, this.concurrency, async (e) => {
      let done = false;
      try {
        done = !this.stopping && (await this.runEntry(e, view));
      } finally {
        if (done) {
          report.done++;
          this.resync.done(e);
        } else {
          report.failed++;
          this.resync.retry(e, this.now());
        }
      }
    });
    return report;
  }

  /**
   * Re-hashes local chunks, continuing where the last step stopped, until about `bytesBudget`
   * bytes were read. A corrupt file is quarantined (by the store) and replaced at once by a good
   * copy from another node when this node owns the chunk (queued for resync if none answers).
   */
  async scrubStep(bytesBudget: number): Promise<ScrubReport> {
    assert(bytesBudget >= 0, "scrubStep: a budget >= 0");
    const report = { chunks: 0, bytes: 0, corrupt: 0, repaired: 0, wrapped: true };
    // A file costs at least one page, so a store of tiny or corrupt files still ends a step.
    const costMin = 4096;
    let spent = 0;
    const filter = this.scrubCursor === undefined ? {} : { after: this.scrubCursor };
    for await (const hex of this.store.hashes(filter)) {
      if (spent >= bytesBudget || this.stopping) {
        report.wrapped = false;
        break;
      }
      this.scrubCursor = hex;
      const hash = Buffer.from(fromHex(hex));
      const r = await this.store.get(hash);
      report.chunks++;
      this.counters.scrubbed++;
      if (r.ok) {
        report.bytes += r.data.byteLength;
        this.counters.scrubbedBytes += r.data.byteLength;
        spent += Math.max(costMin, r.data.byteLength);
        continue;
      }
      spent += costMin;
      if (r.code !== "CORRUPT") continue; // deleted meanwhile, or a disk error (not a verdict)
      report.corrupt++;
      this.counters.corruptFound++;
      if (await this.repairLocal(hash, hex)) report.repaired++;
    }
    if (report.wrapped) this.scrubCursor = undefined;
    return report;
  }

  /**
   * One anti-entropy round: for every partition this node owns, compare digests with every
   * other owner; where they differ, walk both sorted lists and queue what either side lacks.
   * Then offload the local chunks of partitions this node does not own (ring changes): push
   * them to the owners lacking them, delete them here once every owner has them. Queued
   * transfers run with `runResync` (the background loop runs it every second).
   */
  async antiEntropyRound(): Promise<AntiEntropyReport> {
    const report = {
      partitions: 0,
      compared: 0,
      differing: 0,
      peersFailed: 0,
      enqueued: 0,
      offloaded: 0,
      offloadPending: 0,
    };
    const view = this.view();
    if (view === undefined) return report;
    this.counters.antiEntropyRounds++;
    const P = view.partitions;
    const byPeer = new Map<NodeId, number[]>();
    view.ring.forEach((owners, p) => {
      if (!owners.includes(this.self)) return;
      report.partitions++;
      for (const o of owners) {
        if (o === this.self) continue;
        let list = byPeer.get(o);
        if (list === undefined) {
          list = [];
          byPeer.set(o, list);
        }
        list.push(p);
      }
    });
    const digests = new Map<number, Promise<PartitionDigest>>();
    const digestOf = (p: number): Promise<PartitionDigest> => {
      let d = digests.get(p);
      if (d === undefined) {
        d = this.partitionDigest(p, P);
        digests.set(p, d);
      }
      return d;
    };
    await forEachLimited([...byPeer], this.concurrency, async ([peer, parts]) => {
      for (let i = 0; i < parts.length && !this.stopping; i += INVENTORY_DIGESTS_MAX) {
        const batch = parts.slice(i, i + INVENTORY_DIGESTS_MAX);
        const body = encodeInventory({ kind: "digest", partitions: P, list: batch });
        const r = await this.callBlob(peer, this.methods.inventory, body);
        const theirs =
          r.ok && r.answer.status === "OK"
            ? decodeDigests(r.answer.payload, batch.length)
            : undefined;
        if (theirs === undefined) {
          report.peersFailed++;
          return;
        }
        for (let j = 0; j < batch.length && !this.stopping; j++) {
          const p = batch[j] as number;
          const mine = await digestOf(p);
          const other = theirs[j] as PartitionDigest;
          report.compared++;
          if (mine.count === other.count && Buffer.from(mine.digest).equals(other.digest)) continue;
          report.differing++;
          this.counters.partitionsDiffering++;
          report.enqueued += await this.reconcile(peer, p, P);
        }
      }
    });
    await this.offload(view, report);
    return report;
  }

  /**
   * Garbage collection of the local store: a chunk older than `graceMs` (by its file's mtime)
   * for which `isReferenced` answers exactly `false` is deleted; `true` or `undefined` (could
   * not tell) keeps it, and so does a thrown error. The age is checked again under the store's
   * per-hash lock at deletion, so a concurrent `put` of the same chunk always wins.
   */
  async gcRound(
    isReferenced: (hash: Uint8Array) => Promise<boolean | undefined>,
    graceMs: number,
    nowMs: number = Date.now(),
  ): Promise<GcReport> {
    assert(graceMs >= 0, "gcRound: graceMs >= 0");
    const report = { scanned: 0, young: 0, referenced: 0, unknown: 0, deleted: 0 };
    const cutoffMs = nowMs - graceMs;
    for await (const info of this.store.list()) {
      if (this.stopping) break;
      report.scanned++;
      if (info.mtimeMs > cutoffMs) {
        report.young++;
        continue;
      }
      let referenced: boolean | undefined;
      try {
        referenced = await isReferenced(info.hash);
      } catch (e) {
        this.onError("gc isReferenced", e);
        referenced = undefined;
      }
      if (referenced === undefined) {
        report.unknown++;
        continue;
      }
      if (referenced) {
        report.referenced++;
        continue;
      }
      const d = await this.store.delete(info.hash, { olderThanMs: cutoffMs });
      if (d.ok && d.outcome === "DELETED") {
        report.deleted++;
        this.counters.gcDeleted++;
      } else if (d.ok && d.outcome === "YOUNG") report.young++;
    }
    return report;
  }

  /** Starts the loops on unref'd timers; each loop never overlaps itself. */
  startBackground(options: BackgroundOptions = {}): void {
    assert(this.timers.length === 0 && !this.stopping, "startBackground: already started");
    const scrubBytesPerSec = options.scrubBytesPerSec ?? 8 * 1024 * 1024;
    const scrubIntervalMs = options.scrubIntervalMs ?? 1_000;
    const antiEntropyIntervalMs = options.antiEntropyIntervalMs ?? 600_000;
    const resyncIntervalMs = options.resyncIntervalMs ?? 1_000;
    this.every("resync", resyncIntervalMs, async () => {
      await this.runResync();
    });
    if (scrubBytesPerSec > 0) {
      const budget = Math.max(1, Math.round((scrubBytesPerSec * scrubIntervalMs) / 1000));
      this.every("scrub", scrubIntervalMs, async () => {
        await this.scrubStep(budget);
      });
    }
    if (antiEntropyIntervalMs > 0) {
      this.every("antiEntropy", antiEntropyIntervalMs, async () => {
        await this.antiEntropyRound();
      });
    }
    const gc = options.gc;
    if (gc !== undefined) {
      this.every("gc", gc.intervalMs, async () => {
        await this.gcRound(gc.isReferenced, gc.graceMs);
      });
    }
  }

  /** Stops the loops and waits for running rounds to finish (they end early). */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.timers.length = 0;
    await Promise.all(this.running.values());
  }

  stats(): BlobStats {
    const store = this.store.stats();
    const q = this.resync.stats();
    return {
      ...this.counters,
      resyncQueueLength: q.length,
      resyncDropped: q.dropped,
      resyncGaveUp: q.gaveUp,
      cacheBytes: this.cache.bytes,
      cacheEvictions: this.cache.evictions,
      chunks: store.chunks,
      bytes: store.bytes,
      quarantined: store.quarantined,
    };
  }

  /** Whether (hash, target) is waiting in the resync queue. */
  resyncPending(hash: Uint8Array, target: NodeId): boolean {
    return this.resync.has(hashHex(hash), target);
  }

  // ==== internals: ring ====

  private view(): RingView | undefined {
    const v = this.ring();
    if (v !== undefined) {
      assert(v.ring.length === v.partitions, "ring view: one replica list per partition");
    }
    return v;
  }

  private ownersOf(view: RingView, hash: Uint8Array | string): readonly NodeId[] {
    return view.ring[partitionOf(hash, view.partitions)] ?? [];
  }

  private allNodes(view: RingView): readonly NodeId[] {
    let all = this.allNodesMemo.get(view.ring);
    if (all === undefined) {
      all = [...new Set(view.ring.flat())].sort();
      this.allNodesMemo.set(view.ring, all);
    }
    return all;
  }

  /** Reachable nodes first, otherwise in the given order. */
  private preferReachable(nodes: readonly NodeId[]): NodeId[] {
    const up = nodes.filter((n) => this.transport.reachable(n));
    const down = nodes.filter((n) => !this.transport.reachable(n));
    return [...up, ...down];
  }

  private enqueue(hex: string, target: NodeId): boolean {
    return this.resync.add(hex, target, this.now());
  }

  // ==== internals: calls ====

  private async callBlob(to: NodeId, method: string, body: Uint8Array): Promise<CallOutcome> {
    const r = await this.transport.call(to, method, body, this.callTimeoutMs);
    if (!r.ok) return { ok: false, message: `${r.code}: ${r.message}` };
    const answer = decodeAnswer(r.body);
    if (answer === undefined) return { ok: false, message: `${to}: malformed ${method} answer` };
    return { ok: true, answer };
  }

  private async writeReplica(
    owner: NodeId,
    hash: Buffer,
    data: Uint8Array,
    body: Uint8Array,
  ): Promise<{ ok: true } | { ok: false; message: string }> {
    if (owner === this.self) {
      // (putChunk hashed these very bytes a moment ago.)
      const r = await this.store.put(hash, data, { hashVerified: true });
      if (!r.ok) return { ok: false, message: `${r.code}: ${r.message}` };
      if (r.created) this.counters.stored++;
      return { ok: true };
    }
    const r = await this.callBlob(owner, this.methods.put, body);
    if (!r.ok) return r;
    if (r.answer.status === "OK") return { ok: true };
    return { ok: false, message: `${r.answer.status}: ${answerMessage(r.answer)}` };
  }

  /** Pushes a repair copy (keeping its mtime). */
  private async push(
    to: NodeId,
    hash: Uint8Array,
    data: Uint8Array,
    mtimeMs: number,
  ): Promise<boolean> {
    const r = await this.callBlob(to, this.methods.push, encodePush(hash, mtimeMs, data));
    return r.ok && r.answer.status === "OK";
  }

  /** Which of `hashes` (at most HAS_HASHES_MAX) `node` holds; undefined if it did not answer. */
  private async hasOn(node: NodeId, hashes: readonly Uint8Array[]): Promise<boolean[] | undefined> {
    assert(hashes.length >= 1 && hashes.length <= HAS_HASHES_MAX, "hasOn: 1..HAS_HASHES_MAX");
    if (node === this.self) return Promise.all(hashes.map((h) => this.store.has(h)));
    const r = await this.callBlob(node, this.methods.has, encodeHas(hashes));
    if (!r.ok || r.answer.status !== "OK") return undefined;
    return decodeBitmap(r.answer.payload, hashes.length);
  }

  private async fetchFrom(node: NodeId, hash: Uint8Array): Promise<Fetched> {
    this.counters.remoteFetches++;
    const r = await this.callBlob(node, this.methods.get, hash);
    if (!r.ok) return { kind: "UNAVAILABLE", message: `${node}: ${r.message}` };
    switch (r.answer.status) {
      case "OK": {
        const got = decodeGetOk(r.answer.payload);
        if (got === undefined) return { kind: "UNAVAILABLE", message: `${node}: malformed answer` };
        if (!sha256(got.data).equals(hash)) {
          this.counters.corruptFound++;
          return { kind: "CORRUPT" };
        }
        return { kind: "OK", data: got.data, mtimeMs: got.mtimeMs };
      }
      case "NOT_FOUND":
        return { kind: "NOT_FOUND" };
      case "CORRUPT":
        this.counters.corruptFound++;
        return { kind: "CORRUPT" };
      default:
        return {
          kind: "UNAVAILABLE",
          message: `${node}: ${r.answer.status} ${answerMessage(r.answer)}`,
        };
    }
  }

  /**
   * Looks for a good copy on other nodes: the owners (reachable first), then, if allowed and
   * none had one, every other node of the ring. Never asks the nodes in `skip`.
   */
  private async findCopy(hash: Uint8Array, skip: ReadonlySet<NodeId>, view: RingView | undefined) {
    const owners = view === undefined ? [] : this.ownersOf(view, hash);
    const lacking: NodeId[] = [];
    const unavailable: string[] = [];
    const asked = new Set(skip);
    const tryNodes = async (
      nodes: readonly NodeId[],
      areOwners: boolean,
    ): Promise<Found | undefined> => {
      for (const node of this.preferReachable(nodes.filter((n) => !asked.has(n)))) {
        if (this.stopping) break;
        asked.add(node);
        const f = await this.fetchFrom(node, hash);
        if (f.kind === "OK") {
          return { copy: { data: f.data, mtimeMs: f.mtimeMs }, lacking, unavailable };
        }
        if (f.kind === "UNAVAILABLE") unavailable.push(f.message);
        else if (areOwners) lacking.push(node);
      }
      return undefined;
    };
    const fromOwners = await tryNodes(owners, true);
    if (fromOwners !== undefined) return fromOwners;
    if (this.fallbackToAllNodes && view !== undefined) {
      const fromAny = await tryNodes(this.allNodes(view), false);
      if (fromAny !== undefined) return fromAny;
    }
    return { copy: undefined, lacking, unavailable } satisfies Found;
  }

  private async fetch(hash: Buffer, hex: string): Promise<GetChunkResult> {
    const view = this.view();
    const owners = view === undefined ? [] : this.ownersOf(view, hash);
    const local = await this.store.get(hash);
    if (local.ok) {
      this.cache.set(hex, local.data);
      return { ok: true, data: local.data };
    }
    if (local.code === "CORRUPT") this.counters.corruptFound++;
    // Without a ring (a node that just started) nobody else can be asked: that is "cannot
    // tell", never "no node holds it".
    if (view === undefined)
      return { ok: false, code: "UNAVAILABLE", message: `no chunk ring yet; ${hex} not local` };
    const found = await this.findCopy(hash, new Set([this.self]), view);
    const copy = found.copy;
    if (copy === undefined) {
      if (found.unavailable.length > 0 || local.code === "IO_ERROR") {
        const why = [...found.unavailable, ...(local.ok ? [] : [local.message])].join("; ");
        return {
          ok: false,
          code: "UNAVAILABLE",
          message: `no good copy of ${hex} reached: ${why}`,
        };
      }
      return { ok: false, code: "NOT_FOUND", message: `no node holds chunk ${hex}` };
    }
    this.cache.set(hex, copy.data);
    for (const node of found.lacking) this.enqueue(hex, node);
    if (owners.includes(this.self)) {
      // Read repair: we own it and just got a good copy.
      void this.store.put(hash, copy.data, { mtimeMs: copy.mtimeMs }).then((r) => {
        if (r.ok && r.created) {
          this.counters.stored++;
          this.counters.repaired++;
        } else if (!r.ok) this.enqueue(hex, this.self);
      });
    }
    return { ok: true, data: copy.data };
  }

  /** Re-acquires a chunk this node owns after its file was found corrupt. */
  private async repairLocal(hash: Buffer, hex: string): Promise<boolean> {
    const view = this.view();
    if (view === undefined || !this.ownersOf(view, hash).includes(this.self)) return false;
    const found = await this.findCopy(hash, new Set([this.self]), view);
    for (const node of found.lacking) this.enqueue(hex, node);
    if (found.copy === undefined) {
      this.enqueue(hex, this.self);
      return false;
    }
    const r = await this.store.put(hash, found.copy.data, { mtimeMs: found.copy.mtimeMs });
    if (r.ok) {
      if (r.created) this.counters.stored++;
      this.counters.repaired++;
      return true;
    }
    this.enqueue(hex, this.self);
    return false;
  }

  /** One resync entry; true when it is finished (the target has the chunk, or it is moot). */
  private async runEntry(e: ResyncEntry, view: RingView | undefined): Promise<boolean> {
    if (view === undefined) return false;
    const hash = Buffer.from(fromHex(e.hex));
    if (!this.ownersOf(view, hash).includes(e.target)) return true; // anti-entropy's business now
    if (e.target === this.self) {
      if (await this.store.has(hash)) return true;
      const found = await this.findCopy(hash, new Set([this.self]), view);
      if (found.copy === undefined) return false;
      const r = await this.store.put(hash, found.copy.data, { mtimeMs: found.copy.mtimeMs });
      if (!r.ok) return false;
      if (r.created) {
        this.counters.stored++;
        this.counters.repaired++;
      }
      return true;
    }
    const has = await this.hasOn(e.target, [hash]);
    if (has === undefined) return false;
    if (has[0] === true) return true;
    const local = await this.store.get(hash);
    let copy: { data: Uint8Array; mtimeMs: number } | undefined = local.ok ? local : undefined;
    if (copy === undefined) {
      copy = (await this.findCopy(hash, new Set([this.self, e.target]), view)).copy;
    }
    if (copy === undefined) return false;
    if (!(await this.push(e.target, hash, copy.data, copy.mtimeMs))) return false;
    this.counters.repaired++;
    return true;
  }

  // ==== internals: anti-entropy ====

  private async partitionDigest(p: number, partitions: number): Promise<PartitionDigest> {
    const h = createHash("sha256");
    let count = 0;
    for await (const hex of this.store.hashes({ partition: p, partitions })) {
      h.update(fromHex(hex));
      count++;
    }
    return { digest: h.digest(), count };
  }

  /**
   * Merges our sorted list of partition p with the peer's (paged): what only we have is queued
   * for the peer, what only the peer has is queued for us. Returns the entries added.
   */
  private async reconcile(peer: NodeId, p: number, partitions: number): Promise<number> {
    let enqueued = 0;
    let page: string[] = [];
    let index = 0;
    let more = true;
    let after: Uint8Array | undefined;
    /** The peer's next hash; undefined at its end; null if the peer stopped answering. */
    const remote = async (): Promise<string | undefined | null> => {
      while (index >= page.length) {
        if (!more) return undefined;
        const body = encodeInventory({
          kind: "list",
          partitions,
          partition: p,
          limit: this.inventoryPageHashes,
          ...(after !== undefined ? { after } : {}),
        });
        const r = await this.callBlob(peer, this.methods.inventory, body);
        const got = r.ok && r.answer.status === "OK" ? decodeListPage(r.answer.payload) : undefined;
        if (got === undefined || (got.hashes.length === 0 && got.more)) return null;
        page = got.hashes.map((h) => toHex(h));
        index = 0;
        more = got.more;
        const last = got.hashes[got.hashes.length - 1];
        if (last !== undefined) after = Uint8Array.from(last);
      }
      return page[index];
    };
    const add = (hex: string, target: NodeId): void => {
      if (this.enqueue(hex, target)) enqueued++;
    };
    const local = this.store.hashes({ partition: p, partitions });
    try {
      let mine = await local.next();
      let theirs = await remote();
      while (theirs !== null && !(mine.done && theirs === undefined)) {
        if (this.stopping || this.resync.full) break;
        if (theirs === undefined || (!mine.done && mine.value < theirs)) {
          add(mine.value as string, peer);
          mine = await local.next();
        } else if (mine.done || theirs < mine.value) {
          add(theirs, this.self);
          index++;
          theirs = await remote();
        } else {
          mine = await local.next();
          index++;
          theirs = await remote();
        }
      }
    } finally {
      await local.return(undefined);
    }
    return enqueued;
  }

  /** Hands the local chunks of partitions this node does not own to their owners. */
  private async offload(view: RingView, report: { offloaded: number; offloadPending: number }) {
    let budget = this.offloadChunksPerRoundMax;
    let batch: string[] = [];
    for await (const hex of this.store.hashes()) {
      if (this.stopping || budget <= 0) break;
      if (this.ownersOf(view, hex).includes(this.self)) continue;
      budget--;
      batch.push(hex);
      if (batch.length >= HAS_HASHES_MAX) {
        await this.offloadBatch(batch, view, report);
        batch = [];
      }
    }
    if (batch.length > 0) await this.offloadBatch(batch, view, report);
  }

  private async offloadBatch(
    hexes: readonly string[],
    view: RingView,
    report: { offloaded: number; offloadPending: number },
  ): Promise<void> {
    const byOwner = new Map<NodeId, string[]>();
    for (const hex of hexes) {
      for (const o of this.ownersOf(view, hex)) {
        let list = byOwner.get(o);
        if (list === undefined) {
          list = [];
          byOwner.set(o, list);
        }
        list.push(hex);
      }
    }
    const holders = new Map<string, Set<NodeId>>();
    const unknown = new Set<string>();
    await forEachLimited([...byOwner], this.concurrency, async ([owner, list]) => {
      const bits = await this.hasOn(
        owner,
        list.map((h) => fromHex(h)),
      );
      list.forEach((hex, i) => {
        if (bits === undefined) unknown.add(hex);
        else if (bits[i] === true) {
          let set = holders.get(hex);
          if (set === undefined) {
            set = new Set();
            holders.set(hex, set);
          }
          set.add(owner);
        }
      });
    });
    await forEachLimited(hexes, this.concurrency, async (hex) => {
      const owners = this.ownersOf(view, hex);
      if (owners.length === 0 || unknown.has(hex) || this.stopping) {
        report.offloadPending++;
        return;
      }
      const hash = Buffer.from(fromHex(hex));
      const missing = owners.filter((o) => !holders.get(hex)?.has(o));
      if (missing.length > 0) {
        const local = await this.store.get(hash);
        if (!local.ok) return; // gone or corrupt (quarantined): nothing to hand over
        for (const o of missing) {
          if (!(await this.push(o, hash, local.data, local.mtimeMs))) {
            report.offloadPending++;
            return;
          }
        }
      }
      const d = await this.store.delete(hash);
      if (d.ok && d.outcome === "DELETED") {
        report.offloaded++;
        this.counters.offloaded++;
      }
    });
  }

  // ==== internals: serving ====

  private async servePut(body: Uint8Array, isPush: boolean): Promise<Uint8Array> {
    const req: { hash: Uint8Array; data: Uint8Array; mtimeMs?: number } | undefined = isPush
      ? decodePush(body)
      : decodePut(body);
    if (req === undefined) return encodeStatus(Status.BAD_REQUEST, "malformed put");
    if (req.data.byteLength > CHUNK_BYTES_MAX) {
      return encodeStatus(Status.TOO_LARGE, `chunk over ${CHUNK_BYTES_MAX} bytes`);
    }
    const options = req.mtimeMs !== undefined ? { mtimeMs: req.mtimeMs } : {};
    const r = await this.store.put(req.hash, req.data, options);
    if (r.ok) {
      if (r.created) {
        this.counters.stored++;
        if (isPush) this.counters.repaired++;
      }
      return encodeStatus(Status.OK);
    }
    return encodeStatus(Status[r.code], r.message);
  }

  private async serveGet(body: Uint8Array): Promise<Uint8Array> {
    const hash = decodeGet(body);
    if (hash === undefined) return encodeStatus(Status.BAD_REQUEST, "malformed get");
    const r = await this.store.get(hash);
    if (r.ok) return encodeGetOk(r.mtimeMs, r.data);
    if (r.code === "CORRUPT") {
      this.counters.corruptFound++;
      const view = this.view();
      if (view !== undefined && this.ownersOf(view, hash).includes(this.self)) {
        this.enqueue(toHex(hash), this.self);
      }
    }
    return encodeStatus(Status[r.code], r.message);
  }

  private async serveHas(body: Uint8Array): Promise<Uint8Array> {
    const hashes = decodeHas(body);
    if (hashes === undefined) return encodeStatus(Status.BAD_REQUEST, "malformed has");
    return encodeOk(encodeBitmap(await Promise.all(hashes.map((h) => this.store.has(h)))));
  }

  private async serveInventory(body: Uint8Array): Promise<Uint8Array> {
    const req = decodeInventory(body);
    if (req === undefined) return encodeStatus(Status.BAD_REQUEST, "malformed inventory");
    if (req.kind === "digest") {
      const out: PartitionDigest[] = [];
      for (const p of req.list) out.push(await this.partitionDigest(p, req.partitions));
      return encodeOk(encodeDigests(out));
    }
    const hashes: Uint8Array[] = [];
    let more = false;
    const filter = {
      partition: req.partition,
      partitions: req.partitions,
      ...(req.after !== undefined ? { after: toHex(req.after) } : {}),
    };
    for await (const hex of this.store.hashes(filter)) {
      if (hashes.length >= req.limit) {
        more = true;
        break;
      }
      hashes.push(fromHex(hex));
    }
    return encodeOk(encodeListPage(hashes, more));
  }

  private every(name: string, intervalMs: number, task: () => Promise<void>): void {
    assert(intervalMs > 0, () => `${name}: interval must be > 0`);
    const timer = setInterval(() => {
      if (this.stopping || this.running.has(name)) return;
      const run = task()
        .catch((e: unknown) => {
          this.counters.backgroundErrors++;
          this.onError(name, e);
        })
        .finally(() => {
          this.running.delete(name);
        });
      this.running.set(name, run);
    }, intervalMs);
    timer.unref();
    this.timers.push(timer);
  }
}
