/**
 * The chunk ring's properties, proved with fast-check against naive references written here:
 * - `naiveShares`: the fair shares by a different algorithm (pin the worst bound violation,
 *   repeat) than the ring's bisection;
 * - `naiveRendezvous`: weighted rendezvous hashing with zones first, the textbook design whose
 *   zone spread the ring must match;
 * - `naiveMoves`: movement counted slot by slot.
 * The tolerances asserted here are the ones docs/placement.md states.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  computeRing,
  partitionOf,
  type Ring,
  type RingNode,
  ringLoads,
  ringMoves,
  ringShares,
  waterFill,
} from "../../src/placement/index.js";

// ---------------------------------------------------------------------------------------------
// Naive references

/**
 * Proportional split within bounds, the slow obvious way: split what is left among the free
 * items in proportion to weight; if some break their bounds, pin the side that breaks them
 * more (all caps or all floors) and repeat.
 */
function naiveFill(total: number, weights: number[], caps: number[], floors: number[]): number[] {
  const n = weights.length;
  const out = new Array<number>(n).fill(0);
  const pinned = new Array<boolean>(n).fill(false);
  for (;;) {
    let left = total;
    let weight = 0;
    for (let i = 0; i < n; i++) {
      if (pinned[i]) left -= out[i] as number;
      else weight += weights[i] as number;
    }
    if (weight === 0) return out;
    const level = left / weight;
    let excess = 0;
    let deficit = 0;
    for (let i = 0; i < n; i++) {
      if (pinned[i]) continue;
      const x = level * (weights[i] as number);
      excess += Math.max(0, x - (caps[i] as number));
      deficit += Math.max(0, (floors[i] as number) - x);
    }
    if (excess <= 1e-12 && deficit <= 1e-12) {
      for (let i = 0; i < n; i++) if (!pinned[i]) out[i] = level * (weights[i] as number);
      return out;
    }
    for (let i = 0; i < n; i++) {
      if (pinned[i]) continue;
      const x = level * (weights[i] as number);
      if (excess >= deficit && x > (caps[i] as number)) {
        out[i] = caps[i] as number;
        pinned[i] = true;
      } else if (excess < deficit && x < (floors[i] as number)) {
        out[i] = floors[i] as number;
        pinned[i] = true;
      }
    }
  }
}

interface Reference {
  R: number;
  zones: string[];
  strict: boolean;
  zoneShare: Map<string, number>;
  share: Map<string, number>;
}

/** The fair shares as docs/placement.md defines them. */
function naiveShares(nodes: readonly RingNode[], P: number, replicas: number): Reference {
  const R = Math.min(replicas, nodes.length);
  const zones = [...new Set(nodes.map((x) => x.zone))].sort();
  const strict = zones.length >= R;
  const members = zones.map((z) => nodes.filter((x) => x.zone === z));
  const zoneShares = naiveFill(
    P * R,
    members.map((m) => m.reduce((s, x) => s + x.weight, 0)),
    members.map((m) => (strict ? P : m.length * P)),
    members.map(() => (strict ? 0 : P)),
  );
  const share = new Map<string, number>();
  const zoneShare = new Map<string, number>();
  zones.forEach((z, k) => {
    const m = members[k] as RingNode[];
    zoneShare.set(z, zoneShares[k] as number);
    const inZone = naiveFill(
      zoneShares[k] as number,
      m.map((x) => x.weight),
      m.map(() => P),
      m.map(() => 0),
    );
    m.forEach((x, i) => {
      share.set(x.id, inZone[i] as number);
    });
  });
  return { R, zones, strict, zoneShare, share };
}

/**
 * Is a zone or a node pinned at a bound (P: in every partition, or at most once in each)?
 * Then a membership change can force whole zone totals to shift, or leave a hole only one node
 * may take, and the slots that must move are not only the departed node's.
 */
function pinned(ref: Reference, P: number): boolean {
  const shares = [...ref.zoneShare.values(), ...ref.share.values()];
  return shares.some((x) => Math.abs(x - P) < 1e-6);
}

function hash32(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h >>> 0;
}

/** Weighted rendezvous hashing, zones first: per partition, the best node of each zone in score order, then the best of the rest. */
function naiveRendezvous(nodes: readonly RingNode[], P: number, replicas: number): Ring {
  const R = Math.min(replicas, nodes.length);
  const ring: Ring = [];
  for (let p = 0; p < P; p++) {
    const ranked = [...nodes]
      .map((x) => ({ x, key: ((hash32(`${x.id}/${p}`) + 1) / 2 ** 32) ** (1 / x.weight) }))
      .sort((a, b) => b.key - a.key)
      .map((e) => e.x);
    const chosen: RingNode[] = [];
    for (const x of ranked) {
      if (chosen.length < R && !chosen.some((c) => c.zone === x.zone)) chosen.push(x);
    }
    for (const x of ranked) if (chosen.length < R && !chosen.includes(x)) chosen.push(x);
    ring.push(chosen.map((x) => x.id));
  }
  return ring;
}

/** Slots whose node changed, counted one by one (a slot moved within a list is not a move). */
function naiveMoves(before: Ring, after: Ring): number {
  let moves = 0;
  for (let p = 0; p < after.length; p++) {
    for (const id of after[p] as string[]) if (!(before[p] as string[]).includes(id)) moves++;
  }
  return moves;
}

// ---------------------------------------------------------------------------------------------
// Generators and checks

interface Cluster {
  nodes: RingNode[];
  partitions: number;
  replicas: number;
}

let nextId = 0;
const nodeArb = (zones: number): fc.Arbitrary<RingNode> =>
  fc
    .record({ zone: fc.nat(Math.max(0, zones - 1)), weight: fc.integer({ min: 1, max: 4 }) })
    .map(({ zone, weight }) => ({
      id: `n${(nextId++).toString(36)}`,
      zone: zones === 0 ? "" : `z${zone}`,
      weight,
    }));

const clusterArb = (
  opts: { nodesMin?: number; partitions?: number[]; zonesMax?: number; equal?: boolean } = {},
): fc.Arbitrary<Cluster> =>
  fc
    .record({
      zones: fc.integer({ min: 0, max: opts.zonesMax ?? 5 }),
      replicas: fc.integer({ min: 1, max: 4 }),
      partitions: fc.constantFrom(...(opts.partitions ?? [16, 64, 256])),
      n: fc.integer({ min: opts.nodesMin ?? 1, max: 14 }),
    })
    .chain(({ zones, replicas, partitions, n }) =>
      fc.array(nodeArb(zones), { minLength: n, maxLength: n }).map((nodes) => ({
        nodes: opts.equal ? nodes.map((x) => ({ ...x, weight: 1 })) : nodes,
        partitions,
        replicas,
      })),
    );

/** Every structural rule: list sizes, distinct nodes, the zone rules. */
function checkStructure(c: Cluster, ring: Ring): void {
  const zoneOf = new Map(c.nodes.map((x) => [x.id, x.zone]));
  const ref = naiveShares(c.nodes, c.partitions, c.replicas);
  assert.equal(ring.length, c.partitions);
  for (const list of ring) {
    assert.equal(list.length, ref.R, "replica count");
    assert.equal(new Set(list).size, list.length, "two replicas on one node");
    for (const id of list) assert.ok(zoneOf.has(id), `unknown node ${id}`);
    const zones = new Set(list.map((id) => zoneOf.get(id))).size;
    // Enough zones: all replicas in distinct zones. Too few: every zone reached.
    assert.equal(zones, ref.strict ? ref.R : ref.zones.length, `zones of ${list.join(",")}`);
  }
}

/** Loads within [floor(share) - slack, ceil(share) + slack]. */
function checkBalance(c: Cluster, ring: Ring, slackFraction: number): void {
  const ref = naiveShares(c.nodes, c.partitions, c.replicas);
  const loads = ringLoads(ring);
  for (const [id, share] of ref.share) {
    const slack = slackFraction === 0 ? 0 : Math.max(1, Math.floor(share * slackFraction));
    const load = loads.get(id) ?? 0;
    assert.ok(
      load >= Math.floor(share + 1e-9) - slack && load <= Math.ceil(share - 1e-9) + slack,
      `${id}: load ${load}, share ${share.toFixed(2)}, slack ${slack}`,
    );
  }
}

/** Adding or removing a node may change R' = min(R, n) or switch the zone rule: excluded. */
function sameMode(a: Cluster, b: Cluster): boolean {
  const ra = naiveShares(a.nodes, a.partitions, a.replicas);
  const rb = naiveShares(b.nodes, b.partitions, b.replicas);
  return ra.R === rb.R && ra.strict === rb.strict;
}

// ---------------------------------------------------------------------------------------------
// Properties

test("shares: the ring's water level agrees with the naive reference and adds up", () => {
  fc.assert(
    fc.property(clusterArb(), (c) => {
      const ref = naiveShares(c.nodes, c.partitions, c.replicas);
      const shares = ringShares(c);
      let sum = 0;
      for (const [id, s] of ref.share) {
        const got = shares.get(id) as number;
        sum += got;
        assert.ok(Math.abs(got - s) < 1e-6 * (1 + s), `${id}: ${got} vs ${s}`);
      }
      assert.ok(Math.abs(sum - c.partitions * ref.R) < 1e-6 * (1 + sum));
    }),
    { numRuns: 200 },
  );
  // Bounds are honoured on both sides.
  const filled = waterFill(10, [1, 1, 2], [100, 100, 100], [0, 6, 0]);
  [4 / 3, 6, 8 / 3].forEach((x, i) => {
    assert.ok(Math.abs((filled[i] as number) - x) < 1e-9, `${filled}`);
  });
  assert.deepEqual(waterFill(6, [1, 5], [4, 4]), [2, 4]);
});

test("structure: distinct nodes, zone rules, at least the zone spread of rendezvous hashing", () => {
  fc.assert(
    fc.property(clusterArb(), (c) => {
      const ring = computeRing(c);
      checkStructure(c, ring);
      const naive = naiveRendezvous(c.nodes, c.partitions, c.replicas);
      const zoneOf = new Map(c.nodes.map((x) => [x.id, x.zone]));
      const spread = (list: string[]): number => new Set(list.map((id) => zoneOf.get(id))).size;
      ring.forEach((list, p) => {
        assert.ok(spread(list) >= spread(naive[p] as string[]), `partition ${p}`);
      });
    }),
    { numRuns: 150 },
  );
});

test("balance: a fresh layout puts every node at floor(share) or ceil(share)", () => {
  fc.assert(
    fc.property(clusterArb(), (c) => checkBalance(c, computeRing(c), 0)),
    { numRuns: 150 },
  );
});

test("determinism: same input, same output, whatever the order of the nodes", () => {
  fc.assert(
    fc.property(clusterArb({ nodesMin: 2 }), fc.nat(), (c, k) => {
      const a = computeRing(c);
      assert.deepEqual(computeRing(c), a);
      const rotated = [
        ...c.nodes.slice(k % c.nodes.length),
        ...c.nodes.slice(0, k % c.nodes.length),
      ];
      assert.deepEqual(computeRing({ ...c, nodes: rotated.reverse() }), a);
      const smaller = { ...c, nodes: c.nodes.slice(1) };
      assert.deepEqual(
        computeRing({ ...smaller, previous: a }),
        computeRing({ ...smaller, nodes: [...smaller.nodes].reverse(), previous: a }),
      );
    }),
    { numRuns: 60 },
  );
});

test("join, equal weights: moves at most S/(N+1) + 1 slots, every one of them to the new node", () => {
  fc.assert(
    fc.property(clusterArb({ zonesMax: 0, equal: true }), (c) => {
      const before = computeRing(c);
      const y: RingNode = { id: "joiner", zone: "", weight: 1 };
      const grown = { ...c, nodes: [...c.nodes, y] };
      fc.pre(sameMode(c, grown));
      const after = computeRing({ ...grown, previous: before });
      checkStructure(grown, after);
      const moves = ringMoves(before, after);
      assert.equal(moves, naiveMoves(before, after));
      const N = c.nodes.length;
      const slots = c.partitions * Math.min(c.replicas, N);
      assert.ok(moves <= slots / (N + 1) + 1, `${moves} moves for ${slots} slots, N=${N}`);
      after.forEach((list, p) => {
        for (const id of list) assert.ok(before[p]?.includes(id) || id === y.id, `slot to ${id}`);
      });
      checkBalance(grown, after, 0.25);
    }),
    { numRuns: 150 },
  );
});

test("join, any weights and zones: moves at most the joiner's share + 3% of slots (+6% pinned)", () => {
  fc.assert(
    fc.property(
      clusterArb({ partitions: [64, 256] }),
      fc.nat(5),
      fc.integer({ min: 1, max: 4 }),
      (c, zone, weight) => {
        const zoned = c.nodes.some((x) => x.zone !== "");
        const y: RingNode = { id: "joiner", zone: zoned ? `z${zone}` : "", weight };
        const before = computeRing(c);
        const grown = { ...c, nodes: [...c.nodes, y] };
        fc.pre(sameMode(c, grown));
        const after = computeRing({ ...grown, previous: before });
        checkStructure(grown, after);
        checkBalance(grown, after, 0.25);
        const refs = [c, grown].map((x) => naiveShares(x.nodes, x.partitions, x.replicas));
        const ref = refs[1] as Reference;
        const slots = c.partitions * ref.R;
        const share = ref.share.get(y.id) as number;
        // A pinned zone or node can force other shares to shift by more than the joiner takes.
        const extra = refs.some((r) => pinned(r, c.partitions)) ? 0.06 : 0.03;
        const moves = ringMoves(before, after);
        assert.ok(moves <= share + extra * slots + 2, `${moves} moves, joiner's share ${share}`);
      },
    ),
    { numRuns: 150 },
  );
});

test("leave: only the departed node's slots change (no zone or node pinned at a bound)", () => {
  let checked = 0;
  fc.assert(
    fc.property(clusterArb({ nodesMin: 2, partitions: [64, 256] }), fc.nat(), (c, k) => {
      const before = computeRing(c);
      const gone = c.nodes[k % c.nodes.length] as RingNode;
      const shrunk = { ...c, nodes: c.nodes.filter((x) => x !== gone) };
      fc.pre(sameMode(c, shrunk));
      const after = computeRing({ ...shrunk, previous: before });
      checkStructure(shrunk, after);
      checkBalance(shrunk, after, 0.25);
      const refs = [c, shrunk].map((x) => naiveShares(x.nodes, x.partitions, x.replicas));
      if (refs.some((r) => pinned(r, c.partitions))) return;
      checked++;
      after.forEach((list, p) => {
        const old = before[p] as string[];
        old.forEach((id, r) => {
          // Every surviving replica stays, in its slot.
          if (id !== gone.id) assert.equal(list[r], id, `partition ${p} slot ${r}`);
        });
      });
    }),
    { numRuns: 200 },
  );
  assert.ok(checked >= 50, `only ${checked} unpinned cases`);
});

test("leave with one zone per replica (every zone holds every partition): exact too", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 4 }),
      fc.array(fc.integer({ min: 2, max: 4 }), { minLength: 4, maxLength: 4 }),
      fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 16, maxLength: 16 }),
      fc.nat(),
      (replicas, perZone, weights, k) => {
        const nodes: RingNode[] = [];
        for (let z = 0; z < replicas; z++) {
          for (let i = 0; i < (perZone[z] as number); i++) {
            nodes.push({
              id: `z${z}n${i}`,
              zone: `z${z}`,
              weight: weights[nodes.length] as number,
            });
          }
        }
        const c = { nodes, partitions: 256, replicas };
        const before = computeRing(c);
        const gone = nodes[k % nodes.length] as RingNode;
        const after = computeRing({
          ...c,
          nodes: nodes.filter((x) => x !== gone),
          previous: before,
        });
        after.forEach((list, p) => {
          (before[p] as string[]).forEach((id, r) => {
            if (id !== gone.id) assert.equal(list[r], id);
          });
        });
      },
    ),
    { numRuns: 60 },
  );
});

test("histories of joins, leaves and weight changes keep every rule and the balance bound", () => {
  const step = fc.record({
    kind: fc.constantFrom("join", "leave", "weight"),
    pick: fc.nat(),
    zone: fc.nat(5),
    weight: fc.integer({ min: 1, max: 4 }),
  });
  fc.assert(
    fc.property(clusterArb({ nodesMin: 1 }), fc.array(step, { maxLength: 8 }), (start, steps) => {
      let c = start;
      let ring = computeRing(c);
      const zoned = c.nodes.some((x) => x.zone !== "");
      for (const s of steps) {
        let nodes = c.nodes;
        if (s.kind === "join" || nodes.length === 1) {
          nodes = [
            ...nodes,
            {
              id: `n${(nextId++).toString(36)}`,
              zone: zoned ? `z${s.zone}` : "",
              weight: s.weight,
            },
          ];
        } else if (s.kind === "leave") {
          nodes = nodes.filter((_, i) => i !== s.pick % nodes.length);
        } else {
          nodes = nodes.map((x, i) =>
            i === s.pick % nodes.length ? { ...x, weight: s.weight } : x,
          );
        }
        c = { ...c, nodes };
        ring = computeRing({ ...c, previous: ring });
        checkStructure(c, ring);
        checkBalance(c, ring, 0.25);
      }
    }),
    { numRuns: 60 },
  );
});

test("a different power-of-two partition count inherits the previous layout", () => {
  fc.assert(
    fc.property(clusterArb({ partitions: [64] }), (c) => {
      const small = computeRing(c);
      const big = computeRing({ ...c, partitions: 128, previous: small });
      // Partition p of 128 lies inside partition p/2 of 64: same replicas, nothing moves.
      big.forEach((list, p) => {
        assert.deepEqual(list, small[p >> 1]);
      });
      checkStructure({ ...c, partitions: 128 }, big);
    }),
    { numRuns: 40 },
  );
});

test("partitionOf: top bits of the hash, bytes and hex agree, halving partitions halves the index", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 4, maxLength: 32 }),
      fc.integer({ min: 0, max: 12 }),
      (bytes, bits) => {
        const P = 2 ** bits;
        const hex = Buffer.from(bytes).toString("hex");
        const p = partitionOf(bytes, P);
        assert.ok(p >= 0 && p < P);
        assert.equal(partitionOf(hex, P), p);
        if (bits > 0) assert.equal(partitionOf(bytes, P / 2), p >> 1);
      },
    ),
  );
  assert.equal(partitionOf("ffffffff", 256), 255);
  assert.equal(partitionOf(new Uint8Array([0x80, 0, 0, 0]), 2), 1);
  assert.throws(() => partitionOf("ff", 256));
  assert.throws(() => partitionOf("00000000", 3));
});

test("inputs a caller may get wrong are assertion errors", () => {
  const a: RingNode = { id: "a", zone: "", weight: 1 };
  assert.throws(() => computeRing({ nodes: [a, a], replicas: 1 }), /duplicate/);
  assert.throws(() => computeRing({ nodes: [{ ...a, weight: 0 }], replicas: 1 }), /weight/);
  assert.throws(() => computeRing({ nodes: [a], replicas: 0 }), /replicas/);
  assert.throws(() => computeRing({ nodes: [a], replicas: 1, partitions: 100 }), /power of two/);
  assert.deepEqual(computeRing({ nodes: [], replicas: 3, partitions: 2 }), [[], []]);
  assert.deepEqual(computeRing({ nodes: [a], replicas: 3, partitions: 2 }), [["a"], ["a"]]);
});
