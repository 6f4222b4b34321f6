/**
 * The chunk ring record: which nodes hold chunks (active and not dead: a suspect node keeps its
 * partitions), when a new ring is written (only on a change), and that a change moves little.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { nextRing, type RingMember, ringNodes } from "../../src/placement/index.js";

const member = (id: string, extra: Partial<RingMember> = {}): RingMember => ({
  id,
  record: { id, peer: "", api: "", s3: "", labels: { zone: `z${id.slice(1)}` } },
  state: "alive",
  ...extra,
});

test("ring nodes: draining, removed and dead nodes hold no chunks; suspect ones keep theirs", () => {
  const nodes = ringNodes([
    member("n1"),
    member("n2", { state: "suspect" }),
    member("n3", { state: "dead" }),
    member("n4", { record: { id: "n4", peer: "", api: "", s3: "", admin: "draining" } }),
    member("n5", { record: { id: "n5", peer: "", api: "", s3: "", admin: "removed" } }),
    member("n6", { record: undefined }),
  ]);
  assert.deepEqual(
    nodes.map((n) => [n.id, n.zone]),
    [
      ["n1", "z1"],
      ["n2", "z2"],
      ["n6", ""],
    ],
  );
});

test("a ring is written only when it changes, with a growing version", () => {
  const three = ["n1", "n2", "n3"].map((id) => member(id));
  const first = nextRing(undefined, three, 3, 64);
  assert.ok(first);
  assert.equal(first.version, 1);
  assert.equal(first.partitions, 64);
  assert.equal(first.ring.length, 64);
  for (const owners of first.ring) assert.deepEqual([...owners].sort(), ["n1", "n2", "n3"]);
  assert.equal(nextRing(first, three, 3), undefined, "nothing changed");
  // No eligible node: the ring is kept (an empty ring would strand every chunk).
  assert.equal(
    nextRing(
      first,
      three.map((m) => ({ ...m, state: "dead" as const })),
      3,
    ),
    undefined,
  );
});

test("fewer nodes than replicas: every node holds everything, and the count grows with the cluster", () => {
  const one = nextRing(undefined, [member("n1")], 3, 16);
  assert.ok(one);
  assert.equal(one.replicas, 1);
  const two = nextRing(one, [member("n1"), member("n2")], 3);
  assert.ok(two);
  assert.equal(two.replicas, 2);
  assert.equal(two.version, 2);
  for (const owners of two.ring) assert.equal(owners.length, 2);
});

test("a dead node's partitions go to the others; the rest of the layout stays", () => {
  const five = ["n1", "n2", "n3", "n4", "n5"].map((id) => member(id));
  const before = nextRing(undefined, five, 3, 256);
  assert.ok(before);
  const after = nextRing(
    before,
    five.map((m) => (m.id === "n5" ? { ...m, state: "dead" as const } : m)),
    3,
  );
  assert.ok(after);
  let moved = 0;
  for (const [p, owners] of after.ring.entries()) {
    assert.ok(!owners.includes("n5"));
    assert.equal(new Set(owners).size, 3);
    const old = before.ring[p] as string[];
    // Every surviving owner of a partition keeps it: only n5's slots move.
    for (const o of old) if (o !== "n5") assert.ok(owners.includes(o), `partition ${p}`);
    moved += owners.filter((o) => !old.includes(o)).length;
  }
  const n5slots = before.ring.filter((o) => o.includes("n5")).length;
  assert.equal(moved, n5slots);
});
