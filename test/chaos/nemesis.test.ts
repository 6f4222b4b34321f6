/** The nemesis schedule: a pure function of its options, bounded by the run, well-formed faults. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { NEMESES, schedule } from "../../src/chaos/nemesis.js";

test("the schedule replays from its seed and stays inside the run", () => {
  const opts = { seed: 42, nemeses: NEMESES, durationMs: 120_000, nodes: 5 };
  const a = schedule(opts);
  assert.deepEqual(schedule(opts), a, "same seed, same schedule");
  assert.notDeepEqual(schedule({ ...opts, seed: 43 }), a, "another seed, another schedule");
  assert.ok(a.length >= 10, `${a.length} faults in 2 minutes`);
  let end = 0;
  for (const f of a) {
    assert.ok(f.atMs >= end, "faults do not overlap");
    end = f.atMs + f.holdMs;
    assert.ok(end <= opts.durationMs, "faults end before the run does");
  }
  assert.deepEqual(schedule({ ...opts, nemeses: [] }), []);
});

test("faults are well-formed for 3 and 5 nodes", () => {
  for (const nodes of [3, 5]) {
    for (let seed = 0; seed < 30; seed++) {
      for (const f of schedule({ seed, nemeses: NEMESES, durationMs: 60_000, nodes })) {
        const fault = f.fault;
        switch (fault.kind) {
          case "kill":
            assert.equal(
              fault.nodes.length,
              fault.who === "majority" ? Math.floor(nodes / 2) + 1 : 1,
            );
            break;
          case "pause":
            assert.equal(fault.nodes.length, 1);
            break;
          case "partition": {
            assert.ok(fault.cuts.length > 0, fault.shape);
            for (const [a, b] of fault.cuts) assert.ok(a !== b && a < nodes && b < nodes);
            if (fault.shape === "bridge") {
              // Some node still reaches every other one.
              const cut = new Set(fault.cuts.map(([a, b]) => `${a}>${b}`));
              const bridge = [...Array(nodes).keys()].find((i) =>
                [...Array(nodes).keys()].every(
                  (j) => i === j || (!cut.has(`${i}>${j}`) && !cut.has(`${j}>${i}`)),
                ),
              );
              assert.notEqual(bridge, undefined);
            }
            if (fault.shape === "one-way") assert.equal(fault.cuts.length, 1);
            break;
          }
          case "netem":
            assert.ok(fault.nodes.length >= 1 && fault.nodes.length <= nodes);
            assert.ok(fault.shaping.delayMs > 0);
            break;
          case "drain":
            assert.equal(fault.nodes.length, 1);
            assert.ok((fault.nodes[0] as number) < nodes);
            break;
        }
      }
    }
  }
});
