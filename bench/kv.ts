/**
 * `node dist/bench/kv.js`: the KV API of a real 3-node cluster (separate `kumo server`
 * processes, default settings: 8 shards of the default keyspace, 3 replicas, LMDB on the local
 * disk) under a closed-loop load generator in this process: node:http with a keep-alive Agent,
 * requests round-robin over the three nodes' API ports, keys from a set of 10,000, 256-byte
 * values (the closed-loop driver is bench/_load.ts's `runLoad`, shared with bench/etcd.ts).
 * Workloads: puts, and a 90/10 get/put mix (linearizable gets), each with 1, 16 and 64
 * concurrent clients, each for a warm-up and then a measured window. Per workload it prints
 * ops/s, p50/p90/p99 latency, errors, fsyncs per acknowledged put (LMDB commits of all nodes
 * over puts acknowledged, and per node), host-loop counters and the CPU of every process. In the
 * same run it measures the disk's raw fsync rate, so the ratios are side by side.
 *
 * A benchmark, not a test: it prints numbers (and how they compare with the targets); it never
 * fails on them. docs/benchmarks.md ("KV") records them.
 *
 * Options (flag or environment variable):
 *   --seconds / BENCH_SECONDS                 measured window per workload (8)
 *   --warmup / BENCH_WARMUP_SECONDS           warm-up before each window (2)
 *   --fsync-seconds / BENCH_FSYNC_SECONDS     raw fsync loop (2)
 *   --workloads / BENCH_WORKLOADS             e.g. "put:64,mix:1" (put:1,put:16,put:64,mix:1,mix:16,mix:64);
 *                                             diagnostics: put-leader:N, get-stale:N (see KINDS)
 *   --wait-quiet / BENCH_WAIT_QUIET           on a shared machine: before the disk test and each workload,
 *                                             wait up to this many seconds for other processes to go idle (0)
 *   --retry-noisy / BENCH_RETRY_NOISY         on a shared machine: measure a workload again (up to this many
 *                                             times) while other processes used more than --noisy-max % of
 *                                             a core during it; the quietest attempt is reported (0)
 *   --noisy-max / BENCH_NOISY_MAX             see --retry-noisy (15)
 *   --preload / BENCH_PRELOAD                 1: write all 10,000 keys first (64 clients); 0: skip
 *   --dir / BENCH_DIR                         where data directories go (the OS temp directory)
 *   --node-args / BENCH_NODE_ARGS             extra `node` flags for every server, space-separated
 *                                             (e.g. "--import ./trace.mjs" to instrument them)
 *   --node-logs / BENCH_NODE_LOGS             1: print the servers' output after they stop
 *   --cpu-prof / BENCH_CPU_PROF               node ids to run under `node --cpu-prof` ("n1", "n1,n2", "all")
 *   --cpu-prof-dir / BENCH_CPU_PROF_DIR       where the .cpuprofile files go (a new temp directory)
 */
import { cpus, tmpdir } from "node:os";
import { initialShardMap } from "../src/shard/index.js";
import {
  type BenchCluster,
  codeVersion,
  commandLine,
  cpuProfArgs,
  fmt,
  loadAverage,
  machine,
  monotonicUs,
  type NodeStats,
  numberOption,
  option,
  processCpuSeconds,
  profilesIn,
  rawFsync,
  recordPrinted,
  STOP_GRACE_MS,
  serverProcessOptions,
  startBenchCluster,
  summarizeProfile,
  systemCpu,
  table,
  waitQuiet,
} from "./_lib.js";
import { benchValue, KEYS, KumoTarget, keyName, preload, quantiles, runLoad } from "./_load.js";

const VALUE_BYTES = 256;
const GET_SHARE = 0.9;

const seconds = numberOption("seconds", "BENCH_SECONDS", 8);
const warmupSeconds = numberOption("warmup", "BENCH_WARMUP_SECONDS", 2);
const fsyncSeconds = numberOption("fsync-seconds", "BENCH_FSYNC_SECONDS", 2);
const workloadSpec = option(
  "workloads",
  "BENCH_WORKLOADS",
  "put:1,put:16,put:64,mix:1,mix:16,mix:64",
);
const baseDir = option("dir", "BENCH_DIR", tmpdir());
const waitQuietS = numberOption("wait-quiet", "BENCH_WAIT_QUIET", 0);
const retryNoisy = numberOption("retry-noisy", "BENCH_RETRY_NOISY", 0);
const noisyMax = numberOption("noisy-max", "BENCH_NOISY_MAX", 15);
const doPreload = option("preload", "BENCH_PRELOAD", "1") !== "0";
const { nodeArgs, showLogs, profNodes, profDir } = serverProcessOptions();

/**
 * put: PUT round-robin over the nodes; mix: 90% linearizable GET / 10% PUT, round-robin.
 * Diagnostics (not in the default set): put-leader sends every PUT to the node leading the
 * key's shard (no forwarding between nodes); get-stale is GET ?consistency=stale round-robin
 * (HTTP and a local read only, no Raft: the floor of the HTTP path).
 */
const KINDS = ["put", "mix", "put-leader", "get-stale"] as const;

interface Workload {
  readonly kind: (typeof KINDS)[number];
  readonly clients: number;
}

const workloads: Workload[] = workloadSpec.split(",").map((s) => {
  const [kind, clients] = s.trim().split(":");
  const n = Number(clients);
  const k = KINDS.find((x) => x === kind);
  if (!k || !Number.isInteger(n) || n < 1) {
    throw new Error(
      `bad workload ${JSON.stringify(s)}: use KIND:CLIENTS, KIND one of ${KINDS.join(", ")}`,
    );
  }
  return { kind: k, clients: n };
});

/** The measured windows, to read the CPU profiles over them only. */
const profileWindows: [number, number][] = [];

const value = benchValue(VALUE_BYTES);

interface Row {
  readonly w: Workload;
  readonly secs: number;
  readonly ops: number;
  readonly puts: number;
  readonly gets: number;
  readonly misses: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly putP50: number;
  readonly putP99: number;
  readonly errors: number;
  readonly errorKinds: ReadonlyMap<string, number>;
  /** Puts acknowledged between the two stats snapshots (the fsync ratio's denominator). */
  readonly putsAcked: number;
  readonly opsAcked: number;
  readonly delta: NodeStats[];
  readonly statsSecs: number;
  readonly serverCpu: number[];
  readonly benchCpu: number;
  /** Busy CPU of the whole machine (all processes), in cores. */
  readonly machineCpu: number;
}

function diff(a: NodeStats, b: NodeStats): NodeStats {
  const sub = (x: Record<string, number>, y: Record<string, number>) =>
    Object.fromEntries(Object.keys(y).map((k) => [k, (y[k] ?? 0) - (x[k] ?? 0)]));
  return {
    host: sub(a.host, b.host),
    engine: sub(a.engine, b.engine) as NodeStats["engine"],
    transport: sub(a.transport, b.transport),
  };
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

/** For each key, the API address of the node leading its shard now (for put-leader). */
async function leaderApis(cluster: BenchCluster): Promise<string[]> {
  const ids = cluster.nodes.map((n) => n.id);
  // The map every node computes at creation: default settings, 8 shards, 3 replicas.
  const map = initialShardMap(ids, 8, 3);
  const st = await cluster.status("n1");
  const leaderOf = new Map(st.shards.map((s) => [s.id, s.leader]));
  const apiOf = new Map(cluster.nodes.map((n) => [n.id, n.api]));
  return Array.from({ length: KEYS }, (_, i) => {
    const key = new TextEncoder().encode(keyName(i));
    const shard = map.locate("default", key);
    const api = apiOf.get(leaderOf.get(shard?.id ?? "") ?? "");
    if (!api) throw new Error(`no leader known for the shard of ${keyName(i)}`);
    return api;
  });
}

async function run(cluster: BenchCluster, w: Workload): Promise<Row> {
  const apis = cluster.nodes.map((n) => n.api);
  const leaderApi = w.kind === "put-leader" ? await leaderApis(cluster) : [];
  const target = new KumoTarget(apis, cluster.token, w.clients, {
    ...(w.kind === "put-leader" ? { route: (k: number) => leaderApi[k] as string } : {}),
    ...(w.kind === "get-stale" ? { getQuery: "?consistency=stale" } : {}),
  });
  const pids = cluster.nodes.map((n) => cluster.pid(n.id));

  // At the start of the measured window: counters and CPU of every process.
  let before: NodeStats[] = [];
  let cpuBefore: number[] = [];
  let benchCpuBefore = process.cpuUsage();
  let sysBefore = systemCpu();
  let statsFrom = 0;
  let windowFromUs = 0;
  const r = await runLoad(target, {
    clients: w.clients,
    warmupMs: warmupSeconds * 1000,
    measureMs: seconds * 1000,
    keys: KEYS,
    getShare: w.kind === "mix" ? GET_SHARE : w.kind === "get-stale" ? 1 : 0,
    value,
    label: `${w.kind}:${w.clients}`,
    onWindowStart: async () => {
      statsFrom = performance.now();
      windowFromUs = monotonicUs();
      cpuBefore = pids.map(processCpuSeconds);
      benchCpuBefore = process.cpuUsage();
      sysBefore = systemCpu();
      before = await cluster.stats();
    },
  });
  // Every client has stopped and every request it sent is answered (or timed out): the
  // counters now cover exactly the acknowledged puts counted since the first snapshot.
  const cpuAfter = pids.map(processCpuSeconds);
  const benchCpu = process.cpuUsage(benchCpuBefore);
  const sysAfter = systemCpu();
  const statsSecs = (performance.now() - statsFrom) / 1000;
  profileWindows.push([windowFromUs, monotonicUs()]);
  const after = await cluster.stats();
  target.close();

  const q = quantiles(r.lat);
  const qp = quantiles(r.putLat);
  return {
    w,
    secs: r.secs,
    ops: r.ops,
    puts: r.puts,
    gets: r.gets,
    misses: r.misses,
    p50: q.p50,
    p90: q.p90,
    p99: q.p99,
    putP50: qp.p50,
    putP99: qp.p99,
    errors: r.errors,
    errorKinds: r.errorKinds,
    putsAcked: r.putsAcked,
    opsAcked: r.opsAcked,
    delta: after.map((a, i) => diff(before[i] as NodeStats, a)),
    statsSecs,
    serverCpu: cpuAfter.map((c, i) => (c - (cpuBefore[i] ?? 0)) / statsSecs),
    benchCpu: (benchCpu.user + benchCpu.system) / 1e6 / statsSecs,
    machineCpu: (sysAfter.busy - sysBefore.busy) / statsSecs,
  };
}

function name(w: Workload): string {
  switch (w.kind) {
    case "put":
      return "put";
    case "mix":
      return "90% get / 10% put";
    case "put-leader":
      return "put, to the shard leader (diagnostic)";
    case "get-stale":
      return "stale get (diagnostic)";
  }
}

/** CPU used by processes outside the benchmark during the window, in cores. */
function othersCpu(r: Row): number {
  return Math.max(0, r.machineCpu - sum(r.serverCpu) - r.benchCpu);
}

function fsyncsPerPut(r: Row): { all: number; perNode: number } {
  const syncs = sum(r.delta.map((d) => d.engine.syncs));
  const all = r.putsAcked > 0 ? syncs / r.putsAcked : Number.NaN;
  return { all, perNode: all / r.delta.length };
}

function resultTable(rows: readonly Row[]): string {
  return table(
    [
      "workload",
      "clients",
      "ops/s",
      "puts/s",
      "p50 ms",
      "p90 ms",
      "p99 ms",
      "put p99 ms",
      "errors",
      "fsyncs/put (3 nodes)",
      "fsyncs/put per node",
    ],
    rows.map((r) => {
      const f = fsyncsPerPut(r);
      return [
        name(r.w),
        String(r.w.clients),
        fmt(r.ops / r.secs),
        fmt(r.puts / r.secs),
        fmt(r.p50, 2),
        fmt(r.p90, 2),
        fmt(r.p99, 2),
        fmt(r.putP99, 2),
        String(r.errors),
        fmt(f.all, 3),
        fmt(f.perNode, 3),
      ];
    }),
  );
}

function counterTable(rows: readonly Row[]): string {
  return table(
    [
      "workload",
      "clients",
      "host cycles/s per node",
      "fsyncs/s per node",
      "readies/cycle",
      "entries/fsync",
      "raft msgs/op",
      "msgs/batch",
      "server CPU ms/op",
      "CPU % n1 / n2 / n3",
      "CPU % bench",
      "CPU % machine",
      "CPU % others",
    ],
    rows.map((r) => {
      const n = r.delta.length;
      const get = (f: (d: NodeStats) => number) => sum(r.delta.map(f));
      const cycles = get((d) => d.host.cycles ?? 0);
      const syncs = get((d) => d.engine.syncs);
      const cpu = r.serverCpu.map((c) => fmt(c * 100));
      return [
        name(r.w),
        String(r.w.clients),
        fmt(cycles / n / r.statsSecs),
        fmt(syncs / n / r.statsSecs),
        fmt(get((d) => d.host.readies ?? 0) / cycles, 2),
        fmt(get((d) => d.host.entriesPersisted ?? 0) / syncs, 1),
        fmt(get((d) => d.host.messagesSent ?? 0) / r.opsAcked, 2),
        fmt(get((d) => d.host.messagesSent ?? 0) / get((d) => d.host.batchesSent ?? 0), 1),
        fmt((sum(r.serverCpu) * r.statsSecs * 1000) / r.opsAcked, 2),
        cpu.join(" / "),
        fmt(r.benchCpu * 100),
        fmt(r.machineCpu * 100),
        fmt(othersCpu(r) * 100),
      ];
    }),
  );
}

function verdicts(rows: readonly Row[]): string[] {
  const out: string[] = [];
  const find = (kind: Workload["kind"], clients: number) =>
    rows.find((r) => r.w.kind === kind && r.w.clients === clients);
  const p64 = find("put", 64);
  if (p64) {
    const rate = p64.puts / p64.secs;
    out.push(
      `put, 64 clients: ${fmt(rate)} puts/s (target >= 1,700: ${rate >= 1700 ? "meets" : "MISSES"}), ` +
        `p99 ${fmt(p64.p99, 1)} ms (target <= 100: ${p64.p99 <= 100 ? "meets" : "MISSES"}), ` +
        `fsyncs/put per node ${fmt(fsyncsPerPut(p64).perNode, 3)} (target well below 1: ${fsyncsPerPut(p64).perNode < 0.5 ? "meets" : "MISSES"})`,
    );
  }
  const p1 = find("put", 1);
  if (p1) {
    out.push(
      `put, 1 client: p50 ${fmt(p1.p50, 2)} ms (target <= 4: ${p1.p50 <= 4 ? "meets" : "MISSES"})`,
    );
  }
  return out;
}

async function main(): Promise<void> {
  const started = performance.now();
  console.log(`bench:kv — ${new Date().toISOString()}`);
  console.log(`command: ${commandLine()}`);
  console.log(machine(baseDir));
  console.log(`code: ${codeVersion()}`);
  console.log(`load average at start: ${loadAverage()}`);
  console.log(
    `cluster: 3 kumo server processes on 127.0.0.1, default settings (8 shards, 3 replicas); ` +
      `${KEYS} keys, ${VALUE_BYTES}-byte values; ${warmupSeconds} s warm-up + ${seconds} s measured per workload`,
  );

  if (waitQuietS > 0) console.log(await waitQuiet(waitQuietS * 1000));
  const disk = rawFsync(baseDir, fsyncSeconds * 1000);
  console.log(
    `disk: raw 4 KiB write + fdatasync: ${fmt(disk.fsyncsPerSec)} fsyncs/s (p50 ${fmt(disk.p50Ms, 3)} ms, p99 ${fmt(disk.p99Ms, 3)} ms)`,
  );

  const profiled = profNodes === "all" ? ["n1", "n2", "n3"] : profNodes.split(",").filter((s) => s);
  const cluster = await startBenchCluster({
    nodes: 3,
    baseDir,
    nodeArgs: (id) => [...nodeArgs, ...(profiled.includes(id) ? cpuProfArgs(profDir, id) : [])],
  });
  const rows: Row[] = [];
  try {
    await cluster.waitLeaders(60_000);
    const st = await cluster.status("n1");
    const leads = new Map<string, number>();
    for (const s of st.shards)
      leads.set(s.leader ?? "none", (leads.get(s.leader ?? "none") ?? 0) + 1);
    console.log(
      `cluster up after ${((performance.now() - started) / 1000).toFixed(1)} s; shard leaders: ${[
        ...leads,
      ]
        .sort()
        .map(([n, c]) => `${n}=${c}`)
        .join(" ")}`,
    );
    if (doPreload) {
      const pre = new KumoTarget(
        cluster.nodes.map((n) => n.api),
        cluster.token,
        64,
      );
      console.log(await preload(pre, KEYS, value));
      pre.close();
    } else {
      console.log(
        "no preload (BENCH_PRELOAD=0): gets of keys not written yet answer 404 (counted as misses)",
      );
    }

    for (const w of workloads) {
      let best: Row | undefined;
      for (let attempt = 0; attempt <= retryNoisy; attempt++) {
        if (waitQuietS > 0) console.log(`  ${await waitQuiet(waitQuietS * 1000)}`);
        const r = await run(cluster, w);
        const f = fsyncsPerPut(r);
        const errs = [...r.errorKinds].map(([k, v]) => `${k}=${v}`).join(" ");
        console.log(
          `  ${name(w)}, ${w.clients} clients: ${fmt(r.ops / r.secs)} ops/s, p50 ${fmt(r.p50, 2)} / p90 ${fmt(r.p90, 2)} / p99 ${fmt(r.p99, 2)} ms, ` +
            `${r.errors} errors${errs ? ` (${errs})` : ""}, ${fmt(f.all, 3)} fsyncs/put (${fmt(f.perNode, 3)} per node)` +
            (r.misses > 0 ? `, ${r.misses} get misses` : "") +
            `; other processes used ${fmt(othersCpu(r) * 100)}% CPU`,
        );
        if (!best || othersCpu(r) < othersCpu(best)) best = r;
        if (othersCpu(r) <= noisyMax / 100) break;
        if (attempt < retryNoisy) console.log("    noisy (other processes busy): measuring again");
      }
      if (best) rows.push(best);
    }
  } catch (e) {
    console.error(cluster.logs());
    throw e;
  } finally {
    await cluster.stop(STOP_GRACE_MS);
  }
  if (showLogs) console.log(cluster.logs());

  console.log("");
  console.log(resultTable(rows));
  console.log("");
  console.log(
    "per-node counters over each measured window (GET /v1/cluster deltas; CPU from /proc, 100% = one core; others = processes outside this benchmark):",
  );
  console.log(counterTable(rows));
  console.log("");
  console.log(
    `disk floor: ${fmt(disk.fsyncsPerSec)} fsyncs/s raw; ${cpus().length} cores shared by 3 servers and the load generator`,
  );
  for (const v of verdicts(rows)) console.log(`target: ${v}`);
  console.log(`load average at end: ${loadAverage()}`);
  console.log(`bench:kv took ${((performance.now() - started) / 1000).toFixed(0)} s`);

  if (profiled.length > 0) {
    for (const f of profilesIn(profDir)) {
      console.log("");
      console.log(summarizeProfile(f, 25, profileWindows));
    }
  }
}

const recorded = recordPrinted("bench:kv", baseDir);
await main();
recorded();
