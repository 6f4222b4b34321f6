/**
 * The cluster map's vocabulary: members, keyspaces, shards and the reports the planners read.
 * Plain, JSON-serialisable data (no Map, no class, no Uint8Array), because it is what the
 * metadata group replicates and what `GET /v1/cluster` shows. Keys and ranges are lowercase
 * hex strings of encoded keys, which compare (as strings) exactly like the bytes they encode.
 */
import type { NodeId } from "../raft/index.js";
import type { Sharding } from "../shard/index.js";

export type { NodeId };

/** Liveness, as the placement leader sees it from heartbeats. */
export type NodeState = "alive" | "suspect" | "dead";

/**
 * Operator intent, independent of liveness: a draining node is being emptied (its replicas
 * and leaders move away; it gets nothing new); a removed node is retired and must hold
 * nothing.
 */
export type NodeAdmin = "active" | "draining" | "removed";

/** Load a node reports in its heartbeat. */
export interface MemberLoad {
  readonly readsPerSec: number;
  readonly writesPerSec: number;
}

export interface Member {
  readonly id: NodeId;
  /** Addresses, "host:port": node-to-node (Raft, chunks), KV/admin API, S3. */
  readonly peer: string;
  readonly api: string;
  readonly s3: string;
  /** Placement labels; `zone` and `rack` are the failure domains the planners know. */
  readonly labels: Readonly<Record<string, string>>;
  readonly capacityBytes: number;
  readonly usedBytes: number;
  readonly liveness: NodeState;
  readonly admin: NodeAdmin;
  /**
   * The placement leader's local (monotonic) time when it last heard from the node. Only
   * meaningful to the leader that wrote it: a new leader restarts the clock for everyone.
   */
  readonly lastHeartbeatMs: number;
  readonly load: MemberLoad;
}

export interface KeyspaceDesc {
  readonly name: string;
  readonly sharding: Sharding;
  /** Wanted voters per shard. */
  readonly replicas: number;
}

export interface ShardDesc {
  readonly id: string;
  readonly keyspace: string;
  /** Encoded-key range [start, end) as lowercase hex; `end` "" means unbounded. */
  readonly start: string;
  readonly end: string;
  /** The desired voters. The shard's leader converges its Raft configuration to this set. */
  readonly voters: readonly NodeId[];
  /** Bumps whenever the range changes (split, merge): a plan made at another epoch is stale. */
  readonly epoch: number;
  readonly leaderHint?: NodeId;
}

/** What a shard's leader reports about it. */
export interface ShardStats {
  readonly shard: string;
  readonly sizeBytes: number;
  readonly keys: number;
  readonly readsPerSec: number;
  readonly writesPerSec: number;
  /** Hex encoded key that halves the shard by size, when the leader could compute one. */
  readonly splitKey?: string;
  /** The shard's actual Raft configuration (which lags `ShardDesc.voters` during a move). */
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  readonly leader: NodeId;
}

/** The planners' input: a snapshot of the map and the latest reports. */
export interface ClusterView {
  readonly members: readonly Member[];
  readonly keyspaces: readonly KeyspaceDesc[];
  readonly shards: readonly ShardDesc[];
  /** Latest report per shard id (absent: no report yet). */
  readonly stats: Readonly<Record<string, ShardStats>>;
  /** The placement leader's clock, for liveness (`livenessAt`). */
  readonly nowMs: number;
  /**
   * Since when (the placement leader's clock) each shard's move has been seen in flight, by
   * shard id; absent when the caller does not track it. A move in flight for longer than
   * `PlanLimits.moveStallMs` stops holding the moves budget.
   */
  readonly movesSinceMs?: Readonly<Record<string, number>>;
}

/** The zone of a member ("" when unlabelled: all unlabelled nodes share one zone). */
export function zoneOf(member: Pick<Member, "labels">): string {
  return member.labels.zone ?? "";
}

/** The rack of a member, qualified by its zone (racks are failure domains inside zones). */
export function rackOf(member: Pick<Member, "labels">): string {
  return `${zoneOf(member)}/${member.labels.rack ?? ""}`;
}

/** Lowercase, even-length hex: the form of every key and range bound in the map. */
export function isHexKey(key: string): boolean {
  return /^(?:[0-9a-f]{2})*$/.test(key);
}
