/**
 * Node configuration. Every option can be given as a command-line flag (`--value-bytes-max`),
 * an environment variable (`KUMO_VALUE_BYTES_MAX`) or a key in a YAML file (`valueBytesMax`, or
 * `value-bytes-max`), with that precedence: flag > environment > file > default. One table
 * (OPTIONS) defines them all; docs/configuration.md is checked against it by a test.
 */
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { SHARD_KEY_BYTES_MAX } from "../shard/index.js";

export interface PeerAddress {
  readonly id: string;
  readonly address: string;
}

export interface NodeConfig {
  readonly id: string;
  readonly data: string;
  readonly peer: string;
  readonly api: string;
  readonly s3: string;
  readonly join: readonly PeerAddress[];
  readonly tokens: readonly string[];
  readonly labels: readonly string[];
  readonly shards: number;
  readonly replicas: number;
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly readMode: "quorum" | "lease";
  readonly requestTimeoutMs: number;
  readonly leaderlessTimeoutMs: number;
  readonly shutdownDelayMs: number;
  readonly shutdownLeadershipTimeoutMs: number;
  readonly shutdownDrainTimeoutMs: number;
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
  readonly splitBytes: number;
  readonly splitLoadOpsPerSec: number;
  readonly suspectAfterMs: number;
  readonly deadAfterMs: number;
  readonly listLimitMax: number;
  readonly tlsCa: string | undefined;
  readonly tlsCert: string | undefined;
  readonly tlsKey: string | undefined;
  readonly tlsReloadIntervalMs: number;
  readonly clientTlsCert: string | undefined;
  readonly clientTlsKey: string | undefined;
  readonly clientTlsCa: string | undefined;
  readonly httpHeadersTimeoutMs: number;
  readonly httpIdleTimeoutMs: number;
  readonly httpHeaderBytesMax: number;
  readonly adminTokens: readonly string[];
  readonly secretKeyFile: string | undefined;
  readonly logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  readonly tokenRatePerSecond: number;
  readonly tokenBurstRequests: number;
  readonly nodeRatePerSecond: number;
  readonly nodeBurstRequests: number;
  readonly concurrentRequestsMax: number;
  readonly shedEventLoopDelayMs: number;
  readonly s3Domains: readonly string[];
  readonly s3Region: string;
  readonly s3RootKey: string | undefined;
  readonly chunkReplicas: number;
  readonly chunkWriteQuorum: number;
  readonly chunkGcGraceMs: number;
  readonly s3UploadDeadlineMs: number;
  readonly scrubBytesPerSec: number;
  readonly antiEntropyIntervalMs: number;
  readonly chunkCacheBytes: number;
}

type Kind = "string" | "int" | "list" | "join" | "enum" | "duration";

export interface OptionSpec {
  readonly key: keyof NodeConfig;
  readonly flag: string;
  readonly kind: Kind;
  readonly def?: string | number | readonly string[];
  readonly required?: boolean;
  readonly min?: number;
  readonly max?: number;
  readonly values?: readonly string[];
  readonly help: string;
}

export const OPTIONS: readonly OptionSpec[] = [
  {
    key: "id",
    flag: "id",
    kind: "string",
    required: true,
    help: "this node's unique, stable id (e.g. n1)",
  },
  {
    key: "data",
    flag: "data",
    kind: "string",
    required: true,
    help: "directory for this node's data (created if missing)",
  },
  {
    key: "peer",
    flag: "peer",
    kind: "string",
    def: "127.0.0.1:7000",
    help: "HOST:PORT for node-to-node gRPC (Raft, forwarding, health)",
  },
  {
    key: "api",
    flag: "api",
    kind: "string",
    def: "127.0.0.1:7001",
    help: "HOST:PORT for the KV and admin HTTP API",
  },
  {
    key: "s3",
    flag: "s3",
    kind: "string",
    def: "127.0.0.1:7002",
    help: "HOST:PORT for the S3 API",
  },
  {
    key: "join",
    flag: "join",
    kind: "join",
    def: [],
    help: "the other initial members, as ID=HOST:PORT (their peer address), comma-separated",
  },
  {
    key: "tokens",
    flag: "tokens",
    kind: "list",
    def: [],
    help: "static bearer tokens of the KV API, comma-separated: read and write on every keyspace; admin too while --admin-tokens is empty (token records: kumo token create)",
  },
  {
    key: "labels",
    flag: "labels",
    kind: "list",
    def: [],
    help: "placement labels KEY=VALUE, comma-separated: replicas of a shard spread over zone= first, then rack=",
  },
  {
    key: "shards",
    flag: "shards",
    kind: "int",
    def: 8,
    min: 1,
    max: 4096,
    help: "shards of the default keyspace (when the cluster is created)",
  },
  {
    key: "replicas",
    flag: "replicas",
    kind: "int",
    def: 3,
    min: 1,
    max: 7,
    help: "replicas per shard (when the cluster is created)",
  },
  {
    key: "tickMs",
    flag: "tick-ms",
    kind: "int",
    def: 50,
    min: 1,
    max: 10_000,
    help: "Raft tick length in milliseconds",
  },
  {
    key: "electionTicks",
    flag: "election-ticks",
    kind: "int",
    def: 10,
    min: 3,
    max: 1000,
    help: "election timeout in ticks (randomized up to twice that)",
  },
  {
    key: "readMode",
    flag: "read-mode",
    kind: "enum",
    def: "quorum",
    values: ["quorum", "lease"],
    help: "how linearizable reads confirm leadership: a heartbeat round, or the leader lease",
  },
  {
    key: "requestTimeoutMs",
    flag: "request-timeout-ms",
    kind: "int",
    def: 5000,
    min: 10,
    max: 600_000,
    help: "deadline of one client request, retries included",
  },
  {
    key: "leaderlessTimeoutMs",
    flag: "leaderless-timeout-ms",
    kind: "int",
    def: 2000,
    min: 10,
    max: 600_000,
    help: "answer 503 once a shard has had no leader for this long (fail fast)",
  },
  {
    key: "shutdownDelayMs",
    flag: "shutdown-delay",
    kind: "duration",
    def: 1000,
    min: 0,
    max: 600_000,
    help: "on SIGTERM, keep accepting connections at least this long after /readyz turns 503, so load balancers notice (overlaps the leadership handover)",
  },
  {
    key: "shutdownLeadershipTimeoutMs",
    flag: "shutdown-leadership-timeout",
    kind: "duration",
    def: 10_000,
    min: 0,
    max: 600_000,
    help: "on SIGTERM, how long to wait for every shard this node leads to hand its leadership to another replica",
  },
  {
    key: "shutdownDrainTimeoutMs",
    flag: "shutdown-drain-timeout",
    kind: "duration",
    def: 10_000,
    min: 0,
    max: 3_600_000,
    help: "on SIGTERM, how long requests in flight may take to finish once the node stops accepting connections",
  },
  {
    key: "keyBytesMax",
    flag: "key-bytes-max",
    kind: "int",
    def: 1024,
    min: 1,
    max: SHARD_KEY_BYTES_MAX,
    help: "largest key, in bytes (413 beyond)",
  },
  {
    key: "valueBytesMax",
    flag: "value-bytes-max",
    kind: "int",
    def: 1 << 20,
    min: 0,
    max: 64 << 20,
    help: "largest value, in bytes (413 beyond)",
  },
  {
    key: "splitBytes",
    flag: "split-bytes",
    kind: "int",
    def: 64 << 20,
    min: 1024,
    max: 2 ** 40,
    help: "a shard splits in two once it holds more than this many bytes",
  },
  {
    key: "splitLoadOpsPerSec",
    flag: "split-load-ops-per-sec",
    kind: "int",
    def: 2000,
    min: 0,
    max: 10_000_000,
    help: "a shard applying more writes per second than this for 3 s splits in two (0: never by load)",
  },
  {
    key: "suspectAfterMs",
    flag: "suspect-after",
    kind: "duration",
    def: 10_000,
    min: 100,
    max: 86_400_000,
    help: "a node unreachable this long is suspect (shown in status; nothing moves yet); e.g. 10s, 500ms, 2m",
  },
  {
    key: "deadAfterMs",
    flag: "dead-after",
    kind: "duration",
    def: 60_000,
    min: 500,
    max: 86_400_000,
    help: "a node unreachable this long is dead: its shard replicas are re-created on the other nodes",
  },
  {
    key: "s3Domains",
    flag: "s3-domains",
    kind: "list",
    def: ["s3.localhost"],
    help: "domains of virtual-host-style S3 requests (bucket.<domain>); path style always works",
  },
  {
    key: "s3Region",
    flag: "s3-region",
    kind: "string",
    def: "us-east-1",
    help: "the region GetBucketLocation reports (SigV4 accepts any region)",
  },
  {
    key: "s3RootKey",
    flag: "s3-root-key",
    kind: "string",
    help: "an S3 access key ACCESS_KEY_ID:SECRET created at start with owner access to every bucket (like MinIO's root user); none by default",
  },
  {
    key: "chunkReplicas",
    flag: "chunk-replicas",
    kind: "int",
    def: 3,
    min: 1,
    max: 7,
    help: "copies of every object chunk (N; fewer while the cluster has fewer nodes)",
  },
  {
    key: "chunkWriteQuorum",
    flag: "chunk-write-quorum",
    kind: "int",
    def: 2,
    min: 1,
    max: 7,
    help: "copies a chunk must have on disk before an upload is acknowledged (W, at most --chunk-replicas)",
  },
  {
    key: "chunkGcGraceMs",
    flag: "chunk-gc-grace",
    kind: "duration",
    def: 3_600_000,
    min: 1_000,
    max: 30 * 86_400_000,
    help: "an unreferenced chunk is deleted only once it is this old (covers uploads in flight)",
  },
  {
    key: "s3UploadDeadlineMs",
    flag: "s3-upload-deadline",
    kind: "duration",
    def: 86_400_000,
    min: 1_000,
    max: 30 * 86_400_000,
    help: "an upload (one PUT or part) not committed this long after it began is abandoned: its data is swept",
  },
  {
    key: "scrubBytesPerSec",
    flag: "scrub-bytes-per-sec",
    kind: "int",
    def: 8 << 20,
    min: 0,
    max: 2 ** 40,
    help: "rate at which stored chunks are re-hashed to find corruption, per replication class holding chunks (0: no scrubbing)",
  },
  {
    key: "antiEntropyIntervalMs",
    flag: "anti-entropy-interval",
    kind: "duration",
    def: 600_000,
    min: 1_000,
    max: 7 * 86_400_000,
    help: "how often chunk inventories are compared with the other replicas and differences repaired",
  },
  {
    key: "chunkCacheBytes",
    flag: "chunk-cache-bytes",
    kind: "int",
    def: 64 << 20,
    min: 0,
    max: 2 ** 40,
    help: "memory for the hot-chunk cache of the S3 door (0: no cache); buckets with fewer chunk replicas get another quarter of it per class",
  },
  {
    key: "listLimitMax",
    flag: "list-limit-max",
    kind: "int",
    def: 1000,
    min: 1,
    max: 100_000,
    help: "largest page of a listing",
  },
  {
    key: "tlsCa",
    flag: "tls-ca",
    kind: "string",
    help: "CA certificate (PEM) for mutual TLS between nodes",
  },
  {
    key: "tlsCert",
    flag: "tls-cert",
    kind: "string",
    help: "this node's certificate (PEM) for mutual TLS between nodes",
  },
  {
    key: "tlsKey",
    flag: "tls-key",
    kind: "string",
    help: "this node's private key (PEM) for mutual TLS between nodes",
  },
  {
    key: "tlsReloadIntervalMs",
    flag: "tls-reload-interval",
    kind: "duration",
    def: 5_000,
    min: 100,
    max: 3_600_000,
    help: "how often certificate and key files (--tls-*, --client-tls-*) are re-read; a changed, valid pair is used for new connections without a restart (SIGHUP reloads at once)",
  },
  {
    key: "clientTlsCert",
    flag: "client-tls-cert",
    kind: "string",
    help: "certificate (PEM, chain allowed) served on the API and S3 ports: with --client-tls-key, both serve HTTPS only",
  },
  {
    key: "clientTlsKey",
    flag: "client-tls-key",
    kind: "string",
    help: "private key (PEM) of --client-tls-cert",
  },
  {
    key: "clientTlsCa",
    flag: "client-tls-ca",
    kind: "string",
    help: "CA certificate (PEM) this node trusts when it calls other nodes' API ports over HTTPS (the console's cluster view); default: --tls-ca",
  },
  {
    key: "httpHeadersTimeoutMs",
    flag: "http-headers-timeout",
    kind: "duration",
    def: 30_000,
    min: 100,
    max: 300_000,
    help: "API and S3 ports: a client must send a request's whole header (and finish the TLS handshake) within this time, or gets 408 and is disconnected (slowloris)",
  },
  {
    key: "httpIdleTimeoutMs",
    flag: "http-idle-timeout",
    kind: "duration",
    def: 60_000,
    min: 100,
    max: 3_600_000,
    help: "API and S3 ports: a connection on which no byte moves, either way, for this long is closed (a stalled upload); transfers that keep moving are never cut",
  },
  {
    key: "httpHeaderBytesMax",
    flag: "http-header-bytes-max",
    kind: "int",
    def: 16_384,
    min: 1_024,
    max: 1_048_576,
    help: "API and S3 ports: largest request header block (request line and all headers); larger gets 431",
  },
  {
    key: "adminTokens",
    flag: "admin-tokens",
    kind: "list",
    def: [],
    help: "bootstrap admin bearer tokens (/v1/admin/..., keyspaces, nodes, tokens, keys), comma-separated; none: any of --tokens",
  },
  {
    key: "secretKeyFile",
    flag: "secret-key-file",
    kind: "string",
    help: "file with the cluster secret key (32 bytes as 64 hex digits, e.g. openssl rand -hex 32) that seals S3 secrets at rest; the same on every node; none: stored unencrypted (warned at start)",
  },
  {
    key: "logLevel",
    flag: "log-level",
    kind: "enum",
    def: "info",
    values: ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
    help: "least severe level written to the JSON log on standard output (debug: one line per request)",
  },
  {
    key: "tokenRatePerSecond",
    flag: "token-rate-per-second",
    kind: "int",
    def: 0,
    min: 0,
    max: 1_000_000,
    help: "KV requests per second each bearer token may make on this node (0: unlimited); 429 RATE_LIMITED beyond",
  },
  {
    key: "tokenBurstRequests",
    flag: "token-burst-requests",
    kind: "int",
    def: 0,
    min: 0,
    max: 1_000_000,
    help: "requests a token may make at once above its rate (0: one second's worth)",
  },
  {
    key: "nodeRatePerSecond",
    flag: "node-rate-per-second",
    kind: "int",
    def: 0,
    min: 0,
    max: 1_000_000,
    help: "KV requests per second this node accepts from all tokens together (0: unlimited)",
  },
  {
    key: "nodeBurstRequests",
    flag: "node-burst-requests",
    kind: "int",
    def: 0,
    min: 0,
    max: 1_000_000,
    help: "requests the node accepts at once above its rate (0: one second's worth)",
  },
  {
    key: "concurrentRequestsMax",
    flag: "concurrent-requests-max",
    kind: "int",
    def: 1024,
    min: 1,
    max: 1_000_000,
    help: "KV requests in progress at once on this node; 429 OVERLOADED beyond",
  },
  {
    key: "shedEventLoopDelayMs",
    flag: "shed-event-loop-delay-ms",
    kind: "int",
    def: 500,
    min: 0,
    max: 600_000,
    help: "answer new KV requests 429 OVERLOADED while the event loop's recent p99 delay exceeds this (0: never)",
  },
];

export class ConfigError extends Error {
  override name = "ConfigError";
}

export function envName(flag: string): string {
  return `KUMO_${flag.toUpperCase().replace(/-/g, "_")}`;
}

function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function parseJoin(v: string): PeerAddress[] {
  return v
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((s) => {
      const m = /^([A-Za-z0-9_.-]+)=([^=\s]+:\d+)$/.exec(s);
      if (!m)
        throw new ConfigError(
          `--join entries must look like ID=HOST:PORT, got ${JSON.stringify(s)}`,
        );
      return { id: m[1] as string, address: m[2] as string };
    });
}

function convert(spec: OptionSpec, raw: unknown, source: string): unknown {
  const where = `${spec.flag} (from ${source})`;
  switch (spec.kind) {
    case "string":
      if (typeof raw !== "string" && typeof raw !== "number")
        throw new ConfigError(`${where} must be a string`);
      return String(raw);
    case "int": {
      const n = typeof raw === "number" ? raw : Number(String(raw).replace(/_/g, ""));
      if (!Number.isInteger(n))
        throw new ConfigError(`${where} must be an integer, got ${JSON.stringify(raw)}`);
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) {
        throw new ConfigError(`${where} must be between ${spec.min} and ${spec.max}, got ${n}`);
      }
      return n;
    }
    case "duration": {
      const n = parseDurationMs(raw);
      if (n === undefined)
        throw new ConfigError(
          `${where} must be a duration such as 500ms, 10s, 2m or 1h (a plain number is milliseconds), got ${JSON.stringify(raw)}`,
        );
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) {
        throw new ConfigError(
          `${where} must be between ${spec.min} ms and ${spec.max} ms, got ${n} ms`,
        );
      }
      return n;
    }
    case "enum":
      if (!spec.values?.includes(String(raw)))
        throw new ConfigError(`${where} must be one of ${spec.values?.join(", ")}`);
      return String(raw);
    case "list":
      if (Array.isArray(raw)) return raw.map(String);
      return String(raw)
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "");
    case "join":
      if (Array.isArray(raw)) return parseJoin(raw.map(String).join(","));
      return parseJoin(String(raw));
  }
}

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "500ms", "10s", "1.5m", "2h", or a number of milliseconds; undefined if it is none of these. */
export function parseDurationMs(raw: unknown): number | undefined {
  if (typeof raw === "number")
    return Number.isFinite(raw) && raw >= 0 ? Math.round(raw) : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(String(raw));
  if (!m) return undefined;
  return Math.round(Number(m[1]) * (DURATION_UNITS_MS[m[2] ?? "ms"] as number));
}

/**
 * Resolves the configuration from flags (already parsed, keyed by flag name in camelCase as
 * commander gives them), the environment, and an optional YAML file.
 */
export function resolveConfig(
  flags: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): NodeConfig {
  const file = (flags.config as string | undefined) ?? env.KUMO_CONFIG;
  let fromFile: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
    }
    const parsed = parseYaml(text) as unknown;
    if (
      parsed !== null &&
      parsed !== undefined &&
      (typeof parsed !== "object" || Array.isArray(parsed))
    ) {
      throw new ConfigError(`config file ${file} must be a YAML mapping`);
    }
    fromFile = (parsed ?? {}) as Record<string, unknown>;
    const known = new Set(OPTIONS.flatMap((o) => [o.key as string, o.flag]));
    for (const k of Object.keys(fromFile)) {
      if (!known.has(k))
        throw new ConfigError(`config file ${file}: unknown option ${JSON.stringify(k)}`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const spec of OPTIONS) {
    const fromFlag = flags[camel(spec.flag)];
    const fromEnv = env[envName(spec.flag)];
    const fileValue = fromFile[spec.key] ?? fromFile[spec.flag];
    let value: unknown;
    if (fromFlag !== undefined) value = convert(spec, fromFlag, "flag");
    else if (fromEnv !== undefined && fromEnv !== "") value = convert(spec, fromEnv, "environment");
    else if (fileValue !== undefined) value = convert(spec, fileValue, "config file");
    else if (spec.def !== undefined) value = spec.def;
    else if (spec.required)
      throw new ConfigError(`--${spec.flag} (or ${envName(spec.flag)}) is required`);
    out[spec.key] = value;
  }
  const cfg = out as unknown as NodeConfig;
  const tls = [cfg.tlsCa, cfg.tlsCert, cfg.tlsKey].filter((x) => x !== undefined).length;
  if (tls !== 0 && tls !== 3)
    throw new ConfigError("mutual TLS needs all of --tls-ca, --tls-cert and --tls-key");
  if ((cfg.clientTlsCert === undefined) !== (cfg.clientTlsKey === undefined))
    throw new ConfigError("client TLS needs both --client-tls-cert and --client-tls-key");
  if (cfg.join.some((p) => p.id === cfg.id))
    throw new ConfigError("--join lists the other members, not this node");
  parseLabels(cfg.labels);
  if (cfg.chunkWriteQuorum > cfg.chunkReplicas)
    throw new ConfigError("--chunk-write-quorum cannot exceed --chunk-replicas");
  if (cfg.s3RootKey !== undefined) parseRootKey(cfg.s3RootKey);
  return cfg;
}

/** `--s3-root-key ID:SECRET`; throws ConfigError when malformed. */
export function parseRootKey(v: string): { accessKeyId: string; secretAccessKey: string } {
  const m = /^([A-Za-z0-9]{3,128}):([\x21-\x7e]{8,128})$/.exec(v);
  if (!m)
    throw new ConfigError(
      "--s3-root-key is ACCESS_KEY_ID:SECRET (id: 3-128 letters and digits; secret: 8-128 printable characters)",
    );
  return { accessKeyId: m[1] as string, secretAccessKey: m[2] as string };
}

/** `--labels zone=a,rack=r1` as a record; throws ConfigError on a malformed entry. */
export function parseLabels(entries: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of entries) {
    const m = /^([a-z][a-z0-9_-]{0,31})=([A-Za-z0-9_.-]{1,64})$/.exec(e);
    if (!m)
      throw new ConfigError(
        `--labels entries look like zone=eu-1 (key: a-z0-9_-, value: A-Za-z0-9_.-), got ${JSON.stringify(e)}`,
      );
    out[m[1] as string] = m[2] as string;
  }
  return out;
}
