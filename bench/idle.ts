/**
 * `node dist/bench/idle.js`: what idle shards cost. For each configuration it starts real
 * `kumo server` processes (default settings otherwise), waits until every shard has a leader and
 * is quiesced (GET /v1/cluster: `quiesced: true` on every replica; a leader quiesces its group
 * after 2 election timeouts without work), then measures the CPU of every node process over a
 * window (utime + stime from /proc/<pid>/stat, before and after) without touching the cluster
 * meanwhile. The host counters (ticks delivered, Raft messages, cycles) over the same window
 * show whether anything still runs.
 *
 * Configurations (NxS = N nodes, S shards of the default keyspace, min(N, 3) replicas each):
 *   1x1000  one node, `--shards 1000 --replicas 1`, no --join
 *   3x100   three nodes, `--shards 100`  (100 replicas on each node)
 *   3x1000  three nodes, `--shards 1000` (1000 replicas on each node)
 * Kumo has no flag to turn quiescence off, so 3x100 against 3x1000 shows instead whether the idle
 * cost grows with the number of shards.
 *
 * A benchmark, not a test: it prints numbers; docs/benchmarks.md ("Idle shards") records them.
 *
 * Options (flag or environment variable):
 *   --seconds / BENCH_IDLE_SECONDS      measured window per configuration (10)
 *   --configs / BENCH_IDLE_CONFIGS      e.g. "1x1000,3x1000" (1x1000,3x100,3x1000)
 *   --quiet-timeout / BENCH_IDLE_QUIET_TIMEOUT  seconds to wait for quiescence (180)
 *   --dir / BENCH_DIR                   where data directories go (the OS temp directory)
 */
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import {
  type ClusterStatus,
  codeVersion,
  commandLine,
  fmt,
  loadAverage,
  machine,
  type NodeStats,
  numberOption,
  option,
  processCpuSeconds,
  recordPrinted,
  STOP_GRACE_MS,
  sleep,
  startBenchCluster,
  systemCpu,
  table,
} from "./_lib.js";

const seconds = numberOption("seconds", "BENCH_IDLE_SECONDS", 10);
const configSpec = option("configs", "BENCH_IDLE_CONFIGS", "1x1000,3x100,3x1000");
const quietTimeoutS = numberOption("quiet-timeout", "BENCH_IDLE_QUIET_TIMEOUT", 180);
const baseDir = option("dir", "BENCH_DIR", tmpdir());

interface Config {
  readonly name: string;
  readonly nodes: number;
  readonly shards: number;
  readonly replicas: number;
}

const configs: Config[] = configSpec.split(",").map((s) => {
  const m = /^(\d+)x(\d+)$/.exec(s.trim());
  if (!m) throw new Error(`bad configuration ${JSON.stringify(s)}: use NODESxSHARDS, e.g. 1x1000`);
  const nodes = Number(m[1]);
  const shards = Number(m[2]);
  return { name: s.trim(), nodes, shards, replicas: Math.min(3, nodes) };
});

interface Result {
  readonly c: Config;
  readonly args: string[];
  readonly leadersAfterS: number;
  readonly quiescedAfterS: number;
  /** Replicas quiesced / replicas, over all nodes, when the window started and ended. */
  readonly quiescedBefore: [number, number];
  readonly quiescedAfter: [number, number];
  readonly cpu: number[];
  readonly rssMiB: number[];
  readonly windowS: number;
  /** Between the two counter snapshots (slightly longer than the CPU window around it). */
  readonly statsS: number;
  readonly delta: NodeStats[];
  readonly othersCpu: number;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

function quiesced(sts: readonly ClusterStatus[]): [number, number] {
  let q = 0;
  let n = 0;
  for (const st of sts) {
    for (const s of st.shards) {
      if (!s.replicas.includes(st.node)) continue;
      n++;
      if (s.quiesced) q++;
    }
  }
  return [q, n];
}

function sub(a: NodeStats, b: NodeStats): NodeStats {
  const d = (x: Record<string, number>, y: Record<string, number>) =>
    Object.fromEntries(Object.keys(y).map((k) => [k, (y[k] ?? 0) - (x[k] ?? 0)]));
  return {
    host: d(a.host, b.host),
    engine: d(a.engine, b.engine) as NodeStats["engine"],
    transport: d(a.transport, b.transport),
  };
}

async function measure(c: Config): Promise<Result> {
  const args = ["--shards", String(c.shards), "--replicas", String(c.replicas)];
  const t0 = performance.now();
  const cluster = await startBenchCluster({ nodes: c.nodes, args, baseDir });
  const statuses = () => Promise.all(cluster.nodes.map((n) => cluster.status(n.id)));
  try {
    await cluster.waitLeaders(quietTimeoutS * 1000);
    const leadersAfterS = (performance.now() - t0) / 1000;
    const until = performance.now() + quietTimeoutS * 1000;
    let q: [number, number] = [0, 1];
    for (;;) {
      q = quiesced(await statuses());
      if (q[0] === q[1] || performance.now() > until) break;
      await sleep(1000);
    }
    const quiescedAfterS = (performance.now() - t0) / 1000;
    if (q[0] !== q[1]) {
      console.log(
        `  ${c.name}: only ${q[0]} of ${q[1]} replicas quiesced after ${quietTimeoutS} s; measuring anyway`,
      );
    }
    // Let the status requests' own work finish before the window opens.
    await sleep(1000);
    const before = await statuses();
    const s0 = performance.now();
    await sleep(500);
    const pids = cluster.nodes.map((n) => cluster.pid(n.id));
    const cpu0 = pids.map(processCpuSeconds);
    const sys0 = systemCpu();
    const w0 = performance.now();
    await sleep(seconds * 1000);
    const cpu1 = pids.map(processCpuSeconds);
    const sys1 = systemCpu();
    const windowS = (performance.now() - w0) / 1000;
    const after = await statuses();
    const statsS = (performance.now() - s0) / 1000;
    const cpu = cpu1.map((x, i) => (x - (cpu0[i] ?? 0)) / windowS);
    return {
      c,
      args,
      leadersAfterS,
      quiescedAfterS,
      quiescedBefore: quiesced(before),
      quiescedAfter: quiesced(after),
      cpu,
      rssMiB: pids.map(rssMiB),
      windowS,
      statsS,
      delta: after.map((a, i) => sub((before[i] as ClusterStatus).stats, a.stats)),
      othersCpu: Math.max(0, (sys1.busy - sys0.busy) / windowS - cpu.reduce((a, b) => a + b, 0)),
    };
  } catch (e) {
    console.error(cluster.logs());
    throw e;
  } finally {
    await cluster.stop(STOP_GRACE_MS);
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  console.log(`bench:idle — ${new Date().toISOString()}`);
  console.log(`command: ${commandLine()}`);
  console.log(machine(baseDir));
  console.log(`code: ${codeVersion()}`);
  console.log(`load average at start: ${loadAverage()}`);
  console.log(`window: ${seconds} s of CPU per configuration, after every replica is quiesced`);
  const results: Result[] = [];
  for (const c of configs) {
    const r = await measure(c);
    results.push(r);
    const total = r.cpu.reduce((a, b) => a + b, 0);
    console.log(
      `  ${c.name} (kumo server ${r.args.join(" ")}${c.nodes > 1 ? " --join ..." : ""}): leaders after ${r.leadersAfterS.toFixed(1)} s, ` +
        `quiesced after ${r.quiescedAfterS.toFixed(1)} s; CPU ${r.cpu.map((x) => `${fmt(x * 100, 2)}%`).join(" / ")} ` +
        `(${fmt(total, 4)} CPU-s/s in total)`,
    );
  }

  console.log("");
  console.log(
    table(
      [
        "configuration",
        "replicas per node",
        "quiesced (start / end of window)",
        "CPU % per node",
        "CPU-s/s per node",
        "ticks/s per node",
        "raft msgs/s per node",
        "host cycles/s per node",
        "RSS MiB per node",
        "CPU % others",
      ],
      results.map((r) => {
        const n = r.c.nodes;
        const per = (f: (d: NodeStats) => number) =>
          fmt(r.delta.reduce((a, d) => a + f(d), 0) / n / r.statsS, 1);
        const mean = r.cpu.reduce((a, b) => a + b, 0) / n;
        return [
          `${r.c.nodes} node${n > 1 ? "s" : ""} x ${r.c.shards} shards, ${r.c.replicas} replica${r.c.replicas > 1 ? "s" : ""}`,
          String((r.c.shards * r.c.replicas) / n),
          `${r.quiescedBefore[0]}/${r.quiescedBefore[1]} / ${r.quiescedAfter[0]}/${r.quiescedAfter[1]}`,
          r.cpu.map((x) => fmt(x * 100, 2)).join(" / "),
          fmt(mean, 4),
          per((d) => d.host.ticksDelivered ?? 0),
          per((d) => d.host.messagesSent ?? 0),
          per((d) => d.host.cycles ?? 0),
          r.rssMiB.map((x) => fmt(x)).join(" / "),
          fmt(r.othersCpu * 100),
        ];
      }),
    ),
  );
  const by = (name: string) => results.find((r) => r.c.name === name);
  const small = by("3x100");
  const large = by("3x1000");
  if (small && large) {
    const mean = (r: Result) => r.cpu.reduce((a, b) => a + b, 0) / r.c.nodes;
    console.log(
      `3 nodes: 1000 shards cost ${fmt(mean(large) * 100, 2)}% of a core per node idle, 100 shards ${fmt(mean(small) * 100, 2)}% ` +
        `(x${fmt(mean(large) / mean(small), 1)} for x10 shards)`,
    );
  }
  console.log(`load average at end: ${loadAverage()}`);
  console.log(`bench:idle took ${((performance.now() - started) / 1000).toFixed(0)} s`);
}

const recorded = recordPrinted("bench:idle", baseDir);
await main();
recorded();
