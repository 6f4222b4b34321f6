/**
 * `npm run sim -- --seeds N [--from S] [--nodes 3|5] [--bug NAME] [--verbose]`
 * `npm run sim -- --seeds N --scenario placement [--from S] [--bug NAME] [--tolerate ISSUES]
 *    [--load-ms MS] [--verbose]`
 *
 * Runs N seeds of the deterministic simulator and ends with `sim: N seeds, V violations`.
 * Every failure prints its seed, what broke, and the exact command that replays it.
 * Scenarios: `raft` (the default: Raft groups under faults) and `placement` (the placement
 * driver under churn, src/sim/placement.ts).
 */
import { Command, InvalidArgumentError } from "commander";
import {
  KNOWN_ISSUES,
  type KnownIssue,
  PLACEMENT_BUG_NAMES,
  type PlacementBug,
} from "./placement.js";
import { runPlacementCampaign } from "./placement-cli.js";
import { BUG_NAMES, type BugName, runSeed, type SimResult } from "./sim.js";

const SCENARIOS = ["raft", "placement"] as const;
type Scenario = (typeof SCENARIOS)[number];

function int(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0)
      throw new InvalidArgumentError(`${name} must be a non-negative integer`);
    return n;
  };
}

const program = new Command()
  .name("kumo-sim")
  .description(
    "Deterministic simulation of Raft groups under faults, with safety, linearizability and liveness checks",
  )
  .option("--seeds <n>", "how many seeds to run", int("--seeds"), 100)
  .option("--from <seed>", "first seed", int("--from"), 1)
  .option(
    "--nodes <n>",
    "replicas per group: 3 or 5",
    (v) => {
      if (v !== "3" && v !== "5") throw new InvalidArgumentError("--nodes must be 3 or 5");
      return Number(v) as 3 | 5;
    },
    3 as 3 | 5,
  )
  .option("--scenario <name>", `what to simulate (${SCENARIOS.join(", ")})`, (v) => {
    if (!SCENARIOS.includes(v as Scenario))
      throw new InvalidArgumentError(`unknown scenario; one of ${SCENARIOS.join(", ")}`);
    return v as Scenario;
  })
  .option(
    "--bug <name>",
    `plant a broken rule (raft: ${BUG_NAMES.join(", ")}; placement: ${PLACEMENT_BUG_NAMES.join(", ")})`,
  )
  .option(
    "--tolerate <issues>",
    `placement: known issues to count instead of failing on (${KNOWN_ISSUES.join(", ")}), comma-separated`,
    (v) => {
      const list = v.split(",").filter(Boolean);
      for (const x of list)
        if (!KNOWN_ISSUES.includes(x as KnownIssue))
          throw new InvalidArgumentError(`unknown issue ${x}; one of ${KNOWN_ISSUES.join(", ")}`);
      return list as KnownIssue[];
    },
  )
  .option(
    "--load-ms <ms>",
    "virtual milliseconds of faults and load per seed (placement: of chaos, default 150000)",
    int("--load-ms"),
    6000,
  )
  .option("--verbose", "print each seed's settings and the last events of a failing seed", false)
  .option("--stop-on-failure", "stop at the first violation", false)
  .parse();

const opts = program.opts<{
  seeds: number;
  from: number;
  nodes: 3 | 5;
  scenario?: Scenario;
  bug?: string;
  tolerate?: KnownIssue[];
  loadMs: number;
  verbose: boolean;
  stopOnFailure: boolean;
}>();

if (opts.scenario === "placement") {
  if (opts.bug !== undefined && !PLACEMENT_BUG_NAMES.includes(opts.bug as PlacementBug))
    program.error(`unknown placement bug; one of ${PLACEMENT_BUG_NAMES.join(", ")}`);
  const violations = runPlacementCampaign({
    seeds: opts.seeds,
    from: opts.from,
    ...(opts.bug ? { bug: opts.bug as PlacementBug } : {}),
    ...(opts.tolerate ? { tolerate: opts.tolerate } : {}),
    // --load-ms means chaos time here, and only when given (its default is the Raft scenario's).
    ...(program.getOptionValueSource("loadMs") === "cli" ? { chaosMs: opts.loadMs } : {}),
    verbose: opts.verbose,
    stopOnFailure: opts.stopOnFailure,
  });
  process.exit(violations > 0 ? 1 : 0);
}
if (opts.bug !== undefined && !BUG_NAMES.includes(opts.bug as BugName))
  program.error(`unknown bug; one of ${BUG_NAMES.join(", ")}`);
const bug = opts.bug as BugName | undefined;

function replayCommand(seed: number): string {
  const parts = ["npm run sim --", `--seeds 1 --from ${seed} --nodes ${opts.nodes}`];
  if (bug) parts.push(`--bug ${bug}`);
  if (opts.loadMs !== 6000) parts.push(`--load-ms ${opts.loadMs}`);
  parts.push("--verbose");
  return parts.join(" ");
}

let violations = 0;
let ran = 0;
const totals = {
  events: 0,
  ops: 0,
  opsOk: 0,
  opsInfo: 0,
  leaderChanges: 0,
  crashes: 0,
  confChanges: 0,
  transfers: 0,
  snapshotsSent: 0,
};
const started = performance.now();
for (let seed = opts.from; seed < opts.from + opts.seeds; seed++) {
  const res: SimResult = runSeed(seed, {
    nodes: opts.nodes,
    loadMs: opts.loadMs,
    ...(bug ? { bug } : {}),
    traceEvents: opts.verbose ? 60 : 0,
  });
  ran++;
  for (const k of Object.keys(totals) as (keyof typeof totals)[]) totals[k] += res.stats[k];
  if (opts.verbose) {
    console.log(`seed ${seed}: ${res.settings} | ${JSON.stringify(res.stats)}`);
  }
  if (res.violation) {
    violations++;
    console.log(
      `seed ${seed}: VIOLATION ${res.violation.kind} at ${res.violation.atMs}ms: ${res.violation.message}`,
    );
    console.log(`  settings: ${res.settings}`);
    console.log(`  replay:   ${replayCommand(seed)}`);
    if (opts.verbose && res.trace.length > 0)
      console.log(`  last events:\n    ${res.trace.join("\n    ")}`);
    if (opts.stopOnFailure) break;
  }
}
const secs = (performance.now() - started) / 1000;
console.log(
  `totals: ${totals.ops} client ops (${totals.opsOk} ok, ${totals.opsInfo} unknown), ${totals.leaderChanges} leaders, ` +
    `${totals.crashes} crashes, ${totals.confChanges} conf changes, ${totals.transfers} transfers, ` +
    `${totals.snapshotsSent} snapshots, ${totals.events} events in ${secs.toFixed(1)}s`,
);
console.log(`sim: ${ran} seeds, ${violations} violations`);
process.exitCode = violations > 0 ? 1 : 0;
