/** Keyspace records: validation of requests and the pure placement of a new keyspace. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  applyPlan,
  keyspacePrefixHex,
  metaReplicasWanted,
  type NodeReport,
  parseKeyspaceRecord,
  planKeyspace,
  recordAfterSplit,
  replicaLoad,
  replicasWantedOn,
  statsFromReports,
  validateKeyspaceSpec,
} from "../../src/placement/keyspaces.js";

describe("keyspace records", () => {
  test("requests are validated with a reason", () => {
    assert.deepEqual(validateKeyspaceSpec({ name: "logs" }), {
      ok: true,
      spec: { name: "logs", sharding: "hash", replicas: 3, shards: 8 },
    });
    assert.deepEqual(validateKeyspaceSpec({ name: "ts", sharding: "range", replicas: 1 }), {
      ok: true,
      spec: { name: "ts", sharding: "range", replicas: 1, shards: 1 },
    });
    for (const bad of [
      { name: "" },
      { name: "A" },
      { name: "_x" },
      { name: "a.b" },
      { name: "x".repeat(41) },
      { name: "a", sharding: "zig" },
      { name: "a", replicas: 8 },
      { name: "a", replicas: 1.5 },
      { name: "a", shards: 0 },
      { name: "a", shards: 257 },
      { name: "a", sharding: "range", shards: 2 },
    ]) {
      const r = validateKeyspaceSpec(bad);
      assert.equal(r.ok, false, JSON.stringify(bad));
    }
  });

  test("a hash keyspace tiles its range with equal hash slices on distinct, balanced members", () => {
    const members = ["n1", "n2", "n3", "n4", "n5"];
    const rec = planKeyspace(
      { name: "users", sharding: "hash", replicas: 3, shards: 10 },
      members,
      new Map(),
      "g1",
    );
    assert.equal(rec.shards.length, 10);
    assert.equal(rec.shards[0]?.start, keyspacePrefixHex("users"));
    assert.equal(rec.shards[9]?.end, "");
    assert.deepEqual(parseKeyspaceRecord(JSON.stringify(rec)), rec); // tiles (asserted inside)
    for (const s of rec.shards) assert.equal(new Set(s.replicas).size, 3);
    const load = [...replicaLoad([rec]).values()];
    assert.equal(
      load.reduce((a, b) => a + b),
      30,
    );
    assert.ok(Math.max(...load) - Math.min(...load) <= 1, `load ${load}`);
    // Shard ids are valid group ids and unique per generation.
    for (const s of rec.shards) assert.match(s.id, /^[a-z0-9_-]+\.g1\.\d+$/);
  });

  test("new keyspaces go to the least loaded members; the replication factor is capped", () => {
    const load = new Map([
      ["n1", 10],
      ["n2", 10],
      ["n3", 0],
    ]);
    const rec = planKeyspace(
      { name: "t", sharding: "range", replicas: 5, shards: 1 },
      ["n1", "n2", "n3"],
      load,
      "g",
    );
    assert.equal(rec.shards[0]?.replicas[0], "n3", "the least loaded member leads");
    assert.equal(rec.shards[0]?.replicas.length, 3);
    assert.equal(rec.shards[0]?.end, "");
  });

  test("planner operations become record changes (positions kept, leader first)", () => {
    const rec = planKeyspace(
      { name: "r", sharding: "hash", replicas: 3, shards: 3 },
      ["n1", "n2", "n3", "n4"],
      new Map(),
      "g",
    );
    const [s0, s1, s2] = rec.shards;
    assert.ok(s0 && s1 && s2);
    const victim = s0.replicas[1] as string;
    const spare = ["n1", "n2", "n3", "n4"].find((n) => !s0.replicas.includes(n)) as string;
    const to = s1.replicas[2] as string;
    const [next, ...rest] = applyPlan(
      [rec],
      [
        { kind: "replace", shard: s0.id, epoch: 0, remove: victim, add: spare, reason: "dead" },
        {
          kind: "transfer-leader",
          shard: s1.id,
          epoch: 0,
          from: s1.replicas[0] as string,
          to,
          reason: "balance",
        },
        {
          kind: "split",
          shard: s2.id,
          epoch: 0,
          at: `${s2.start}00`,
          newShardId: "x",
          reason: "size",
        },
      ],
    );
    assert.deepEqual(rest, []);
    assert.ok(next);
    assert.deepEqual(
      next.shards[0]?.replicas,
      s0.replicas.map((r) => (r === victim ? spare : r)),
    );
    assert.equal(next.shards[1]?.replicas[0], to);
    assert.deepEqual([...(next.shards[1]?.replicas ?? [])].sort(), [...s1.replicas].sort());
    assert.deepEqual(next.shards[2], s2, "splits come from the shard leaders, not from here");
    assert.deepEqual(applyPlan([rec], []), []);
  });

  test("a split record keeps the tiling and rotates the new half's preferred leader", () => {
    const rec = planKeyspace(
      { name: "t", sharding: "range", replicas: 3, shards: 1 },
      ["a", "b", "c"],
      new Map(),
      "g",
    );
    const first = rec.shards[0];
    assert.ok(first);
    const at = `${first.start}6d`; // "t\0m"
    const next = recordAfterSplit(rec, first.id, at, "t.g.x");
    assert.ok(next);
    assert.deepEqual(parseKeyspaceRecord(JSON.stringify(next)), next);
    assert.equal(next.shards[0]?.end, at);
    assert.equal(next.shards[1]?.parent, first.id);
    assert.notEqual(next.shards[1]?.replicas[0], first.replicas[0]);
    assert.equal(recordAfterSplit(next, first.id, at, "t.g.x"), undefined, "already recorded");
    assert.equal(recordAfterSplit(rec, first.id, first.start, "y"), undefined, "at the start");
  });

  test("the replicas a node keeps: listed ones, fixed ones, and a split's half only until it has a record", () => {
    const rec = (shards: [string, string[]][]) => ({
      name: "r",
      sharding: "range" as const,
      replicas: 3,
      generation: "g",
      shards: shards.map(([id, replicas], i) => ({
        id,
        start: String(i),
        end: i === shards.length - 1 ? "" : String(i + 1),
        replicas,
      })),
    });
    const sorted = (x: Set<string>) => [...x].sort();
    // n4 holds parent "p" (listed) and made "c" by applying p's split; no record has "c" yet.
    const before = [rec([["p", ["n1", "n4", "n5"]]])];
    assert.deepEqual(sorted(replicasWantedOn("n4", before, ["meta"], ["c"])), ["c", "meta", "p"]);
    // The split is recorded and "c" placed elsewhere: n4's replica of it is an orphan to let go,
    // even though n4 still holds the parent (whose last child stays "c").
    const after = [
      rec([
        ["p", ["n1", "n4", "n5"]],
        ["c", ["n1", "n2", "n3"]],
      ]),
    ];
    assert.deepEqual(sorted(replicasWantedOn("n4", after, [], ["c"])), ["p"]);
    // Listed in the half's record: kept, whatever the parent.
    assert.deepEqual(sorted(replicasWantedOn("n2", after, [], [])), ["c"]);
  });

  test("the metadata group: 3 voters, 5 from five eligible members, never shrinking in a failure", () => {
    // [eligible members, current voters] → wanted
    const cases: [number, number, number][] = [
      [1, 1, 1], // one-node cluster: stays
      [2, 1, 1], // no even-sized group on the way up
      [3, 1, 3],
      [4, 3, 3],
      [5, 3, 5],
      [9, 5, 5],
      [4, 5, 3], // a member of five dead or drained: back to 3 (the dead one goes first)
      [2, 3, 3], // two of three left: keep 3, a replacement may come
      [1, 5, 5],
    ];
    for (const [eligible, current, want] of cases)
      assert.equal(
        metaReplicasWanted(eligible, current),
        want,
        `${eligible} eligible, ${current} now`,
      );
  });

  test("reports: stale ones are ignored, and around a leader change the newer report wins", () => {
    const shard = (id: string, leader: string, sizeBytes: number) => ({
      shard: id,
      sizeBytes,
      keys: 1,
      readsPerSec: 0,
      writesPerSec: 0,
      voters: ["a", "b", "c"],
      learners: [],
      leader,
    });
    const report = (id: string, atMs: number, shards: NodeReport["shards"]): NodeReport => ({
      id,
      atMs,
      capacityBytes: 100,
      usedBytes: 10,
      load: { readsPerSec: 0, writesPerSec: 0 },
      shards,
    });
    const { stats, reports } = statsFromReports(
      [
        report("a", 9_000, [shard("s1", "a", 1), shard("s2", "a", 2)]),
        report("b", 9_500, [shard("s1", "b", 10)]), // b leads s1 now
        report("c", 1_000, [shard("s3", "c", 3)]), // stale: c is gone
      ],
      10_000,
      5_000,
    );
    assert.deepEqual(Object.keys(stats).sort(), ["s1", "s2"]);
    assert.equal(stats.s1?.leader, "b");
    assert.equal(stats.s1?.sizeBytes, 10);
    assert.deepEqual([...reports.keys()].sort(), ["a", "b"]);
  });
});
