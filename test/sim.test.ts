/**
 * The simulator: a bounded campaign must find no violation, it must be deterministic, and it
 * must be able to fail: each planted protocol bug is found within a bounded number of seeds,
 * and the failure prints a command that replays it exactly.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type BugName, runSeed } from "../src/sim/sim.js";

const cli = join(fileURLToPath(import.meta.url), "../../src/sim/cli.js");
const SEEDS = Number(process.env.KUMO_SIM_TEST_SEEDS ?? 120);

function firstViolation(bug: BugName, nodes: 3 | 5, maxSeeds: number): number | undefined {
  for (let seed = 1; seed <= maxSeeds; seed++) {
    if (runSeed(seed, { nodes, bug }).violation) return seed;
  }
  return undefined;
}

describe("bounded campaign", () => {
  for (const nodes of [3, 5] as const) {
    test(`${SEEDS} seeds with ${nodes} nodes: no violation`, () => {
      const total = {
        opsOk: 0,
        crashes: 0,
        confChanges: 0,
        transfers: 0,
        snapshotsSent: 0,
        partitions: 0,
      };
      for (let seed = 1; seed <= SEEDS; seed++) {
        const r = runSeed(seed, { nodes });
        assert.equal(
          r.violation,
          undefined,
          `seed ${seed}: ${r.violation?.kind} ${r.violation?.message}`,
        );
        assert.ok(r.stats.leaderChanges > 0 && r.stats.opsOk > 0, `seed ${seed} did no work`);
        for (const k of Object.keys(total) as (keyof typeof total)[]) total[k] += r.stats[k];
      }
      // The campaign must actually exercise what it claims to: load and every kind of fault.
      assert.ok(total.opsOk > SEEDS * 100, `only ${total.opsOk} ops`);
      for (const [k, v] of Object.entries(total)) assert.ok(v > SEEDS / 10, `too few ${k}: ${v}`);
    });
  }
});

test("a seed replays exactly", () => {
  const a = runSeed(4242, { nodes: 5, traceEvents: 200 });
  const b = runSeed(4242, { nodes: 5, traceEvents: 200 });
  assert.deepEqual(a.stats, b.stats);
  assert.deepEqual(a.trace, b.trace);
  assert.ok(a.trace.length > 50);
});

describe("the simulator catches planted bugs", () => {
  const cases: [BugName, 3 | 5, number][] = [
    ["voteWithoutLogCheck", 3, 100],
    ["leaseWithoutCheckQuorum", 3, 150],
  ];
  for (const [bug, nodes, bound] of cases) {
    test(`${bug} is found within ${bound} seeds`, () => {
      const seed = firstViolation(bug, nodes, bound);
      assert.ok(seed !== undefined, `no violation found in ${bound} seeds with ${bug}`);
      const r = runSeed(seed, { nodes, bug });
      assert.ok(r.violation);
    });
  }

  test("a failure prints its seed and a replay command that reproduces it", () => {
    const seed = firstViolation("voteWithoutLogCheck", 3, 100);
    assert.ok(seed !== undefined);
    const run = (args: string[]): { out: string; code: number } => {
      try {
        return {
          out: execFileSync(process.execPath, [cli, ...args], { encoding: "utf8" }),
          code: 0,
        };
      } catch (e) {
        const err = e as { stdout: string; status: number };
        return { out: err.stdout, code: err.status };
      }
    };
    const first = run(["--seeds", "1", "--from", String(seed), "--bug", "voteWithoutLogCheck"]);
    assert.equal(first.code, 1);
    assert.match(first.out, new RegExp(`seed ${seed}: VIOLATION`));
    assert.match(first.out, /sim: 1 seeds, 1 violations\n$/);
    const replay = first.out.match(/replay: +npm run sim -- (.*)/)?.[1];
    assert.ok(replay, first.out);
    const again = run(replay.split(" "));
    const violationLine = (s: string) => s.split("\n").find((l) => l.includes("VIOLATION"));
    assert.equal(violationLine(again.out), violationLine(first.out));
  });
});
