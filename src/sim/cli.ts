/**
 * `npm run sim -- --seeds N [--from S] [--nodes 3|5] [--bug NAME] [--verbose]`
 *
 * Runs N seeds of the deterministic simulator and ends with `sim: N seeds, V violations`.
 * Every failure prints its seed, what broke, and the exact command that replays it.
 */
import { Command, InvalidArgumentError } from "commander";
import { BUG_NAMES, type BugName, runSeed, type SimResult } from "./sim.js";

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
  .option("--bug <name>", `plant a broken rule (${BUG_NAMES.join(", ")})`, (v) => {
    if (!BUG_NAMES.includes(v as BugName))
      throw new InvalidArgumentError(`unknown bug; one of ${BUG_NAMES.join(", ")}`);
    return v as BugName;
  })
  .option(
    "--load-ms <ms>",
    "virtual milliseconds of faults and load per seed",
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
  bug?: BugName;
  loadMs: number;
  verbose: boolean;
  stopOnFailure: boolean;
}>();

function replayCommand(seed: number): string {
  const parts = ["npm run sim --", `--seeds 1 --from ${seed} --nodes ${opts.nodes}`];
  if (opts.bug) parts.push(`--bug ${opts.bug}`);
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
    ...(opts.bug ? { bug: opts.bug } : {}),
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
