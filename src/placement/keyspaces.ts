/**
 * Keyspaces: their records in the metadata group and the pure decisions that create them.
 *
 * The metadata group ("meta") is a replicated shard like any other: placement records are keys
 * in it, and every decision is a conditional write of one record (create-only for a new
 * keyspace, compare-and-set on the record's revision for a change), so two nodes deciding at
 * once cannot both win, and whoever leads "meta" next resumes from exactly what was committed.
 * Deciding is pure (this file): the proposer computes the record from the members and the
 * current records, and the log holds the result.
 *
 * Records: key `ks/<name>` → JSON KeyspaceRecord. Shard ranges are over the encoded key space
 * (src/shard/map.ts): `name 0x00 key` for range keyspaces, `name 0x00 hash32(key) key` for hash
 * keyspaces, hex-encoded here, `end` "" meaning the end of the keyspace.
 */
import { assert } from "../base/index.js";
import type { NodeId } from "../raft/index.js";
import type { PlacementOp } from "./planner.js";
import type { ClusterView, MemberLoad, NodeState, ShardStats } from "./types.js";

export type Sharding = "hash" | "range";

export interface ShardRecord {
  readonly id: string;
  readonly start: string;
  readonly end: string;
  readonly replicas: readonly NodeId[];
  /** Set on a shard born of a split: the shard it split from. */
  readonly parent?: string;
  /**
   * The voters the shard was created with (each bootstraps the same first log entry). Nodes
   * added later start empty and are caught up by the leader. Absent: `replicas` at creation.
   */
  readonly bootstrap?: readonly NodeId[];
}

/**
 * The records after the planners' operations (src/placement/planner.ts): the changed records
 * only. `replace` keeps the replaced replica's position (so a preferred leader that moves is
 * replaced by the new node), `transfer-leader` puts the target first (the first replica is the
 * shard's preferred leader). Splits are not taken from here: a shard's leader decides them
 * with its real size, and its split command creates the new shard (`recordAfterSplit`).
 */
export function applyPlan(
  records: readonly KeyspaceRecord[],
  ops: readonly PlacementOp[],
): KeyspaceRecord[] {
  const byShard = new Map<string, PlacementOp[]>();
  for (const op of ops) {
    if (op.kind === "split") continue;
    byShard.set(op.shard, [...(byShard.get(op.shard) ?? []), op]);
  }
  const changed: KeyspaceRecord[] = [];
  for (const rec of records) {
    let touched = false;
    const shards = rec.shards.map((s) => {
      const mine = byShard.get(s.id);
      if (!mine) return s;
      let replicas = [...s.replicas];
      for (const op of mine) {
        switch (op.kind) {
          case "add":
            if (!replicas.includes(op.add)) replicas.push(op.add);
            break;
          case "replace":
            if (!replicas.includes(op.add))
              replicas = replicas.map((r) => (r === op.remove ? op.add : r));
            break;
          case "remove":
            replicas = replicas.filter((r) => r !== op.remove);
            break;
          case "transfer-leader":
            if (replicas.includes(op.to))
              replicas = [op.to, ...replicas.filter((r) => r !== op.to)];
            break;
        }
      }
      if (replicas.length === s.replicas.length && replicas.every((r, i) => r === s.replicas[i]))
        return s;
      touched = true;
      return { ...s, replicas };
    });
    if (touched) changed.push({ ...rec, shards });
  }
  return changed;
}

/**
 * The keyspace records and member records as the planners see them (planner.ts). Members carry
 * no capacities yet (all equal); `unreachableSince` is when each member stopped answering this
 * node (absent: reachable now). Shared by the node's placement round and the simulator.
 */
export function clusterViewOf(input: {
  readonly records: readonly KeyspaceRecord[];
  readonly members: readonly NodeId[];
  readonly memberRecord: (id: NodeId) => MemberRecord | undefined;
  readonly liveness: (id: NodeId) => NodeState;
  readonly unreachableSince: (id: NodeId) => number | undefined;
  readonly nowMs: number;
  readonly stats?: ClusterView["stats"];
  /** The member's latest report (disk and load), when it has sent one. */
  readonly report?: (id: NodeId) => NodeReport | undefined;
}): ClusterView {
  const { records, nowMs } = input;
  return {
    nowMs,
    members: input.members.map((id) => {
      const rec = input.memberRecord(id);
      const report = input.report?.(id);
      return {
        id,
        peer: rec?.peer ?? "",
        api: rec?.api ?? "",
        s3: rec?.s3 ?? "",
        labels: rec?.labels ?? {},
        // Unreported: 1 byte each, so unreported members weigh the same as one another.
        capacityBytes: report?.capacityBytes ?? 1,
        usedBytes: report?.usedBytes ?? 0,
        liveness: input.liveness(id),
        admin: rec?.admin ?? "active",
        lastHeartbeatMs: input.unreachableSince(id) ?? nowMs,
        load: report?.load ?? { readsPerSec: 0, writesPerSec: 0 },
      };
    }),
    keyspaces: records.map((r) => ({ name: r.name, sharding: r.sharding, replicas: r.replicas })),
    shards: records.flatMap((r) =>
      r.shards.map((s) => ({
        id: s.id,
        keyspace: r.name,
        start: s.start,
        end: s.end,
        voters: s.replicas,
        epoch: 0,
        // The first replica is the preferred leader: the nodes hand leadership to it.
        ...(s.replicas[0] ? { leaderHint: s.replicas[0] } : {}),
      })),
    ),
    stats: input.stats ?? {},
  };
}

/** A member of the cluster as its record in the metadata group says (`m/<id>`). */
export interface MemberRecord {
  readonly id: NodeId;
  readonly peer: string;
  readonly api: string;
  readonly s3: string;
  /** Placement labels (`zone`, `rack`), from the node's --labels. */
  readonly labels?: Readonly<Record<string, string>>;
  /**
   * Operator intent: "draining" (replicas move off it), "removed" (retired: evicted, and the
   * node's own record updates may not undo it). Absent: active.
   */
  readonly admin?: "draining" | "removed";
  /**
   * The Kumo version the node last started with (src/node/metrics.ts `version`), for status
   * during rolling upgrades. Absent in records written by versions before it existed.
   */
  readonly version?: string;
}

export const MEMBER_RECORD_PREFIX = "m/";

/**
 * A node's report (`r/<id>` in the metadata group, rewritten every few seconds by the node
 * itself): its disk, its load, and the stats of the shards it leads. The placement leader
 * reads them into the planners' view (capacity-weighted balance, moves in flight, sizes).
 */
export interface NodeReport {
  readonly id: NodeId;
  /** The node's wall clock when it wrote the report (reports too old are ignored). */
  readonly atMs: number;
  readonly capacityBytes: number;
  readonly usedBytes: number;
  readonly load: MemberLoad;
  readonly shards: readonly ShardStats[];
}
export const REPORT_RECORD_PREFIX = "r/";
/** Shards one report lists at most (the ones with the most bytes first). */
export const REPORT_SHARDS_MAX = 2_000;

/**
 * The freshest report's stats per shard, from the reports not older than `staleMs`. Two nodes
 * may both list a shard around a leadership change: the newer report wins.
 */
export function statsFromReports(
  reports: readonly NodeReport[],
  nowMs: number,
  staleMs: number,
): { stats: Record<string, ShardStats>; reports: Map<NodeId, NodeReport> } {
  const fresh = reports.filter((r) => nowMs - r.atMs <= staleMs);
  const stats: Record<string, ShardStats> = {};
  const at: Record<string, number> = {};
  for (const r of fresh) {
    for (const s of r.shards) {
      if ((at[s.shard] ?? -1) >= r.atMs) continue;
      stats[s.shard] = s;
      at[s.shard] = r.atMs;
    }
  }
  return { stats, reports: new Map(fresh.map((r) => [r.id, r])) };
}

/**
 * The record after shard `shardId` split at `at` (an encoded key, hex): the shard keeps
 * [start, at), the new shard `child` takes [at, end) with the same replicas, rotated so that
 * its preferred leader (the first) is another node: the halves' load lands on different nodes.
 * Undefined when the record already shows the split (or `at` is not inside the shard).
 */
export function recordAfterSplit(
  rec: KeyspaceRecord,
  shardId: string,
  at: string,
  child: string,
): KeyspaceRecord | undefined {
  const i = rec.shards.findIndex((s) => s.id === shardId);
  const s = rec.shards[i];
  if (!s || s.end === at) return undefined;
  if (at <= s.start || (s.end !== "" && at >= s.end)) return undefined;
  const replicas =
    s.replicas.length > 1 ? [...s.replicas.slice(1), s.replicas[0] as NodeId] : s.replicas;
  const shards = [...rec.shards];
  shards.splice(
    i,
    1,
    { ...s, end: at },
    { id: child, start: at, end: s.end, replicas, parent: shardId },
  );
  return { ...rec, shards };
}

/**
 * The shards a node should hold a replica of: those a record lists it in, the fixed keyspaces'
 * shards, and a split's new half this node created by applying the split (`localChildren`, the
 * last child of each parent held here) **while no record has that half yet**: recordSplit writes
 * its record just after the split applies, and until then nothing else names it. Once the half
 * has a record, the record decides like for any shard. (Keeping every local child wanted for as
 * long as its parent is held kept orphans alive: a node that held the parent as a learner makes
 * a replica of the half that is not in the half's configuration, which never catches up; a
 * later move of the half to that node then waited for ever for it to pass the split.)
 */
export function replicasWantedOn(
  self: NodeId,
  records: readonly KeyspaceRecord[],
  fixedShards: Iterable<string>,
  localChildren: Iterable<string>,
): Set<string> {
  const wanted = new Set<string>(fixedShards);
  const recorded = new Set<string>();
  for (const rec of records) {
    for (const s of rec.shards) {
      recorded.add(s.id);
      if (s.replicas.includes(self)) wanted.add(s.id);
    }
  }
  for (const child of localChildren) if (!recorded.has(child)) wanted.add(child);
  return wanted;
}

export interface KeyspaceRecord {
  readonly name: string;
  readonly sharding: Sharding;
  /** Replicas per shard (the replication factor asked for). */
  readonly replicas: number;
  /** Distinguishes this keyspace from an earlier one of the same name (fresh shard ids). */
  readonly generation: string;
  readonly shards: readonly ShardRecord[];
}

export const KEYSPACE_RECORD_PREFIX = "ks/";

/**
 * Replicas of the metadata group: 3, and 5 once five or more members can hold replicas (it
 * then survives two lost members, as etcd's recommended size does). `eligible` counts the
 * members that are neither draining, removed nor dead. With fewer than three the count stays
 * as it is: an even-sized group would be no more available, and a dead member's replica stays
 * listed until a replacement can take it rather than shrinking the quorum during a failure.
 */
export const META_REPLICAS_SMALL = 3;
export const META_REPLICAS_LARGE = 5;
export function metaReplicasWanted(eligible: number, current: number): number {
  if (eligible >= META_REPLICAS_LARGE) return META_REPLICAS_LARGE;
  if (eligible >= META_REPLICAS_SMALL) return META_REPLICAS_SMALL;
  return current;
}
/** Keyspace names: what a path segment, a metric label and a shard id can all carry. */
export const KEYSPACE_NAME_BYTES_MAX = 40;
/** Initial shards of a hash keyspace; a range keyspace starts with one and splits. */
export const HASH_SHARDS_DEFAULT = 8;
export const SHARDS_PER_KEYSPACE_MAX = 256;
export const REPLICAS_MAX = 7;

const NAME = /^[a-z0-9][a-z0-9_-]*$/;

export type KeyspaceSpecError = {
  readonly ok: false;
  readonly code: "INVALID";
  readonly message: string;
};

export interface KeyspaceSpec {
  readonly name: string;
  readonly sharding: Sharding;
  readonly replicas: number;
  /** Hash keyspaces only. */
  readonly shards: number;
}

/** Checks a user's keyspace request (names starting with "_" are reserved for the system). */
export function validateKeyspaceSpec(input: {
  name: string;
  sharding?: unknown;
  replicas?: unknown;
  shards?: unknown;
}): { readonly ok: true; readonly spec: KeyspaceSpec } | KeyspaceSpecError {
  const bad = (message: string): KeyspaceSpecError => ({ ok: false, code: "INVALID", message });
  const { name } = input;
  if (name.length === 0 || name.length > KEYSPACE_NAME_BYTES_MAX || !NAME.test(name)) {
    return bad(
      `a keyspace name is 1 to ${KEYSPACE_NAME_BYTES_MAX} characters of a-z, 0-9, "_" and "-", starting with a letter or digit`,
    );
  }
  const sharding = input.sharding ?? "hash";
  if (sharding !== "hash" && sharding !== "range")
    return bad('"sharding" must be "hash" or "range"');
  const replicas = input.replicas ?? 3;
  if (
    typeof replicas !== "number" ||
    !Number.isInteger(replicas) ||
    replicas < 1 ||
    replicas > REPLICAS_MAX
  )
    return bad(`"replicas" must be an integer from 1 to ${REPLICAS_MAX}`);
  const shards = input.shards ?? (sharding === "hash" ? HASH_SHARDS_DEFAULT : 1);
  if (
    typeof shards !== "number" ||
    !Number.isInteger(shards) ||
    shards < 1 ||
    shards > SHARDS_PER_KEYSPACE_MAX
  )
    return bad(`"shards" must be an integer from 1 to ${SHARDS_PER_KEYSPACE_MAX}`);
  if (sharding === "range" && shards !== 1)
    return bad('a range keyspace starts with one shard and splits as it grows; omit "shards"');
  return { ok: true, spec: { name, sharding, replicas, shards } };
}

function hex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

/** `name 0x00`: where every encoded key of the keyspace starts. */
export function keyspacePrefixHex(name: string): string {
  return `${hex(new TextEncoder().encode(name))}00`;
}

/**
 * The record of a new keyspace. Replicas go to the members holding the fewest replicas so far
 * (ties by id), each shard starting from a different member, so that new keyspaces spread over
 * the cluster instead of piling on its first nodes. `load` counts replicas per member across the
 * existing records. Deterministic for its inputs (the generation comes from the caller).
 */
export function planKeyspace(
  spec: KeyspaceSpec,
  members: readonly NodeId[],
  load: ReadonlyMap<NodeId, number>,
  generation: string,
): KeyspaceRecord {
  assert(members.length > 0, "no members to place a keyspace on");
  const rf = Math.min(spec.replicas, members.length);
  const count = new Map(members.map((m) => [m, load.get(m) ?? 0]));
  const prefix = keyspacePrefixHex(spec.name);
  const boundary = (i: number): string => {
    if (i === 0) return prefix;
    if (i === spec.shards) return "";
    return (
      prefix +
      Math.floor((i * 2 ** 32) / spec.shards)
        .toString(16)
        .padStart(8, "0")
    );
  };
  const shards: ShardRecord[] = [];
  for (let i = 0; i < spec.shards; i++) {
    const ranked = [...members].sort(
      (a, b) => (count.get(a) as number) - (count.get(b) as number) || (a < b ? -1 : a > b ? 1 : 0),
    );
    // In ranked order: the first replica is the preferred leader (the least loaded member).
    const replicas = ranked.slice(0, rf);
    for (const r of replicas) count.set(r, (count.get(r) as number) + 1);
    shards.push({
      bootstrap: replicas,
      // Shard ids are group ids in storage: [A-Za-z0-9_.-], at most 64 characters. Keyspace
      // names have no ".", so "<name>.<generation>.<i>" cannot collide with another keyspace's.
      id: `${spec.name}.${generation}.${i}`,
      start: boundary(i),
      end: boundary(i + 1),
      replicas,
    });
  }
  return { name: spec.name, sharding: spec.sharding, replicas: spec.replicas, generation, shards };
}

/** Replicas per member over all records (the input `planKeyspace` balances on). */
export function replicaLoad(records: readonly KeyspaceRecord[]): Map<NodeId, number> {
  const load = new Map<NodeId, number>();
  for (const r of records)
    for (const s of r.shards) for (const n of s.replicas) load.set(n, (load.get(n) ?? 0) + 1);
  return load;
}

/** Parses a stored record, checking the invariants every reader relies on. */
export function parseKeyspaceRecord(json: string): KeyspaceRecord {
  const r = JSON.parse(json) as KeyspaceRecord;
  assert(
    typeof r.name === "string" && Array.isArray(r.shards) && r.shards.length > 0,
    "bad keyspace record",
  );
  // The shards tile the keyspace: first starts at its prefix, each ends where the next starts.
  const prefix = keyspacePrefixHex(r.name);
  assert(
    (r.shards[0] as ShardRecord).start === prefix,
    "keyspace record does not start at its prefix",
  );
  for (let i = 1; i < r.shards.length; i++)
    assert(
      (r.shards[i - 1] as ShardRecord).end === (r.shards[i] as ShardRecord).start,
      "shards must tile",
    );
  assert((r.shards[r.shards.length - 1] as ShardRecord).end === "", "last shard must be unbounded");
  return r;
}
