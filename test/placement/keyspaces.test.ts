/** Keyspace records: validation of requests and the pure placement of a new keyspace. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  keyspacePrefixHex,
  parseKeyspaceRecord,
  planKeyspace,
  replicaLoad,
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
});
