/**
 * Replication classes: chunks of buckets that ask for fewer copies than the ring gives.
 *
 * The chunk ring lists R owners per partition (--chunk-replicas). A bucket may ask for N < R
 * copies of its chunks (`chunkReplicas`, docs/s3.md): its chunks then live on the first N
 * owners of their partition, in a store of their own (`chunks-r<N>/`), served by a BlobService
 * of their own whose ring view is the ring cut to N owners per partition and whose transport
 * methods are `blob.r<N>.*`. Every mechanism that keeps replicas whole (resync, scrub,
 * anti-entropy, offload, GC) then works per class unchanged, and never copies a class-N chunk
 * to more than N nodes: anti-entropy compares a class's inventories only between that class's
 * owners.
 *
 * Why a store per class rather than a class tag per chunk: a chunk is named by its content, and
 * two buckets with different N may hold the same content. Separate stores keep "which nodes must
 * hold this file" a function of (class, hash) alone, which is what every background loop needs.
 * The price: identical content in two classes is stored in both (deduplication works within a
 * class).
 *
 * Reads take the class recorded with the body (DataRef.replicas) and fall back to the other
 * classes, so a body whose chunks sit in another class (a restore from backup writes every
 * chunk in the default class) still reads.
 */

import type { Ring } from "../placement/index.js";
import type { NodeId } from "../raft/index.js";
import type {
  BlobService,
  BlobStats,
  GetChunkResult,
  PutChunkResult,
  RingView,
} from "./service.js";
import { BLOB_METHOD_PREFIX } from "./wire.js";

/** The transport method prefix of replication class `replicas`. */
export const classMethodPrefix = (replicas: number) => `${BLOB_METHOD_PREFIX}r${replicas}.`;

/** The chunk directory of replication class `replicas` (under the node's data directory). */
export const classDirName = (replicas: number) => `chunks-r${replicas}`;

/** The ring cut to its first `replicas` owners per partition (memoized per ring). */
export function ringCut(replicas: number): (view: RingView | undefined) => RingView | undefined {
  const memo = new WeakMap<Ring, RingView>();
  return (view) => {
    if (view === undefined) return undefined;
    let cut = memo.get(view.ring);
    if (cut === undefined) {
      cut = { partitions: view.partitions, ring: view.ring.map((o) => o.slice(0, replicas)) };
      memo.set(view.ring, cut);
    }
    return cut;
  };
}

export interface ChunkOptions {
  /** Copies wanted (the bucket's N); undefined or at least the ring's: the default class. */
  readonly replicas?: number;
  readonly writeQuorum?: number;
}

/**
 * The node's chunk services: the default class (the ring's R copies) and one per N in
 * 1..R-1. Routes transport calls by method prefix, puts and gets by class, and sums stats.
 */
export class ReplicationClasses {
  constructor(
    readonly defaultClass: BlobService,
    /** Class N's service, for N from 1 to R-1 (R: the ring's replicas). */
    private readonly classes: ReadonlyMap<number, BlobService>,
  ) {}

  /** The service for a body that wants `replicas` copies. */
  serviceFor(replicas: number | undefined): BlobService {
    return (replicas === undefined ? undefined : this.classes.get(replicas)) ?? this.defaultClass;
  }

  putChunk(data: Uint8Array, opts: ChunkOptions = {}): Promise<PutChunkResult> {
    const w = opts.writeQuorum;
    return this.serviceFor(opts.replicas).putChunk(data, w === undefined ? {} : { writeQuorum: w });
  }

  /**
   * Reads a chunk from its class, then from the other classes. The first answer that is not a
   * copy is returned when no class has one.
   */
  async getChunk(hash: Uint8Array, opts: ChunkOptions = {}): Promise<GetChunkResult> {
    const first = this.serviceFor(opts.replicas);
    const r = await first.getChunk(hash);
    if (r.ok || r.code === "OVERLOADED") return r;
    for (const s of this.all()) {
      if (s === first) continue;
      const again = await s.getChunk(hash);
      if (again.ok) return again;
    }
    return r;
  }

  /** Serves a `blob.*` call of whichever class it names; undefined for other methods. */
  handleCall(from: NodeId, method: string, body: Uint8Array): Promise<Uint8Array> | undefined {
    for (const s of this.classes.values()) {
      const answer = s.handleCall(from, method, body);
      if (answer !== undefined) return answer;
    }
    return this.defaultClass.handleCall(from, method, body);
  }

  all(): BlobService[] {
    return [this.defaultClass, ...this.classes.values()];
  }

  /** The counters of every class, summed (what the node's metrics show). */
  stats(): BlobStats {
    const [head, ...rest] = this.all().map((s) => s.stats());
    const sum = { ...(head as BlobStats) } as Record<string, number>;
    for (const st of rest)
      for (const [k, v] of Object.entries(st)) sum[k] = (sum[k] ?? 0) + (v as number);
    return sum as unknown as BlobStats;
  }

  async stop(): Promise<void> {
    await Promise.all(this.all().map((s) => s.stop()));
  }
}
