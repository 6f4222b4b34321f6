/**
 * Builders for cluster views and a tiny executor model that applies plans, so planner tests
 * can run many rounds: a replica move stays in flight (the new node is a learner, the old
 * voters stay) for `lagRounds` rounds, then the shard's reported configuration matches the
 * desired one.
 */
import assert from "node:assert/strict";
import {
  type ClusterView,
  type KeyspaceDesc,
  type Member,
  moveInFlight,
  type NodeAdmin,
  type NodeState,
  type PlacementOp,
  type ShardDesc,
  type ShardStats,
} from "../../src/placement/index.js";

export const GiB = 1024 ** 3;

export function member(
  id: string,
  opts: {
    zone?: string;
    rack?: string;
    capacityBytes?: number;
    liveness?: NodeState;
    admin?: NodeAdmin;
  } = {},
): Member {
  const labels: Record<string, string> = {};
  if (opts.zone !== undefined) labels.zone = opts.zone;
  if (opts.rack !== undefined) labels.rack = opts.rack;
  return {
    id,
    peer: `${id}:7000`,
    api: `${id}:8000`,
    s3: `${id}:9000`,
    labels,
    capacityBytes: opts.capacityBytes ?? 100 * GiB,
    usedBytes: 0,
    liveness: opts.liveness ?? "alive",
    admin: opts.admin ?? "active",
    lastHeartbeatMs: 0,
    load: { readsPerSec: 0, writesPerSec: 0 },
  };
}

export function shard(
  id: string,
  voters: string[],
  opts: { keyspace?: string; start?: string; end?: string; epoch?: number } = {},
): ShardDesc {
  return {
    id,
    keyspace: opts.keyspace ?? "default",
    start: opts.start ?? "",
    end: opts.end ?? "",
    voters,
    epoch: opts.epoch ?? 1,
  };
}

/** A report saying the shard's configuration is the desired one, led by its first voter. */
export function settled(s: ShardDesc, extra: Partial<ShardStats> = {}): ShardStats {
  return {
    shard: s.id,
    sizeBytes: 1024,
    keys: 10,
    readsPerSec: 0,
    writesPerSec: 0,
    voters: [...s.voters],
    learners: [],
    leader: s.voters[0] ?? "",
    ...extra,
  };
}

export function view(parts: {
  members: Member[];
  shards: ShardDesc[];
  keyspaces?: KeyspaceDesc[];
  stats?: Record<string, ShardStats>;
}): ClusterView {
  const stats: Record<string, ShardStats> = {};
  for (const s of parts.shards) stats[s.id] = parts.stats?.[s.id] ?? settled(s);
  return {
    members: parts.members,
    keyspaces: parts.keyspaces ?? [{ name: "default", sharding: "hash", replicas: 3 }],
    shards: parts.shards,
    stats,
    nowMs: 0,
  };
}

/** Shards that still hold the node, as desired voters. */
export function replicasOf(v: ClusterView, node: string): number {
  return v.shards.filter((s) => s.voters.includes(node)).length;
}

export function leadersOf(v: ClusterView, node: string): number {
  return v.shards.filter((s) => v.stats[s.id]?.leader === node).length;
}

/** The executor model: apply a plan, then let moves finish after `lagRounds` rounds. */
export class Executor {
  round = 0;
  private readonly started = new Map<string, number>();

  constructor(
    public view: ClusterView,
    readonly lagRounds = 0,
  ) {}

  apply(ops: readonly PlacementOp[]): void {
    const shards = new Map(this.view.shards.map((s) => [s.id, s]));
    const stats: Record<string, ShardStats> = { ...this.view.stats };
    for (const op of ops) {
      const s = shards.get(op.shard);
      assert.ok(s !== undefined, `op for unknown shard ${op.shard}`);
      assert.equal(op.epoch, s.epoch, "op planned at another epoch");
      const st = stats[s.id] as ShardStats;
      switch (op.kind) {
        case "add":
          shards.set(s.id, { ...s, voters: [...s.voters, op.add] });
          break;
        case "replace":
          shards.set(s.id, { ...s, voters: s.voters.map((v) => (v === op.remove ? op.add : v)) });
          break;
        case "remove":
          shards.set(s.id, { ...s, voters: s.voters.filter((v) => v !== op.remove) });
          break;
        case "transfer-leader":
          stats[s.id] = { ...st, leader: op.to };
          shards.set(s.id, { ...s, leaderHint: op.to });
          break;
        case "split": {
          const right: ShardDesc = { ...s, id: op.newShardId, start: op.at, epoch: s.epoch + 1 };
          shards.set(s.id, { ...s, end: op.at, epoch: s.epoch + 1 });
          shards.set(right.id, right);
          const half = Math.floor(st.sizeBytes / 2);
          stats[s.id] = { ...st, sizeBytes: half, splitKey: undefined };
          stats[right.id] = { ...st, shard: right.id, sizeBytes: half, splitKey: undefined };
          break;
        }
      }
      if (op.kind === "add" || op.kind === "replace" || op.kind === "remove") {
        if (!this.started.has(s.id)) this.started.set(s.id, this.round);
      }
    }
    // Moves in flight: the old voters stay, the new ones are learners until the lag is over.
    for (const [id, s] of shards) {
      const st = stats[id] as ShardStats;
      const since = this.started.get(id);
      if (since === undefined) continue;
      if (this.round - since >= this.lagRounds) {
        const leader = s.voters.includes(st.leader) ? st.leader : (s.voters[0] ?? "");
        stats[id] = { ...st, voters: [...s.voters], learners: [], leader };
        this.started.delete(id);
      } else {
        stats[id] = { ...st, learners: s.voters.filter((v) => !st.voters.includes(v)) };
      }
    }
    this.view = { ...this.view, shards: [...shards.values()], stats };
    this.round++;
  }

  inFlight(): number {
    return this.view.shards.filter((s) => moveInFlight(s, this.view.stats[s.id])).length;
  }
}
