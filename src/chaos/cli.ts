/**
 * `npm run chaos -- --workload kv --nemesis kill,pause,partition,netem --duration 60 --seed S`
 * `npm run chaos -- --workload s3 --nemesis kill,pause,partition,netem --duration 30 --seed S`
 *
 * Starts a real cluster, runs the workload under the nemesis schedule, heals, checks, prints the
 * report (ending with `chaos: kv ops=N ok=.. info=.. linearizable=true|false lost=0 ...`) and
 * exits 0 (no violation), 1 (a violation) or 2 (the run could not be carried out). See
 * docs/chaos.md.
 */
import { Command, InvalidArgumentError } from "commander";
import { NEMESES, type NemesisName } from "./nemesis.js";
import { runChaos } from "./runner.js";

function int(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    return n;
  };
}

function nemesisList(v: string): NemesisName[] {
  if (v === "none") return [];
  if (v === "all") return [...NEMESES];
  const names = v.split(",").map((s) => s.trim());
  for (const n of names) {
    if (!NEMESES.includes(n as NemesisName))
      throw new InvalidArgumentError(
        `unknown nemesis ${JSON.stringify(n)}; use ${NEMESES.join(", ")}, all or none`,
      );
  }
  return names as NemesisName[];
}

const program = new Command()
  .name("kumo-chaos")
  .description("Jepsen-style chaos run against a real multi-process Kumo cluster (docs/chaos.md)")
  .option("--workload <name>", "kv (the KV API) or s3 (objects through the S3 API)", "kv")
  .option(
    "--nemesis <list>",
    `comma-separated: ${NEMESES.join(", ")}; or all / none`,
    nemesisList,
    [...NEMESES],
  )
  .option("--duration <s>", "seconds of workload under faults", int("--duration", 1, 24 * 3600), 30)
  .option(
    "--seed <n>",
    "seed of the nemesis schedule and the workload (random by default)",
    int("--seed", 0, 2 ** 31 - 1),
  )
  .option("--nodes <n>", "nodes in the cluster", int("--nodes", 3, 9), 3)
  .option("--shards <n>", "shards of the default keyspace", int("--shards", 1, 64), 4)
  .option("--replicas <n>", "replicas per shard", int("--replicas", 1, 7), 3)
  .option(
    "--read-mode <mode>",
    "quorum (ReadIndex) or lease",
    (v) => {
      if (v !== "quorum" && v !== "lease")
        throw new InvalidArgumentError("--read-mode must be quorum or lease");
      return v;
    },
    "quorum",
  )
  .option("--clients <n>", "concurrent clients (s3: 6)", int("--clients", 1, 200), 10)
  .option("--keys <n>", "keys in use at once (s3: 4)", int("--keys", 1, 1000), 8)
  .option(
    "--ops-per-key <n>",
    "operations on a key before it is replaced by a fresh one (s3: 50)",
    int("--ops-per-key", 10, 100_000),
    300,
  )
  .option(
    "--rate <n>",
    "total operations per second, at most (s3: 60)",
    int("--rate", 1, 100_000),
    200,
  )
  .option(
    "--s3-mib <n>",
    "s3: total MiB of object bodies the workload may send (then bodies stay small)",
    int("--s3-mib", 1, 1024 * 1024),
    256,
  )
  .option(
    "--timeout-ms <ms>",
    "client request timeout (then the outcome is unknown)",
    int("--timeout-ms", 100, 600_000),
    7000,
  )
  .option(
    "--net <mode>",
    "auto, netns (namespaces, needs root) or loopback",
    (v) => {
      if (!["auto", "netns", "loopback"].includes(v))
        throw new InvalidArgumentError("--net must be auto, netns or loopback");
      return v;
    },
    "auto",
  )
  .option(
    "--out <dir>",
    "folder for the history and reports (a new one under the OS temp directory by default)",
  )
  .option(
    "--stale-reads",
    "read with ?consistency=stale: deliberately not linearizable, to see the checkers catch it",
    false,
  )
  .option("--keep-data", "keep the nodes' data directories even when nothing was found", false)
  .parse();

const o = program.opts<{
  workload: "kv" | "s3";
  nemesis: NemesisName[];
  duration: number;
  seed?: number;
  nodes: number;
  shards: number;
  replicas: number;
  readMode: "quorum" | "lease";
  clients: number;
  keys: number;
  opsPerKey: number;
  rate: number;
  timeoutMs: number;
  net: "auto" | "netns" | "loopback";
  out?: string;
  keepData: boolean;
  staleReads: boolean;
  s3Mib: number;
}>();

if (o.workload !== "kv" && o.workload !== "s3") {
  console.error(`chaos: unknown workload ${JSON.stringify(o.workload)}; use kv or s3`);
  process.exit(2);
}
if (o.workload === "s3" && o.staleReads) {
  console.error("chaos: --stale-reads is for the kv workload only");
  process.exit(2);
}
/** The S3 workload's own defaults for what was not given (bodies are bigger than KV values). */
const S3_DEFAULTS = { clients: 6, keys: 4, opsPerKey: 50, rate: 60 } as const;
if (o.workload === "s3") {
  for (const name of ["clients", "keys", "opsPerKey", "rate"] as const) {
    if (program.getOptionValueSource(name) === "default") o[name] = S3_DEFAULTS[name];
  }
}
if (o.replicas > o.nodes) {
  console.error("chaos: --replicas cannot exceed --nodes");
  process.exit(2);
}

const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
const result = await runChaos({
  workload: o.workload,
  nemeses: o.nemesis,
  durationMs: o.duration * 1000,
  seed,
  nodes: o.nodes,
  shards: o.shards,
  replicas: o.replicas,
  readMode: o.readMode,
  clients: o.clients,
  keys: o.keys,
  opsPerKeyMax: o.opsPerKey,
  rateMax: o.rate,
  requestTimeoutMs: o.timeoutMs,
  staleReads: o.staleReads,
  net: o.net,
  ...(o.out !== undefined ? { outDir: o.out } : {}),
  keepData: o.keepData,
  serverArgs: [],
  log: (line) => process.stderr.write(`${line}\n`),
  ...(o.workload === "s3" ? { s3BytesMax: o.s3Mib * 1024 * 1024 } : {}),
});
console.log(result.text);
process.exit(result.exitCode);
