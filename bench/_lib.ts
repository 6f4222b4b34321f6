/**
 * Shared helpers of the process-level benchmarks (bench/kv.ts, bench/idle.ts, bench/s3.ts): a
 * cluster of real `kumo server` child processes on 127.0.0.1 (test/integration/_cluster.ts's
 * `TestCluster`), a keep-alive HTTP client, the machine description, the raw fsync rate and
 * sequential write bandwidth of the disk, loopback TCP bandwidth, per-process CPU and memory from
 * /proc, and a summary of V8 .cpuprofile files. Benchmarks print numbers; nothing here
 * asserts on them.
 */
import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  fdatasyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statfsSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { Agent, request } from "node:http";
import { createServer as createNetServer } from "node:net";
import { cpus, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type ClusterOptions, sleep, TestCluster } from "../test/integration/_cluster.js";

export {
  type ClusterStatus,
  type NodeStats,
  type ShardStatus,
  sleep,
} from "../test/integration/_cluster.js";

// ------------------------------------------------------------------ options

/** `--name value` from argv, else the environment variable, else the default. */
export function option(flag: string, env: string, fallback: string): string {
  const i = process.argv.indexOf(`--${flag}`);
  if (i >= 0 && process.argv[i + 1] !== undefined) return process.argv[i + 1] as string;
  const e = process.env[env];
  return e !== undefined && e !== "" ? e : fallback;
}

export function numberOption(flag: string, env: string, fallback: number): number {
  const v = Number(option(flag, env, String(fallback)));
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${flag} / ${env} must be a number >= 0`);
  return v;
}

/**
 * How the benchmarks run their `kumo server` processes (the same flags for every benchmark):
 * --node-args / BENCH_NODE_ARGS, --node-logs / BENCH_NODE_LOGS, --cpu-prof / BENCH_CPU_PROF and
 * --cpu-prof-dir / BENCH_CPU_PROF_DIR.
 */
export function serverProcessOptions(): {
  nodeArgs: string[];
  showLogs: boolean;
  profNodes: string;
  profDir: string;
} {
  return {
    nodeArgs: option("node-args", "BENCH_NODE_ARGS", "")
      .split(" ")
      .filter((a) => a !== ""),
    showLogs: option("node-logs", "BENCH_NODE_LOGS", "0") === "1",
    profNodes: option("cpu-prof", "BENCH_CPU_PROF", ""),
    profDir: option(
      "cpu-prof-dir",
      "BENCH_CPU_PROF_DIR",
      join(tmpdir(), `kumo-bench-prof-${process.pid}`),
    ),
  };
}

/** The command that reproduces this run: BENCH_* variables, node, the script and its flags. */
export function commandLine(): string {
  const env = Object.entries(process.env)
    .filter(([k, v]) => k.startsWith("BENCH_") && v !== undefined && v !== "")
    .map(([k, v]) => `${k}=${v}`);
  const script = (process.argv[1] ?? "").replace(`${process.cwd()}/`, "");
  return [...env, "node", script, ...process.argv.slice(2)].join(" ");
}

// ------------------------------------------------------------------ machine

/** The mount (longest prefix in /proc/self/mounts) that holds `dir`. */
function deviceOf(dir: string): { mount: string; dev: string; fs: string } {
  const real = realpathSync(dir);
  let best = { mount: "", dev: "?", fs: "?" };
  for (const line of readFileSync("/proc/self/mounts", "utf8").split("\n")) {
    const [dev, mount, fs] = line.split(" ");
    if (!dev || !mount || !fs) continue;
    const inside = real === mount || real.startsWith(mount === "/" ? "/" : `${mount}/`);
    if (inside && mount.length >= best.mount.length) best = { mount, dev, fs };
  }
  return best;
}

function diskOf(dir: string): string {
  try {
    const best = deviceOf(dir);
    const name = best.dev.replace(/^\/dev\//, "");
    let kind = "";
    try {
      const rot = readFileSync(`/sys/block/${name}/queue/rotational`, "utf8").trim();
      // Virtual disks often report 1 whatever backs them: print the flag, not a verdict.
      kind = `, queue/rotational=${rot}`;
    } catch {
      // a partition or a virtual device: no queue directory
    }
    return `${best.dev} (${best.fs}${kind}) mounted on ${best.mount}`;
  } catch {
    return "unknown";
  }
}

/**
 * Flush requests the block device under `dir` has completed so far (field 16 of
 * /sys/class/block/<dev>/stat, the whole disk's for a partition: what fsync and fdatasync turn
 * into); undefined where the kernel does not count them (no block device, older kernels).
 * Machine-wide: it counts every process's flushes.
 */
export function diskFlushes(dir: string): number | undefined {
  try {
    const name = deviceOf(dir).dev.replace(/^\/dev\//, "");
    let sys = `/sys/class/block/${name}`;
    if (existsSync(`${sys}/partition`)) sys = `${realpathSync(sys)}/..`;
    const f = readFileSync(`${sys}/stat`, "utf8").trim().split(/\s+/);
    return f.length >= 17 ? Number(f[15]) : undefined;
  } catch {
    return undefined;
  }
}

export function machine(dataDir: string): string {
  const c = cpus();
  const model = c[0]?.model.trim() ?? "?";
  let size = "";
  try {
    const st = statfsSync(dataDir);
    const gib = (blocks: number) => ((blocks * st.bsize) / 2 ** 30).toFixed(0);
    size = `, ${gib(st.blocks)} GiB, ${gib(st.bavail)} GiB free`;
  } catch {
    // no statfs: the size stays unsaid
  }
  return (
    `machine: ${c.length} cores (${model}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB memory, ` +
    `Linux ${release()}, node ${process.version}; data dir ${dataDir} on ${diskOf(dataDir)}${size}`
  );
}

// ------------------------------------------------------------------ recording runs

const RECORDED = "## Recorded runs";

/**
 * Whether this run is added to docs/benchmarks.md (issue #8: every benchmark records itself):
 * yes unless `--no-record` or BENCH_RECORD=0.
 */
export const recording =
  !process.argv.includes("--no-record") &&
  !["0", "false", "no"].includes((process.env.BENCH_RECORD ?? "").toLowerCase());

/** Lines as a fenced text block (a benchmark's own output, kept verbatim in the record). */
export function textBlock(lines: readonly string[]): string[] {
  return ["```text", ...lines, "```"];
}

/**
 * Appends a run of benchmark `name` to the "Recorded runs" section at the end of
 * docs/benchmarks.md (created when missing) as `### name, <date> UTC` and `body`, and says where
 * it went; nothing when not recording.
 */
export function recordRun(
  name: string,
  quick: boolean,
  body: readonly string[],
  at: Date = new Date(),
): void {
  if (!recording) return;
  const title = `${name}, ${at.toISOString().slice(0, 16).replace("T", " ")} UTC${quick ? " (quick)" : ""}`;
  const doc = join(REPO, "docs/benchmarks.md");
  let text = readFileSync(doc, "utf8").replace(/\n+$/, "");
  if (!text.split("\n").includes(RECORDED)) {
    text +=
      `\n\n${RECORDED}\n\nEvery benchmark run (\`npm run bench\`, \`bench:*\`) appends what it ` +
      "printed here: the date, the exact command, the machine (cores, memory, disk), the code " +
      "version and its tables (`--no-record` or `BENCH_RECORD=0` to skip). The sections above " +
      "discuss selected runs.";
  }
  text += `\n\n### ${title}\n\n${body.join("\n").replace(/\n+$/, "")}\n`;
  writeFileSync(doc, text);
  console.log(`recorded in ${doc}`);
}

/**
 * Records everything this benchmark prints from now on: call the returned function at the end.
 * The record opens with the date, the command, the machine and the code version, which
 * benchmarks that print less (bench:raft, bench:storage) do not print themselves.
 */
export function recordPrinted(name: string, dataDir: string): () => void {
  const started = new Date();
  const chunks: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    chunks.push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"));
    return write(chunk, ...rest);
  }) as typeof process.stdout.write;
  return () => {
    process.stdout.write = write;
    const printed = chunks.join("").replace(/\n+$/, "");
    const head = [`command: ${commandLine()}`, machine(dataDir), `code: ${codeVersion()}`];
    recordRun(name, false, textBlock([...head, printed]), started);
  };
}

/** The repository root (dist/bench/_lib.js is two levels below it). */
export const REPO = join(fileURLToPath(import.meta.url), "../../..");

function filesUnder(dir: string, ext: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p, ext));
    else if (e.name.endsWith(ext)) out.push(p);
  }
  return out.sort();
}

/**
 * Which code the numbers belong to: a hash of the compiled server code (dist/src/**.js, what the
 * node processes run) and the newest modification time of src/**.ts.
 */
export function codeVersion(): string {
  try {
    const h = createHash("sha256");
    for (const f of filesUnder(join(REPO, "dist/src"), ".js")) {
      h.update(f.slice(REPO.length));
      h.update(readFileSync(f));
    }
    const newest = Math.max(
      ...filesUnder(join(REPO, "src"), ".ts").map((f) => statSync(f).mtimeMs),
    );
    return `dist/src sha256 ${h.digest("hex").slice(0, 12)}, src/ last modified ${new Date(newest).toISOString()}`;
  } catch (e) {
    return `unknown (${(e as Error).message})`;
  }
}

// ------------------------------------------------------------------ statistics and tables

/** The p-quantile (0..1) of an ascending array (nearest rank). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i] as number;
}

export function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return "-";
  return n.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** A Markdown table (first column left-aligned, the others right-aligned). */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    `| ${cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number)))
      .join(" | ")} |`;
  const rule = `|${widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : `${"-".repeat(w + 1)}:`)).join("|")}|`;
  return [line(header), rule, ...rows.map(line)].join("\n");
}

// ------------------------------------------------------------------ disk

export interface FsyncResult {
  readonly fsyncsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** The disk's floor: 4 KiB write + fdatasync in a loop for `ms`, in a scratch file under `dir`. */
export function rawFsync(dir: string, ms: number): FsyncResult {
  const scratch = mkdtempSync(join(dir, "kumo-bench-fsync-"));
  const fd = openSync(join(scratch, "f"), "w");
  const block = Buffer.alloc(4096, 7);
  const lat: number[] = [];
  try {
    const t0 = performance.now();
    while (performance.now() - t0 < ms) {
      const s = performance.now();
      writeSync(fd, block, 0, block.length, 0);
      fdatasyncSync(fd);
      lat.push(performance.now() - s);
    }
    const elapsed = performance.now() - t0;
    lat.sort((a, b) => a - b);
    return {
      fsyncsPerSec: (lat.length / elapsed) * 1000,
      p50Ms: percentile(lat, 0.5),
      p99Ms: percentile(lat, 0.99),
    };
  } finally {
    closeSync(fd);
    rmSync(scratch, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ CPU of a process

let clockTicks: number | undefined;

function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime of a process so far, in seconds, from /proc/<pid>/stat. */
export function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) may contain spaces: fields are counted after its ")".
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state); utime is field 14, stime field 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return (utime + stime) / ticksPerSecond();
}

/** Busy and total jiffies of the whole machine so far (all cores), from /proc/stat. */
export function systemCpu(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is included in user)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: (total - idle) / ticksPerSecond(), total: total / ticksPerSecond() };
}

/**
 * On a shared machine: waits (at most `maxMs`) until the whole machine has been nearly idle
 * (under `busyMax` cores busy) for one second; returns what it saw.
 */
export async function waitQuiet(maxMs: number, busyMax = 0.15): Promise<string> {
  const t0 = performance.now();
  let busy = Number.NaN;
  while (performance.now() - t0 < maxMs) {
    const a = systemCpu();
    await sleep(1000);
    const b = systemCpu();
    busy = ((b.busy - a.busy) / Math.max(0.001, b.total - a.total)) * cpus().length;
    if (busy < busyMax)
      return `machine quiet after ${((performance.now() - t0) / 1000).toFixed(0)} s`;
  }
  return `machine still busy after ${(maxMs / 1000).toFixed(0)} s (${fmt(busy * 100)}% of a core): measuring anyway`;
}

/** The 1-minute load average and what else is running, to judge how quiet the machine is. */
export function loadAverage(): string {
  try {
    return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  } catch {
    return "?";
  }
}

// ------------------------------------------------------------------ the cluster

/** The cluster is test/integration/_cluster.ts's `TestCluster`, started as benchmarks need it. */
export type BenchCluster = TestCluster;

/** How long `stop` lets a node exit gracefully (flush, write its CPU profile) before SIGKILL. */
export const STOP_GRACE_MS = 30_000;

let signalsHooked = false;
const interruptCleanups = new Set<() => Promise<void>>();

/**
 * On SIGINT or SIGTERM: runs the registered cleanups (at most 15 s in all; a second signal cuts
 * them short), then exits with 130 through process.exit, so that exit hooks (the cluster
 * module's, which SIGKILLs nodes still running and removes their data) run too.
 */
function hookSignals(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  let interrupted = false;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      if (interrupted) process.exit(130);
      interrupted = true;
      setTimeout(() => process.exit(130), 15_000).unref();
      void Promise.allSettled([...interruptCleanups].map((f) => f())).then(() => process.exit(130));
    });
  }
}

/**
 * Runs `cleanup` (e.g. a graceful stop of servers the benchmark started) if the benchmark is
 * interrupted by SIGINT or SIGTERM; returns a function that unregisters it.
 */
export function onInterrupt(cleanup: () => Promise<void>): () => void {
  hookSignals();
  interruptCleanups.add(cleanup);
  return () => interruptCleanups.delete(cleanup);
}

/**
 * Real `kumo server` processes on 127.0.0.1 with free ports and fresh data directories; resolves
 * once every node is ready (not yet until leaders exist: see `waitLeaders`). If the benchmark
 * exits early (error, Ctrl+C), the nodes are killed and their data removed.
 */
export async function startBenchCluster(opts: ClusterOptions): Promise<BenchCluster> {
  hookSignals();
  return TestCluster.start({
    token: "bench-token",
    startTimeoutMs: 60_000,
    waitLeaders: false,
    ...opts,
  });
}

// ------------------------------------------------------------------ HTTP client

export interface HttpResult {
  /** HTTP status, or 0 if the request failed without an answer (connection error, timeout). */
  readonly status: number;
  readonly ms: number;
  /** The error code of a non-2xx JSON answer, or the socket error. */
  readonly error?: string;
}

/** A keep-alive HTTP/1.1 client for the KV API. */
export class KvClient {
  readonly agent: Agent;

  constructor(
    private readonly token: string,
    maxSockets: number,
    private readonly timeoutMs = 15_000,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
  }

  send(api: string, method: string, path: string, body?: Buffer): Promise<HttpResult> {
    const i = api.lastIndexOf(":");
    const t0 = performance.now();
    return new Promise((resolve) => {
      let done = false;
      const finish = (status: number, error?: string) => {
        if (done) return;
        done = true;
        resolve({ status, ms: performance.now() - t0, ...(error ? { error } : {}) });
      };
      const headers: Record<string, string | number> = { authorization: `Bearer ${this.token}` };
      if (body) headers["content-length"] = body.byteLength;
      const req = request(
        {
          agent: this.agent,
          host: api.slice(0, i),
          port: Number(api.slice(i + 1)),
          method,
          path,
          headers,
        },
        (res) => {
          const status = res.statusCode ?? 0;
          const chunks: Buffer[] = [];
          const ok = status >= 200 && status < 300;
          res.on("data", (c: Buffer) => {
            if (!ok) chunks.push(c);
          });
          res.on("end", () => {
            if (ok) return finish(status);
            let code = `HTTP ${status}`;
            try {
              const e = JSON.parse(Buffer.concat(chunks).toString()) as {
                error?: { code?: string };
              };
              if (e.error?.code) code = e.error.code;
            } catch {
              // not JSON
            }
            finish(status, code);
          });
          res.on("error", (e) => finish(0, e.message));
        },
      );
      req.setTimeout(this.timeoutMs, () => req.destroy(new Error("client timeout")));
      req.on("error", (e) => finish(0, (e as NodeJS.ErrnoException).code ?? e.message));
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

// ------------------------------------------------------------------ CPU profiles

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function frameName(n: ProfileNode): string {
  const f = n.callFrame;
  const name = f.functionName || "(anonymous)";
  if (!f.url) return name;
  const short = f.url
    .replace(/^file:\/\//, "")
    .replace(/^.*\/dist\//, "")
    .replace(/^.*\/node_modules\//, "");
  return `${name} ${short}:${f.lineNumber + 1}`;
}

function category(n: ProfileNode): string {
  const { functionName: fn, url } = n.callFrame;
  if (fn === "(garbage collector)" || fn === "(program)" || fn === "(idle)") return fn;
  if (!url) return "(native / builtins)";
  if (url.includes("/node_modules/lmdb") || url.includes("/node_modules/msgpackr"))
    return "lmdb-js";
  if (url.includes("/node_modules/@grpc/") || url.includes("/node_modules/protobufjs")) {
    return "grpc-js + protobuf";
  }
  const m = /\/dist\/src\/([^/]+)\//.exec(url);
  if (m) return `kumo src/${m[1]}`;
  if (/^node:(_http|internal\/http|http)/.test(url)) return "node http";
  if (/^node:(net|internal\/(net|stream_base|streams)|stream|_stream)/.test(url)) {
    return "node net/streams";
  }
  if (url.startsWith("node:")) return "node (other)";
  return "other";
}

/** Now on the clock of V8 profiles (CLOCK_MONOTONIC, microseconds), for `summarizeProfile`. */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/**
 * Phases of a Kumo server: a sample belongs to the phase of the outermost frame of its stack that
 * matches (so a sample in LMDB code called from the host cycle counts for the host cycle);
 * samples that match none go by the category of their leaf frame.
 */
const PHASES: readonly (readonly [string, RegExp])[] = [
  [
    "host cycle (Raft ready, log staging, apply, LMDB write, sends)",
    /^(runCycle|cycle) .*multiraft\/host/,
  ],
  ["host ticks (onTimer)", /^onTimer .*multiraft\/host/],
  [
    "forwarding to the leader (gRPC unary client)",
    /^(forwardPropose|forwardRead) |^call .*grpc-link|makeUnaryRequest|load-balancing-call|subchannel\.js|resolving-call/,
  ],
  [
    "Raft messages out (gRPC stream writes)",
    /^(flush|scheduleFlush) .*grpc-link|^send .*transport\/grpc\.js/,
  ],
  [
    "gRPC server: Raft stream and forwarded calls in (decode, receive, handleCall)",
    /server-interceptors|^receive .*multiraft|stream-decoder|server\.js|codec\.js/,
  ],
  [
    "HTTP API (node:http server, KvHttpApi)",
    /_http_server|_http_common|_http_outgoing|^parserOn|api\/kv\/http|^serveApi /,
  ],
  ["lmdb-js (outside the host cycle)", /\blmdb\//],
];

function phaseOf(stack: readonly string[]): string | undefined {
  for (let i = stack.length - 1; i >= 0; i--) {
    const f = stack[i] as string;
    for (const [name, re] of PHASES) if (re.test(f)) return name;
  }
  return undefined;
}

/**
 * Self and inclusive time per function and self time per category of one .cpuprofile; with
 * `windows` ([from, to] in `monotonicUs()` time), only the samples taken inside them.
 */
export function summarizeProfile(
  file: string,
  top = 25,
  windows?: readonly (readonly [number, number])[],
): string {
  const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  let total = 0;
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  const cats = new Map<string, number>();
  const phases = new Map<string, number>();
  const stacks = new Map<number, string[]>();
  const stackOf = (id: number): string[] => {
    let s = stacks.get(id);
    if (s) return s;
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const n = byId.get(at);
      if (n && n.callFrame.functionName !== "(root)") seen.add(frameName(n));
    }
    s = [...seen];
    stacks.set(id, s);
    return s;
  };
  let at = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i] as number;
    at += p.timeDeltas[i] ?? 0;
    if (windows && !windows.some(([from, to]) => at >= from && at <= to)) continue;
    const ms = (p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0) / 1000;
    total += ms;
    const n = byId.get(id);
    if (!n) continue;
    const name = frameName(n);
    self.set(name, (self.get(name) ?? 0) + ms);
    const cat = category(n);
    cats.set(cat, (cats.get(cat) ?? 0) + ms);
    const stack = stackOf(id);
    for (const f of stack) incl.set(f, (incl.get(f) ?? 0) + ms);
    const phase = phaseOf(stack) ?? `other: ${cat}`;
    phases.set(phase, (phases.get(phase) ?? 0) + ms);
  }
  const busy = total - (self.get("(idle)") ?? 0);
  const rows = (m: Map<string, number>, k: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, k)
      .map(([name, ms]) => [
        name,
        fmt(ms),
        `${fmt((100 * ms) / total, 1)}%`,
        name.endsWith("(idle)") ? "-" : `${fmt((100 * ms) / busy, 1)}%`,
      ]);
  const head = ["", "ms", "% of wall", "% of busy"];
  return [
    `profile ${file}${windows ? " (measured windows only)" : ""}: ${fmt(total)} ms wall, ${fmt(busy)} ms not idle`,
    "",
    "time by phase (outermost matching frame):",
    table(["phase", ...head.slice(1)], rows(phases, 20)),
    "",
    "self time by category:",
    table(["category", ...head.slice(1)], rows(cats, 20)),
    "",
    `top ${top} functions by self time:`,
    table(["function", ...head.slice(1)], rows(self, top)),
    "",
    `top ${top} functions by inclusive time:`,
    table(["function", ...head.slice(1)], rows(incl, top)),
  ].join("\n");
}

/** `node` flags that write a CPU profile of node `id` into `dir` when it exits. */
export function cpuProfArgs(dir: string, id: string): string[] {
  mkdirSync(dir, { recursive: true });
  return ["--cpu-prof", `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${id}.cpuprofile`];
}

export function profilesIn(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith(".cpuprofile"))
      .map((f) => join(dir, f));
  } catch {
    return [];
  }
}

// ------------------------------------------------------------------ bandwidth floors and memory

export interface SeqWriteResult {
  readonly mibPerSec: number;
  readonly bytes: number;
  /** Time of the write() calls (into the page cache) and of the final fdatasync. */
  readonly writeMs: number;
  readonly syncMs: number;
}

/**
 * The disk's sequential write bandwidth: `totalBytes` of random data in `blockBytes` write()
 * calls to one new file under `dir`, then one fdatasync; bandwidth = bytes / (writes + sync).
 */
export function rawSeqWrite(dir: string, totalBytes = 256 * 2 ** 20, blockBytes = 2 ** 20) {
  const scratch = mkdtempSync(join(dir, "kumo-bench-seq-"));
  const fd = openSync(join(scratch, "f"), "w");
  const block = randomBytes(blockBytes);
  try {
    const t0 = performance.now();
    for (let done = 0; done < totalBytes; done += blockBytes)
      writeSync(fd, block, 0, Math.min(blockBytes, totalBytes - done));
    const t1 = performance.now();
    fdatasyncSync(fd);
    const t2 = performance.now();
    return {
      mibPerSec: totalBytes / 2 ** 20 / ((t2 - t0) / 1000),
      bytes: totalBytes,
      writeMs: t1 - t0,
      syncMs: t2 - t1,
    } satisfies SeqWriteResult;
  } finally {
    closeSync(fd);
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** The sender of `loopbackBandwidth`, in a child process: argv port, ms, block bytes. */
const LOOPBACK_SENDER = `
const net = require("node:net");
const [port, ms, block] = process.argv.slice(1).map(Number);
const buf = Buffer.alloc(block, 7);
const s = net.connect(port, "127.0.0.1", () => {
  const end = Date.now() + ms;
  const pump = () => {
    while (Date.now() < end) if (!s.write(buf)) return void s.once("drain", pump);
    s.end();
  };
  pump();
});
s.on("error", () => process.exit(1));
`;

/**
 * Loopback TCP bandwidth between two Node processes: a child process writes `blockBytes`
 * buffers to one 127.0.0.1 connection for `ms`, this process reads and discards them (the
 * direction of an S3 GET: a server process sending, the client reading). Measured from the
 * first byte received to the end of the stream.
 */
export async function loopbackBandwidth(
  ms: number,
  blockBytes = 2 ** 20,
): Promise<{ mibPerSec: number; bytes: number; secs: number }> {
  const server = createNetServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  const child = spawn(
    process.execPath,
    ["-e", LOOPBACK_SENDER, String(port), String(ms), String(blockBytes)],
    { stdio: "ignore" },
  );
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("loopback test timed out")), ms + 30_000);
      child.once("exit", (code) => {
        if (code !== 0) reject(new Error(`loopback sender exited with ${code}`));
      });
      server.once("connection", (sock) => {
        let bytes = 0;
        let first = 0;
        sock.on("data", (d: Buffer) => {
          if (bytes === 0) first = performance.now();
          bytes += d.byteLength;
        });
        sock.once("end", () => {
          clearTimeout(timer);
          const secs = (performance.now() - first) / 1000;
          resolve({ mibPerSec: bytes / 2 ** 20 / secs, bytes, secs });
        });
        sock.once("error", reject);
      });
    });
  } finally {
    child.kill("SIGKILL");
    server.close();
  }
}

/** A `/proc/<pid>/status` size field (VmRSS, VmHWM, ...) in MiB; NaN if unreadable. */
export function procStatusMiB(pid: number, field: "VmRSS" | "VmHWM"): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(
      readFileSync(`/proc/${pid}/status`, "utf8"),
    );
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/**
 * The opening lines every benchmark prints and records: its name and time, the exact command,
 * the machine, the code version and the load. `say` prints a line and keeps it for the record.
 */
export function reportHeader(
  name: string,
  quick: boolean,
  dataDir: string,
): { header: string[]; say: (line: string) => void } {
  const header: string[] = [];
  const say = (line: string) => {
    header.push(line);
    console.log(line);
  };
  say(`${name} — ${new Date().toISOString()}${quick ? " (quick)" : ""}`);
  say(`command: ${commandLine()}`);
  say(machine(dataDir));
  say(`code: ${codeVersion()}`);
  say(`load average at start: ${loadAverage()}`);
  return { header, say };
}
