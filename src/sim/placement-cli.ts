/**
 * The placement scenario's campaign (`npm run sim -- --scenario placement`): runs the seeds,
 * prints every violation with its seed and replay command, per-seed stats with --verbose, the
 * totals, and ends with `sim: N seeds, V violations` like the Raft scenario.
 */
import {
  type KnownIssue,
  PLACEMENT_CHAOS_MS_DEFAULT,
  type PlacementBug,
  type PlacementStats,
  runPlacementSeed,
} from "./placement.js";

export interface PlacementCampaign {
  readonly seeds: number;
  readonly from: number;
  readonly bug?: PlacementBug;
  /** Known issues recorded and counted instead of failing a seed. */
  readonly tolerate?: readonly KnownIssue[];
  /** Virtual ms of chaos per seed (default PLACEMENT_CHAOS_MS_DEFAULT). */
  readonly chaosMs?: number;
  readonly verbose: boolean;
  readonly stopOnFailure: boolean;
}

/** Runs the campaign; returns how many seeds had a violation. */
export function runPlacementCampaign(c: PlacementCampaign): number {
  const replay = (seed: number): string => {
    const parts = ["npm run sim --", `--seeds 1 --from ${seed} --scenario placement`];
    if (c.bug) parts.push(`--bug ${c.bug}`);
    if (c.tolerate && c.tolerate.length > 0) parts.push(`--tolerate ${c.tolerate.join(",")}`);
    if (c.chaosMs !== undefined && c.chaosMs !== PLACEMENT_CHAOS_MS_DEFAULT)
      parts.push(`--load-ms ${c.chaosMs}`);
    parts.push("--verbose");
    return parts.join(" ");
  };
  const summed = [
    "rounds",
    "repairs",
    "balances",
    "leaderOps",
    "moves",
    "learnersAdded",
    "votersRemoved",
    "joints",
    "splits",
    "elections",
    "ringMoves",
    "kills",
    "losses",
    "isolations",
    "joins",
    "drains",
    "removals",
    "decommissions",
    "creates",
    "outages",
    "events",
  ] as const satisfies readonly (keyof PlacementStats)[];
  const totals = Object.fromEntries(summed.map((k) => [k, 0])) as Record<
    (typeof summed)[number],
    number
  >;
  const known = new Map<KnownIssue, { seeds: number; count: number; firstSeed: number }>();
  let violations = 0;
  let ran = 0;
  let convergeMaxMs = 0;
  let convergeSumMs = 0;
  let converged = 0;
  const started = performance.now();
  for (let seed = c.from; seed < c.from + c.seeds; seed++) {
    const res = runPlacementSeed(seed, {
      ...(c.bug ? { bug: c.bug } : {}),
      ...(c.tolerate ? { tolerate: c.tolerate } : {}),
      ...(c.chaosMs !== undefined ? { chaosMs: c.chaosMs } : {}),
      traceEvents: c.verbose ? 80 : 0,
    });
    ran++;
    const s = res.stats;
    for (const k of summed) totals[k] += s[k];
    if (s.convergeMs >= 0) {
      converged++;
      convergeSumMs += s.convergeMs;
      convergeMaxMs = Math.max(convergeMaxMs, s.convergeMs);
    }
    if (c.verbose) {
      console.log(`seed ${seed}: ${res.settings}`);
      console.log(
        `  nodes ${s.nodesStart}->${s.nodesEnd}, shards ${s.shardsStart}->${s.shardsEnd}; ` +
          `moves ${s.moves}, splits ${s.splits} (${s.splitsRecorded} recorded), repairs ${s.repairs}, ` +
          `balance ${s.balances}, leader ops ${s.leaderOps}, rounds ${s.rounds}, joints ${s.joints}, ` +
          `ring moves ${s.ringMoves}; kills ${s.kills}, losses ${s.losses}, isolations ${s.isolations}, ` +
          `joins ${s.joins}, drains ${s.drains}, removals ${s.removals}, decommissions ${s.decommissions}, ` +
          `creates ${s.creates}, outages ${s.outages}; ` +
          (s.convergeMs >= 0 ? `converged ${s.convergeMs}ms after healing` : "not converged"),
      );
    }
    for (const [issue, k] of Object.entries(res.known) as [KnownIssue, { count: number }][]) {
      const sum = known.get(issue) ?? { seeds: 0, count: 0, firstSeed: seed };
      known.set(issue, {
        seeds: sum.seeds + 1,
        count: sum.count + k.count,
        firstSeed: sum.firstSeed,
      });
      if (c.verbose) console.log(`  known issue ${issue}: ${k.count} times`);
    }
    if (res.violation) {
      violations++;
      const v = res.violation;
      console.log(`seed ${seed}: VIOLATION ${v.kind} at ${v.atMs}ms: ${v.message}`);
      console.log(`  settings: ${res.settings}`);
      console.log(`  replay:   ${replay(seed)}`);
      if (c.verbose && res.trace.length > 0)
        console.log(`  last events:\n    ${res.trace.join("\n    ")}`);
      if (c.stopOnFailure) break;
    }
  }
  const secs = (performance.now() - started) / 1000;
  const t = totals;
  console.log(
    `totals: ${t.moves} moves, ${t.splits} splits, ${t.repairs} repairs, ${t.balances} balance moves, ` +
      `${t.leaderOps} leader ops in ${t.rounds} rounds, ${t.joints} joint changes, ${t.ringMoves} ring slots moved; ` +
      `${t.kills} kills, ${t.losses} losses, ${t.isolations} isolations, ${t.joins} joins, ${t.drains} drains, ` +
      `${t.removals} removals, ${t.decommissions} decommissions, ${t.creates} creates, ${t.outages} outages; ` +
      `converged in ${converged > 0 ? Math.round(convergeSumMs / converged) : 0}ms mean, ${convergeMaxMs}ms max after healing; ` +
      `${t.events} events in ${secs.toFixed(1)}s`,
  );
  const per = (x: number): string => (ran > 0 ? (x / ran).toFixed(1) : "0");
  console.log(
    `per seed (mean): ${per(t.moves)} moves, ${per(t.splits)} splits, ${per(t.repairs)} repairs, ` +
      `${per(t.balances)} balance moves, ${per(t.kills + t.losses + t.isolations)} faults, ` +
      `${per(t.joins + t.drains + t.removals + t.decommissions)} membership changes; ` +
      `${(ran / secs).toFixed(1)} seeds/s`,
  );
  for (const [issue, k] of known)
    console.log(
      `known issue ${issue} (tolerated): ${k.count} times in ${k.seeds} seeds, first in seed ${k.firstSeed}`,
    );
  console.log(`sim: ${ran} seeds, ${violations} violations`);
  return violations;
}
