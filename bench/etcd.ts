/**
 * `node dist/bench/etcd.js` (`npm run bench:etcd`): Kumo and etcd side by side, in one run, on
 * the same machine, under the same load generator.
 *
 * - Kumo: 3 `kumo server` processes on 127.0.0.1, default settings (8 shards of the default
 *   keyspace, 3 replicas, LMDB behind a write-ahead log, fsync before every acknowledgement).
 * - etcd: a real 3-member etcd cluster on 127.0.0.1 (Debian's `etcd-server`, installed with
 *   apt-get when missing and this process is root), default durability (the WAL is fdatasynced
 *   before a write is acknowledged), only `--quota-backend-bytes` raised (8 GiB) so that the
 *   64 KiB workload cannot hit the default 2 GiB alarm.
 * - The load generator is bench/_load.ts's `runLoad` for both: the same closed loop, key
 *   choice (uniform over 10,000 keys), value, warm-up and measured window; only the target
 *   differs. Kumo's target is the KV HTTP API (keep-alive node:http, requests round-robin over the
 *   3 nodes, linearizable gets: Kumo's default); etcd's is the `etcd3` npm client (gRPC over
 *   @grpc/grpc-js, one client per member, requests round-robin over the 3 members, `Range` with
 *   `serializable: false`, i.e. linearizable). Both clusters run during the whole benchmark;
 *   each workload runs on both with the same durations, in rounds that alternate (Kumo, etcd,
 *   etcd, Kumo), so that other processes' load on a shared machine weighs on both alike.
 * - In the same run: the disk's fsync rate (4 KiB write + fdatasync), its sequential write
 *   bandwidth and loopback TCP bandwidth; per workload and side: syncs per write (Kumo: WAL rounds
 *   plus LMDB commits from GET /v1/cluster; etcd: WAL fsyncs plus backend commits from /metrics),
 *   the disk's flush requests per write (from /sys/class/block, machine-wide), and the servers'
 *   CPU (from /proc).
 *
 * It prints the tables and the targets (Kumo/etcd ratios) with met/missed. A benchmark, not a
 * test: it never fails on a number. docs/benchmarks.md ("Kumo and etcd side by side") records
 * selected runs; every run is added to its "Recorded runs" section (`--no-record` to skip).
 *
 * Options (flag or environment variable):
 *   --quick / BENCH_QUICK=1                   put:1, put:64, get:64, mix:64 with 0.5 s warm-up + 2 s
 *                                             windows, shorter floors (under 90 s in all)
 *   --seconds / BENCH_SECONDS                 measured time per workload and side (10; quick: 2)
 *   --rounds / BENCH_ROUNDS                   split into this many windows per side, in the order Kumo,
 *                                             etcd, etcd, Kumo, ... (2; quick: 1)
 *   --warmup / BENCH_WARMUP_SECONDS           warm-up before each window (1.5; quick: 0.5)
 *   --workloads / BENCH_ETCD_WORKLOADS        KIND:CLIENTS[:VALUE], KIND put, get (linearizable) or mix
 *                                             (90% get / 10% put), VALUE in bytes or with k (256), e.g.
 *                                             "put:64,put:16:64k" (default: put:1,put:16,put:64,put:256,
 *                                             get:64,mix:64,put:16:1k,put:16:64k)
 *   --etcd / BENCH_ETCD                       the etcd binary (default: etcd on the PATH); "none": Kumo only
 *   --install / BENCH_ETCD_INSTALL            0: never apt-get install etcd-server (1)
 *   --fsync-seconds / BENCH_FSYNC_SECONDS     raw fsync loop (2; quick: 1)
 *   --disk-mib / BENCH_DISK_MIB               sequential write test size (256; quick: 64)
 *   --loopback-seconds / BENCH_LOOPBACK_SECONDS  loopback TCP test (2; quick: 0.5)
 *   --wait-quiet / BENCH_WAIT_QUIET           before the floors and each workload, wait up to this many
 *                                             seconds for other processes to go idle (0)
 *   --dir / BENCH_DIR                         where data directories go (the OS temp directory)
 *   --node-args / BENCH_NODE_ARGS, --node-logs / BENCH_NODE_LOGS   as for bench/kv.ts
 *   --no-record / BENCH_RECORD=0              do not add the run to docs/benchmarks.md
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { accessSync, constants, existsSync, mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { Etcd3 } from "etcd3";
import { freePort, killProcess } from "../test/integration/_cluster.js";
import {
  type BenchCluster,
  diskFlushes,
  fmt,
  loadAverage,
  loopbackBandwidth,
  numberOption,
  onInterrupt,
  option,
  processCpuSeconds,
  rawFsync,
  rawSeqWrite,
  recordRun,
  reportHeader,
  STOP_GRACE_MS,
  serverProcessOptions,
  sleep,
  startBenchCluster,
  systemCpu,
  table,
  textBlock,
  waitQuiet,
} from "./_lib.js";
import {
  benchValue,
  KEYS,
  KumoTarget,
  type KvTarget,
  keyName,
  type LoadResult,
  MISS,
  mergeLoad,
  OK,
  type OpResult,
  preload,
  quantiles,
  runLoad,
} from "./_load.js";

// ------------------------------------------------------------------ options

const flag = (name: string, env: string) =>
  process.argv.includes(`--${name}`) || process.env[env] === "1";
const quick = flag("quick", "BENCH_QUICK");
const seconds = numberOption("seconds", "BENCH_SECONDS", quick ? 2 : 10);
const warmupSeconds = numberOption("warmup", "BENCH_WARMUP_SECONDS", quick ? 0.5 : 1.5);
const fsyncSeconds = numberOption("fsync-seconds", "BENCH_FSYNC_SECONDS", quick ? 1 : 2);
const diskMiB = numberOption("disk-mib", "BENCH_DISK_MIB", quick ? 64 : 256);
const loopbackSeconds = numberOption("loopback-seconds", "BENCH_LOOPBACK_SECONDS", quick ? 0.5 : 2);
const rounds = Math.max(1, Math.round(numberOption("rounds", "BENCH_ROUNDS", quick ? 1 : 2)));
const waitQuietS = numberOption("wait-quiet", "BENCH_WAIT_QUIET", 0);
const baseDir = option("dir", "BENCH_DIR", tmpdir());
const etcdOption = option("etcd", "BENCH_ETCD", "");
const installAllowed = option("install", "BENCH_ETCD_INSTALL", "1") !== "0";
const workloadSpec = option(
  "workloads",
  "BENCH_ETCD_WORKLOADS",
  quick
    ? "put:1,put:64,get:64,mix:64"
    : "put:1,put:16,put:64,put:256,get:64,mix:64,put:16:1k,put:16:64k",
);
const { nodeArgs, showLogs } = serverProcessOptions();

const GET_SHARE_MIX = 0.9;
const ETCD_QUOTA_BYTES = 8 * 2 ** 30;
/** Per-operation timeout of both clients. */
const OP_TIMEOUT_MS = 15_000;

type Kind = "put" | "get" | "mix";

interface Workload {
  readonly kind: Kind;
  readonly clients: number;
  readonly valueBytes: number;
}

function parseBytes(s: string): number {
  const m = /^(\d+)(k|kib)?$/i.exec(s);
  if (!m) return Number.NaN;
  return Number(m[1]) * (m[2] ? 1024 : 1);
}

const workloads: Workload[] = workloadSpec.split(",").map((spec) => {
  const [kind, clients, size] = spec.trim().split(":");
  const n = Number(clients);
  const bytes = size === undefined ? 256 : parseBytes(size);
  if (
    (kind !== "put" && kind !== "get" && kind !== "mix") ||
    !Number.isInteger(n) ||
    n < 1 ||
    !Number.isInteger(bytes) ||
    bytes < 1
  ) {
    throw new Error(
      `bad workload ${JSON.stringify(spec)}: use KIND:CLIENTS[:VALUE], KIND put, get or mix, e.g. put:16:64k`,
    );
  }
  return { kind, clients: n, valueBytes: bytes };
});

const sizeName = (b: number) => (b % 1024 === 0 ? `${b / 1024} KiB` : `${b} B`);

function workloadName(w: Workload): string {
  const what =
    w.kind === "put" ? "put" : w.kind === "get" ? "linearizable get" : "90% get / 10% put";
  return `${what} ${sizeName(w.valueBytes)}`;
}

// ------------------------------------------------------------------ the etcd binary

function onPath(name: string): string | undefined {
  for (const d of (process.env.PATH ?? "").split(delimiter)) {
    if (!d) continue;
    const p = join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not there
    }
  }
  return undefined;
}

/** The etcd binary to run, installing Debian's etcd-server when missing (root and apt-get). */
function findEtcd(): { bin?: string; note?: string } {
  if (etcdOption === "none" || etcdOption === "0") return { note: "etcd: skipped (--etcd none)" };
  if (etcdOption !== "") {
    return existsSync(etcdOption)
      ? { bin: etcdOption }
      : { note: `etcd: ${etcdOption} does not exist` };
  }
  const found = onPath("etcd") ?? (existsSync("/usr/bin/etcd") ? "/usr/bin/etcd" : undefined);
  if (found) return { bin: found };
  const apt = onPath("apt-get");
  if (!installAllowed || process.getuid?.() !== 0 || !apt) {
    return {
      note:
        "etcd: not installed, and this run cannot install it (it needs root and apt-get" +
        (installAllowed ? "" : ", and BENCH_ETCD_INSTALL=0 forbids it") +
        "). Install Debian's etcd-server (`apt-get install etcd-server`) or pass --etcd /path/to/etcd.",
    };
  }
  console.log("etcd: not installed; installing Debian's etcd-server with apt-get ...");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  try {
    execFileSync(apt, ["update", "-qq"], { env, stdio: ["ignore", "ignore", "pipe"] });
    execFileSync(apt, ["install", "-y", "-qq", "etcd-server"], {
      env,
      stdio: ["ignore", "ignore", "pipe"],
    });
  } catch (e) {
    const err = (e as { stderr?: Buffer }).stderr?.toString().trim().split("\n").slice(-3);
    return { note: `etcd: apt-get install etcd-server failed: ${err?.join(" / ") ?? e}` };
  }
  const bin = onPath("etcd") ?? (existsSync("/usr/bin/etcd") ? "/usr/bin/etcd" : undefined);
  return bin
    ? { bin, note: "etcd: installed Debian's etcd-server" }
    : { note: "etcd: etcd-server installed but no etcd binary found" };
}

function etcdVersion(bin: string): string {
  try {
    const out = execFileSync(bin, ["--version"], { encoding: "utf8" });
    const v = /etcd Version: (\S+)/.exec(out)?.[1] ?? "?";
    const go = /Go Version: (\S+)/.exec(out)?.[1];
    return `etcd ${v}${go ? ` (${go})` : ""}`;
  } catch {
    return "etcd (version unknown)";
  }
}

// ------------------------------------------------------------------ the etcd cluster

interface EtcdMember {
  readonly name: string;
  readonly client: string;
  readonly peer: string;
  readonly dir: string;
  proc: ChildProcess | undefined;
  readonly log: string[];
}

/** etcd processes and data directories not stopped yet: killed and removed on exit. */
const liveEtcd = new Set<ChildProcess>();
const liveDirs = new Set<string>();
process.on("exit", () => {
  for (const p of liveEtcd) p.kill("SIGKILL");
  for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
});

/** The counters of etcd's /metrics this benchmark reads, summed over the members. */
interface EtcdCounters {
  readonly walFsyncs: number;
  readonly backendCommits: number;
}

class EtcdCluster {
  private constructor(
    readonly members: EtcdMember[],
    readonly dir: string,
  ) {}

  /** Starts 3 members on free 127.0.0.1 ports; resolves once every member reports healthy. */
  static async start(bin: string, parent: string, timeoutMs = 60_000): Promise<EtcdCluster> {
    const dir = mkdtempSync(join(parent, "kumo-bench-etcd-"));
    liveDirs.add(dir);
    const members: EtcdMember[] = [];
    for (let i = 1; i <= 3; i++) {
      members.push({
        name: `e${i}`,
        client: `127.0.0.1:${await freePort()}`,
        peer: `127.0.0.1:${await freePort()}`,
        dir: join(dir, `e${i}`),
        proc: undefined,
        log: [],
      });
    }
    const c = new EtcdCluster(members, dir);
    const initial = members.map((m) => `${m.name}=http://${m.peer}`).join(",");
    // ETCD_* variables are etcd flags too: none from this environment may change the setup.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith("ETCD_")),
    );
    for (const m of members) {
      const proc = spawn(
        bin,
        [
          "--name",
          m.name,
          "--data-dir",
          m.dir,
          "--listen-client-urls",
          `http://${m.client}`,
          "--advertise-client-urls",
          `http://${m.client}`,
          "--listen-peer-urls",
          `http://${m.peer}`,
          "--initial-advertise-peer-urls",
          `http://${m.peer}`,
          "--initial-cluster",
          initial,
          "--initial-cluster-state",
          "new",
          "--initial-cluster-token",
          `kumo-bench-${process.pid}`,
          "--quota-backend-bytes",
          String(ETCD_QUOTA_BYTES),
          "--logger",
          "zap",
          "--log-level",
          "warn",
          "--log-outputs",
          "stderr",
        ],
        { env, stdio: ["ignore", "pipe", "pipe"] },
      );
      m.proc = proc;
      liveEtcd.add(proc);
      const keep = (d: Buffer) => {
        m.log.push(d.toString());
        if (m.log.length > 200) m.log.shift();
      };
      proc.stdout?.on("data", keep);
      proc.stderr?.on("data", keep);
      proc.once("exit", (code, sig) => {
        liveEtcd.delete(proc);
        m.proc = undefined;
        m.log.push(`(exited: ${code ?? sig})\n`);
      });
    }
    try {
      const until = performance.now() + timeoutMs;
      for (;;) {
        const dead = members.find((m) => !m.proc);
        if (dead) throw new Error(`etcd member ${dead.name} exited while starting`);
        const healthy = await Promise.all(members.map((m) => c.healthy(m)));
        if (healthy.every((h) => h)) break;
        if (performance.now() > until) throw new Error("etcd cluster not healthy in time");
        await sleep(100);
      }
    } catch (e) {
      console.error(c.logs());
      await c.stop();
      throw e;
    }
    return c;
  }

  private async healthy(m: EtcdMember): Promise<boolean> {
    try {
      const r = await fetch(`http://${m.client}/health`, { signal: AbortSignal.timeout(2000) });
      const body = (await r.json()) as { health?: string };
      return r.ok && body.health === "true";
    } catch {
      return false;
    }
  }

  endpoints(): string[] {
    return this.members.map((m) => m.client);
  }

  pids(): number[] {
    return this.members.map((m) => m.proc?.pid ?? -1);
  }

  async counters(): Promise<EtcdCounters> {
    const texts = await Promise.all(
      this.members.map(async (m) => {
        const r = await fetch(`http://${m.client}/metrics`, {
          signal: AbortSignal.timeout(10_000),
        });
        return r.text();
      }),
    );
    const metric = (text: string, name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
    const total = (name: string) => texts.reduce((a, t) => a + metric(t, name), 0);
    return {
      walFsyncs: total("etcd_disk_wal_fsync_duration_seconds_count"),
      backendCommits: total("etcd_disk_backend_commit_duration_seconds_count"),
    };
  }

  /** SIGTERM every member, SIGKILL after `graceMs`; removes the data directories. */
  async stop(graceMs = 10_000): Promise<void> {
    await Promise.all(
      this.members.map((m) => (m.proc ? killProcess(m.proc, "SIGTERM", graceMs) : undefined)),
    );
    rmSync(this.dir, { recursive: true, force: true });
    liveDirs.delete(this.dir);
  }

  logs(): string {
    return this.members.map((m) => `--- etcd ${m.name}\n${m.log.join("")}`).join("\n");
  }
}

/**
 * etcd through the `etcd3` client: one client (one gRPC channel) per member, each operation to
 * the next member in turn; `Put`, and `Range` of one key with `serializable: false`
 * (linearizable: the member confirms with the leader, ReadIndex, before it answers).
 */
class EtcdTarget implements KvTarget {
  private readonly clients: Etcd3[];
  private readonly keys: Buffer[];
  private rr = 0;

  constructor(endpoints: readonly string[]) {
    this.clients = endpoints.map(
      (e) =>
        new Etcd3({
          hosts: `http://${e}`,
          defaultCallOptions: () => ({ deadline: Date.now() + OP_TIMEOUT_MS }),
        }),
    );
    this.keys = Array.from({ length: KEYS }, (_, i) => Buffer.from(keyName(i)));
  }

  private next(): Etcd3 {
    return this.clients[this.rr++ % this.clients.length] as Etcd3;
  }

  async put(key: number, value: Buffer): Promise<OpResult> {
    await this.next().kv.put({ key: this.keys[key] as Buffer, value });
    return OK;
  }

  async get(key: number): Promise<OpResult> {
    const r = await this.next().kv.range({ key: this.keys[key] as Buffer, serializable: false });
    return r.kvs.length > 0 ? OK : MISS;
  }

  close(): void {
    for (const c of this.clients) c.close();
  }
}

// ------------------------------------------------------------------ one side of a workload

type SideName = "Kumo" | "etcd";

interface Side {
  readonly name: SideName;
  readonly pids: () => number[];
  /** Durable syncs so far, summed over the 3 servers. */
  readonly syncs: () => Promise<number>;
  readonly target: (clients: number) => KvTarget;
}

interface Measured {
  readonly r: LoadResult;
  readonly p50: number;
  readonly p99: number;
  /** From the window's start until every loop stopped (what the counters below cover). */
  readonly spanSecs: number;
  readonly syncs: number;
  /** Flush requests of the disk over the span (every process), if the kernel counts them. */
  readonly flushes: number | undefined;
  /** CPU-seconds of the 3 servers over the span. */
  readonly serverCpu: number;
  readonly benchCpu: number;
  /** CPU-seconds of the whole machine, of the other side's (idle) servers. */
  readonly machineCpu: number;
  readonly idleSideCpu: number;
}

/** The rounds of one workload on one side, as one measurement. */
function merge(ms: readonly Measured[]): Measured {
  const add = (f: (m: Measured) => number) => ms.reduce((a, m) => a + f(m), 0);
  const r = mergeLoad(ms.map((m) => m.r));
  const q = quantiles(r.lat);
  return {
    r,
    p50: q.p50,
    p99: q.p99,
    spanSecs: add((m) => m.spanSecs),
    syncs: add((m) => m.syncs),
    flushes: ms.some((m) => m.flushes === undefined) ? undefined : add((m) => m.flushes ?? 0),
    serverCpu: add((m) => m.serverCpu),
    benchCpu: add((m) => m.benchCpu),
    machineCpu: add((m) => m.machineCpu),
    idleSideCpu: add((m) => m.idleSideCpu),
  };
}

async function measure(
  side: Side,
  idle: Side | undefined,
  w: Workload,
  measureMs: number,
): Promise<Measured> {
  const target = side.target(w.clients);
  const pids = side.pids();
  const idlePids = idle?.pids() ?? [];
  const cpuOf = (ps: number[]) => ps.reduce((a, p) => a + processCpuSeconds(p), 0);
  let from = 0;
  let syncs0 = 0;
  let flush0: number | undefined;
  let cpu0 = 0;
  let idle0 = 0;
  let bench0 = process.cpuUsage();
  let sys0 = systemCpu();
  try {
    const r = await runLoad(target, {
      clients: w.clients,
      warmupMs: warmupSeconds * 1000,
      measureMs,
      keys: KEYS,
      getShare: w.kind === "get" ? 1 : w.kind === "mix" ? GET_SHARE_MIX : 0,
      label: `${side.name} ${w.kind}:${w.clients}`,
      value: benchValue(w.valueBytes),
      onWindowStart: async () => {
        from = performance.now();
        cpu0 = cpuOf(pids);
        idle0 = cpuOf(idlePids);
        bench0 = process.cpuUsage();
        sys0 = systemCpu();
        flush0 = diskFlushes(baseDir);
        syncs0 = await side.syncs().catch(() => Number.NaN);
      },
    });
    const cpu1 = cpuOf(pids);
    const idle1 = cpuOf(idlePids);
    const bench = process.cpuUsage(bench0);
    const sys1 = systemCpu();
    const flush1 = diskFlushes(baseDir);
    const spanSecs = (performance.now() - from) / 1000;
    const syncs1 = await side.syncs().catch(() => Number.NaN);
    const q = quantiles(r.lat);
    return {
      r,
      p50: q.p50,
      p99: q.p99,
      spanSecs,
      syncs: syncs1 - syncs0,
      flushes: flush0 !== undefined && flush1 !== undefined ? flush1 - flush0 : undefined,
      serverCpu: cpu1 - cpu0,
      benchCpu: (bench.user + bench.system) / 1e6,
      machineCpu: sys1.busy - sys0.busy,
      idleSideCpu: idle1 - idle0,
    };
  } finally {
    target.close();
  }
}

/** CPU of processes outside this benchmark and the 6 servers, in cores. */
const othersCpu = (m: Measured) =>
  Math.max(0, m.machineCpu - m.serverCpu - m.idleSideCpu - m.benchCpu) / m.spanSecs;

/** Writes acknowledged over the span (the denominator of the per-write figures). */
const writes = (m: Measured) => m.r.putsAcked;

const perWrite = (n: number | undefined, m: Measured) =>
  n !== undefined && writes(m) > 0 ? n / writes(m) : Number.NaN;

// ------------------------------------------------------------------ tables and targets

interface Row {
  readonly w: Workload;
  readonly kumo: Measured;
  readonly etcd: Measured | undefined;
}

const ratio = (a: number, b: number | undefined) =>
  b !== undefined && b > 0 && Number.isFinite(a) ? a / b : Number.NaN;
const fr = (x: number) => (Number.isFinite(x) ? `${fmt(x, 2)}×` : "-");
const ms = (x: number | undefined) => (x === undefined ? "-" : fmt(x, x < 10 ? 2 : 1));
const rate = (m: Measured | undefined) => (m ? m.r.ops / m.r.secs : Number.NaN);

function resultTable(rows: readonly Row[]): string {
  return table(
    [
      "workload",
      "clients",
      "ops/s Kumo",
      "ops/s etcd",
      "ratio",
      "p50 ms Kumo",
      "p50 ms etcd",
      "ratio",
      "p99 ms Kumo",
      "p99 ms etcd",
      "ratio",
      "errors Kumo / etcd",
    ],
    rows.map((x) => [
      workloadName(x.w),
      String(x.w.clients),
      fmt(rate(x.kumo)),
      x.etcd ? fmt(rate(x.etcd)) : "-",
      fr(ratio(rate(x.kumo), rate(x.etcd))),
      ms(x.kumo.p50),
      ms(x.etcd?.p50),
      fr(ratio(x.kumo.p50, x.etcd?.p50)),
      ms(x.kumo.p99),
      ms(x.etcd?.p99),
      fr(ratio(x.kumo.p99, x.etcd?.p99)),
      `${x.kumo.r.errors} / ${x.etcd ? x.etcd.r.errors : "-"}`,
    ]),
  );
}

function efficiencyTable(rows: readonly Row[]): string {
  const both = (f: (m: Measured) => string, x: Row) => `${f(x.kumo)} / ${x.etcd ? f(x.etcd) : "-"}`;
  return table(
    [
      "workload",
      "clients",
      "syncs/write per server",
      "disk flushes/write",
      "server CPU-s per 1,000 ops",
      "server CPU %",
      "load generator CPU %",
      "others CPU %",
    ],
    rows.map((x) => [
      workloadName(x.w),
      String(x.w.clients),
      both((m) => fmt(perWrite(m.syncs, m) / 3, 3), x),
      both((m) => fmt(perWrite(m.flushes, m), 3), x),
      both((m) => fmt((m.serverCpu / Math.max(1, m.r.opsAcked)) * 1000, 2), x),
      both((m) => fmt((m.serverCpu / m.spanSecs) * 100), x),
      both((m) => fmt((m.benchCpu / m.spanSecs) * 100), x),
      both((m) => fmt(othersCpu(m) * 100), x),
    ]),
  );
}

function verdicts(rows: readonly Row[]): string[] {
  const out: string[] = [];
  const find = (kind: Kind, clients: number) =>
    rows.find((r) => r.w.kind === kind && r.w.clients === clients && r.w.valueBytes === 256);
  const met = (ok: boolean) => (ok ? "met" : "MISSED");
  const absent = (what: string) => `${what}: not measured in this run`;
  for (const clients of [64, 256]) {
    const p = find("put", clients);
    const what = `puts with ${clients} clients`;
    if (!p) out.push(absent(what));
    else if (!p.etcd) out.push(`${what}: no etcd in this run`);
    else {
      const t = ratio(rate(p.kumo), rate(p.etcd));
      const l = ratio(p.kumo.p99, p.etcd.p99);
      out.push(
        `${what}: throughput ${fr(t)} etcd (${fmt(rate(p.kumo))} / ${fmt(rate(p.etcd))} ops/s; target >= 1.5×: ${met(t >= 1.5)}), ` +
          `p99 ${fr(l)} etcd (${ms(p.kumo.p99)} / ${ms(p.etcd.p99)} ms; target <= 1.0×: ${met(l <= 1.0)})`,
      );
    }
  }
  const p1 = find("put", 1);
  if (!p1) out.push(absent("single-client puts"));
  else if (!p1.etcd) out.push("single-client puts: no etcd in this run");
  else {
    const l = ratio(p1.kumo.p50, p1.etcd.p50);
    out.push(
      `single-client put latency: p50 ${fr(l)} etcd (${ms(p1.kumo.p50)} / ${ms(p1.etcd.p50)} ms; target <= 1.2×: ${met(l <= 1.2)}); ` +
        `p99 ${fr(ratio(p1.kumo.p99, p1.etcd.p99))} (for reference)`,
    );
  }
  const g = find("get", 64);
  if (!g) out.push(absent("linearizable gets with 64 clients"));
  else if (!g.etcd) out.push("linearizable gets with 64 clients: no etcd in this run");
  else {
    const t = ratio(rate(g.kumo), rate(g.etcd));
    out.push(
      `linearizable gets with 64 clients: throughput ${fr(t)} etcd (${fmt(rate(g.kumo))} / ${fmt(rate(g.etcd))} ops/s; target >= 1.5×: ${met(t >= 1.5)})`,
    );
  }
  const p64 = find("put", 64);
  if (!p64) out.push(absent("fsyncs per write at 64 clients"));
  else {
    const f = perWrite(p64.kumo.syncs, p64.kumo) / 3;
    out.push(
      `Kumo fsyncs per write at 64 clients: ${fmt(f, 3)} per server (${fmt(f * 3, 3)} for the cluster; target <= 0.1: ${met(f <= 0.1)})` +
        (p64.etcd ? `; etcd: ${fmt(perWrite(p64.etcd.syncs, p64.etcd) / 3, 3)} per server` : ""),
    );
  }
  return out;
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  const started = performance.now();
  const { header, say } = reportHeader("bench:etcd", quick, baseDir);

  const { bin, note } = findEtcd();
  if (note) say(note);
  if (!bin) say("etcd: not available: running Kumo only (the etcd columns stay empty)");

  say(
    `Kumo: 3 kumo server processes on 127.0.0.1, default settings (8 shards, 3 replicas); HTTP/1.1 keep-alive, requests round-robin over the nodes`,
  );
  if (bin) {
    say(
      `etcd: 3 members of ${etcdVersion(bin)} on 127.0.0.1, default durability, --quota-backend-bytes ${ETCD_QUOTA_BYTES}; ` +
        "etcd3 npm client (gRPC), one channel per member, requests round-robin over the members, linearizable ranges",
    );
  }
  say(
    `load: one closed-loop generator for both (bench/_load.ts), keys uniform over ${fmt(KEYS)}, ` +
      `${seconds} s measured per workload and side in ${rounds} round${rounds > 1 ? "s" : ""} ` +
      `(${rounds > 1 ? "Kumo, etcd, etcd, Kumo, ..." : "Kumo, then etcd"}), each after a ${warmupSeconds} s warm-up`,
  );

  if (waitQuietS > 0) console.log(await waitQuiet(waitQuietS * 1000));
  const disk = rawFsync(baseDir, fsyncSeconds * 1000);
  say(
    `disk: 4 KiB write + fdatasync: ${fmt(disk.fsyncsPerSec)} fsyncs/s (p50 ${fmt(disk.p50Ms, 3)} ms, p99 ${fmt(disk.p99Ms, 3)} ms)`,
  );
  const seq = rawSeqWrite(baseDir, diskMiB * 2 ** 20);
  say(
    `disk: sequential write of ${diskMiB} MiB in 1 MiB blocks + fdatasync: ${fmt(seq.mibPerSec)} MiB/s`,
  );
  const loop = await loopbackBandwidth(loopbackSeconds * 1000);
  say(
    `loopback TCP: ${fmt(loop.mibPerSec)} MiB/s (one connection between two node processes, 1 MiB writes)`,
  );

  let cluster: BenchCluster | undefined;
  let etcd: EtcdCluster | undefined;
  const stopAll = async () => {
    await Promise.allSettled([cluster?.stop(STOP_GRACE_MS), etcd?.stop()]);
  };
  const unhook = onInterrupt(stopAll);
  const rows: Row[] = [];
  try {
    cluster = await startBenchCluster({ nodes: 3, baseDir, nodeArgs: () => nodeArgs });
    await cluster.waitLeaders(60_000);
    const kc = cluster;
    const apis = kc.nodes.map((n) => n.api);
    const kumo: Side = {
      name: "Kumo",
      pids: () => kc.nodes.map((n) => kc.pid(n.id)),
      syncs: async () => (await kc.stats()).reduce((a, s) => a + s.engine.syncs, 0),
      target: (clients) => new KumoTarget(apis, kc.token, clients),
    };
    say(`Kumo cluster up after ${((performance.now() - started) / 1000).toFixed(1)} s`);

    let etcdSide: Side | undefined;
    if (bin) {
      const t = performance.now();
      etcd = await EtcdCluster.start(bin, baseDir);
      const ec = etcd;
      etcdSide = {
        name: "etcd",
        pids: () => ec.pids(),
        syncs: async () => {
          const c = await ec.counters();
          return c.walFsyncs + c.backendCommits;
        },
        target: () => new EtcdTarget(ec.endpoints()),
      };
      say(`etcd cluster healthy after ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }

    const value256 = benchValue(256);
    for (const side of [kumo, etcdSide]) {
      if (!side) continue;
      const t = side.target(256);
      try {
        say(`${side.name}: ${await preload(t, KEYS, value256, 256)}`);
      } finally {
        t.close();
      }
    }

    for (const w of workloads) {
      if (waitQuietS > 0) console.log(`  ${await waitQuiet(waitQuietS * 1000)}`);
      // Rounds in the order Kumo, etcd, etcd, Kumo, Kumo, ... (ABBA): a load that other
      // processes put on the machine, and that grows or fades during the workload, weighs on
      // both sides alike.
      const ks: Measured[] = [];
      const es: Measured[] = [];
      const windowMs = (seconds * 1000) / rounds;
      for (let round = 0; round < rounds; round++) {
        const order = etcdSide && round % 2 === 1 ? ["etcd", "Kumo"] : ["Kumo", "etcd"];
        for (const who of order) {
          if (who === "Kumo") ks.push(await measure(kumo, etcdSide, w, windowMs));
          else if (etcdSide) es.push(await measure(etcdSide, kumo, w, windowMs));
        }
      }
      const k = merge(ks);
      const e = etcdSide ? merge(es) : undefined;
      for (const [name, m] of [
        ["Kumo", k],
        ["etcd", e],
      ] as const) {
        if (!m) continue;
        const errs = [...m.r.errorKinds].map(([x, n]) => `${x}=${n}`).join(" ");
        console.log(
          `  ${workloadName(w)}, ${w.clients} clients, ${name}: ${fmt(rate(m))} ops/s, p50 ${ms(m.p50)} / p99 ${ms(m.p99)} ms, ` +
            `${m.r.errors} errors${errs ? ` (${errs})` : ""}` +
            (m.r.misses > 0 ? `, ${m.r.misses} get misses` : "") +
            (writes(m) > 0 ? `, ${fmt(perWrite(m.syncs, m) / 3, 3)} syncs/write per server` : "") +
            `, server CPU ${fmt((m.serverCpu / m.spanSecs) * 100)}%, others ${fmt(othersCpu(m) * 100)}%`,
        );
      }
      rows.push({ w, kumo: k, etcd: e });
    }
  } catch (e) {
    if (cluster) console.error(cluster.logs());
    if (etcd) console.error(etcd.logs());
    throw e;
  } finally {
    unhook();
    await stopAll();
  }
  if (showLogs) {
    console.log(cluster?.logs());
    console.log(etcd?.logs());
  }

  const etcdRan = rows.some((r) => r.etcd !== undefined);
  const out: string[] = [];
  out.push(resultTable(rows));
  out.push("");
  out.push(
    "Efficiency, Kumo / etcd (over each measured window plus the answers still in flight at its end):",
  );
  out.push("");
  out.push(efficiencyTable(rows));
  out.push("");
  out.push(
    "ratio: Kumo ÷ etcd (throughput: higher is better for Kumo; latency: lower is). syncs: Kumo's WAL rounds + LMDB commits " +
      "(GET /v1/cluster), etcd's WAL fsyncs + backend commits (/metrics), over the 3 servers ÷ 3 ÷ acknowledged writes. " +
      "disk flushes: flush requests the disk completed (/sys/class/block, every process on the machine) ÷ writes. " +
      "CPU from /proc (100% = one core); server CPU per op counts every acknowledged op (writes for put rows); " +
      "others = processes outside this benchmark and the 6 servers.",
  );
  out.push(
    `floors: ${fmt(disk.fsyncsPerSec)} fsyncs/s (4 KiB write + fdatasync), sequential write ${fmt(seq.mibPerSec)} MiB/s, ` +
      `loopback TCP ${fmt(loop.mibPerSec)} MiB/s; ${cpus().length} cores shared by ${etcdRan ? 6 : 3} servers and the load generator`,
  );
  for (const v of verdicts(rows)) out.push(`target: ${v}`);
  console.log("");
  for (const l of out) console.log(l);
  console.log(`load average at end: ${loadAverage()}`);
  const took = `bench:etcd took ${((performance.now() - started) / 1000).toFixed(0)} s`;
  console.log(took);

  recordRun("bench:etcd", quick, [
    ...textBlock([...header, took]),
    "",
    ...out.map((l, i) =>
      i > 0 && l !== "" && !l.startsWith("|") && !l.endsWith(":") ? `- ${l}` : l,
    ),
  ]);
}

await main();
