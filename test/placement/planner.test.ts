import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  type ClusterView,
  livenessAt,
  type Member,
  moveInFlight,
  PLAN_LIMITS_DEFAULT,
  type PlacementOp,
  type PlanLimits,
  planAll,
  planBalance,
  planRepair,
  planSplit,
  type ShardDesc,
  SPLIT_BYTES_DEFAULT,
  splitKeyInside,
  staleReplicas,
  updateHotReports,
} from "../../src/placement/index.js";
import { Executor, GiB, leadersOf, member, replicasOf, settled, shard, view } from "./_cluster.js";

const limits = (over: Partial<PlanLimits> = {}): PlanLimits => ({
  ...PLAN_LIMITS_DEFAULT,
  ...over,
});

/** Runs plan → apply rounds until nothing is planned and nothing is moving. */
function converge(
  start: ClusterView,
  lim: PlanLimits,
  opts: {
    lagRounds?: number;
    roundsMax?: number;
    check?: (ops: PlacementOp[], v: ClusterView) => void;
  } = {},
): { view: ClusterView; rounds: number } {
  const ex = new Executor(start, opts.lagRounds ?? 0);
  const roundsMax = opts.roundsMax ?? 500;
  for (let r = 0; r < roundsMax; r++) {
    const plan = planAll(ex.view, lim);
    opts.check?.(plan.ops, ex.view);
    if (plan.ops.length === 0 && ex.inFlight() === 0) return { view: ex.view, rounds: r };
    ex.apply(plan.ops);
    assert.ok(ex.inFlight() <= lim.movesMax, `round ${r}: ${ex.inFlight()} moves in flight`);
  }
  assert.fail(`no convergence in ${roundsMax} rounds`);
}

// ---------------------------------------------------------------------------------------------
// Repair

test("repair: a dead voter is replaced, in the zone that has no replica, even if fuller", () => {
  const members = [
    member("n1", { zone: "a" }),
    member("n2", { zone: "b" }),
    member("n3", { zone: "c", liveness: "dead" }),
    member("n4", { zone: "a" }), // empty, but zone a already holds a replica
    member("n5", { zone: "c" }),
  ];
  const shards = [shard("s1", ["n1", "n2", "n3"]), shard("s2", ["n5", "n1", "n2"])];
  const plan = planRepair(view({ members, shards }));
  assert.deepEqual(plan.ops, [
    { kind: "replace", shard: "s1", epoch: 1, remove: "n3", add: "n5", reason: "dead" },
  ]);
  assert.deepEqual(plan.blocked, []);
});

test("repair: among equal zones, the fewest replicas per byte of capacity, then the smallest id", () => {
  const members = [
    member("n1", { zone: "a" }),
    member("n2", { zone: "b" }),
    member("n3", { zone: "c", liveness: "dead" }),
    member("n6", { zone: "c", capacityBytes: 400 * GiB }), // 1 replica on 4x the capacity
    member("n5", { zone: "c" }),
    member("n4", { zone: "c" }),
  ];
  const shards = [shard("s1", ["n1", "n2", "n3"]), shard("s2", ["n6", "n1", "n2"])];
  const first = planRepair(view({ members, shards }));
  assert.equal(first.ops[0]?.kind === "replace" && first.ops[0].add, "n6");
  // Without n6, n4 and n5 tie: the smaller id wins, whatever the member order.
  const rest = members.filter((m) => m.id !== "n6");
  const plan = planRepair(view({ members: [...rest].reverse(), shards: [shards[0] as ShardDesc] }));
  assert.equal(plan.ops[0]?.kind === "replace" && plan.ops[0].add, "n4");
});

test("repair: removed and unknown voters go first, draining ones are moved too", () => {
  const members = [
    member("n1"),
    member("n2", { admin: "removed" }),
    member("n3", { admin: "draining" }),
    member("n4"),
    member("n5"),
    member("n6"),
  ];
  const shards = [
    shard("s1", ["n1", "n2", "n4"]),
    shard("s2", ["n1", "n3", "n4"]),
    shard("s3", ["n1", "ghost", "n4"]),
  ];
  const plan = planRepair(view({ members, shards }));
  const reasons = Object.fromEntries(
    plan.ops.map((op) => [op.shard, op.kind === "replace" && op.reason]),
  );
  assert.deepEqual(reasons, { s1: "removed", s2: "draining", s3: "unknown-node" });
  for (const op of plan.ops) {
    assert.ok(op.kind === "replace" && ["n5", "n6"].includes(op.add), JSON.stringify(op));
  }
});

test("repair: no candidate → nothing planned, the shard is reported blocked", () => {
  const members = [member("n1"), member("n2"), member("n3", { liveness: "dead" })];
  const plan = planRepair(view({ members, shards: [shard("s1", ["n1", "n2", "n3"])] }));
  assert.deepEqual(plan.ops, []);
  assert.equal(plan.blocked.length, 1);
  assert.equal(plan.blocked[0]?.reason, "no-candidate");
  assert.equal(plan.blocked[0]?.shard, "s1");
});

test("repair: suspect nodes are neither replaced nor chosen", () => {
  const members = [
    member("n1"),
    member("n2"),
    member("n3", { liveness: "suspect" }),
    member("n4", { liveness: "suspect" }),
  ];
  const v = view({ members, shards: [shard("s1", ["n1", "n2", "n3"]), shard("s2", ["n1", "n2"])] });
  const plan = planRepair(v);
  assert.deepEqual(plan.ops, []);
  assert.deepEqual(
    plan.blocked.map((b) => [b.shard, b.reason]),
    [["s2", "no-candidate"]],
  );
});

test("repair: under-replicated shards get an add, over-replicated ones drop the dead voter", () => {
  const members = ["n1", "n2", "n3", "n4"].map((id) => member(id));
  members.push(member("n5", { liveness: "dead" }));
  const shards = [
    shard("s1", ["n1"]),
    shard("s2", ["n1", "n2", "n5", "n3"]),
    shard("s3", ["n1", "n2", "n3", "n4"]),
  ];
  const plan = planRepair(view({ members, shards }));
  const byShard = Object.fromEntries(plan.ops.map((op) => [op.shard, op]));
  assert.equal(byShard.s1?.kind, "add");
  assert.deepEqual(byShard.s2, {
    kind: "remove",
    shard: "s2",
    epoch: 1,
    remove: "n5",
    reason: "dead",
  });
  assert.equal(byShard.s3?.kind, "remove");
  assert.equal(byShard.s3?.kind === "remove" && byShard.s3.reason, "over-replicated");
});

test("repair: zone spread is restored once a zone has room", () => {
  const members = [
    member("n1", { zone: "a" }),
    member("n2", { zone: "a" }),
    member("n3", { zone: "b" }),
    member("n4", { zone: "c" }),
  ];
  const plan = planRepair(view({ members, shards: [shard("s1", ["n1", "n2", "n3"])] }));
  assert.equal(plan.ops.length, 1);
  const op = plan.ops[0];
  assert.ok(op?.kind === "replace" && op.reason === "zone-spread" && op.add === "n4");
  assert.ok(op.remove === "n1" || op.remove === "n2");
});

test("repair: a move in flight is left alone unless a node it needs died", () => {
  const members = ["n1", "n2", "n3", "n4", "n5"].map((id) => member(id));
  members.push(member("n6", { admin: "draining" }), member("n7", { liveness: "dead" }));
  const moving = shard("s1", ["n1", "n2", "n6"]);
  const retarget = shard("s2", ["n1", "n2", "n7"]);
  const stats = {
    s1: settled(moving, { voters: ["n1", "n2", "n3"], learners: ["n6"] }),
    s2: settled(retarget, { voters: ["n1", "n2", "n3"], learners: ["n7"] }),
  };
  const v = view({ members, shards: [moving, retarget], stats });
  assert.ok(moveInFlight(moving, v.stats.s1) && moveInFlight(retarget, v.stats.s2));
  const plan = planRepair(v, limits({ movesMax: 2 }));
  assert.deepEqual(
    plan.ops.map((op) => [op.shard, op.kind]),
    [["s2", "replace"]],
  );
});

test("repair: the moves budget counts moves in flight, and goes to the shards most at risk", () => {
  const members = ["n1", "n2", "n3", "n4", "n5", "n6"].map((id) => member(id));
  members.push(member("d1", { liveness: "dead" }), member("d2", { liveness: "dead" }));
  const shards = [
    shard("a", ["n1", "n2", "d1"]),
    shard("b", ["n1", "d1", "d2"]), // lost its quorum: first
    shard("c", ["n3", "n4", "d2"]),
    shard("m", ["n4", "n5", "n6"]),
  ];
  const stats = { m: settled(shards[3] as ShardDesc, { learners: ["n1"] }) };
  const plan = planRepair(view({ members, shards, stats }), limits({ movesMax: 2 }));
  assert.deepEqual(
    plan.ops.map((op) => op.shard),
    ["b"],
  );
  assert.deepEqual(
    plan.blocked.map((b) => [b.shard, b.reason]),
    [
      ["a", "moves-limit"],
      ["c", "moves-limit"],
    ],
  );
});

test("repair: moves in flight for longer than moveStallMs stop holding the budget", () => {
  // Two moves whose learners are on alive nodes and whose groups have leaders: they look
  // progressing, but (as when the learner's node never creates its replica) never finish.
  const members = ["n1", "n2", "n3", "n4", "n5", "n6"].map((id) => member(id));
  members.push(member("d1", { liveness: "dead" }));
  const shards = [
    shard("m1", ["n1", "n2", "n4"]),
    shard("m2", ["n2", "n3", "n5"]),
    shard("r", ["n1", "n3", "d1"]), // a dead voter to replace
  ];
  const stats = {
    m1: settled(shards[0] as ShardDesc, { voters: ["n1", "n2", "n3"], learners: ["n4"] }),
    m2: settled(shards[1] as ShardDesc, { voters: ["n1", "n2", "n3"], learners: ["n5"] }),
  };
  const lim = limits({ movesMax: 2, moveStallMs: 60_000 });
  const at = (nowMs: number, sinceMs: number): ClusterView => ({
    ...view({ members, shards, stats }),
    nowMs,
    movesSinceMs: { m1: sinceMs, m2: sinceMs },
  });
  // Not tracked, or in flight for less than moveStallMs: the budget is full, "r" waits.
  for (const v of [view({ members, shards, stats }), at(100_000, 50_000)]) {
    const plan = planRepair(v, lim);
    assert.deepEqual(plan.ops, []);
    assert.deepEqual(
      plan.blocked.map((b) => [b.shard, b.reason]),
      [["r", "moves-limit"]],
    );
  }
  // Stalled: "r" is repaired (the stalled moves stay as they are: nothing urgent about them).
  const plan = planRepair(at(100_000, 39_999), lim);
  assert.deepEqual(
    plan.ops.map((op) => [op.shard, op.kind]),
    [["r", "replace"]],
  );
});

test("repair: a shard of an unknown keyspace is reported, not touched", () => {
  const members = ["n1", "n2", "n3"].map((id) => member(id));
  const plan = planRepair(view({ members, shards: [shard("s1", ["n1"], { keyspace: "gone" })] }));
  assert.deepEqual(plan.ops, []);
  assert.equal(plan.blocked[0]?.reason, "unknown-keyspace");
});

test("drain: a draining node ends with no replicas and no leaders", () => {
  const members = ["n1", "n2", "n3", "n4"].map((id) => member(id));
  members[1] = member("n2", { admin: "draining" });
  const ids = ["n1", "n2", "n3", "n4"];
  const shards = Array.from({ length: 12 }, (_, i) =>
    shard(`s${i}`, [ids[i % 4], ids[(i + 1) % 4], ids[(i + 2) % 4]] as string[]),
  );
  const start = view({ members, shards });
  assert.ok(replicasOf(start, "n2") > 0 && leadersOf(start, "n2") > 0);
  // Its leaders move first (transfers are cheap), its replicas as the budget allows.
  const first = planAll(start, limits({ movesMax: 2 }));
  assert.ok(
    first.ops.some(
      (op) => op.kind === "transfer-leader" && op.from === "n2" && op.reason === "draining",
    ),
  );
  const { view: end } = converge(start, limits({ movesMax: 2 }), { lagRounds: 1 });
  assert.equal(replicasOf(end, "n2"), 0);
  assert.equal(leadersOf(end, "n2"), 0);
  for (const s of end.shards) assert.equal(new Set(s.voters).size, 3);
});

// ---------------------------------------------------------------------------------------------
// Balance

test("balance: new nodes fill up, replica and leader counts even out, moves stay within movesMax", () => {
  const old = ["n1", "n2", "n3"];
  const shards = Array.from({ length: 30 }, (_, i) =>
    shard(`s${String(i).padStart(2, "0")}`, [...old]),
  );
  const members = [...old, "n4", "n5"].map((id) => member(id));
  const lim = limits({ movesMax: 3, leaderTransfersMax: 2 });
  let maxOps = 0;
  const { view: end, rounds } = converge(view({ members, shards }), lim, {
    lagRounds: 2,
    check: (ops) => {
      maxOps = Math.max(maxOps, ops.filter((op) => op.kind === "replace").length);
      assert.ok(ops.filter((op) => op.kind === "transfer-leader").length <= 2);
    },
  });
  assert.ok(maxOps <= 3);
  const counts = members.map((m) => replicasOf(end, m.id));
  assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `replicas ${counts}`);
  const leaders = members.map((m) => leadersOf(end, m.id));
  assert.ok(Math.max(...leaders) - Math.min(...leaders) <= 1, `leaders ${leaders}`);
  assert.ok(rounds > 5, "the limit must have spread the moves over rounds");
  // Balanced means stable: nothing more to do.
  assert.deepEqual(planBalance(end, lim).ops, []);
});

test("balance: replicas follow capacity", () => {
  const members = [
    member("big", { capacityBytes: 300 * GiB }),
    member("m1"),
    member("m2"),
    member("m3"),
  ];
  const shards = Array.from({ length: 20 }, (_, i) => shard(`s${i}`, ["m1", "m2", "m3"]));
  const { view: end } = converge(view({ members, shards }), limits({ movesMax: 4 }));
  // 60 replicas over capacity 3:1:1:1 → 30, 10, 10, 10 (big can hold at most one per shard: 20).
  assert.equal(replicasOf(end, "big"), 20);
  const small = ["m1", "m2", "m3"].map((id) => replicasOf(end, id));
  assert.ok(Math.max(...small) - Math.min(...small) <= 1 && small.reduce((a, b) => a + b) === 40);
});

test("balance: never trades zone spread for balance", () => {
  const members = [
    member("a1", { zone: "a" }),
    member("b1", { zone: "b" }),
    member("c1", { zone: "c" }),
    member("a2", { zone: "a" }),
  ];
  const shards = Array.from({ length: 8 }, (_, i) => shard(`s${i}`, ["a1", "b1", "c1"]));
  const { view: end } = converge(view({ members, shards }), limits({ movesMax: 8 }));
  for (const s of end.shards) {
    const zones = new Set(s.voters.map((id) => members.find((m) => m.id === id)?.labels.zone));
    assert.equal(zones.size, 3, s.voters.join(","));
  }
  // Only a1's replicas could move (to a2): they split evenly.
  assert.equal(replicasOf(end, "a1"), 4);
  assert.equal(replicasOf(end, "a2"), 4);
});

// ---------------------------------------------------------------------------------------------
// Split

function splitView(
  stats: Partial<ReturnType<typeof settled>>,
  range = { start: "0a", end: "0f" },
): ClusterView {
  const s = shard("s1", ["n1", "n2", "n3"], range);
  return view({
    members: ["n1", "n2", "n3"].map((id) => member(id)),
    shards: [s],
    stats: { s1: settled(s, stats) },
  });
}

test("split: a large shard splits at its split key, with a deterministic new id", () => {
  const v = splitView({ sizeBytes: SPLIT_BYTES_DEFAULT + 1, splitKey: "0c1234" });
  const plan = planSplit(v);
  assert.equal(plan.ops.length, 1);
  const op = plan.ops[0];
  assert.ok(op?.kind === "split");
  assert.equal(op.at, "0c1234");
  assert.equal(op.reason, "size");
  assert.match(op.newShardId, /^default\.[0-9a-f]{16}$/);
  assert.deepEqual(planSplit(v).ops, plan.ops, "same view, same id");
  const later = { ...v, shards: v.shards.map((s) => ({ ...s, epoch: s.epoch + 1 })) };
  assert.notEqual((planSplit(later).ops[0] as { newShardId: string }).newShardId, op.newShardId);
  assert.deepEqual(planSplit(splitView({ sizeBytes: SPLIT_BYTES_DEFAULT })).ops, []);
});

test("split: load must stay high for splitHotReportsMin reports in a row", () => {
  const v = splitView({ readsPerSec: 1500, writesPerSec: 600, splitKey: "0b" });
  assert.deepEqual(planSplit(v, PLAN_LIMITS_DEFAULT, { s1: 2 }).ops, []);
  assert.equal(planSplit(v, PLAN_LIMITS_DEFAULT, { s1: 3 }).ops[0]?.reason, "load");
  let hot = {};
  for (let i = 0; i < 3; i++) hot = updateHotReports(hot, v);
  assert.deepEqual(hot, { s1: 3 });
  assert.deepEqual(updateHotReports(hot, splitView({ readsPerSec: 10 })), { s1: 0 });
});

test("split: the key must be hex and strictly inside the range", () => {
  const big = SPLIT_BYTES_DEFAULT * 2;
  for (const [key, ok] of [
    ["0a", false], // == start
    ["0f", false], // == end
    ["09ff", false], // before start
    ["0f00", false], // after end
    ["0A01", false], // not lowercase
    ["0a0", false], // odd length
    ["0a00", true],
    ["0eff", true],
  ] as const) {
    const plan = planSplit(splitView({ sizeBytes: big, splitKey: key }));
    assert.equal(plan.ops.length, ok ? 1 : 0, key);
    if (!ok) assert.equal(plan.blocked[0]?.reason, "bad-split-key", key);
  }
  assert.equal(planSplit(splitView({ sizeBytes: big })).blocked[0]?.reason, "no-split-key");
  // An unbounded end accepts anything after start.
  assert.ok(splitKeyInside({ start: "0a", end: "" }, "ffff"));
  assert.ok(!splitKeyInside({ start: "0a", end: "" }, "0a"));
});

test("split: at most splitsMax per round, largest first; moving shards wait", () => {
  const members = ["n1", "n2", "n3"].map((id) => member(id));
  const shards = [1, 2, 3, 4].map((i) =>
    shard(`s${i}`, ["n1", "n2", "n3"], { start: `0${i}`, end: `0${i + 1}` }),
  );
  const stats = Object.fromEntries(
    shards.map((s, i) => [
      s.id,
      settled(s, { sizeBytes: SPLIT_BYTES_DEFAULT * (i + 2), splitKey: `${s.start}80` }),
    ]),
  );
  stats.s4 = { ...(stats.s4 as ReturnType<typeof settled>), learners: ["n9"] };
  const plan = planSplit(view({ members, shards, stats }), limits({ splitsMax: 2 }));
  assert.deepEqual(
    plan.ops.map((op) => op.shard),
    ["s3", "s2"],
  );
  assert.deepEqual(
    plan.blocked.map((b) => [b.shard, b.reason]),
    [["s1", "splits-limit"]],
  );
});

// ---------------------------------------------------------------------------------------------
// All together

test("planAll: repair before split before balance, one operation per shard", () => {
  const members = ["n1", "n2", "n3", "n4"].map((id) => member(id));
  members.push(member("dead", { liveness: "dead" }));
  const s1 = shard("s1", ["n1", "n2", "dead"], { start: "00", end: "80" });
  const s2 = shard("s2", ["n1", "n2", "n3"], { start: "80", end: "" });
  const stats = {
    s1: settled(s1, { sizeBytes: SPLIT_BYTES_DEFAULT * 2, splitKey: "40" }),
    s2: settled(s2, { sizeBytes: SPLIT_BYTES_DEFAULT * 2, splitKey: "c0" }),
  };
  const plan = planAll(view({ members, shards: [s1, s2], stats }), limits({ movesMax: 1 }));
  assert.deepEqual(
    plan.ops.map((op) => [op.shard, op.kind]),
    [
      ["s1", "replace"],
      ["s2", "split"],
    ],
  );
});

test("planAll: deterministic, whatever the order of members and shards", () => {
  const members = ["n1", "n2", "n3", "n4", "n5"].map((id, i) => member(id, { zone: `z${i % 3}` }));
  members.push(member("n6", { liveness: "dead", zone: "z0" }));
  const shards = Array.from({ length: 10 }, (_, i) =>
    shard(`s${i}`, ["n1", "n2", i % 2 ? "n6" : "n3"]),
  );
  const v = view({ members, shards });
  const a = planAll(v);
  assert.deepEqual(planAll(v), a);
  assert.deepEqual(
    planAll({ ...v, members: [...members].reverse(), shards: [...shards].reverse() }),
    a,
  );
});

test("property: repeated planning converges to full, healthy, zone-spread replica sets", () => {
  const memberArb = fc.record({
    zone: fc.nat(3),
    capacity: fc.integer({ min: 1, max: 4 }),
    // Suspect nodes are left alone on purpose (they may come back): not generated here.
    state: fc.constantFrom("alive", "alive", "alive", "dead", "draining", "removed"),
  });
  const arb = fc.record({
    members: fc.array(memberArb, { minLength: 1, maxLength: 8 }),
    replicas: fc.integer({ min: 1, max: 3 }),
    shards: fc.array(fc.array(fc.nat(9), { maxLength: 4 }), { minLength: 1, maxLength: 12 }),
    movesMax: fc.integer({ min: 1, max: 4 }),
    lagRounds: fc.integer({ min: 0, max: 2 }),
  });
  fc.assert(
    fc.property(arb, (g) => {
      const members: Member[] = g.members.map((m, i) =>
        member(`n${i}`, {
          zone: `z${m.zone}`,
          capacityBytes: m.capacity * 100 * GiB,
          liveness: m.state === "dead" ? "dead" : "alive",
          admin: m.state === "draining" || m.state === "removed" ? m.state : "active",
        }),
      );
      const shards = g.shards.map(
        (picks, i) => shard(`s${i}`, [...new Set(picks.map((p) => `n${p}`))]), // n8, n9: unknown nodes
      );
      const start: ClusterView = {
        ...view({ members, shards }),
        keyspaces: [{ name: "default", sharding: "range", replicas: g.replicas }],
      };
      const eligible = members.filter((m) => m.liveness === "alive" && m.admin === "active");
      const isEligible = (id: string): boolean => eligible.some((m) => m.id === id);
      const lim = limits({ movesMax: g.movesMax });
      const { view: end } = converge(start, lim, {
        lagRounds: g.lagRounds,
        roundsMax: 400,
        check: (ops, v) => {
          for (const op of ops) {
            if (op.kind === "add" || op.kind === "replace")
              assert.ok(isEligible(op.add), JSON.stringify(op));
            if (op.kind === "transfer-leader") {
              assert.ok(
                isEligible(op.to) && v.stats[op.shard]?.voters.includes(op.to),
                JSON.stringify(op),
              );
            }
          }
          assert.equal(new Set(ops.map((op) => op.shard)).size, ops.length, "one op per shard");
        },
      });
      const zones = new Set(eligible.map((m) => m.labels.zone)).size;
      const zoneOf = (id: string): string | undefined =>
        members.find((m) => m.id === id)?.labels.zone;
      for (const s of end.shards) {
        assert.equal(new Set(s.voters).size, s.voters.length);
        const healthy = s.voters.filter(isEligible);
        const want = Math.min(g.replicas, eligible.length);
        assert.equal(healthy.length, want, `${s.id}: ${s.voters}`);
        // Nodes that must go are gone whenever there was somewhere to go.
        if (eligible.length >= g.replicas)
          assert.ok(s.voters.every(isEligible), `${s.id}: ${s.voters}`);
        assert.equal(
          new Set(healthy.map(zoneOf)).size,
          Math.min(healthy.length, zones),
          `${s.id} zones`,
        );
      }
    }),
    { numRuns: 150 },
  );
});

// ---------------------------------------------------------------------------------------------
// Liveness and stale replicas

test("liveness: alive, then suspect, then dead, by silence", () => {
  const t = { suspectAfterMs: 10_000, deadAfterMs: 60_000 };
  assert.equal(livenessAt({ lastHeartbeatMs: 1000 }, 1000, t), "alive");
  assert.equal(livenessAt({ lastHeartbeatMs: 1000 }, 10_999, t), "alive");
  assert.equal(livenessAt({ lastHeartbeatMs: 1000 }, 11_000, t), "suspect");
  assert.equal(livenessAt({ lastHeartbeatMs: 1000 }, 61_000, t), "dead");
  assert.equal(livenessAt({ lastHeartbeatMs: 5000 }, 1000, t), "alive", "clock went back");
  assert.throws(() => livenessAt({ lastHeartbeatMs: 0 }, 0, { suspectAfterMs: 5, deadAfterMs: 1 }));
});

test("stale replicas: dropped only once the map and the shard's leader both moved on", () => {
  const s1 = shard("s1", ["n1", "n2", "n4"]);
  const s2 = shard("s2", ["n1", "n2", "n4"]);
  const s3 = shard("s3", ["n1", "n2", "n4"]);
  const v = view({
    members: [],
    shards: [s1, s2, s3],
    stats: {
      s1: settled(s1), // n3 replaced and gone from the configuration
      s2: settled(s2, { voters: ["n1", "n2", "n3"], learners: ["n4"] }), // still a voter
    },
  });
  const noReport = { ...v, stats: { s1: v.stats.s1, s2: v.stats.s2 } as ClusterView["stats"] };
  assert.deepEqual(staleReplicas(noReport, "n3", ["s1", "s2", "s3", "merged"]), ["s1", "merged"]);
  assert.deepEqual(staleReplicas(v, "n1", ["s1", "s2", "s3"]), []);
});
