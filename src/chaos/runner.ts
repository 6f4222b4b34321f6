/**
 * One chaos run: start a real cluster (in network namespaces when network faults are asked for
 * and possible), run the workload under the nemesis schedule, heal everything, read every key
 * back through every node, judge the history, write the history and the reports.
 *
 * Everything is bounded: the run's length, each request (the client timeout), each wait for the
 * cluster, the final reads. Cleanup (processes, namespaces, bridge) happens on every path: on
 * return, on a thrown error, and on SIGINT/SIGTERM/exit through synchronous handlers.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChunkStore } from "../blob/index.js";
import { OPTIONS } from "../node/config.js";
import { availability, checkHistory } from "./checker.js";
import { ChaosCluster } from "./cluster.js";
import { type ChaosOp, FINAL_CLIENT } from "./history.js";
import {
  NETWORK_NEMESES,
  type NemesisEvent,
  type NemesisName,
  runNemesis,
  schedule,
} from "./nemesis.js";
import { NetLab, probe } from "./netns.js";
import { htmlReport, type RunReport, summaryLine, textReport } from "./report.js";
import { checkS3, chunkCopies, reportOps, strictRecheck } from "./s3checker.js";
import { S3Workload } from "./s3workload.js";
import { KvWorkload } from "./workload.js";

export interface RunOptions {
  readonly workload: "kv" | "s3";
  readonly nemeses: readonly NemesisName[];
  readonly durationMs: number;
  readonly seed: number;
  readonly nodes: number;
  readonly shards: number;
  readonly replicas: number;
  readonly readMode: "quorum" | "lease";
  readonly clients: number;
  readonly keys: number;
  readonly opsPerKeyMax: number;
  readonly rateMax: number;
  readonly requestTimeoutMs: number;
  /** Deliberately stale reads (see WorkloadOptions.staleReads). */
  readonly staleReads: boolean;
  /** auto: namespaces when a network nemesis is asked for and the machine allows it. */
  readonly net: "auto" | "netns" | "loopback";
  /** Where the run's folder goes (a new folder under the OS temp directory by default). */
  readonly outDir?: string;
  /** Keep the nodes' data directories even when the run found nothing. */
  readonly keepData: boolean;
  readonly serverArgs: readonly string[];
  /** Progress lines (stderr in the CLI). */
  readonly log: (line: string) => void;
  /** S3 workload: total body bytes it may send (default S3_BYTES_MAX). */
  readonly s3BytesMax?: number;
}

export interface RunResult {
  readonly report: RunReport;
  readonly text: string;
  /** 0: no violation; 1: a violation; 2: the run itself could not be carried out. */
  readonly exitCode: 0 | 1 | 2;
}

/** Waits for the cluster to (re)start serving. */
const SERVING_TIMEOUT_MS = 60_000;
/** Bound on the final audit: per key and node, attempts and time. */
const FINAL_READ_ATTEMPTS_MAX = 20;
const CONVERGE_TIMEOUT_MS = 15_000;
/** S3 workload: the final audit's retries stop after this long (then one attempt per read). */
const S3_AUDIT_BUDGET_MS = 120_000;
/** How long the chunk copies may take to come back after the final reads. */
const CHUNK_REPAIR_BUDGET_MS = 60_000;
/** Anti-entropy period of S3 runs' servers (the default is 10 minutes, longer than a run). */
const CHAOS_ANTI_ENTROPY = "5s";
const CHUNK_REPLICAS_DEFAULT = OPTIONS.find((x) => x.key === "chunkReplicas")?.def as number;
/** S3 workload: the default bound on the body bytes sent in one run. */
export const S3_BYTES_MAX = 256 * 1024 * 1024;
/** The S3 root key of chaos clusters (a throwaway cluster's only key). */
const S3_ROOT = {
  accessKeyId: "KUMOCHAOSROOT0001",
  secretAccessKey: randomBytes(18).toString("hex"),
};

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The command that replays this run's nemesis schedule (same seed, same shape). */
export function replayCommand(o: RunOptions): string {
  return [
    "npm run chaos --",
    `--workload ${o.workload}`,
    `--nemesis ${o.nemeses.length > 0 ? o.nemeses.join(",") : "none"}`,
    `--duration ${o.durationMs / 1000}`,
    `--seed ${o.seed}`,
    `--nodes ${o.nodes}`,
    `--shards ${o.shards}`,
    `--read-mode ${o.readMode}`,
    `--clients ${o.clients}`,
    `--keys ${o.keys}`,
    `--rate ${o.rateMax}`,
    ...(o.net !== "auto" ? [`--net ${o.net}`] : []),
    ...(o.staleReads ? ["--stale-reads"] : []),
    ...(o.workload === "s3" ? [`--ops-per-key ${o.opsPerKeyMax}`] : []),
    ...(o.workload === "s3" && o.s3BytesMax !== undefined && o.s3BytesMax !== S3_BYTES_MAX
      ? [`--s3-mib ${Math.max(1, Math.round(o.s3BytesMax / (1024 * 1024)))}`]
      : []),
  ].join(" ");
}

export async function runChaos(o: RunOptions): Promise<RunResult> {
  const dir = o.outDir ?? mkdtempSync(join(tmpdir(), "kumo-chaos-"));
  mkdirSync(dir, { recursive: true });
  const notes: string[] = [];
  const problems: string[] = [];
  let nemeses = [...o.nemeses];

  // Network: namespaces if network faults were asked for (or forced) and the machine can.
  let lab: NetLab | undefined;
  const wantsNet =
    o.net === "netns" || (o.net === "auto" && nemeses.some((n) => NETWORK_NEMESES.has(n)));
  if (wantsNet) {
    const p = probe();
    if (!p.ok) {
      notes.push(
        `network namespaces unavailable (${p.reason}): running on loopback WITHOUT network nemeses`,
      );
    } else {
      const made = NetLab.create(o.nodes, p.caps);
      if (!made.ok)
        notes.push(
          `could not build the network lab (${made.reason}): running on loopback WITHOUT network nemeses`,
        );
      else {
        lab = made.lab;
        if (!p.caps.netem) {
          notes.push(
            "tc netem is not available in this kernel (sch_netem): the netem nemesis injects random loss (nft) and a bandwidth cap (tbf) only, no delay, jitter or reordering",
          );
        }
        if (!p.caps.nft)
          notes.push(
            "nft is not installed: partitions use blackhole routes; random loss is unavailable",
          );
      }
    }
  }
  if (!lab) {
    const dropped = nemeses.filter((n) => NETWORK_NEMESES.has(n));
    if (dropped.length > 0) {
      if (o.net === "loopback") notes.push(`--net loopback: skipping ${dropped.join(", ")}`);
      nemeses = nemeses.filter((n) => !NETWORK_NEMESES.has(n));
    }
  }
  const network = lab
    ? `network namespaces on bridge ${lab.gateway}/24 (netem ${lab.caps.netem ? "yes" : "no"}, nft ${lab.caps.nft ? "yes" : "no"})`
    : "loopback (127.0.0.1)";

  // Synchronous cleanup for every way out of this process (installed before anything starts).
  let cluster: ChaosCluster | undefined;
  const cleanup = (): void => {
    cluster?.destroy();
    lab?.destroy();
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    cleanup();
    process.stderr.write(`chaos: interrupted by ${sig}; cleaned up (run folder ${dir})\n`);
    process.exit(130);
  };
  process.on("exit", cleanup);
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    cluster = await ChaosCluster.create(
      {
        nodes: o.nodes,
        shards: o.shards,
        replicas: o.replicas,
        readMode: o.readMode,
        token: randomBytes(16).toString("hex"),
        dir,
        serverArgs:
          o.workload === "s3"
            ? ["--anti-entropy-interval", CHAOS_ANTI_ENTROPY, ...o.serverArgs]
            : o.serverArgs,
        ...(o.workload === "s3"
          ? { env: { KUMO_S3_ROOT_KEY: `${S3_ROOT.accessKeyId}:${S3_ROOT.secretAccessKey}` } }
          : {}),
      },
      lab,
    );
    return await runInside(o, { dir, notes, problems, nemeses, lab, cluster, network });
  } finally {
    await cluster?.stop().catch(() => {});
    cleanup();
    process.off("exit", cleanup);
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

interface Setup {
  readonly dir: string;
  readonly notes: string[];
  readonly problems: string[];
  readonly nemeses: NemesisName[];
  readonly lab: NetLab | undefined;
  readonly cluster: ChaosCluster;
  readonly network: string;
}

async function runInside(o: RunOptions, s: Setup): Promise<RunResult> {
  const { cluster, lab, dir } = s;
  o.log(`chaos: starting ${o.nodes} nodes (${s.network}) in ${dir}`);
  const started = await cluster.start(SERVING_TIMEOUT_MS);
  if (!started.ok) return harnessFailure(o, s, `cluster did not start: ${started.reason}`);

  const faults = schedule({
    seed: o.seed,
    nemeses: s.nemeses,
    durationMs: o.durationMs,
    nodes: o.nodes,
  });
  let s3: S3Workload | undefined;
  if (o.workload === "s3") {
    s3 = new S3Workload(cluster, {
      clients: o.clients,
      keys: o.keys,
      opsPerKeyMax: o.opsPerKeyMax,
      rateMax: o.rateMax,
      requestTimeoutMs: o.requestTimeoutMs,
      seed: o.seed,
      bytesMax: o.s3BytesMax ?? S3_BYTES_MAX,
      bucket: `chaos-${o.seed}`,
      credentials: S3_ROOT,
      versioning: s3Versioning(o.seed),
    });
    s.notes.push(`bucket versioning ${s3Versioning(o.seed) ? "on" : "off"} (odd seeds: on)`);
    const ready = await s3.setup(SERVING_TIMEOUT_MS);
    if (!ready.ok) {
      s3.close();
      return harnessFailure(o, s, ready.reason);
    }
  }
  const t0 = performance.now();
  const kv = s3
    ? undefined
    : new KvWorkload(
        cluster,
        {
          clients: o.clients,
          keys: o.keys,
          opsPerKeyMax: o.opsPerKeyMax,
          rateMax: o.rateMax,
          requestTimeoutMs: o.requestTimeoutMs,
          seed: o.seed,
          staleReads: o.staleReads,
        },
        t0,
      );
  const now = () => performance.now() - t0;
  o.log(
    `chaos: ${o.workload === "s3" ? "s3 " : ""}workload for ${o.durationMs / 1000} s with ${faults.length} faults (${s.nemeses.join(",") || "none"})`,
  );
  s3?.start(t0);
  kv?.start();
  const abort = new AbortController();
  const nemesis = runNemesis(
    {
      cluster,
      lab,
      now,
      busiestShard: () => (s3 ? s3.busiestShard() : kv?.busiestShard()),
    },
    faults,
    abort.signal,
  );
  let events: NemesisEvent[] = [];
  try {
    await sleep(o.durationMs);
    abort.abort();
    events = await nemesis;
  } catch (e) {
    problems(s, `nemesis failed: ${(e as Error).message}`);
  }
  // Heal everything (the nemesis healed its last fault; this is the safety net), with the
  // workload still running so the report shows the recovery.
  if (lab) for (const r of await lab.healAll()) if (!r.ok) problems(s, r.message);
  for (const p of await cluster.healProcesses()) problems(s, p);
  const healedAt = now();
  const serving = await cluster.waitServing(SERVING_TIMEOUT_MS);
  if (!serving.ok) problems(s, `after healing: ${serving.reason}`);
  o.log(
    `chaos: healed at ${(healedAt / 1000).toFixed(1)} s; serving again after ${((now() - healedAt) / 1000).toFixed(1)} s`,
  );
  if (s3) {
    await s3.stop();
    return finishS3(o, s, s3, events, now());
  }
  const workload = kv as KvWorkload;
  await workload.stop();
  const workloadEnd = now();
  const ops = [...workload.ops];

  // Final audit: every key, linearizably, through every node; then each node's own replica.
  const finals: ChaosOp[] = [];
  const unreadable: string[] = [];
  for (const key of [...workload.keysUsed].sort()) {
    for (const node of cluster.nodes) {
      let got: ChaosOp | undefined;
      for (let attempt = 0; attempt < FINAL_READ_ATTEMPTS_MAX && !got; attempt++) {
        const op = await workload.invoke(FINAL_CLIENT, node.id, "read", key, "", { final: true });
        if (op.status === "ok") got = op;
        else await sleep(250);
      }
      if (got) finals.push(got);
      else unreadable.push(`${key}@${node.id}`);
    }
  }
  const divergence = await convergence(workload, cluster, finals);
  // The audit's own non-ok attempts stay out of the checked history (they are reads: no effect).

  o.log(`chaos: checking ${ops.length} ops + ${finals.length} final reads`);
  const verdict = checkHistory(ops, finals);
  const avail = availability(ops, 0, workloadEnd);
  const valid =
    verdict.linearizable.ok === true &&
    verdict.durability.ok &&
    verdict.revisions.ok &&
    divergence.length === 0 &&
    unreadable.length === 0 &&
    s.problems.length === 0;
  const report: RunReport = {
    ...reportBase(o, s, events, workloadEnd),
    availability: avail,
    verdict,
    divergence,
    unreadable,
    valid,
  };
  return finishRun(o, cluster, dir, report, [...ops, ...finals], ops, {
    violation:
      verdict.linearizable.ok === false ||
      !verdict.durability.ok ||
      !verdict.revisions.ok ||
      divergence.length > 0,
  });
}

/**
 * Writes the history and the reports into the run's folder, stops the cluster, and decides
 * the exit code: 0 valid; 1 a violation found by the checkers; 2 a harness-level failure (the
 * run could not heal or read back) without a violation.
 */
async function finishRun(
  o: RunOptions,
  cluster: ChaosCluster,
  dir: string,
  report: RunReport,
  history: readonly unknown[],
  timeline: readonly ChaosOp[],
  found: { violation: boolean },
): Promise<RunResult> {
  writeFileSync(
    join(dir, "history.jsonl"),
    history.map((x) => JSON.stringify(x)).join("\n") + "\n",
  );
  const text = textReport(report);
  writeFileSync(join(dir, "report.txt"), text + "\n");
  writeFileSync(
    join(dir, "report.json"),
    JSON.stringify({ ...report, summary: summaryLine(report) }, null, 2),
  );
  writeFileSync(join(dir, "report.html"), htmlReport(report, timeline));
  await cluster.stop();
  // The data directories are evidence when something was found; otherwise they only take space.
  if (report.valid && !o.keepData) rmSync(join(dir, "data"), { recursive: true, force: true });
  const exitCode = report.valid ? 0 : found.violation ? 1 : 2;
  return { report, text, exitCode };
}

/**
 * The S3 workload's end: a listing and reads of every object through every node, the checks
 * (s3checker.ts), the history and the reports.
 */
async function finishS3(
  o: RunOptions,
  s: Setup,
  s3: S3Workload,
  events: NemesisEvent[],
  workloadEnd: number,
): Promise<RunResult> {
  const { cluster, dir } = s;
  const ops = [...s3.ops];
  const audit = await s3.finalAudit(FINAL_READ_ATTEMPTS_MAX, S3_AUDIT_BUDGET_MS);
  s3.close();
  for (const u of audit.unlisted) problems(s, `no listing after healing through ${u}`);
  o.log(`chaos: checking ${ops.length} S3 ops + ${audit.finals.length} final reads and listings`);
  const nodeIds = cluster.nodes.map((n) => n.id);
  const checked = checkS3(ops, audit.finals, nodeIds, {
    unreadable: audit.unreadable,
    oddities: s3.oddities,
    ...(audit.versions
      ? {
          versions: {
            etags: audit.versions,
            md5Of: new Map([...s3.bodies].map(([md5, b]) => [b.sha, md5])),
          },
        }
      : {}),
  });
  const verdict = checked.verdict;
  const chunks = await chunkCopiesAfterHeal(cluster, CHUNK_REPAIR_BUDGET_MS);
  if (chunks.underReplicated > 0)
    problems(s, `${chunks.underReplicated} chunks not back to ${chunks.copiesExpected} copies`);
  // Informational: the same checks with the door's "not executed" 503 messages believed.
  const s3audit = { ...checked.audit, strict: strictRecheck(ops, audit.finals, nodeIds), chunks };
  // The report's timeline and availability: one register op per S3 op (a listing as one read).
  const asOps = reportOps(ops);
  const avail = availability(asOps, 0, workloadEnd);
  const valid =
    verdict.linearizable.ok === true &&
    verdict.durability.ok &&
    s3audit.ok &&
    audit.unreadable.length === 0 &&
    s.problems.length === 0;
  const report: RunReport = {
    ...reportBase(o, s, events, workloadEnd),
    availability: avail,
    verdict,
    divergence: [],
    unreadable: audit.unreadable,
    valid,
    s3: s3audit,
  };
  return finishRun(o, cluster, dir, report, [...ops, ...audit.finals], asOps, {
    violation: verdict.linearizable.ok === false || !verdict.durability.ok || !s3audit.ok,
  });
}

/**
 * Waits (bounded) until every chunk file on any node's disk is on min(chunk replicas, nodes)
 * nodes: the resync queue re-sends what a dead or cut-off replica missed, anti-entropy (every
 * CHAOS_ANTI_ENTROPY here) finds the rest. Assumes the servers' default --chunk-replicas.
 */
async function chunkCopiesAfterHeal(cluster: ChaosCluster, budgetMs: number) {
  const t0 = Date.now();
  const expected = Math.min(CHUNK_REPLICAS_DEFAULT, cluster.nodes.length);
  for (;;) {
    const inventories = new Map<string, Set<string>>();
    for (const n of cluster.nodes)
      inventories.set(n.id, new Set((await ChunkStore.filesIn(join(n.data, "chunks"))).keys()));
    const elapsed = Date.now() - t0;
    const c = chunkCopies(inventories, expected, elapsed);
    if (c.underReplicated === 0 || elapsed > budgetMs) return c;
    await sleep(500);
  }
}

/** What every run's report says of the run itself, whatever the workload. */
function reportBase(o: RunOptions, s: Setup, events: NemesisEvent[], workloadEnd: number) {
  return {
    workload: o.workload,
    seed: o.seed,
    replay: replayCommand(o),
    dir: s.dir,
    network: s.network,
    notes: s.notes,
    durationMs: workloadEnd,
    events,
    problems: s.problems,
  };
}

/** Odd seeds run the S3 workload on a versioned bucket, even seeds on a plain one. */
export function s3Versioning(seed: number): boolean {
  return seed % 2 === 1;
}

function problems(s: Setup, p: string): void {
  s.problems.push(p);
}

/**
 * Each node's own replica must come to hold the final value of every key (stale reads answer
 * from the local replica). A replica that never catches up within the bound has diverged.
 */
async function convergence(
  workload: KvWorkload,
  cluster: ChaosCluster,
  finals: readonly ChaosOp[],
): Promise<string[]> {
  const expected = new Map<string, string | null>();
  for (const f of finals) expected.set(f.key, f.result?.value ?? null);
  const until = Date.now() + CONVERGE_TIMEOUT_MS;
  const out: string[] = [];
  for (const node of cluster.nodes) {
    for (const [key, want] of expected) {
      for (;;) {
        const op = await workload.peek(node.id, key);
        if (op !== undefined && op === want) break;
        if (Date.now() > until) {
          out.push(
            `${node.id} holds ${JSON.stringify(op)} for ${key}, expected ${JSON.stringify(want)}`,
          );
          break;
        }
        await sleep(200);
      }
    }
  }
  return out;
}

function harnessFailure(o: RunOptions, s: Setup, why: string): RunResult {
  s.problems.push(why);
  const report: RunReport = {
    ...reportBase(o, s, [], 0),
    availability: availability([], 0, 0),
    verdict: {
      linearizable: { ok: "unknown", key: "", reason: "not run" },
      nonLinearizableKeys: 0,
      durability: { ok: false, lost: 0, failures: [], unknownKeys: 0 },
      revisions: { ok: true, problems: [] },
      checkMs: 0,
    },
    divergence: [],
    unreadable: [],
    valid: false,
  };
  const text = textReport(report);
  writeFileSync(join(s.dir, "report.txt"), text + "\n");
  return { report, text, exitCode: 2 };
}
