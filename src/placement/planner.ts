/**
 * The schedulers: pure functions from a `ClusterView` (the map plus the latest reports) to a
 * plan, a list of typed operations. The placement leader commits the operations it accepts as
 * replicated commands (so a new leader resumes exactly where the old one stopped); the shards'
 * leaders then converge their Raft configurations to the desired voters.
 *
 * Model. `ShardDesc.voters` is the desired replica set; `ShardStats.voters/learners` is the
 * actual configuration. Applying a replica operation only changes the desired set: the
 * executor adds a learner, waits until it has caught up (snapshot + log), then enters a joint
 * configuration that promotes it and removes the old voter (up-replicate before removing).
 * A shard whose actual configuration differs from the desired one is a move in flight.
 *
 * Rules, in priority order (`planAll`):
 * 1. Repair: dead, removed or unknown voters are replaced, draining ones moved away, missing
 *    replicas added, extra ones removed, then zone spread restored.
 * 2. Split: shards too large, or hot for several reports in a row, split at their split key.
 * 3. Balance: replicas from the most to the least loaded node (by capacity), then leaders.
 * At most `movesMax` replica moves are in flight at once (repairs first), at most
 * `splitsMax` splits and `leaderTransfersMax` transfers are planned per round, and a shard
 * gets at most one operation per round. Everything is deterministic: ties break by id.
 */
import { assert } from "../base/index.js";
import type { NodeId } from "../raft/index.js";
import { hex64 } from "./hash.js";
import {
  type ClusterView,
  isHexKey,
  type KeyspaceDesc,
  type Member,
  rackOf,
  type ShardDesc,
  type ShardStats,
  zoneOf,
} from "./types.js";

/** A shard larger than this splits. */
export const SPLIT_BYTES_DEFAULT = 64 * 1024 * 1024;
/** A shard serving more reads + writes per second than this, for long enough, splits. */
export const SPLIT_LOAD_OPS_PER_SEC_DEFAULT = 2000;
/** "For long enough": this many consecutive hot reports (a burst does not split). */
export const SPLIT_HOT_REPORTS_MIN_DEFAULT = 3;
/** Replica moves in flight at once, cluster-wide (each copies a shard: snapshot + log). */
export const MOVES_MAX_DEFAULT = 8;
/**
 * A move in flight this long has stopped counting as progressing (see `Round.progressing`):
 * far longer than copying a shard of SPLIT_BYTES_DEFAULT takes, even on a slow network.
 */
export const MOVE_STALL_MS_DEFAULT = 10 * 60_000;
export const SPLITS_MAX_DEFAULT = 4;
export const LEADER_TRANSFERS_MAX_DEFAULT = 8;
/** Bounds the hot-report counters (they only need to reach the minimum). */
const HOT_REPORTS_MAX = 1_000;

export interface PlanLimits {
  readonly splitBytes: number;
  readonly splitLoadOpsPerSec: number;
  readonly splitHotReportsMin: number;
  readonly movesMax: number;
  readonly splitsMax: number;
  readonly leaderTransfersMax: number;
  /** A move in flight longer than this holds no budget (with `ClusterView.movesSinceMs`). */
  readonly moveStallMs: number;
}

export const PLAN_LIMITS_DEFAULT: PlanLimits = {
  splitBytes: SPLIT_BYTES_DEFAULT,
  splitLoadOpsPerSec: SPLIT_LOAD_OPS_PER_SEC_DEFAULT,
  splitHotReportsMin: SPLIT_HOT_REPORTS_MIN_DEFAULT,
  movesMax: MOVES_MAX_DEFAULT,
  splitsMax: SPLITS_MAX_DEFAULT,
  leaderTransfersMax: LEADER_TRANSFERS_MAX_DEFAULT,
  moveStallMs: MOVE_STALL_MS_DEFAULT,
};

/** Why a voter must go. */
export type EvictReason = "dead" | "removed" | "unknown-node" | "draining";

/**
 * One decision. Every operation names the shard's `epoch` when it was planned: the state
 * machine rejects it if the shard's range changed since (a split or merge happened first).
 */
export type PlacementOp =
  | {
      readonly kind: "add";
      readonly shard: string;
      readonly epoch: number;
      readonly add: NodeId;
      readonly reason: "under-replicated";
    }
  | {
      readonly kind: "replace";
      readonly shard: string;
      readonly epoch: number;
      readonly remove: NodeId;
      readonly add: NodeId;
      readonly reason: EvictReason | "zone-spread" | "balance";
    }
  | {
      readonly kind: "remove";
      readonly shard: string;
      readonly epoch: number;
      readonly remove: NodeId;
      readonly reason: EvictReason | "over-replicated";
    }
  | {
      readonly kind: "transfer-leader";
      readonly shard: string;
      readonly epoch: number;
      readonly from: NodeId;
      readonly to: NodeId;
      readonly reason: "draining" | "removed" | "balance";
    }
  | {
      readonly kind: "split";
      readonly shard: string;
      readonly epoch: number;
      /** Hex encoded key: the shard keeps [start, at), the new shard takes [at, end). */
      readonly at: string;
      readonly newShardId: string;
      readonly reason: "size" | "load";
    };

export type BlockedReason =
  /** No alive, active node may take a replica (all taken, or in the wrong zones). */
  | "no-candidate"
  /** Waiting for moves in flight to finish (`movesMax`). */
  | "moves-limit"
  | "splits-limit"
  | "unknown-keyspace"
  /** The shard should split but its leader reported no split key. */
  | "no-split-key"
  /** The reported split key is not hex, or not strictly inside the shard's range. */
  | "bad-split-key";

export interface Blocked {
  readonly shard: string;
  /** The shard's epoch when planned (absent when the shard could not be judged at all). */
  readonly epoch?: number;
  readonly reason: BlockedReason;
  readonly detail: string;
}

export interface Plan {
  readonly ops: PlacementOp[];
  /** Work that is needed but could not be planned this round, and why. */
  readonly blocked: Blocked[];
}

/** Consecutive hot reports per shard id (the caller keeps it between rounds). */
export type HotReports = Readonly<Record<string, number>>;

function byId(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sameSet(a: readonly NodeId[], b: readonly NodeId[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

function checkLimits(limits: PlanLimits): void {
  const counts = [limits.movesMax, limits.splitsMax, limits.leaderTransfersMax];
  assert(
    counts.every((x) => Number.isInteger(x) && x >= 0) &&
      limits.splitBytes > 0 &&
      limits.splitLoadOpsPerSec > 0 &&
      Number.isInteger(limits.splitHotReportsMin) &&
      limits.splitHotReportsMin >= 1 &&
      limits.moveStallMs > 0,
    () => `invalid plan limits: ${JSON.stringify(limits)}`,
  );
}

/** A move is in flight while the shard's reported configuration differs from the desired one. */
export function moveInFlight(shard: ShardDesc, stats: ShardStats | undefined): boolean {
  if (stats === undefined) return false;
  return stats.learners.length > 0 || !sameSet(stats.voters, shard.voters);
}

/**
 * The view with `movesSinceMs` filled in from `since` (shard id → when the caller first saw its
 * move in flight), which it updates in place: moves no longer in flight are forgotten, new ones
 * start now. The placement leader keeps `since` between its rounds.
 */
export function withMovesSince(view: ClusterView, since: Map<string, number>): ClusterView {
  const movesSinceMs: Record<string, number> = {};
  for (const s of view.shards)
    if (moveInFlight(s, view.stats[s.id])) movesSinceMs[s.id] = since.get(s.id) ?? view.nowMs;
  since.clear();
  for (const [id, ms] of Object.entries(movesSinceMs)) since.set(id, ms);
  return { ...view, movesSinceMs };
}

/**
 * The id of the shard created by splitting `shard` at its current epoch: the same inputs give
 * the same id, so a plan recomputed by a new placement leader (or retried) names the same new
 * shard. Salted in the (astronomically unlikely) case of a collision with `taken`.
 */
export function splitShardId(shard: ShardDesc, taken: ReadonlySet<string>): string {
  for (let salt = 0; salt < 16; salt++) {
    const id = `${shard.keyspace}.${hex64(`${shard.id}@${shard.epoch}#${salt}`)}`;
    if (!taken.has(id)) return id;
  }
  assert(false, "splitShardId: 16 collisions in a row");
}

/**
 * The next hot-report counters: +1 for each reported shard above the load threshold, reset
 * to 0 below it; shards without a report are dropped.
 */
export function updateHotReports(
  previous: HotReports,
  view: Pick<ClusterView, "stats">,
  limits: PlanLimits = PLAN_LIMITS_DEFAULT,
): Record<string, number> {
  const next: Record<string, number> = {};
  for (const [id, stats] of Object.entries(view.stats)) {
    const hot = stats.readsPerSec + stats.writesPerSec > limits.splitLoadOpsPerSec;
    next[id] = hot ? Math.min(HOT_REPORTS_MAX, (previous[id] ?? 0) + 1) : 0;
  }
  return next;
}

/** The working state of one planning round: the view with the planned operations applied. */
class Round {
  readonly members = new Map<NodeId, Member>();
  /** Alive and active: the only nodes that may receive replicas or leaders. */
  readonly eligible: Member[];
  readonly keyspaces = new Map<string, KeyspaceDesc>();
  readonly shards: ShardDesc[];
  /** Desired voters per shard, with this round's operations applied. */
  readonly voters = new Map<string, NodeId[]>();
  readonly replicas = new Map<NodeId, number>();
  readonly leaders = new Map<NodeId, number>();
  readonly leaderOf = new Map<string, NodeId>();
  readonly touched = new Set<string>();
  readonly inFlight = new Set<string>();
  readonly ops: PlacementOp[] = [];
  readonly blocked: Blocked[] = [];
  movesLeft: number;
  splitsLeft: number;
  transfersLeft: number;

  constructor(
    readonly view: ClusterView,
    readonly limits: PlanLimits,
  ) {
    checkLimits(limits);
    let progressingMoves = 0;
    for (const m of view.members) this.members.set(m.id, m);
    this.eligible = view.members
      .filter((m) => m.liveness === "alive" && m.admin === "active")
      .sort((a, b) => byId(a.id, b.id));
    for (const k of view.keyspaces) this.keyspaces.set(k.name, k);
    this.shards = [...view.shards].sort((a, b) => byId(a.id, b.id));
    for (const s of this.shards) {
      assert(new Set(s.voters).size === s.voters.length, () => `shard ${s.id}: duplicate voters`);
      this.voters.set(s.id, [...s.voters]);
      for (const v of s.voters) this.replicas.set(v, (this.replicas.get(v) ?? 0) + 1);
      const stats = view.stats[s.id];
      if (moveInFlight(s, stats)) {
        this.inFlight.add(s.id);
        if (this.progressing(s, stats as ShardStats)) progressingMoves++;
      }
      const leader = stats?.leader || s.leaderHint;
      if (leader) {
        this.leaderOf.set(s.id, leader);
        this.leaders.set(leader, (this.leaders.get(leader) ?? 0) + 1);
      }
    }
    // Only moves that can progress hold the budget: one whose group has no leader, or whose
    // incoming replica is on a node that is not alive, moves no data and may never finish
    // (the target lost for good with no other candidate, the quorum lost for good); counting
    // it would starve every other shard's repair and drain (the `stuck-moves-budget` issue).
    this.movesLeft = limits.movesMax - progressingMoves;
    this.splitsLeft = limits.splitsMax;
    this.transfersLeft = limits.leaderTransfersMax;
  }

  plan(): Plan {
    return { ops: this.ops, blocked: this.blocked };
  }

  /**
   * Whether a move in flight can make progress: the group has a leader (or no replica yet, so
   * none to wait for), every incoming replica is on an alive node, and it has not been in flight
   * for longer than `moveStallMs`. The last is for what the view cannot show: a move can wait
   * for ever on a replica its node never creates (docs/placement.md, "Liveness and stale
   * replicas", has the case that was found), and a stuck move that held the budget would starve
   * every other shard's repair, the repair of a dead node's replicas included.
   */
  private progressing(shard: ShardDesc, stats: ShardStats): boolean {
    const since = this.view.movesSinceMs?.[shard.id];
    if (since !== undefined && this.view.nowMs - since > this.limits.moveStallMs) return false;
    if (!stats.leader && stats.voters.length > 0) return false;
    const current = new Set(stats.voters);
    const incoming = [...shard.voters.filter((v) => !current.has(v)), ...stats.learners];
    return incoming.every((n) => this.members.get(n)?.liveness === "alive");
  }

  /** Why `node` must leave the shards it is in, or undefined when it may stay. */
  evictReason(node: NodeId): EvictReason | undefined {
    const m = this.members.get(node);
    if (m === undefined) return "unknown-node";
    if (m.admin === "removed") return "removed";
    if (m.liveness === "dead") return "dead";
    if (m.admin === "draining") return "draining";
    return undefined;
  }

  isEligible(node: NodeId): boolean {
    const m = this.members.get(node);
    return m !== undefined && m.liveness === "alive" && m.admin === "active";
  }

  zone(node: NodeId): string {
    const m = this.members.get(node);
    return m === undefined ? `?${node}` : zoneOf(m);
  }

  /** Replicas per byte of capacity after one more: lower is emptier. */
  fill(node: NodeId, extra = 0): number {
    const m = this.members.get(node);
    const capacity = Math.max(1, m?.capacityBytes ?? 1);
    return ((this.replicas.get(node) ?? 0) + extra) / capacity;
  }

  distinctZones(nodes: readonly NodeId[]): number {
    return new Set(nodes.map((n) => this.zone(n))).size;
  }

  /** Zones a shard could spread over: those of eligible nodes plus those it already uses. */
  zonesAvailable(voters: readonly NodeId[]): number {
    const zones = new Set(this.eligible.map((m) => zoneOf(m)));
    for (const v of voters) if (this.evictReason(v) === undefined) zones.add(this.zone(v));
    return zones.size;
  }

  /**
   * The best node to receive a replica of a shard whose other replicas are `staying`, not
   * one of `exclude`: alive and active; a zone without a replica of the shard first, then a
   * rack without one, then the fewest replicas per byte of capacity, then the smallest id.
   */
  chooseTarget(staying: readonly NodeId[], exclude: readonly NodeId[]): NodeId | undefined {
    const zoneUse = new Map<string, number>();
    const rackUse = new Map<string, number>();
    for (const v of staying) {
      const m = this.members.get(v);
      if (m === undefined) continue;
      zoneUse.set(zoneOf(m), (zoneUse.get(zoneOf(m)) ?? 0) + 1);
      rackUse.set(rackOf(m), (rackUse.get(rackOf(m)) ?? 0) + 1);
    }
    let best: { id: NodeId; key: number[] } | undefined;
    for (const m of this.eligible) {
      if (staying.includes(m.id) || exclude.includes(m.id)) continue;
      const key = [zoneUse.get(zoneOf(m)) ?? 0, rackUse.get(rackOf(m)) ?? 0, this.fill(m.id, 1)];
      if (best === undefined || lessKey(key, best.key)) best = { id: m.id, key };
    }
    return best?.id;
  }

  /** Records an operation and applies it to the working state. */
  apply(op: PlacementOp): void {
    assert(!this.touched.has(op.shard), () => `two operations for shard ${op.shard}`);
    this.touched.add(op.shard);
    this.ops.push(op);
    const voters = this.voters.get(op.shard);
    assert(voters !== undefined, "operation for an unknown shard");
    const bump = (node: NodeId, by: number): void => {
      this.replicas.set(node, (this.replicas.get(node) ?? 0) + by);
    };
    switch (op.kind) {
      case "add":
        voters.push(op.add);
        bump(op.add, 1);
        break;
      case "replace":
        voters.splice(voters.indexOf(op.remove), 1, op.add);
        bump(op.remove, -1);
        bump(op.add, 1);
        break;
      case "remove":
        voters.splice(voters.indexOf(op.remove), 1);
        bump(op.remove, -1);
        break;
      case "transfer-leader":
        this.leaderOf.set(op.shard, op.to);
        this.leaders.set(op.from, (this.leaders.get(op.from) ?? 0) - 1);
        this.leaders.set(op.to, (this.leaders.get(op.to) ?? 0) + 1);
        this.transfersLeft--;
        return;
      case "split":
        this.splitsLeft--;
        return;
    }
    // A new move, unless the shard was already moving (retargeting a move in flight).
    if (!this.inFlight.has(op.shard)) this.movesLeft--;
  }
}

function lessKey(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    if (x !== y) return x < y;
  }
  return false;
}

const EVICT_ORDER: Record<EvictReason, number> = {
  "unknown-node": 0,
  removed: 1,
  dead: 2,
  draining: 3,
};

function repair(round: Round): void {
  // Shards closest to losing their quorum first, so that the move budget goes where it matters.
  const work = round.shards
    .map((shard) => {
      const voters = round.voters.get(shard.id) as NodeId[];
      const healthy = voters.filter((v) => round.evictReason(v) === undefined).length;
      return { shard, risk: healthy - Math.floor(voters.length / 2) };
    })
    .sort((a, b) => a.risk - b.risk || byId(a.shard.id, b.shard.id));
  for (const { shard } of work) {
    if (round.touched.has(shard.id)) continue;
    const keyspace = round.keyspaces.get(shard.keyspace);
    if (keyspace === undefined) {
      round.blocked.push({
        shard: shard.id,
        reason: "unknown-keyspace",
        detail: `keyspace ${shard.keyspace} is not in the map`,
      });
      continue;
    }
    repairShard(round, shard, keyspace.replicas);
  }
}

function repairShard(round: Round, shard: ShardDesc, wanted: number): void {
  const voters = round.voters.get(shard.id) as NodeId[];
  const evict = voters
    .map((node) => ({ node, reason: round.evictReason(node) }))
    .filter((x): x is { node: NodeId; reason: EvictReason } => x.reason !== undefined)
    .sort((a, b) => EVICT_ORDER[a.reason] - EVICT_ORDER[b.reason] || byId(a.node, b.node));
  const urgent = evict.some((x) => x.reason !== "draining");
  const moving = round.inFlight.has(shard.id);
  // One change at a time per shard; only a lost node justifies retargeting a move in flight.
  if (moving && !urgent) return;
  const base = { shard: shard.id, epoch: shard.epoch };
  const budget = (): boolean => {
    if (moving || round.movesLeft > 0) return true;
    round.blocked.push({ ...base, reason: "moves-limit", detail: `${round.movesLeft} moves left` });
    return false;
  };
  const noCandidate = (what: string): void => {
    round.blocked.push({
      ...base,
      reason: "no-candidate",
      detail: `no alive, active node ${what}`,
    });
  };

  if (voters.length > wanted) {
    const victim = evict[0]?.node ?? leastWanted(round, voters);
    const reason = evict[0]?.reason ?? "over-replicated";
    if (budget()) round.apply({ kind: "remove", ...base, remove: victim, reason });
    return;
  }
  if (voters.length < wanted) {
    const add = round.chooseTarget(voters, []);
    if (add === undefined) noCandidate(`to add a replica (${voters.length}/${wanted})`);
    else if (budget()) round.apply({ kind: "add", ...base, add, reason: "under-replicated" });
    return;
  }
  const first = evict[0];
  if (first !== undefined) {
    const staying = voters.filter((v) => v !== first.node);
    const add = round.chooseTarget(staying, [first.node]);
    if (add === undefined) noCandidate(`to replace ${first.node} (${first.reason})`);
    else if (budget()) {
      round.apply({ kind: "replace", ...base, remove: first.node, add, reason: first.reason });
    }
    return;
  }
  // Zone spread: as many distinct zones as replicas, or as zones exist.
  const spread = round.distinctZones(voters);
  if (spread >= Math.min(voters.length, round.zonesAvailable(voters))) return;
  const perZone = new Map<string, number>();
  for (const v of voters) perZone.set(round.zone(v), (perZone.get(round.zone(v)) ?? 0) + 1);
  const crowded = voters
    .filter((v) => (perZone.get(round.zone(v)) ?? 0) > 1)
    .sort((a, b) => round.fill(b) - round.fill(a) || byId(a, b));
  for (const victim of crowded) {
    const staying = voters.filter((v) => v !== victim);
    const add = round.chooseTarget(staying, [victim]);
    if (add === undefined || round.distinctZones([...staying, add]) <= spread) continue;
    if (budget())
      round.apply({ kind: "replace", ...base, remove: victim, add, reason: "zone-spread" });
    return;
  }
}

/** The replica to drop from an over-replicated shard whose voters may all stay. */
function leastWanted(round: Round, voters: readonly NodeId[]): NodeId {
  const perZone = new Map<string, number>();
  for (const v of voters) perZone.set(round.zone(v), (perZone.get(round.zone(v)) ?? 0) + 1);
  const key = (v: NodeId): number[] => [
    round.isEligible(v) ? 1 : 0, // suspect nodes go first
    -(perZone.get(round.zone(v)) ?? 0), // then the most crowded zone
    -round.fill(v), // then the fullest node
  ];
  let best = voters[0] as NodeId;
  for (const v of voters.slice(1)) {
    const kv = key(v);
    const kb = key(best);
    if (lessKey(kv, kb) || (!lessKey(kb, kv) && byId(v, best) < 0)) best = v;
  }
  return best;
}

function split(round: Round, hot: HotReports): void {
  const { splitBytes, splitLoadOpsPerSec, splitHotReportsMin } = round.limits;
  const taken = new Set(round.shards.map((s) => s.id));
  const candidates: { shard: ShardDesc; stats: ShardStats; reason: "size" | "load" }[] = [];
  for (const shard of round.shards) {
    const stats = round.view.stats[shard.id];
    if (stats === undefined || round.touched.has(shard.id) || round.inFlight.has(shard.id)) {
      continue;
    }
    if (stats.sizeBytes > splitBytes) candidates.push({ shard, stats, reason: "size" });
    else if (
      stats.readsPerSec + stats.writesPerSec > splitLoadOpsPerSec &&
      (hot[shard.id] ?? 0) >= splitHotReportsMin
    ) {
      candidates.push({ shard, stats, reason: "load" });
    }
  }
  // Largest first, then hottest: under the rate limit the worst cases go first.
  const load = (s: ShardStats): number => s.readsPerSec + s.writesPerSec;
  candidates.sort(
    (a, b) =>
      (a.reason === b.reason ? 0 : a.reason === "size" ? -1 : 1) ||
      (a.reason === "size"
        ? b.stats.sizeBytes - a.stats.sizeBytes
        : load(b.stats) - load(a.stats)) ||
      byId(a.shard.id, b.shard.id),
  );
  for (const { shard, stats, reason } of candidates) {
    const base = { shard: shard.id, epoch: shard.epoch };
    const at = stats.splitKey;
    if (at === undefined) {
      round.blocked.push({ ...base, reason: "no-split-key", detail: `${reason}: no split key` });
      continue;
    }
    if (!splitKeyInside(shard, at)) {
      round.blocked.push({
        ...base,
        reason: "bad-split-key",
        detail: `split key ${at} is not inside [${shard.start}, ${shard.end || "∞"})`,
      });
      continue;
    }
    if (round.splitsLeft <= 0) {
      round.blocked.push({ ...base, reason: "splits-limit", detail: `${reason}: waiting` });
      continue;
    }
    const newShardId = splitShardId(shard, taken);
    taken.add(newShardId);
    round.apply({ kind: "split", ...base, at, newShardId, reason });
  }
}

/** Is `at` a valid split point: hex, and strictly inside (start, end)? */
export function splitKeyInside(shard: Pick<ShardDesc, "start" | "end">, at: string): boolean {
  return isHexKey(at) && at > shard.start && (shard.end === "" || at < shard.end);
}

function balanceReplicas(round: Round): void {
  const nodes = round.eligible;
  if (nodes.length < 2) return;
  // Only shards with nothing to repair and nothing moving take part.
  const movable = round.shards.filter(
    (s) =>
      !round.touched.has(s.id) &&
      !round.inFlight.has(s.id) &&
      round.keyspaces.has(s.keyspace) &&
      (round.voters.get(s.id) as NodeId[]).every((v) => round.evictReason(v) === undefined),
  );
  const capacity = nodes.reduce((sum, m) => sum + Math.max(1, m.capacityBytes), 0);
  const total = nodes.reduce((sum, m) => sum + (round.replicas.get(m.id) ?? 0), 0);
  const surplus = (m: Member): number =>
    (round.replicas.get(m.id) ?? 0) - (total * Math.max(1, m.capacityBytes)) / capacity;
  const size = (s: ShardDesc): number => round.view.stats[s.id]?.sizeBytes ?? 0;
  // Each move lowers the sum of squared surpluses (it needs a gap above one replica), so the
  // loop cannot cycle; the shard count bounds it anyway.
  for (let guard = 0; guard < round.shards.length && round.movesLeft > 0; guard++) {
    const order = [...nodes].sort((a, b) => surplus(b) - surplus(a) || byId(a.id, b.id));
    let move: { shard: ShardDesc; from: NodeId; to: NodeId } | undefined;
    search: for (const src of order) {
      for (const dst of [...order].reverse()) {
        if (surplus(src) - surplus(dst) <= 1 + 1e-9) break;
        let best: { shard: ShardDesc; key: number[] } | undefined;
        for (const s of movable) {
          if (round.touched.has(s.id)) continue;
          const voters = round.voters.get(s.id) as NodeId[];
          if (!voters.includes(src.id) || voters.includes(dst.id)) continue;
          const after = voters.map((v) => (v === src.id ? dst.id : v));
          const gain = round.distinctZones(after) - round.distinctZones(voters);
          if (gain < 0) continue; // never trade zone spread for balance
          // Improve spread if possible, then the cheapest copy, then the smallest id.
          const key = [-gain, size(s)];
          if (best === undefined || lessKey(key, best.key)) best = { shard: s, key };
        }
        if (best !== undefined) {
          move = { shard: best.shard, from: src.id, to: dst.id };
          break search;
        }
      }
    }
    if (move === undefined) return;
    round.apply({
      kind: "replace",
      shard: move.shard.id,
      epoch: move.shard.epoch,
      remove: move.from,
      add: move.to,
      reason: "balance",
    });
  }
}

function balanceLeaders(round: Round): void {
  const actualVoters = (s: ShardDesc): readonly NodeId[] => round.view.stats[s.id]?.voters ?? [];
  const canLead = (s: ShardDesc, node: NodeId): boolean =>
    round.isEligible(node) &&
    actualVoters(s).includes(node) &&
    (round.voters.get(s.id) as NodeId[]).includes(node);
  const shards = round.shards.filter(
    (s) => !round.touched.has(s.id) && !round.inFlight.has(s.id) && round.leaderOf.has(s.id),
  );
  const count = (node: NodeId): number => round.leaders.get(node) ?? 0;

  // Leaders on draining or removed (but reachable) nodes move first.
  for (const s of shards) {
    if (round.transfersLeft <= 0) return;
    const from = round.leaderOf.get(s.id) as NodeId;
    const reason = round.evictReason(from);
    if (reason !== "draining" && reason !== "removed") continue;
    if (round.members.get(from)?.liveness !== "alive") continue;
    const to = actualVoters(s)
      .filter((v) => canLead(s, v))
      .sort((a, b) => count(a) - count(b) || byId(a, b))[0];
    if (to !== undefined) {
      round.apply({ kind: "transfer-leader", shard: s.id, epoch: s.epoch, from, to, reason });
    }
  }

  // Then even out leader counts over the eligible nodes, one leader at a time.
  const nodes = round.eligible.map((m) => m.id);
  for (let guard = 0; guard < shards.length && round.transfersLeft > 0; guard++) {
    const order = [...nodes].sort((a, b) => count(b) - count(a) || byId(a, b));
    let transfer: { shard: ShardDesc; from: NodeId; to: NodeId } | undefined;
    search: for (const from of order) {
      for (const to of [...order].reverse()) {
        if (count(from) - count(to) <= 1) break;
        const s = shards.find(
          (x) => !round.touched.has(x.id) && round.leaderOf.get(x.id) === from && canLead(x, to),
        );
        if (s !== undefined) {
          transfer = { shard: s, from, to };
          break search;
        }
      }
    }
    if (transfer === undefined) return;
    round.apply({
      kind: "transfer-leader",
      shard: transfer.shard.id,
      epoch: transfer.shard.epoch,
      from: transfer.from,
      to: transfer.to,
      reason: "balance",
    });
  }
}

/** Repairs only: replace evicted voters, add missing replicas, drop extra ones, spread zones. */
export function planRepair(view: ClusterView, limits: PlanLimits = PLAN_LIMITS_DEFAULT): Plan {
  const round = new Round(view, limits);
  repair(round);
  return round.plan();
}

/** Splits only. `hot` counts consecutive hot reports per shard (see `updateHotReports`). */
export function planSplit(
  view: ClusterView,
  limits: PlanLimits = PLAN_LIMITS_DEFAULT,
  hot: HotReports = {},
): Plan {
  const round = new Round(view, limits);
  split(round, hot);
  return round.plan();
}

/** Balance only: replica counts by capacity, then leader counts. */
export function planBalance(view: ClusterView, limits: PlanLimits = PLAN_LIMITS_DEFAULT): Plan {
  const round = new Round(view, limits);
  balanceReplicas(round);
  balanceLeaders(round);
  return round.plan();
}

/** Everything, by priority: repair, then split, then balance, within the limits. */
export function planAll(
  view: ClusterView,
  limits: PlanLimits = PLAN_LIMITS_DEFAULT,
  hot: HotReports = {},
): Plan {
  const round = new Round(view, limits);
  repair(round);
  split(round, hot);
  balanceReplicas(round);
  balanceLeaders(round);
  return round.plan();
}
