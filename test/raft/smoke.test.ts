import assert from "node:assert/strict";
import { test } from "node:test";
import { Harness } from "../../src/sim/harness.js";

test("three nodes elect a leader and replicate", () => {
  const h = new Harness(["a", "b", "c"]);
  h.campaign("a");
  assert.equal(h.leader(), "a");
  const r = h.propose("a", "x=1");
  assert.ok(r.ok);
  h.tick(2);
  for (const id of ["a", "b", "c"]) assert.deepEqual(h.machine(id).values(), ["x=1"]);
});

test("election happens by ticking", () => {
  const h = new Harness(["a", "b", "c"], { seed: 7 });
  h.tick(40);
  const l = h.leader();
  assert.ok(l);
  h.propose(l, "v");
  h.tick(2);
  for (const id of ["a", "b", "c"]) assert.deepEqual(h.machine(id).values(), ["v"]);
});
