/**
 * The chunk ring: which nodes hold the replicas of each of a fixed number of partitions of the
 * content-hash space. Object chunks are named by their SHA-256; the top bits of the hash pick
 * the partition (`partitionOf`), the ring picks the nodes.
 *
 * The ring is a sticky quota layout (the idea of Garage's layout, without its max-flow):
 *
 * 1. Every node gets a real-valued fair share of the P×R partition-replica slots: in
 *    proportion to its weight, at most P (a node holds a partition at most once), and
 *    - with at least R zones, every zone at most P (a partition is never twice in one zone);
 *    - with fewer zones, every zone at least P (every partition reaches every zone).
 *    Shares are water-filled, so a capped zone or node spreads its excess over the others in
 *    proportion to their weights.
 * 2. The previous layout is kept slot by slot, except slots whose node left or that break
 *    the zone rules.
 * 3. Empty slots are filled greedily (`fillRank`), then rebalanced by moving only the slots
 *    just filled: they are being copied anyway, so this costs no extra movement.
 * 4. A node more than `slack` above its share sheds slots to nodes with room; a node more
 *    than `slack` below pulls slots from the nodes most above theirs (`rebalance`, along
 *    augmenting paths, so a move that needs a third node to step aside is found too).
 *
 * The hysteresis of step 4 (nothing moves for a node within slack of its share) is what keeps
 * membership changes cheap: when a node leaves, every other share only grows, so normally no
 * shed or pull fires and the only slots that change are the departed node's; a joining node
 * starts at 0, far below its share, so it pulls its share from the fullest nodes and nothing
 * else moves. docs/placement.md states the properties with their tolerances and
 * test/placement/ring.test.ts proves them against naive references.
 *
 * Pure and deterministic: the output depends only on the input values (not on the order of
 * `nodes`), using integer and IEEE arithmetic only (no Math.log and friends, whose last bits
 * may differ between engines); ties are broken by a hash of (node id, partition).
 */
import { assert } from "../base/index.js";
import type { NodeId } from "../raft/index.js";
import { fnv1a, mix32 } from "./hash.js";

export const RING_PARTITIONS_DEFAULT = 256;
/**
 * Bound the layout's work (about P×R×nodes rank computations: ~0.1 s for 1024 partitions on
 * 100 nodes, ~1.4 s for 4096 on 1000) and the ring's size in the metadata group.
 */
export const RING_PARTITIONS_MAX = 4096;
export const RING_REPLICAS_MAX = 16;
export const RING_NODES_MAX = 1024;

/** Float noise must not turn a share of exactly 12 into bounds [11, 13]. */
const EPSILON = 1e-9;
/**
 * How far (as a fraction of its share, at least one slot) a node's load may drift from its
 * share before the layout moves other slots to correct it. Larger = fewer moves on membership
 * changes, looser balance. With 1/4 a removal essentially never triggers corrections, while a
 * layout computed from scratch or after a join is much tighter anyway (within one slot).
 */
export const RING_SLACK_FRACTION = 0.25;

export interface RingNode {
  readonly id: NodeId;
  /** Failure domain. Nodes without a zone label share the zone "". */
  readonly zone: string;
  /** Relative capacity (for example capacityBytes). Must be positive. */
  readonly weight: number;
}

export interface RingInput {
  readonly nodes: readonly RingNode[];
  /** A power of two; default RING_PARTITIONS_DEFAULT. */
  readonly partitions?: number;
  readonly replicas: number;
  /**
   * The current layout. Kept wherever it is still valid, so a change of membership moves as
   * little as possible. It may have a different (power of two) number of partitions: with the
   * partition taken from the top bits of the hash, new partition p lies inside old partition
   * floor(p × P_old / P).
   */
  readonly previous?: readonly (readonly NodeId[])[];
}

/** partition → ordered replica list (previous positions are kept). */
export type Ring = NodeId[][];

/** The partition of a uniformly distributed hash: bytes, or the lowercase hex of a digest. */
export function partitionOf(hash: Uint8Array | string, partitions: number): number {
  assertPartitions(partitions);
  let top: number;
  if (typeof hash === "string") {
    assert(/^[0-9a-fA-F]{8}/.test(hash), "partitionOf needs at least 4 bytes of hex hash");
    top = Number.parseInt(hash.slice(0, 8), 16);
  } else {
    assert(hash.byteLength >= 4, "partitionOf needs at least 4 bytes of hash");
    top =
      (((hash[0] as number) << 24) |
        ((hash[1] as number) << 16) |
        ((hash[2] as number) << 8) |
        (hash[3] as number)) >>>
      0;
  }
  const bits = Math.log2(partitions);
  return bits === 0 ? 0 : top >>> (32 - bits);
}

function assertPartitions(partitions: number): void {
  assert(
    Number.isInteger(partitions) &&
      partitions >= 1 &&
      partitions <= RING_PARTITIONS_MAX &&
      (partitions & (partitions - 1)) === 0,
    () => `ring partitions must be a power of two in [1, ${RING_PARTITIONS_MAX}]: ${partitions}`,
  );
}

/**
 * Divides `total` among items in proportion to `weights`, each item kept within
 * [floors[i], caps[i]]: the classic water level, share_i = clamp(level × weight_i). The level
 * is found by bisection (the clamped sum only grows with it), then the unclamped items are
 * rescaled so the shares add up to `total` exactly.
 */
export function waterFill(
  total: number,
  weights: readonly number[],
  caps: readonly number[],
  floors?: readonly number[],
): number[] {
  const n = weights.length;
  assert(caps.length === n && (floors === undefined || floors.length === n), "waterFill: sizes");
  const floorOf = (i: number): number => floors?.[i] ?? 0;
  let capSum = 0;
  let floorSum = 0;
  let top = 0;
  for (let i = 0; i < n; i++) {
    const w = weights[i] as number;
    assert(w > 0 && floorOf(i) <= (caps[i] as number), "waterFill: bad weight or bounds");
    capSum += caps[i] as number;
    floorSum += floorOf(i);
    top = Math.max(top, (caps[i] as number) / w);
  }
  const tolerance = EPSILON * (1 + total);
  assert(floorSum <= total + tolerance && total <= capSum + tolerance, "waterFill: infeasible");
  const at = (level: number, i: number): number =>
    Math.min(caps[i] as number, Math.max(floorOf(i), level * (weights[i] as number)));
  const sumAt = (level: number): number => {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += at(level, i);
    return sum;
  };
  let lo = 0;
  let hi = top;
  for (let iteration = 0; iteration < 100; iteration++) {
    const mid = (lo + hi) / 2;
    if (sumAt(mid) < total) lo = mid;
    else hi = mid;
  }
  const out = weights.map((_, i) => at(hi, i));
  let pinned = 0;
  let freeWeight = 0;
  const free = out.map((share, i) => share > floorOf(i) && share < (caps[i] as number));
  out.forEach((share, i) => {
    if (free[i]) freeWeight += weights[i] as number;
    else pinned += share;
  });
  if (freeWeight > 0) {
    const level = (total - pinned) / freeWeight;
    for (let i = 0; i < n; i++) if (free[i]) out[i] = level * (weights[i] as number);
  }
  return out;
}

interface Layout {
  readonly P: number;
  /** Effective replica count: min(replicas, nodes). */
  readonly R: number;
  readonly ids: readonly NodeId[];
  readonly zoneOf: Int32Array;
  readonly zoneCount: number;
  /**
   * At least R zones: a partition never has two replicas in one zone ("strict"). Otherwise
   * every partition has a replica in every zone (so at least zoneCount distinct zones).
   */
  readonly strict: boolean;
  readonly share: Float64Array;
  readonly lo: Int32Array;
  readonly hi: Int32Array;
  readonly slack: Int32Array;
  readonly nodeHash: Uint32Array;
}

function validate(input: RingInput): { P: number; nodes: RingNode[] } {
  const P = input.partitions ?? RING_PARTITIONS_DEFAULT;
  assertPartitions(P);
  assert(
    Number.isInteger(input.replicas) && input.replicas >= 1 && input.replicas <= RING_REPLICAS_MAX,
    () => `ring replicas must be in [1, ${RING_REPLICAS_MAX}]: ${input.replicas}`,
  );
  assert(input.nodes.length <= RING_NODES_MAX, "too many ring nodes");
  const nodes = [...input.nodes].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (let i = 0; i < nodes.length; i++) {
    const node = nodes[i] as RingNode;
    assert(node.id !== "", "ring node ids must be non-empty");
    assert(i === 0 || (nodes[i - 1] as RingNode).id !== node.id, () => `duplicate node ${node.id}`);
    assert(
      Number.isFinite(node.weight) && node.weight > 0,
      () => `ring node ${node.id} needs a positive weight: ${node.weight}`,
    );
  }
  if (input.previous !== undefined) {
    const Pp = input.previous.length;
    assert(Pp >= 1 && (Pp & (Pp - 1)) === 0, "previous ring must have a power-of-two length");
  }
  return { P, nodes };
}

function layoutOf(P: number, replicas: number, nodes: readonly RingNode[]): Layout {
  const n = nodes.length;
  const R = Math.min(replicas, n);
  const zoneIndex = new Map<string, number>();
  const zoneOf = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const zone = (nodes[i] as RingNode).zone;
    let z = zoneIndex.get(zone);
    if (z === undefined) {
      z = zoneIndex.size;
      zoneIndex.set(zone, z);
    }
    zoneOf[i] = z;
  }
  const zoneCount = zoneIndex.size;
  const strict = zoneCount >= R;
  const zoneWeight = new Array<number>(zoneCount).fill(0);
  const zoneNodes = new Array<number>(zoneCount).fill(0);
  for (let i = 0; i < n; i++) {
    const z = zoneOf[i] as number;
    zoneWeight[z] = (zoneWeight[z] as number) + (nodes[i] as RingNode).weight;
    zoneNodes[z] = (zoneNodes[z] as number) + 1;
  }
  // A zone holds a partition at most once (strict), or at least once and at most once per node
  // (too few zones: every partition must still reach every zone, whatever the zone's weight).
  const zoneCaps = zoneNodes.map((count) => (strict ? P : count * P));
  const zoneFloors = zoneNodes.map(() => (strict ? 0 : P));
  const zoneShare = waterFill(P * R, zoneWeight, zoneCaps, zoneFloors);
  const share = new Float64Array(n);
  for (let z = 0; z < zoneCount; z++) {
    const members: number[] = [];
    for (let i = 0; i < n; i++) if (zoneOf[i] === z) members.push(i);
    const inZone = waterFill(
      zoneShare[z] as number,
      members.map((i) => (nodes[i] as RingNode).weight),
      members.map(() => P),
    );
    members.forEach((i, k) => {
      share[i] = inZone[k] as number;
    });
  }
  const lo = new Int32Array(n);
  const hi = new Int32Array(n);
  const slack = new Int32Array(n);
  const nodeHash = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const s = share[i] as number;
    lo[i] = Math.floor(s + EPSILON);
    hi[i] = Math.ceil(s - EPSILON);
    slack[i] = Math.max(1, Math.floor(s * RING_SLACK_FRACTION));
    nodeHash[i] = fnv1a((nodes[i] as RingNode).id);
  }
  return {
    P,
    R,
    ids: nodes.map((x) => x.id),
    zoneOf,
    zoneCount,
    strict,
    share,
    lo,
    hi,
    slack,
    nodeHash,
  };
}

/** The fair shares (real numbers of partition-replica slots) the ring aims at, by node id. */
export function ringShares(input: Omit<RingInput, "previous">): Map<NodeId, number> {
  const { P, nodes } = validate(input);
  const layout = layoutOf(P, input.replicas, nodes);
  return new Map(layout.ids.map((id, i) => [id, layout.share[i] as number]));
}

/** Mutable working state of one computation. Slot value -1 is a hole. */
class Work {
  readonly slots: Int32Array;
  readonly load: Int32Array;
  /** node → partitions it holds (insertion order is deterministic). */
  readonly parts: Set<number>[];

  constructor(readonly L: Layout) {
    this.slots = new Int32Array(L.P * L.R).fill(-1);
    this.load = new Int32Array(L.ids.length);
    this.parts = L.ids.map(() => new Set<number>());
  }

  score(node: number, p: number): number {
    return mix32((this.L.nodeHash[node] as number) ^ mix32(p + 0x9e3779b9));
  }

  holds(p: number, node: number): boolean {
    const base = p * this.L.R;
    for (let r = 0; r < this.L.R; r++) if (this.slots[base + r] === node) return true;
    return false;
  }

  /** Replicas of partition p in zone z, not counting the one in slot `except`. */
  zoneUse(p: number, z: number, except = -1): number {
    const base = p * this.L.R;
    let count = 0;
    for (let r = 0; r < this.L.R; r++) {
      const node = this.slots[base + r] as number;
      if (r !== except && node >= 0 && this.L.zoneOf[node] === z) count++;
    }
    return count;
  }

  /** Distinct zones of partition p, with slot `at` holding `node` instead (-1: as it is). */
  distinctZones(p: number, at = -1, node = -1): number {
    const base = p * this.L.R;
    const seen = new Set<number>();
    for (let r = 0; r < this.L.R; r++) {
      const holder = r === at ? node : (this.slots[base + r] as number);
      if (holder >= 0) seen.add(this.L.zoneOf[holder] as number);
    }
    return seen.size;
  }

  /** May `node` take slot r of partition p (replacing whatever is there)? */
  eligible(p: number, r: number, node: number): boolean {
    const current = this.slots[p * this.L.R + r] as number;
    if (current === node) return false;
    if (this.holds(p, node)) return false;
    return !this.L.strict || this.zoneUse(p, this.L.zoneOf[node] as number, r) === 0;
  }

  set(p: number, r: number, node: number): void {
    const i = p * this.L.R + r;
    const old = this.slots[i] as number;
    if (old >= 0) {
      this.load[old] = (this.load[old] as number) - 1;
      this.parts[old]?.delete(p);
    }
    this.slots[i] = node;
    if (node >= 0) {
      this.load[node] = (this.load[node] as number) + 1;
      this.parts[node]?.add(p);
    }
  }

  slotOf(p: number, node: number): number {
    const base = p * this.L.R;
    for (let r = 0; r < this.L.R; r++) if (this.slots[base + r] === node) return r;
    return -1;
  }
}

/**
 * Ranks candidates for an empty slot of partition p; smaller is better.
 * - With too few zones for the zone rule, a zone the partition does not reach yet comes first
 *   (the spread rule; one always exists when the partition misses a zone).
 * - A node below its upper bound.
 * - With too few zones, a node that must be in every partition still to fill to reach its
 *   share (`roundsLeft`: partitions from p on with holes): skipping it now would leave it
 *   short for good. (With enough zones a partition holds at most one node per zone, which
 *   leaves far more freedom, and the fresh-slot rebalance catches the rest.)
 * - Among nodes below their share, a race weighted by how far below they are, with the
 *   (node, partition) hash as the dice: the most needy usually win, but not in lockstep.
 *   Picking strictly by need would pair nodes of equal shares in the same partitions over
 *   and over, and such correlated layouts are the ones where a later removal cannot be
 *   repaired without moving other slots.
 * - Among nodes at or above their share, the least over in proportion to its share.
 */
function fillRank(w: Work, p: number, node: number, roundsLeft: number): number[] {
  const L = w.L;
  const load = w.load[node] as number;
  const z = L.zoneOf[node] as number;
  const room = load < (L.hi[node] as number) ? 0 : 1;
  const need = (L.share[node] as number) - load;
  const u = (w.score(node, p) + 1) / 4294967296;
  const race = need > 0 ? [0, -need * u] : [1, -need / (L.share[node] as number)];
  if (L.strict) {
    return [room, ...race];
  }
  const missing = w.zoneUse(p, z) === 0 ? 0 : 1;
  const critical = need > roundsLeft - 1 + EPSILON ? 0 : 1;
  return [missing, room, critical, ...race];
}

function lessRank(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    if (x !== y) return x < y;
  }
  return false;
}

function fillHole(w: Work, p: number, r: number, roundsLeft: number): void {
  let best = -1;
  let bestRank: number[] = [];
  for (let node = 0; node < w.L.ids.length; node++) {
    if (!w.eligible(p, r, node)) continue;
    const rank = fillRank(w, p, node, roundsLeft);
    if (best < 0 || lessRank(rank, bestRank)) {
      best = node;
      bestRank = rank;
    }
  }
  // Always someone: the partition has fewer than R nodes (so, n ≥ R, a free node exists) and,
  // when strict, fewer than R ≤ zoneCount zones (so a free zone exists); otherwise a missing
  // zone has no node in the partition at all.
  assert(best >= 0, "ring: no eligible node for a slot");
  w.set(p, r, best);
}

function hasHole(w: Work, p: number): boolean {
  for (let r = 0; r < w.L.R; r++) if (w.slots[p * w.L.R + r] === -1) return true;
  return false;
}

/**
 * Too few zones: every partition must reach every zone, so the kept replicas must leave one
 * empty slot per missing zone (a zone just appeared). Drops kept replicas from the most
 * crowded zone, the node furthest above its share first (`count`: its kept slots so far, kept
 * up to date), so that what the new zone takes comes from the nodes that must give anyway.
 */
function dropForSpread(L: Layout, kept: { node: number; at: number }[], count: Int32Array): void {
  for (let guard = 0; guard <= L.R; guard++) {
    const perZone = new Map<number, number>();
    for (const k of kept) {
      const z = L.zoneOf[k.node] as number;
      perZone.set(z, (perZone.get(z) ?? 0) + 1);
    }
    if (L.R - kept.length >= L.zoneCount - perZone.size) return;
    const key = (node: number): number[] => [
      -(perZone.get(L.zoneOf[node] as number) ?? 0),
      -((count[node] as number) - (L.share[node] as number)) / (L.share[node] as number),
      node,
    ];
    let drop = 0;
    for (let i = 1; i < kept.length; i++) {
      if (
        lessRank(
          key((kept[i] as { node: number }).node),
          key((kept[drop] as { node: number }).node),
        )
      ) {
        drop = i;
      }
    }
    const [gone] = kept.splice(drop, 1);
    if (gone !== undefined) count[gone.node] = (count[gone.node] as number) - 1;
  }
}

/** May slot r of partition p move to `node` without breaking the zone rules? */
function canMove(w: Work, p: number, r: number, node: number): boolean {
  if (!w.eligible(p, r, node)) return false;
  // Without enough zones, never take away a partition's only replica in a zone.
  return w.L.strict || w.distinctZones(p, r, node) >= w.distinctZones(p);
}

/** Bounds the augmenting-path searches of one computation (each check is one candidate). */
const PATH_CHECKS_MAX = 4_000_000;

/**
 * Moves one slot out of a source node, possibly along a chain: the source's slot goes to t1,
 * one of t1's slots to t2, …, one to a sink node. Nodes on the way keep their load; the source
 * loses one and the sink gains one. Only slots `movable` accepts move. Breadth-first, so the
 * chain is as short as possible, and candidates are tried in `order`, so the first sink found
 * is the preferred one. The chain uses each partition once, so its moves are independent and
 * stay valid when applied together. Returns false when no chain exists (or the budget ran out).
 */
function augment(
  w: Work,
  movable: (slot: number) => boolean,
  sources: readonly number[],
  isSink: (node: number) => boolean,
  order: readonly number[],
  budget: { checks: number },
): boolean {
  const L = w.L;
  const parent = new Int32Array(L.ids.length).fill(-2);
  const via = new Int32Array(L.ids.length).fill(-1);
  const queue: number[] = [];
  for (const s of sources) {
    parent[s] = -1;
    queue.push(s);
  }
  const onPath = (node: number, p: number): boolean => {
    for (let x = node; parent[x] !== -1; x = parent[x] as number) {
      if (Math.floor((via[x] as number) / L.R) === p) return true;
    }
    return false;
  };
  for (let head = 0; head < queue.length; head++) {
    const a = queue[head] as number;
    for (const p of w.parts[a] as Set<number>) {
      const r = w.slotOf(p, a);
      if (!movable(p * L.R + r) || onPath(a, p)) continue;
      for (const b of order) {
        if (parent[b] !== -2) continue;
        if (++budget.checks > PATH_CHECKS_MAX) return false;
        if (!canMove(w, p, r, b)) continue;
        parent[b] = a;
        via[b] = p * L.R + r;
        if (isSink(b)) {
          for (let x = b; parent[x] !== -1; x = parent[x] as number) {
            const slot = via[x] as number;
            w.set(Math.floor(slot / L.R), slot % L.R, x);
          }
          return true;
        }
        queue.push(b);
      }
    }
  }
  return false;
}

/** Node indexes, furthest below their share first. */
function byNeed(w: Work): number[] {
  const L = w.L;
  const gap = (i: number): number => (w.load[i] as number) - (L.share[i] as number);
  return L.ids.map((_, i) => i).sort((a, b) => gap(a) - gap(b) || a - b);
}

/**
 * Brings nodes above `upper` down to their upper bound and nodes below `lower` up to their
 * floor, moving only `movable` slots, as far as chains of such slots allow. Each chain removes
 * one unit of imbalance and adds none, so the loop ends; the budget bounds it anyway.
 */
function rebalance(
  w: Work,
  movable: (slot: number) => boolean,
  upper: (node: number) => number,
  lower: (node: number) => number,
  budget: { checks: number },
): void {
  const L = w.L;
  const n = L.ids.length;
  for (let round = 0; round < L.P * L.R; round++) {
    let progressed = false;
    for (let v = 0; v < n; v++) {
      if ((w.load[v] as number) <= upper(v)) continue;
      // Shed down to the upper bound, towards the nodes with room, neediest first.
      while (
        (w.load[v] as number) > (L.hi[v] as number) &&
        augment(
          w,
          movable,
          [v],
          (u) => (w.load[u] as number) < (L.hi[u] as number),
          byNeed(w),
          budget,
        )
      ) {
        progressed = true;
      }
    }
    for (let u = 0; u < n; u++) {
      if ((w.load[u] as number) >= lower(u)) continue;
      // Pull up to the floor, from the nodes most above their share first.
      while ((w.load[u] as number) < (L.lo[u] as number)) {
        const order = byNeed(w).reverse();
        const sources = order.filter((x) => x !== u && (w.load[x] as number) > (L.lo[x] as number));
        if (!augment(w, movable, sources, (x) => x === u, order, budget)) break;
        progressed = true;
      }
    }
    if (!progressed || budget.checks > PATH_CHECKS_MAX) return;
  }
}

/**
 * Computes the layout. Returns one replica list per partition, each of min(replicas, nodes)
 * distinct nodes, in distinct zones whenever there are at least that many zones.
 */
export function computeRing(input: RingInput): Ring {
  const { P, nodes } = validate(input);
  const L = layoutOf(P, input.replicas, nodes);
  const n = L.ids.length;
  if (n === 0) return Array.from({ length: P }, () => []);
  const w = new Work(L);
  const index = new Map(L.ids.map((id, i) => [id, i]));

  // 1. Keep the previous layout wherever it is still valid.
  const previous = input.previous;
  if (previous !== undefined) {
    const Pp = previous.length;
    const keptAll: { node: number; at: number }[][] = [];
    const count = new Int32Array(n);
    for (let p = 0; p < P; p++) {
      const old = previous[Math.floor((p * Pp) / P)] ?? [];
      const kept: { node: number; at: number }[] = [];
      old.forEach((id, at) => {
        const node = index.get(id);
        if (node === undefined || kept.some((k) => k.node === node)) return;
        const z = L.zoneOf[node] as number;
        if (L.strict && kept.some((k) => L.zoneOf[k.node] === z)) return;
        if (kept.length < L.R) kept.push({ node, at });
      });
      for (const k of kept) count[k.node] = (count[k.node] as number) + 1;
      keptAll.push(kept);
    }
    for (let p = 0; p < P; p++) {
      const kept = keptAll[p] as { node: number; at: number }[];
      if (!L.strict) dropForSpread(L, kept, count);
      const placed = new Array<boolean>(L.R).fill(false);
      const later: number[] = [];
      for (const k of kept) {
        if (k.at < L.R && !placed[k.at]) {
          placed[k.at] = true;
          w.set(p, k.at, k.node);
        } else later.push(k.node);
      }
      for (const node of later) {
        const r = placed.indexOf(false);
        placed[r] = true;
        w.set(p, r, node);
      }
    }
  }

  // 2. Fill the holes, partition by partition, then improve where the fresh slots go.
  const fresh = new Uint8Array(P * L.R);
  for (let i = 0; i < P * L.R; i++) if (w.slots[i] === -1) fresh[i] = 1;
  let roundsLeft = 0;
  for (let p = 0; p < P; p++) if (hasHole(w, p)) roundsLeft++;
  for (let p = 0; p < P; p++) {
    if (!hasHole(w, p)) continue;
    for (let r = 0; r < L.R; r++) if (w.slots[p * L.R + r] === -1) fillHole(w, p, r, roundsLeft);
    roundsLeft--;
  }
  // Moving a fresh slot costs nothing extra (it is being copied anyway): balance tightly.
  const budget = { checks: 0 };
  rebalance(
    w,
    (slot) => fresh[slot] === 1,
    (v) => L.hi[v] as number,
    (u) => L.lo[u] as number,
    budget,
  );

  // 3. Moving a kept slot is extra movement: only for nodes beyond slack (hysteresis). A node
  // that just joined is far below its share, so it pulls; after a weight change or when
  // others joined, a node may be far above, so it sheds.
  rebalance(
    w,
    () => true,
    (v) => (L.hi[v] as number) + (L.slack[v] as number),
    (u) => (L.lo[u] as number) - (L.slack[u] as number),
    budget,
  );

  const ring: Ring = [];
  for (let p = 0; p < P; p++) {
    const list: NodeId[] = [];
    for (let r = 0; r < L.R; r++) {
      const node = w.slots[p * L.R + r] as number;
      assert(node >= 0, "ring: a slot stayed empty");
      list.push(L.ids[node] as NodeId);
    }
    ring.push(list);
  }
  return ring;
}

/** Partition-replica slots per node. */
export function ringLoads(ring: readonly (readonly NodeId[])[]): Map<NodeId, number> {
  const loads = new Map<NodeId, number>();
  for (const list of ring) for (const id of list) loads.set(id, (loads.get(id) ?? 0) + 1);
  return loads;
}

/**
 * How many partition-replicas must be copied to go from `before` to `after`: for each
 * partition, the nodes in `after` that were not in `before` (order does not matter).
 * Both rings must have the same number of partitions.
 */
export function ringMoves(
  before: readonly (readonly NodeId[])[],
  after: readonly (readonly NodeId[])[],
): number {
  assert(before.length === after.length, "ringMoves: rings of different sizes");
  let moves = 0;
  after.forEach((list, p) => {
    const old = new Set(before[p]);
    for (const id of list) if (!old.has(id)) moves++;
  });
  return moves;
}
