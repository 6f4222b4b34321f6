/**
 * `node dist/bench/s3.js`: the S3 door of a real 3-node cluster (separate `kumo server`
 * processes, default settings: chunks of 1 MiB on 3 replicas with a write quorum of 2, LMDB and
 * chunk files under the OS temp directory) under a closed-loop load generator in this process:
 * the AWS SDK v3 `S3Client`, one per node, each with a keep-alive node:http Agent,
 * `forcePathStyle`, and requests round-robin over the three nodes' S3 ports.
 *
 * Cells: PUT and GET of 4 KiB, 1 MiB and 64 MiB objects with 1 and 16 concurrent clients. Each
 * cell runs for a time window (clients start no new request after it; requests in flight
 * finish) or until a maximum count of requests, and reports ops/s, MiB/s, p50/p99 latency
 * (request sent to response fully read), errors, the CPU of every process and the peak RSS of
 * every node. In the same run it measures the floors the targets are relative to: the disk's
 * sequential write bandwidth (256 MiB in 1 MiB writes and one fdatasync, in the same directory
 * as the nodes' data) and loopback TCP bandwidth between two Node processes.
 *
 * How the load is generated, and why:
 * - PUT bodies are streams (`Readable`) with a ContentLength: the SDK then signs
 *   `UNSIGNED-PAYLOAD` instead of hashing the body, as it does for any stream. All bodies are
 *   views of one random buffer generated once (memory stays at one 64 MiB buffer whatever the
 *   concurrency); each 1 MiB chunk of each PUT starts with a unique 16-byte nonce, because Kumo's
 *   chunks are content-addressed: identical bodies would be deduplicated and never hit the disk.
 * - `requestChecksumCalculation` / `responseChecksumValidation: "WHEN_REQUIRED"`: no CRC32 by
 *   the SDK on either side (the SDK default computes one for every PUT and sends it in an
 *   aws-chunked trailer). The server still computes MD5 (the ETag) and SHA-256 (chunk names).
 * - GET bodies are read as a stream and discarded; GETs read the objects the PUT cells of the
 *   same size wrote, round-robin (the nodes' page cache holds them: GET measures the read path,
 *   not the disk).
 * - `maxAttempts: 1`: errors are counted, not retried.
 *
 * A benchmark, not a test: it prints numbers (and how they compare with the targets); it never
 * fails on them. docs/benchmarks.md ("S3") discusses them; every run is added to its "Recorded runs".
 *
 * Options (flag or environment variable):
 *   --quick / BENCH_QUICK=1                   CI smoke: 1 s windows, 4 KiB and 1 MiB with 1 and 16
 *                                             clients, one 64 MiB PUT and GET with 1 client
 *   --seconds / BENCH_SECONDS                 window of each cell (5; quick: 1)
 *   --max-ops / BENCH_MAX_OPS                 at most this many requests per cell (0: no limit)
 *   --sizes / BENCH_S3_SIZES                  object sizes of the default cells ("4k,1m,64m")
 *   --clients / BENCH_S3_CLIENTS              concurrencies of the default cells ("1,16")
 *   --cells / BENCH_S3_CELLS                  explicit cells instead: OP:SIZE:CLIENTS[:MAX_OPS],...
 *                                             e.g. "put:64m:16,get:64m:16" (a GET cell reads what the
 *                                             PUT cells of its size wrote; it writes a few objects first
 *                                             if there are none)
 *   --warmup / BENCH_WARMUP_SECONDS           PUT/GET of 1 MiB objects before the first cell (2; quick: 0.5)
 *   --disk-mib / BENCH_DISK_MIB               size of the sequential write test (256)
 *   --disk-runs / BENCH_DISK_RUNS             sequential write tests; the median counts (3; quick: 1)
 *   --loopback-seconds / BENCH_LOOPBACK_SECONDS  loopback TCP test (2; quick: 1)
 *   --wait-quiet / BENCH_WAIT_QUIET           before the floors and each cell, wait up to this many
 *                                             seconds for other processes to go idle (0)
 *   --dir / BENCH_DIR                         where data directories go (the OS temp directory)
 *   --node-args / BENCH_NODE_ARGS             extra `node` flags for every server, space-separated
 *   --node-logs / BENCH_NODE_LOGS             1: print the servers' output after they stop
 *   --cpu-prof / BENCH_CPU_PROF               node ids to run under `node --cpu-prof` ("n1", "all")
 *   --cpu-prof-dir / BENCH_CPU_PROF_DIR       where the .cpuprofile files go (a new temp directory)
 *   --no-record / BENCH_RECORD=0              do not add the run (and its tables) to
 *                                             docs/benchmarks.md, "Recorded runs"
 */
import { randomBytes } from "node:crypto";
import { Agent } from "node:http";
import { cpus, tmpdir } from "node:os";
import { Readable } from "node:stream";
import {
  GetObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { HttpRequest } from "@smithy/protocol-http";
import { CHUNK_BYTES } from "../src/api/s3/objects.js";
import {
  type BenchCluster,
  cpuProfArgs,
  fmt,
  loadAverage,
  loopbackBandwidth,
  monotonicUs,
  numberOption,
  option,
  percentile,
  processCpuSeconds,
  procStatusMiB,
  profilesIn,
  rawSeqWrite,
  recordRun,
  reportHeader,
  STOP_GRACE_MS,
  serverProcessOptions,
  sleep,
  startBenchCluster,
  summarizeProfile,
  systemCpu,
  table,
  textBlock,
  waitQuiet,
} from "./_lib.js";
import { waitS3 as waitS3On } from "./_s3.js";

const MiB = 2 ** 20;
const REPLICATION = 3;
const ROOT = { accessKeyId: "KUMOBENCHROOT0001", secretAccessKey: "bench-root-secret-0001" };
const BUCKET = "bench";

const flag = (name: string, env: string) =>
  process.argv.includes(`--${name}`) || process.env[env] === "1";
const quick = flag("quick", "BENCH_QUICK");
const seconds = numberOption("seconds", "BENCH_SECONDS", quick ? 1 : 5);
const maxOpsAll = numberOption("max-ops", "BENCH_MAX_OPS", 0);
const warmupSeconds = numberOption("warmup", "BENCH_WARMUP_SECONDS", quick ? 0.5 : 2);
const diskMiB = numberOption("disk-mib", "BENCH_DISK_MIB", 256);
const diskRunCount = numberOption("disk-runs", "BENCH_DISK_RUNS", quick ? 1 : 3);
const loopbackSeconds = numberOption("loopback-seconds", "BENCH_LOOPBACK_SECONDS", quick ? 1 : 2);
const waitQuietS = numberOption("wait-quiet", "BENCH_WAIT_QUIET", 0);
const baseDir = option("dir", "BENCH_DIR", tmpdir());
const { nodeArgs, showLogs, profNodes, profDir } = serverProcessOptions();

// ------------------------------------------------------------------ cells

type Op = "put" | "get";

interface Cell {
  readonly op: Op;
  readonly size: number;
  readonly clients: number;
  /** At most this many requests (0: the window alone bounds the cell). */
  readonly maxOps: number;
}

function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)i?b?$/i.exec(s.trim());
  if (!m) throw new Error(`bad size ${JSON.stringify(s)}: use e.g. 4k, 1m, 64m or bytes`);
  const unit = { "": 1, k: 1024, m: MiB, g: 1024 * MiB }[(m[2] ?? "").toLowerCase()] ?? 1;
  return Math.round(Number(m[1]) * unit);
}

function sizeName(n: number): string {
  if (n >= MiB && n % MiB === 0) return `${n / MiB} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} B`;
}

function parseCells(): Cell[] {
  const explicit = option("cells", "BENCH_S3_CELLS", "");
  if (explicit !== "") {
    return explicit.split(",").map((spec) => {
      const [op, size, clients, max] = spec.trim().split(":");
      const n = Number(clients);
      if ((op !== "put" && op !== "get") || size === undefined || !Number.isInteger(n) || n < 1)
        throw new Error(
          `bad cell ${JSON.stringify(spec)}: use OP:SIZE:CLIENTS[:MAX_OPS], OP put|get`,
        );
      return { op, size: parseSize(size), clients: n, maxOps: max ? Number(max) : maxOpsAll };
    });
  }
  const sizes = option("sizes", "BENCH_S3_SIZES", quick ? "4k,1m" : "4k,1m,64m")
    .split(",")
    .map(parseSize);
  const conc = option("clients", "BENCH_S3_CLIENTS", "1,16")
    .split(",")
    .map((c) => Number(c));
  const cells: Cell[] = [];
  for (const size of sizes)
    for (const op of ["put", "get"] as const)
      for (const clients of conc) cells.push({ op, size, clients, maxOps: maxOpsAll });
  if (quick && !sizes.includes(64 * MiB)) {
    cells.push({ op: "put", size: 64 * MiB, clients: 1, maxOps: 1 });
    cells.push({ op: "get", size: 64 * MiB, clients: 1, maxOps: 1 });
  }
  return cells;
}

const cells = parseCells();

// ------------------------------------------------------------------ bodies

/** One random buffer, as large as the largest object: every PUT body is a view of it. */
const base = randomBytes(Math.max(...cells.map((c) => c.size), MiB));
const runTag = randomBytes(8);
let bodySeq = 0;

/**
 * A PUT body of `size` bytes as a stream of views of `base`, with a unique 16-byte nonce at the
 * start of each server chunk (CHUNK_BYTES), so that no two chunks of the run are identical.
 */
function body(size: number): Readable {
  const seq = bodySeq++;
  function* pieces(): Generator<Buffer> {
    for (let at = 0, i = 0; at < size; at += CHUNK_BYTES, i++) {
      const end = Math.min(size, at + CHUNK_BYTES);
      const nonce = Buffer.alloc(16);
      runTag.copy(nonce, 0);
      nonce.writeUInt32BE(seq, 8);
      nonce.writeUInt32BE(i, 12);
      const head = Math.min(16, end - at);
      yield nonce.subarray(0, head);
      if (end - at > head) yield base.subarray(at + head, end);
    }
  }
  return Readable.from(pieces(), { objectMode: false });
}

// ------------------------------------------------------------------ clients

/** What the SDK put in x-amz-content-sha256 (and Expect) on the first PUT: printed. */
let payloadSigning = "";

function s3Client(endpoint: string, sockets: number): S3Client {
  const agent = new Agent({ keepAlive: true, maxSockets: sockets, maxFreeSockets: sockets });
  const c = new S3Client({
    endpoint: `http://${endpoint}`,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: ROOT,
    maxAttempts: 1,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    requestHandler: { httpAgent: agent, connectionTimeout: 10_000, requestTimeout: 600_000 },
    // Errors are counted per cell; the SDK's own warning for each failed streaming PUT is noise.
    logger: { trace() {}, debug() {}, info() {}, warn() {}, error() {} },
  });
  c.middlewareStack.add(
    (next) => async (args) => {
      if (payloadSigning === "" && HttpRequest.isInstance(args.request)) {
        const h = args.request.headers;
        if (args.request.method === "PUT" && Number(h["content-length"] ?? 0) > 0) {
          payloadSigning =
            `x-amz-content-sha256: ${h["x-amz-content-sha256"] ?? "(none)"}, ` +
            `transfer-encoding: ${h["transfer-encoding"] ?? "(none)"}, expect: ${h.expect ?? h.Expect ?? "(none)"}`;
        }
      }
      return next(args);
    },
    { step: "finalizeRequest", priority: "low", name: "benchObserveHeaders" },
  );
  return c;
}

function errorName(e: unknown): string {
  if (e instanceof S3ServiceException) return `${e.name} (${e.$metadata.httpStatusCode ?? "?"})`;
  const err = e as { code?: string; name?: string; message?: string };
  return err.code ?? err.name ?? String(err.message ?? e);
}

async function drain(b: unknown): Promise<number> {
  let n = 0;
  for await (const c of b as AsyncIterable<Uint8Array>) n += c.byteLength;
  return n;
}

// ------------------------------------------------------------------ one cell

interface Row {
  readonly cell: Cell;
  readonly ok: number;
  readonly bytes: number;
  /** From the first request sent to the last answer read. */
  readonly secs: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  readonly errorKinds: Map<string, number>;
  /** The message of the first error of each kind. */
  readonly errorSamples: Map<string, string>;
  /** Distinct objects GETs chose from. */
  readonly objects: number;
  readonly serverCpu: number[];
  readonly benchCpu: number;
  readonly machineCpu: number;
  /** Highest VmRSS sampled per node during the cell, MiB. */
  readonly peakRss: number[];
  readonly benchRss: number;
}

/** Keys written so far, per object size (GET cells read them). */
const written = new Map<number, string[]>();

/** Samples VmRSS of the given processes every 100 ms; `stop` returns the maxima (MiB). */
function rssSampler(pids: readonly number[]): { stop(): { nodes: number[]; bench: number } } {
  const peak = pids.map(() => 0);
  let bench = 0;
  const sample = () => {
    pids.forEach((p, i) => {
      const v = procStatusMiB(p, "VmRSS");
      if (v > (peak[i] as number)) peak[i] = v;
    });
    bench = Math.max(bench, process.memoryUsage.rss() / MiB);
  };
  sample();
  const t = setInterval(sample, 100);
  return {
    stop() {
      clearInterval(t);
      sample();
      return { nodes: peak, bench };
    },
  };
}

const profileWindows: [number, number][] = [];

async function runCell(cluster: BenchCluster, s3: readonly S3Client[], cell: Cell): Promise<Row> {
  const pids = cluster.nodes.map((n) => cluster.pid(n.id));
  const pool = written.get(cell.size) ?? [];
  written.set(cell.size, pool);
  const prefix = `o${cell.size}`;
  const lat: number[] = [];
  const errorKinds = new Map<string, number>();
  const errorSamples = new Map<string, string>();
  let ok = 0;
  let bytes = 0;
  let errors = 0;
  let started = 0;
  let rr = 0;
  let pick = Math.floor(Math.random() * Math.max(1, pool.length));
  const objects = pool.length;

  const sampler = rssSampler(pids);
  const cpuBefore = pids.map(processCpuSeconds);
  const benchBefore = process.cpuUsage();
  const sysBefore = systemCpu();
  const fromUs = monotonicUs();
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;

  const loop = async () => {
    while (performance.now() < deadline && (cell.maxOps === 0 || started < cell.maxOps)) {
      started++;
      const client = s3[rr++ % s3.length] as S3Client;
      const s = performance.now();
      try {
        if (cell.op === "put") {
          const key = `${prefix}/${bodySeq}`;
          await client.send(
            new PutObjectCommand({
              Bucket: BUCKET,
              Key: key,
              Body: body(cell.size),
              ContentLength: cell.size,
            }),
          );
          pool.push(key);
        } else {
          const key = pool[pick++ % pool.length] as string;
          const r = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
          const n = await drain(r.Body);
          if (n !== cell.size) throw new Error(`short body: ${n} of ${cell.size} bytes`);
        }
        lat.push(performance.now() - s);
        ok++;
        bytes += cell.size;
      } catch (e) {
        errors++;
        const k = errorName(e);
        errorKinds.set(k, (errorKinds.get(k) ?? 0) + 1);
        if (!errorSamples.has(k)) errorSamples.set(k, String((e as Error).message).slice(0, 300));
        await sleep(20);
      }
    }
  };
  await Promise.all(Array.from({ length: cell.clients }, loop));
  const secs = (performance.now() - t0) / 1000;
  profileWindows.push([fromUs, monotonicUs()]);
  const cpuAfter = pids.map(processCpuSeconds);
  const bench = process.cpuUsage(benchBefore);
  const sysAfter = systemCpu();
  const rss = sampler.stop();
  lat.sort((a, b) => a - b);
  return {
    cell,
    ok,
    bytes,
    secs,
    p50: percentile(lat, 0.5),
    p99: percentile(lat, 0.99),
    errors,
    errorKinds,
    errorSamples,
    objects: cell.op === "get" ? objects : 0,
    serverCpu: cpuAfter.map((c, i) => (c - (cpuBefore[i] ?? 0)) / secs),
    benchCpu: (bench.user + bench.system) / 1e6 / secs,
    machineCpu: (sysAfter.busy - sysBefore.busy) / secs,
    peakRss: rss.nodes,
    benchRss: rss.bench,
  };
}

/** Writes a few objects of `size` (not measured) for a GET cell that has none to read. */
async function ensureObjects(s3: readonly S3Client[], size: number, count: number): Promise<void> {
  const pool = written.get(size) ?? [];
  written.set(size, pool);
  let i = 0;
  while (pool.length < count) {
    const key = `o${size}/${bodySeq}`;
    await (s3[i++ % s3.length] as S3Client).send(
      new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body(size), ContentLength: size }),
    );
    pool.push(key);
  }
}

// ------------------------------------------------------------------ report

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);
const othersCpu = (r: Row) => Math.max(0, r.machineCpu - sum(r.serverCpu) - r.benchCpu);
const mibps = (r: Row) => r.bytes / MiB / r.secs;

function resultTable(rows: readonly Row[]): string {
  return table(
    [
      "object",
      "op",
      "clients",
      "requests",
      "secs",
      "ops/s",
      "MiB/s",
      "p50 ms",
      "p99 ms",
      "errors",
      "server CPU % n1 / n2 / n3",
      "CPU % bench",
      "CPU % others",
      "peak RSS MiB n1 / n2 / n3",
    ],
    rows.map((r) => [
      sizeName(r.cell.size),
      r.cell.op.toUpperCase(),
      String(r.cell.clients),
      String(r.ok),
      fmt(r.secs, 1),
      fmt(r.ok / r.secs, r.ok / r.secs < 10 ? 2 : 0),
      fmt(mibps(r), 1),
      fmt(r.p50, r.p50 < 100 ? 2 : 0),
      fmt(r.p99, r.p99 < 100 ? 2 : 0),
      String(r.errors),
      r.serverCpu.map((c) => fmt(c * 100)).join(" / "),
      fmt(r.benchCpu * 100),
      fmt(othersCpu(r) * 100),
      r.peakRss.map((m) => fmt(m)).join(" / "),
    ]),
  );
}

interface Floors {
  readonly diskMiBps: number;
  readonly loopbackMiBps: number;
}

function verdicts(rows: readonly Row[], f: Floors): string[] {
  const out: string[] = [];
  const perReplica = f.diskMiBps / REPLICATION;
  const pct = (x: number) => `${fmt(x * 100)}%`;
  for (const r of rows.filter((x) => x.cell.op === "put" && x.cell.size === 64 * MiB)) {
    const ratio = mibps(r) / perReplica;
    out.push(
      `PUT 64 MiB, ${r.cell.clients} client${r.cell.clients > 1 ? "s" : ""}: ${fmt(mibps(r), 1)} MiB/s = ` +
        `${pct(ratio)} of disk seq write / ${REPLICATION} (${fmt(f.diskMiBps)} / ${REPLICATION} = ${fmt(perReplica)} MiB/s); ` +
        `target >= 40%: ${ratio >= 0.4 ? "meets" : "MISSES"}`,
    );
  }
  const gets = rows.filter(
    (x) => x.cell.op === "get" && x.cell.clients >= 16 && x.cell.size >= MiB,
  );
  const biggest = Math.max(...gets.map((g) => g.cell.size));
  for (const r of gets) {
    const ratio = mibps(r) / f.loopbackMiBps;
    const counts = r.cell.size === biggest;
    out.push(
      `GET ${sizeName(r.cell.size)}, ${r.cell.clients} clients: ${fmt(mibps(r), 1)} MiB/s = ${pct(ratio)} of loopback TCP ` +
        `(${fmt(f.loopbackMiBps)} MiB/s)` +
        (counts
          ? `; target >= 60%: ${ratio >= 0.6 ? "meets" : "MISSES"}${r.cell.size < 64 * MiB ? ` (measured on ${sizeName(r.cell.size)}, not 64 MiB)` : ""}`
          : " (for reference)"),
    );
  }
  return out;
}

// ------------------------------------------------------------------ main

/**
 * Waits until the root key works, creates the bucket, then writes and reads one object through
 * each node in turn, so that every node has the key and the bucket in its caches before the
 * first cell (a node learns a bucket created through another one on its next refresh, or by a
 * read on the first miss).
 */
function waitS3(s3: readonly S3Client[], timeoutMs: number): Promise<void> {
  return waitS3On(s3, BUCKET, timeoutMs, async (c, Key) => {
    await c.send(
      new PutObjectCommand({ Bucket: BUCKET, Key, Body: body(4096), ContentLength: 4096 }),
    );
    await drain((await c.send(new GetObjectCommand({ Bucket: BUCKET, Key }))).Body);
  });
}

async function warmup(s3: readonly S3Client[]): Promise<string> {
  if (warmupSeconds <= 0) return "no warm-up";
  const until = performance.now() + warmupSeconds * 1000;
  let n = 0;
  let errors = 0;
  await Promise.all(
    Array.from({ length: 4 }, async (_, c) => {
      let i = c;
      while (performance.now() < until) {
        const client = s3[i++ % s3.length] as S3Client;
        const key = `warmup/${bodySeq}`;
        try {
          await client.send(
            new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body(MiB), ContentLength: MiB }),
          );
          const r = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
          await drain(r.Body);
          n++;
        } catch {
          errors++;
          await sleep(50);
        }
      }
    }),
  );
  return `warm-up: ${n} PUT+GET pairs of 1 MiB in ${warmupSeconds} s (4 clients, ${errors} errors)`;
}

async function main(): Promise<void> {
  const started = performance.now();
  const { header, say } = reportHeader("bench:s3", quick, baseDir);
  say(
    `cluster: 3 kumo server processes on 127.0.0.1, default settings (chunks of ${sizeName(CHUNK_BYTES)}, ` +
      `${REPLICATION} replicas, write quorum 2); ${seconds} s window per cell` +
      (maxOpsAll > 0 ? `, at most ${maxOpsAll} requests per cell` : ""),
  );
  say(
    "client: AWS SDK v3 S3Client per node (keep-alive Agent, forcePathStyle, maxAttempts 1, " +
      'request/response checksums "WHEN_REQUIRED"), requests round-robin over the 3 S3 ports',
  );

  if (waitQuietS > 0) console.log(await waitQuiet(waitQuietS * 1000));
  const diskRuns = Array.from({ length: Math.max(1, diskRunCount) }, () =>
    rawSeqWrite(baseDir, diskMiB * MiB, MiB),
  ).sort((a, b) => a.mibPerSec - b.mibPerSec);
  const disk = diskRuns[Math.floor((diskRuns.length - 1) / 2)] as (typeof diskRuns)[number];
  say(
    `disk: sequential write of ${diskMiB} MiB in 1 MiB blocks + fdatasync: ${fmt(disk.mibPerSec)} MiB/s ` +
      `(writes ${fmt(disk.writeMs)} ms, fdatasync ${fmt(disk.syncMs)} ms)` +
      (diskRuns.length > 1
        ? `, the median of ${diskRuns.length} runs (${diskRuns.map((d) => fmt(d.mibPerSec)).join(", ")} MiB/s)`
        : "") +
      `; / ${REPLICATION} replicas = ${fmt(disk.mibPerSec / REPLICATION)} MiB/s`,
  );
  const loop = await loopbackBandwidth(loopbackSeconds * 1000);
  say(
    `loopback TCP: ${fmt(loop.mibPerSec)} MiB/s (one connection between two node processes, 1 MiB writes, ${fmt(loop.secs, 1)} s)`,
  );

  const profiled = profNodes === "all" ? ["n1", "n2", "n3"] : profNodes.split(",").filter((s) => s);
  const cluster = await startBenchCluster({
    nodes: 3,
    baseDir,
    env: { KUMO_S3_ROOT_KEY: `${ROOT.accessKeyId}:${ROOT.secretAccessKey}` },
    nodeArgs: (id) => [...nodeArgs, ...(profiled.includes(id) ? cpuProfArgs(profDir, id) : [])],
  });
  const maxClients = Math.max(...cells.map((c) => c.clients), 4);
  const s3 = cluster.nodes.map((n) => s3Client(n.s3, maxClients));
  const rows: Row[] = [];
  let hwm: number[] = [];
  try {
    await cluster.waitLeaders(60_000);
    await waitS3(s3, 60_000);
    say(
      `cluster up and bucket created after ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    console.log(await warmup(s3));
    say(`SDK PUT headers: ${payloadSigning}`);

    for (const cell of cells) {
      if (cell.op === "get")
        await ensureObjects(
          s3,
          cell.size,
          Math.min(cell.clients, Math.max(1, (256 * MiB) / cell.size)),
        );
      if (waitQuietS > 0) console.log(`  ${await waitQuiet(waitQuietS * 1000)}`);
      const r = await runCell(cluster, s3, cell);
      const errs = [...r.errorKinds].map(([k, v]) => `${k}=${v}`).join(" ");
      console.log(
        `  ${cell.op.toUpperCase()} ${sizeName(cell.size)}, ${cell.clients} client(s): ${r.ok} requests in ${fmt(r.secs, 1)} s, ` +
          `${fmt(r.ok / r.secs, 1)} ops/s, ${fmt(mibps(r), 1)} MiB/s, p50 ${fmt(r.p50, 2)} / p99 ${fmt(r.p99, 2)} ms, ` +
          `${r.errors} errors${errs ? ` (${errs})` : ""}` +
          (cell.op === "get" ? `, ${r.objects} distinct objects` : "") +
          `; server CPU ${r.serverCpu.map((c) => fmt(c * 100)).join("/")}%, others ${fmt(othersCpu(r) * 100)}%`,
      );
      for (const [k, m] of r.errorSamples) console.log(`    first ${k}: ${m}`);
      rows.push(r);
    }
    hwm = cluster.nodes.map((n) => procStatusMiB(cluster.pid(n.id), "VmHWM"));
  } catch (e) {
    console.error(cluster.logs());
    throw e;
  } finally {
    for (const c of s3) c.destroy();
    await cluster.stop(STOP_GRACE_MS);
  }
  if (showLogs) console.log(cluster.logs());

  const floors = { diskMiBps: disk.mibPerSec, loopbackMiBps: loop.mibPerSec };
  const out: string[] = [];
  out.push(resultTable(rows));
  out.push("");
  out.push(
    `secs: from the first request to the last answer (requests in flight at the end of the ${seconds} s window finish); ` +
      "latency: request sent to response body fully read; CPU from /proc, 100% = one core, others = processes outside " +
      "this benchmark; peak RSS sampled every 100 ms during the cell.",
  );
  out.push(
    `peak RSS over the whole run (VmHWM): ${hwm.map((m, i) => `n${i + 1} ${fmt(m)} MiB`).join(", ")}; ` +
      `load generator ${fmt(process.resourceUsage().maxRSS / 1024)} MiB`,
  );
  out.push(
    `floors: disk sequential write ${fmt(disk.mibPerSec)} MiB/s (/ ${REPLICATION} = ${fmt(disk.mibPerSec / REPLICATION)}), ` +
      `loopback TCP ${fmt(loop.mibPerSec)} MiB/s; ${cpus().length} cores shared by 3 servers and the load generator`,
  );
  for (const v of verdicts(rows, floors)) out.push(`target: ${v}`);
  console.log("");
  for (const l of out) console.log(l);
  console.log(`load average at end: ${loadAverage()}`);
  const took = `bench:s3 took ${((performance.now() - started) / 1000).toFixed(0)} s`;
  console.log(took);

  recordRun("bench:s3", quick, [
    ...textBlock([...header, took]),
    "",
    ...out.map((l, i) => (i > 0 && l !== "" && !l.startsWith("|") ? `- ${l}` : l)),
  ]);

  if (profiled.length > 0) {
    for (const f of profilesIn(profDir)) {
      console.log("");
      console.log(summarizeProfile(f, 25, profileWindows));
    }
  }
}

await main();
