/**
 * The placement scenario of the simulator (src/sim/placement.ts): a bounded campaign finds no
 * violation beyond the known issues it tolerates, each known issue still reproduces (so the
 * tolerance goes once it is fixed), planted executor bugs are caught, a seed replays exactly,
 * a failure prints a replay command that reproduces it, and the checks themselves judge
 * hand-made cases correctly.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { KeyspaceRecord } from "../src/placement/index.js";
import {
  KNOWN_ISSUES,
  type KnownIssue,
  type PlacementBug,
  type PlacementViolationKind,
  runPlacementSeed,
} from "../src/sim/placement.js";
import { quorumsIntersect, ringErrors, tilingErrors } from "../src/sim/placement-checks.js";

const cli = join(fileURLToPath(import.meta.url), "../../src/sim/cli.js");
const SEEDS = Number(process.env.KUMO_SIM_PLACEMENT_TEST_SEEDS ?? 40);

describe("bounded placement campaign", () => {
  test(`${SEEDS} seeds: no violation beyond the tolerated known issues`, () => {
    const total = {
      moves: 0,
      splits: 0,
      repairs: 0,
      balances: 0,
      kills: 0,
      losses: 0,
      isolations: 0,
      joins: 0,
      drains: 0,
      removals: 0,
      outages: 0,
      ringRounds: 0,
    };
    for (let seed = 1; seed <= SEEDS; seed++) {
      const r = runPlacementSeed(seed, { tolerate: KNOWN_ISSUES });
      assert.equal(
        r.violation,
        undefined,
        `seed ${seed}: ${r.violation?.kind} ${r.violation?.message}\n  ${r.settings}`,
      );
      // (Only a tolerated known issue may keep a seed from converging.)
      assert.ok(
        r.stats.convergeMs >= 0 || Object.keys(r.known).length > 0,
        `seed ${seed} never converged`,
      );
      for (const k of Object.keys(total) as (keyof typeof total)[]) total[k] += r.stats[k];
    }
    // The campaign must exercise what it claims to: moves, splits, and every kind of churn.
    for (const [k, v] of Object.entries(total)) assert.ok(v >= SEEDS / 10, `too few ${k}: ${v}`);
  });
});

describe("fixed issues stay fixed (seeds that found them converge with nothing tolerated)", () => {
  const cases: [KnownIssue, number][] = [
    // reconcile-joint-dip (seed 1) and create-on-ineligible (seed 4) are fixed in
    // src/api/admin/keyspaces.ts and mirrored in the model; stuck-moves-budget (seeds 453, 636)
    // in planAll: moves that cannot progress no longer hold the budget.
    ["reconcile-joint-dip", 1],
    ["create-on-ineligible", 4],
    ["stuck-moves-budget", 453],
    ["stuck-moves-budget", 636],
  ];
  for (const [issue, seed] of cases) {
    test(`${issue}: seed ${seed}`, () => {
      const r = runPlacementSeed(seed, {});
      assert.equal(r.violation, undefined, JSON.stringify(r.violation));
      assert.deepEqual(r.known, {});
    });
  }
  // The checker declared convergence while a node that had just come back (seed 644: n09,
  // restarted at the heal) was not yet in the metadata leader's view; balancing onto it a
  // moment later then read as "converged, then not any more". Such a node is now unconverged.
  test("a node not yet in the planner's view is not converged: seed 644", () => {
    const r = runPlacementSeed(644, {});
    assert.equal(r.violation, undefined, JSON.stringify(r.violation));
  });
});

describe("the scenario catches planted executor bugs", () => {
  const cases: [PlacementBug, PlacementViolationKind, number][] = [
    ["replaceWithoutJoint", "quorum-intersection", 10],
    ["removeBeforeAdd", "replica-dip", 10],
  ];
  for (const [bug, kind, bound] of cases) {
    test(`${bug} is found within ${bound} seeds (${kind})`, () => {
      let found: number | undefined;
      for (let seed = 1; seed <= bound && found === undefined; seed++) {
        const r = runPlacementSeed(seed, { bug, tolerate: KNOWN_ISSUES });
        if (r.violation) {
          assert.equal(r.violation.kind, kind, r.violation.message);
          found = seed;
        }
      }
      assert.ok(found !== undefined, `no violation in ${bound} seeds with ${bug}`);
    });
  }

  test("a failure prints its seed and a replay command that reproduces it", () => {
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
    const first = run([
      "--seeds",
      "1",
      "--from",
      "2",
      "--scenario",
      "placement",
      "--bug",
      "replaceWithoutJoint",
    ]);
    assert.equal(first.code, 1, first.out);
    assert.match(first.out, /seed 2: VIOLATION quorum-intersection/);
    assert.match(first.out, /sim: 1 seeds, 1 violations\n$/);
    const replay = first.out.match(/replay: +npm run sim -- (.*)/)?.[1];
    assert.ok(replay, first.out);
    const again = run(replay.split(" "));
    const violationLine = (s: string) => s.split("\n").find((l) => l.includes("VIOLATION"));
    assert.equal(violationLine(again.out), violationLine(first.out));
  });
});

test("a seed replays exactly", () => {
  const a = runPlacementSeed(7, { tolerate: KNOWN_ISSUES, traceEvents: 300 });
  const b = runPlacementSeed(7, { tolerate: KNOWN_ISSUES, traceEvents: 300 });
  assert.deepEqual(a.stats, b.stats);
  assert.deepEqual(a.trace, b.trace);
  assert.ok(a.trace.length > 100);
});

describe("the checks", () => {
  const simple = (voters: string[]) => ({ voters, outgoing: [] });
  test("quorum intersection: one voter at a time and joint steps pass, a one-step replace fails", () => {
    assert.ok(quorumsIntersect(simple(["a", "b", "c"]), simple(["a", "b", "c", "d"])));
    assert.ok(quorumsIntersect(simple(["a", "b", "c"]), simple(["a", "b"])));
    const joint = { voters: ["b", "c", "d"], outgoing: ["a", "b", "c"] };
    assert.ok(quorumsIntersect(simple(["a", "b", "c"]), joint));
    assert.ok(quorumsIntersect(joint, simple(["b", "c", "d"])));
    assert.ok(!quorumsIntersect(simple(["a", "b", "c"]), simple(["b", "c", "d"])));
    assert.ok(!quorumsIntersect(simple(["a", "b", "c"]), simple(["a", "d", "e"])));
    assert.ok(!quorumsIntersect(simple(["a", "b", "c", "d"]), simple(["a", "b", "e", "f"])));
  });

  test("tiling: gaps, overlaps, a bounded last shard and repeated ids are reported", () => {
    const rec = (shards: [string, string, string][]): KeyspaceRecord => ({
      name: "k",
      sharding: "range",
      replicas: 3,
      generation: "g",
      shards: shards.map(([id, start, end]) => ({ id, start, end, replicas: ["a", "b", "c"] })),
    });
    const p = "6b00"; // "k" 0x00
    assert.deepEqual(
      tilingErrors([
        rec([
          ["s1", p, "6b0010"],
          ["s2", "6b0010", ""],
        ]),
      ]),
      [],
    );
    assert.equal(
      tilingErrors([
        rec([
          ["s1", p, "6b0010"],
          ["s2", "6b0020", ""],
        ]),
      ]).length,
      1,
    );
    assert.equal(
      tilingErrors([
        rec([
          ["s1", p, "6b0010"],
          ["s2", "6b0010", "6b0030"],
        ]),
      ]).length,
      1,
    );
    assert.equal(tilingErrors([rec([["s1", "6b01", ""]])]).length, 1);
    assert.equal(
      tilingErrors([
        rec([
          ["s1", p, "6b0010"],
          ["s1", "6b0010", ""],
        ]),
      ]).length,
      1,
    );
  });

  test("ring: wrong sizes, repeated nodes and nodes outside the set are reported", () => {
    const nodes = new Set(["a", "b", "c"]);
    assert.deepEqual(
      ringErrors(
        [
          ["a", "b"],
          ["b", "c"],
        ],
        nodes,
        2,
        2,
      ),
      [],
    );
    assert.equal(
      ringErrors(
        [
          ["a", "a"],
          ["b", "c"],
        ],
        nodes,
        2,
        2,
      ).length,
      1,
    );
    assert.equal(
      ringErrors(
        [
          ["a", "d"],
          ["b", "c"],
        ],
        nodes,
        2,
        2,
      ).length,
      1,
    );
    assert.equal(ringErrors([["a"], ["b", "c"]], nodes, 2, 2).length, 1);
  });
});
