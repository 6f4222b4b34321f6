/**
 * `node dist/bench/tracing.js off|unsampled|sampled`: what tracing costs the write path, measured
 * where its hooks are: three multi-Raft hosts in one process (memory engine and network, so the
 * protocol, the host cycle, the envelopes and the batching are all there is), one group,
 * closed-loop proposers writing through a follower (forwarded inside Raft, the common case) and
 * through the leader. It reports writes per second and, steadier on a shared machine, the CPU
 * time (user + system, all three hosts) per write. Every run starts on fresh hosts (the memory engine slows down as it fills,
 * so runs on the same hosts would not be comparable). One mode per process: alternate processes
 * to compare modes on a shared machine, e.g.
 *   for i in 1 2 3; do for m in off unsampled sampled; do node dist/bench/tracing.js $m; done; done
 *
 * Modes:
 *   off        no SDK; the shipped default. Run it at an older commit too (the file imports nothing
 *              new in this mode) to compare with the code before tracing existed.
 *   unsampled  the SDK registered, every proposal inside an unsampled request span (what 99% of
 *              requests cost with OTEL_TRACES_SAMPLER_ARG=0.01).
 *   sampled    every proposal inside a sampled request span; spans go to a batch processor with
 *              an exporter that drops them (the cost of making spans, not of shipping them).
 *
 * A benchmark, not a test: it prints numbers; docs/operations.md ("Tracing") records them.
 * Options: BENCH_MS (measured window per run, 3000), BENCH_PROPOSERS (64), BENCH_ROUNDS (3).
 */
import { MultiRaftHost } from "../src/multiraft/index.js";
import { type ApplyResult, encodeCommand, ShardMachine } from "../src/shard/index.js";
import { MemoryEngine } from "../src/storage/index.js";
import { MemoryNetwork } from "../src/transport/index.js";

type Host = MultiRaftHost<ApplyResult, ShardMachine>;
type Mode = "off" | "unsampled" | "sampled";

const durationMs = Number(process.env.BENCH_MS ?? 3000);
const proposers = Number(process.env.BENCH_PROPOSERS ?? 64);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const mode = (process.argv[2] ?? "off") as Mode;
if (!["off", "unsampled", "sampled"].includes(mode)) throw new Error(`unknown mode ${mode}`);

const enc = new TextEncoder();
const value = new Uint8Array(256).fill(7);

async function stopHosts(hosts: readonly Host[]): Promise<void> {
  for (const h of hosts) await h.stop();
}

async function startHosts(): Promise<Host[]> {
  const net = new MemoryNetwork();
  const ids = ["n1", "n2", "n3"];
  const hosts: Host[] = [];
  for (const id of ids) {
    const engine = new MemoryEngine();
    const transport = net.transport(id);
    const host: Host = new MultiRaftHost<ApplyResult, ShardMachine>({
      nodeId: id,
      engine,
      transport,
      seed: id.charCodeAt(1),
      tickMs: 50,
      // A short log and few keys keep the memory engine (a sorted array) at a steady size.
      compactEveryEntries: 2000,
      compactKeepEntries: 200,
      machine: (g) => new ShardMachine(engine, g),
    });
    await transport.start({
      onRaft: (from, b) => host.receive(from, b),
      onCall: async () => new Uint8Array(),
    });
    for (const p of ids) if (p !== id) transport.setPeer(p, p);
    host.start();
    hosts.push(host);
  }
  for (const h of hosts) await h.createGroup("g", ids);
  (hosts[0] as Host).campaign("g");
  const until = Date.now() + 10_000;
  while (!hosts.every((h) => h.leaderOf("g") === "n1")) {
    if (Date.now() > until) throw new Error("no leader");
    await new Promise((r) => setTimeout(r, 10));
  }
  return hosts;
}

/** Runs each proposal inside a request span in the traced modes (set up by `setup`). */
type Wrap = <T>(f: () => Promise<T>) => Promise<T>;

async function run(
  host: Host,
  wrap: Wrap | undefined,
  ms: number,
): Promise<{ perSec: number; p50Us: number; cpuUs: number }> {
  let done = 0;
  const latencies: number[] = [];
  const end = performance.now() + ms;
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; performance.now() < end; i++) {
      const cmd = encodeCommand({
        op: "put",
        key: enc.encode(`k${w}-${i % 10}`),
        value,
        cond: { kind: "none" },
      });
      const t0 = performance.now();
      const propose = () => host.propose("g", cmd, 5000);
      const r = await (wrap ? wrap(propose) : propose());
      if (!r.ok) throw new Error(`proposal failed: ${r.code}`);
      latencies.push(performance.now() - t0);
      done++;
    }
  };
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(Array.from({ length: proposers }, (_, w) => worker(w)));
  const cpu = process.cpuUsage(cpu0);
  const secs = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    cpuUs: Math.round((cpu.user + cpu.system) / Math.max(1, done)),
    perSec: Math.round(done / secs),
    p50Us: Math.round((latencies[Math.floor(latencies.length / 2)] ?? 0) * 1000),
  };
}

async function setup(mode: Mode): Promise<{ wrap: Wrap | undefined; stop: () => Promise<void> }> {
  if (mode === "off") return { wrap: undefined, stop: async () => {} };
  // Loaded only in the traced modes (the "off" mode must run on code without tracing).
  const tracingModule = "../src/node/tracing.js";
  const sdkModule = "@opentelemetry/sdk-trace-base";
  const apiModule = "@opentelemetry/api";
  const { startTracing } = await import(tracingModule);
  const sdk = await import(sdkModule);
  const api = await import(apiModule);
  const drop = {
    export: (_spans: unknown[], cb: (r: { code: number }) => void) => cb({ code: 0 }),
    shutdown: async () => {},
  };
  const handle = startTracing({
    nodeId: "bench",
    log: { warn: () => {}, info: () => {} },
    spanProcessor: new sdk.BatchSpanProcessor(drop),
  });
  const tracer = api.trace.getTracer("bench");
  const sampled = mode === "sampled";
  const wrap: Wrap = (f) => {
    // An unsampled request: a context whose span is not sampled (what the sampler gives 99%
    // of requests at a 1% ratio), so every guard in the write path is evaluated.
    const span = sampled
      ? tracer.startSpan("request")
      : api.trace.wrapSpanContext({
          traceId: "0af7651916cd43dd8448eb211c80319c",
          spanId: "b7ad6b7169203331",
          traceFlags: 0,
        });
    return api.context
      .with(api.trace.setSpan(api.context.active(), span), f)
      .finally(() => span.end());
  };
  return { wrap, stop: () => handle.shutdown() };
}

const { wrap, stop } = await setup(mode);
const results = { follower: [] as number[], leader: [] as number[] };
const p50s = { follower: [] as number[], leader: [] as number[] };
const cpus = { follower: [] as number[], leader: [] as number[] };
for (let i = 0; i < rounds; i++) {
  for (const via of ["follower", "leader"] as const) {
    const hosts = await startHosts();
    const host = (via === "leader" ? hosts[0] : hosts[1]) as Host;
    await run(host, wrap, 300); // warm-up (JIT)
    const r = await run(host, wrap, durationMs);
    results[via].push(r.perSec);
    p50s[via].push(r.p50Us);
    cpus[via].push(r.cpuUs);
    await stopHosts(hosts);
  }
}
await stop();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
for (const via of ["follower", "leader"] as const) {
  console.log(
    `bench:tracing mode=${mode} through=${via} cpu_us_per_write=${median(cpus[via])} writes/s=${median(results[via])} p50=${median(p50s[via])}us (runs: cpu ${cpus[via].join(" ")}; writes/s ${results[via].join(" ")}) proposers=${proposers} ms=${durationMs} node=${process.version}`,
  );
}
process.exit(0);
