/**
 * Nemeses: the faults a chaos run injects, and their schedule.
 *
 * The schedule is a pure function of (seed, nemeses, duration, node count): which fault, when,
 * for how long, against which nodes. Only "the leader of the busiest shard" is resolved while
 * running (it depends on the cluster), so replaying a seed replays the same faults at the same
 * times; the workload's interleaving and the system's reactions still vary from run to run.
 *
 * Faults come one at a time: a quiet gap, a fault held for a while, its heal, and so on, so that
 * the report can attribute every loss of availability to one fault.
 */
import { Prng } from "../base/index.js";
import type { ChaosCluster } from "./cluster.js";
import type { LinkShaping, NetLab } from "./netns.js";

export type NemesisName = "kill" | "pause" | "partition" | "netem" | "drain";
export const NEMESES: readonly NemesisName[] = ["kill", "pause", "partition", "netem", "drain"];
/** Nemeses that need network namespaces. */
export const NETWORK_NEMESES: ReadonlySet<NemesisName> = new Set(["partition", "netem"]);

export type Fault =
  | {
      readonly kind: "kill";
      readonly who: "random" | "leader" | "majority";
      readonly nodes: readonly number[];
    }
  | { readonly kind: "pause"; readonly who: "random" | "leader"; readonly nodes: readonly number[] }
  | {
      readonly kind: "partition";
      readonly shape: "halves" | "isolate" | "bridge" | "one-way" | "one-way-isolate" | "ring";
      /** Ordered pairs (from, to) of node indices whose packets are dropped. */
      readonly cuts: readonly (readonly [number, number])[];
    }
  | { readonly kind: "netem"; readonly nodes: readonly number[]; readonly shaping: LinkShaping }
  /**
   * Membership change under load: the node is drained (its replicas and leadership move to the
   * others when there are spare nodes) and activated again when the fault heals.
   */
  | { readonly kind: "drain"; readonly nodes: readonly number[] };

export interface ScheduledFault {
  /** Milliseconds after the workload starts. */
  readonly atMs: number;
  readonly holdMs: number;
  readonly fault: Fault;
}

export interface ScheduleOptions {
  readonly seed: number;
  readonly nemeses: readonly NemesisName[];
  readonly durationMs: number;
  readonly nodes: number;
}

/** Time before the first fault (the cluster warms up) and kept free of faults at the end. */
const WARMUP_MS = 2000;
const COOLDOWN_MS = 1000;
const GAP_MS: readonly [number, number] = [1000, 3000];
const HOLD_MS: Record<NemesisName, readonly [number, number]> = {
  kill: [1500, 5000],
  pause: [1500, 5000],
  partition: [2000, 7000],
  netem: [3000, 7000],
  drain: [4000, 8000],
};

function between(rnd: Prng, [lo, hi]: readonly [number, number]): number {
  return lo + rnd.int(hi - lo + 1);
}

function shuffled(rnd: Prng, n: number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rnd.int(i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** Both directions between every node of `a` and every node of `b`. */
function cutBetween(a: readonly number[], b: readonly number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const x of a) for (const y of b) out.push([x, y], [y, x]);
  return out;
}

function partitionFault(rnd: Prng, n: number): Fault {
  const order = shuffled(rnd, n);
  const shapes: Extract<Fault, { kind: "partition" }>["shape"][] = [
    "halves",
    "isolate",
    "bridge",
    "one-way",
    "one-way-isolate",
  ];
  if (n >= 5) shapes.push("ring");
  const shape = shapes[rnd.int(shapes.length)]!;
  const minority = Math.floor((n - 1) / 2) || 1;
  switch (shape) {
    case "halves": {
      // A minority and a majority side (for 3 nodes the same as isolating one).
      const a = order.slice(0, minority);
      return { kind: "partition", shape, cuts: cutBetween(a, order.slice(minority)) };
    }
    case "isolate":
      return { kind: "partition", shape, cuts: cutBetween([order[0]!], order.slice(1)) };
    case "bridge": {
      // order[0] is the bridge: it reaches both sides, which do not reach each other. With
      // the bridge, each side may form a majority, so two leaders could each believe they lead.
      const rest = order.slice(1);
      const half = Math.ceil(rest.length / 2);
      return { kind: "partition", shape, cuts: cutBetween(rest.slice(0, half), rest.slice(half)) };
    }
    case "one-way":
      // One node cannot send to another; the other direction still works.
      return { kind: "partition", shape, cuts: [[order[0]!, order[1]!]] };
    case "one-way-isolate":
      // One node receives from everyone but its messages reach no one (a leader that still
      // hears its followers' votes and heartbeats answers, yet cannot replicate).
      return {
        kind: "partition",
        shape,
        cuts: order.slice(1).map((j) => [order[0]!, j] as [number, number]),
      };
    case "ring": {
      // Each node reaches only its two ring neighbours.
      const cuts: [number, number][] = [];
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          const d = Math.min((i - j + n) % n, (j - i + n) % n);
          if (i !== j && d > 1) cuts.push([order[i]!, order[j]!]);
        }
      }
      return { kind: "partition", shape, cuts };
    }
  }
}

function netemFault(rnd: Prng, n: number): Fault {
  const count = 1 + rnd.int(n);
  const nodes = shuffled(rnd, n).slice(0, count);
  const delayMs = [20, 50, 100, 200][rnd.int(4)]!;
  return {
    kind: "netem",
    nodes,
    shaping: {
      delayMs,
      jitterMs: Math.round(delayMs / 2),
      lossPercent: [0, 2, 5, 15][rnd.int(4)]!,
      reorderPercent: [0, 10, 25][rnd.int(3)]!,
      rateKbit: [0, 0, 1024, 256][rnd.int(4)]!,
    },
  };
}

/** The whole fault schedule of a run: deterministic in its options. */
export function schedule(opts: ScheduleOptions): ScheduledFault[] {
  const rnd = new Prng(opts.seed);
  const out: ScheduledFault[] = [];
  if (opts.nemeses.length === 0) return out;
  const n = opts.nodes;
  const majority = Math.floor(n / 2) + 1;
  let t = WARMUP_MS;
  for (;;) {
    const name = opts.nemeses[rnd.int(opts.nemeses.length)]!;
    const holdMs = between(rnd, HOLD_MS[name]);
    if (t + holdMs > opts.durationMs - COOLDOWN_MS) break;
    let fault: Fault;
    switch (name) {
      case "kill": {
        const who = (["random", "leader", "majority"] as const)[rnd.int(3)]!;
        const order = shuffled(rnd, n);
        fault = {
          kind: "kill",
          who,
          nodes: who === "majority" ? order.slice(0, majority) : order.slice(0, 1),
        };
        break;
      }
      case "pause": {
        const who = (["random", "leader"] as const)[rnd.int(2)]!;
        fault = { kind: "pause", who, nodes: shuffled(rnd, n).slice(0, 1) };
        break;
      }
      case "partition":
        fault = partitionFault(rnd, n);
        break;
      case "netem":
        fault = netemFault(rnd, n);
        break;
      case "drain":
        fault = { kind: "drain", nodes: shuffled(rnd, n).slice(0, 1) };
        break;
    }
    out.push({ atMs: t, holdMs, fault });
    t += holdMs + between(rnd, GAP_MS);
  }
  return out;
}

/** What happened when a fault was applied, for the report's timeline. */
export interface NemesisEvent {
  readonly startMs: number;
  endMs: number;
  readonly description: string;
  readonly kind: Fault["kind"];
  /** Problems applying or healing it (a fault that could not be injected is reported, not hidden). */
  readonly problems: string[];
}

export interface NemesisContext {
  readonly cluster: ChaosCluster;
  readonly lab: NetLab | undefined;
  /** Milliseconds since the run started. */
  readonly now: () => number;
  /** The shard with the most recent traffic. */
  readonly busiestShard: () => string | undefined;
}

function describeShaping(s: LinkShaping, netem: boolean): string {
  if (!netem) {
    const parts = [
      s.lossPercent > 0 ? `loss ${s.lossPercent}%` : "",
      s.rateKbit > 0 ? `rate ${s.rateKbit}kbit (tbf)` : "",
    ];
    const did = parts.filter((x) => x !== "").join(", ");
    return `${did || "nothing"} (no netem in this kernel: delay ${s.delayMs}±${s.jitterMs}ms, reorder ${s.reorderPercent}% not injected)`;
  }
  return [
    `delay ${s.delayMs}±${s.jitterMs}ms`,
    s.lossPercent > 0 ? `loss ${s.lossPercent}%` : "",
    s.reorderPercent > 0 ? `reorder ${s.reorderPercent}%` : "",
    s.rateKbit > 0 ? `rate ${s.rateKbit}kbit` : "",
  ]
    .filter((x) => x !== "")
    .join(", ");
}

/**
 * Runs the schedule until it ends or `signal` aborts, always healing the fault in force before
 * returning. Returns the timeline.
 */
export async function runNemesis(
  ctx: NemesisContext,
  faults: readonly ScheduledFault[],
  signal: AbortSignal,
): Promise<NemesisEvent[]> {
  const events: NemesisEvent[] = [];
  const ids = ctx.cluster.nodes.map((n) => n.id);
  const name = (i: number) => ids[i] ?? `n${i + 1}`;
  for (const f of faults) {
    const wait = f.atMs - ctx.now();
    if (wait > 0) await abortableSleep(wait, signal);
    if (signal.aborted) break;
    const problems: string[] = [];
    let description = "";
    const startMs = ctx.now();
    let heal: () => Promise<void> = async () => {};
    const fault = f.fault;
    switch (fault.kind) {
      case "kill":
      case "pause": {
        let targets = fault.nodes.map(name);
        let why = fault.who === "majority" ? "a majority" : "a random node";
        if (fault.who === "leader") {
          const leader = await leaderOfBusiest(ctx);
          if (leader) {
            targets = [leader.node];
            why = `leader of busy shard ${leader.shard}`;
          } else why = "a random node (no leader known)";
        }
        if (fault.kind === "kill") {
          description = `kill -9 ${targets.join(", ")} (${why})`;
          await Promise.all(targets.map((t) => ctx.cluster.kill(t)));
          heal = async () => {
            // All at once: restarted one by one, the first could wait for a quorum that the
            // others would only restore later.
            const results = await Promise.all(targets.map((t) => ctx.cluster.restart(t)));
            for (const r of results) if (!r.ok) problems.push(r.reason);
          };
        } else {
          description = `SIGSTOP ${targets.join(", ")} (${why})`;
          for (const t of targets) if (!ctx.cluster.pause(t)) problems.push(`${t} was not running`);
          heal = async () => {
            for (const t of targets) ctx.cluster.resume(t);
          };
        }
        break;
      }
      case "partition": {
        const lab = ctx.lab;
        const pairs = fault.cuts.map(([a, b]) => `${name(a)}→${name(b)}`).join(" ");
        description = `partition ${fault.shape}: drop ${pairs}`;
        if (!lab) {
          problems.push("no network namespaces: not injected");
          break;
        }
        for (const [a, b] of fault.cuts) {
          const r = await lab.cut(a, b);
          if (!r.ok) problems.push(r.message);
        }
        heal = async () => {
          for (const r of await lab.healAll()) if (!r.ok) problems.push(r.message);
        };
        break;
      }
      case "netem": {
        const lab = ctx.lab;
        const netem = lab?.caps.netem ?? false;
        // Without netem only loss and a bandwidth cap exist: make sure at least one happens.
        const shaping =
          netem || fault.shaping.lossPercent > 0 || fault.shaping.rateKbit > 0
            ? fault.shaping
            : { ...fault.shaping, rateKbit: 512 };
        description = `netem on ${fault.nodes.map(name).join(", ")}: ${describeShaping(shaping, netem)}`;
        if (!lab) {
          problems.push("no network namespaces: not injected");
          break;
        }
        for (const i of fault.nodes) {
          const r = await lab.shape(i, shaping);
          if (!r.ok) problems.push(r.message);
          if (!netem && shaping.lossPercent > 0) {
            const l = await lab.loss(i, shaping.lossPercent);
            if (!l.ok) problems.push(l.message);
          }
        }
        heal = async () => {
          for (const r of await lab.healAll()) if (!r.ok) problems.push(r.message);
        };
        break;
      }
    }
    if (fault.kind === "drain") {
      const target = name(fault.nodes[0] as number);
      description = `drain ${target} (membership change)`;
      const r = await ctx.cluster.setAdmin(target, "drain");
      if (!r.ok) problems.push(r.reason);
      heal = async () => {
        const a = await ctx.cluster.setAdmin(target, "activate");
        if (!a.ok) problems.push(a.reason);
      };
    }
    const event: NemesisEvent = {
      startMs,
      endMs: startMs,
      description,
      kind: fault.kind,
      problems,
    };
    events.push(event);
    await abortableSleep(f.holdMs, signal);
    await heal();
    event.endMs = ctx.now();
  }
  return events;
}

async function leaderOfBusiest(
  ctx: NemesisContext,
): Promise<{ node: string; shard: string } | undefined> {
  const busy = ctx.busiestShard();
  let fallback: { node: string; shard: string } | undefined;
  // Nodes without a replica of the shard report no leader for it: ask until one knows.
  for (const n of ctx.cluster.alive()) {
    if (n.paused) continue;
    const st = await ctx.cluster.status(n.id, 1000);
    if (!st) continue;
    const shard = st.find((s) => s.id === busy && s.leader);
    if (shard?.leader) return { node: shard.leader, shard: shard.id };
    const any = st.find((s) => s.leader);
    if (any?.leader) fallback ??= { node: any.leader, shard: any.id };
  }
  return fallback;
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}
