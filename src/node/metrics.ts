/**
 * Prometheus metrics of one node (GET /metrics, text format, via prom-client).
 *
 * Cost model: almost everything is read at scrape time from counters the layers keep anyway
 * (host stats, engine stats, transport stats, each local group's status), so a node pays for
 * its metrics when scraped, not per request. The few hooks on hot paths are O(1): one counter
 * and one histogram observation per HTTP request, per Raft proposal or read (`MeteredHost`), and
 * per storage batch (`MeteredEngine`).
 *
 * Cardinality stays bounded whatever the shard count: Raft and shard state are aggregates over
 * local groups (shards led, unavailable, under-replicated, max apply lag); the only per-shard
 * series, `kumo_shard_unavailable{shard}`, exists only for shards without quorum right now, so
 * that an operator can see which ones.
 */
import { readFileSync } from "node:fs";
import { statfs } from "node:fs/promises";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import {
  type GroupMachine,
  type GroupStatus,
  type HostConfig,
  type HostStats,
  MultiRaftHost,
} from "../multiraft/index.js";
import type { EngineStats, ScanOptions, StorageEngine, WriteOp } from "../storage/index.js";
import type { TransportStats } from "../transport/index.js";
import { type EventLoopMonitor, placedHere, readiness, type ShardWatch } from "./health.js";

/** Request latency buckets, in seconds: 1 ms .. 10 s (the request deadline is 5 s by default). */
const LATENCY_BUCKETS_SECONDS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
/** Durable-commit buckets, in seconds: fsyncs take from ~100 µs (NVMe) to 100s of ms (busy disk). */
const COMMIT_BUCKETS_SECONDS = [
  0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
];
const BATCH_OPS_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384];

export type Door = "kv" | "s3" | "admin" | "system" | "other";

/** What the metrics read at scrape time. */
export interface MetricsSources {
  readonly nodeId: string;
  readonly dataDir: string;
  readonly peers: readonly string[];
  readonly host: {
    readonly stats: HostStats;
    groupIds(): readonly string[];
    status(groupId: string): GroupStatus | undefined;
    quiescedGroups(): number;
  };
  readonly engine: { stats(): EngineStats };
  /** Bytes of the node's database on disk. */
  readonly dataBytes: () => number;
  readonly transport: {
    stats(): TransportStats & Partial<Record<"messagesReceived" | "batchesReceived", number>>;
    reachable(peer: string): boolean;
  };
  /** The shard map's shards (their keyspace, and the replica set they should have). */
  readonly shards: () => readonly {
    readonly id: string;
    readonly keyspace: string;
    readonly replicas: readonly string[];
  }[];
  readonly watch: ShardWatch;
  readonly loop: EventLoopMonitor;
  readonly state: () => "starting" | "serving" | "draining" | "stopping";
  /** The chunk layer's counters (object storage). */
  readonly chunks?: () => ChunkStats;
}

/** What the metrics read of the chunk layer (src/blob/ BlobStats). */
export interface ChunkStats {
  readonly chunks: number;
  readonly bytes: number;
  readonly scrubbed: number;
  readonly scrubbedBytes: number;
  readonly repaired: number;
  readonly corruptFound: number;
  readonly resyncQueueLength: number;
  readonly cacheHits: number;
  readonly cacheMisses: number;
  readonly coalesced: number;
  readonly gcDeleted: number;
  readonly putFailed: number;
  readonly getFailed: number;
}

/**
 * This build's version: package.json's, plus `+KUMO_VERSION_SUFFIX` when that variable is set
 * (a build id or commit, stamped by whoever builds the image), so that `kumo status` tells two
 * builds of one release apart during a rolling upgrade.
 */
export function version(): string {
  const suffix = process.env.KUMO_VERSION_SUFFIX?.trim();
  let base = "unknown";
  try {
    const pkg = JSON.parse(
      readFileSync(new URL("../../../package.json", import.meta.url), "utf8"),
    ) as { version?: string };
    base = pkg.version ?? "unknown";
  } catch {
    // a stripped install without package.json: "unknown"
  }
  return suffix ? `${base}+${suffix}` : base;
}

/** Sets a counter to a total kept elsewhere (read at scrape time). */
function setTotal(c: Counter, value: number, labels?: Record<string, string>): void {
  if (labels) {
    c.remove(labels);
    c.inc(labels, value);
  } else {
    c.reset();
    c.inc(value);
  }
}

export class NodeMetrics {
  readonly registry = new Registry();
  private sources: MetricsSources | undefined;

  // Requests (hot path: see observeRequest).
  private readonly requests: Counter<"door" | "op" | "status">;
  private readonly requestSeconds: Histogram<"door" | "op" | "status_class">;
  private readonly inFlight: Gauge;
  private readonly requestChildren = new Map<
    string,
    { count: Counter.Internal; seconds: Histogram.Internal<"door" | "op" | "status_class"> }
  >();
  private readonly throttled: Counter<"scope">;
  private readonly shed: Counter<"reason">;

  // Raft hooks (hot path: see MeteredHost).
  private readonly proposals: Counter<"result">;
  private readonly proposalSeconds: Histogram;
  private readonly reads: Counter<"result">;
  private readonly readSeconds: Histogram;

  // Storage hooks (see MeteredEngine).
  private readonly syncWriteSeconds: Histogram;
  private readonly batchOps: Histogram;

  // Read at scrape time.
  private readonly g: Record<string, Gauge>;
  private readonly c: Record<string, Counter>;
  private readonly shardUnavailable: Gauge<"shard" | "keyspace">;
  private readonly peerReachable: Gauge<"peer">;

  constructor(nodeId: string) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ node: nodeId });
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 20 });

    this.requests = new Counter({
      name: "kumo_http_requests_total",
      help: "HTTP requests answered, by door (kv, admin, system), operation and status code",
      labelNames: ["door", "op", "status"],
      registers,
    });
    this.requestSeconds = new Histogram({
      name: "kumo_http_request_duration_seconds",
      help: "HTTP request latency from the first byte read to the last byte written, by door, operation and status class (2xx, 4xx, 5xx)",
      labelNames: ["door", "op", "status_class"],
      buckets: LATENCY_BUCKETS_SECONDS,
      registers,
    });
    this.inFlight = new Gauge({
      name: "kumo_http_requests_in_flight",
      help: "HTTP requests received and not answered yet",
      registers,
    });
    this.throttled = new Counter({
      name: "kumo_requests_throttled_total",
      help: "KV requests refused 429 RATE_LIMITED, by the bucket that refused them (token or node)",
      labelNames: ["scope"],
      registers,
    });
    this.shed = new Counter({
      name: "kumo_requests_shed_total",
      help: "KV requests refused 429 OVERLOADED, by cause (concurrency bound or event-loop delay)",
      labelNames: ["reason"],
      registers,
    });
    for (const scope of ["token", "node"]) this.throttled.inc({ scope }, 0);
    for (const reason of ["concurrency", "event_loop"]) this.shed.inc({ reason }, 0);

    this.proposals = new Counter({
      name: "kumo_raft_proposals_total",
      help: "Raft proposals (writes) made through this node, by result (ok, or the error code)",
      labelNames: ["result"],
      registers,
    });
    this.proposalSeconds = new Histogram({
      name: "kumo_raft_proposal_duration_seconds",
      help: "Time from a successful proposal to its commit and apply on this replica (replication and fsync included)",
      buckets: LATENCY_BUCKETS_SECONDS,
      registers,
    });
    this.reads = new Counter({
      name: "kumo_raft_reads_total",
      help: "Linearizable reads (ReadIndex or lease) through this node, by result",
      labelNames: ["result"],
      registers,
    });
    this.readSeconds = new Histogram({
      name: "kumo_raft_read_duration_seconds",
      help: "Time for a successful linearizable read to be confirmed and applied on this replica",
      buckets: LATENCY_BUCKETS_SECONDS,
      registers,
    });
    this.proposals.inc({ result: "ok" }, 0);
    this.reads.inc({ result: "ok" }, 0);
    this.syncWriteSeconds = new Histogram({
      name: "kumo_storage_sync_write_duration_seconds",
      help: "Time for a durable write batch to be committed and fsynced (group commit included)",
      buckets: COMMIT_BUCKETS_SECONDS,
      registers,
    });
    this.batchOps = new Histogram({
      name: "kumo_storage_write_batch_ops",
      help: "Operations per storage write batch (all groups' appends, hard states and applies of one cycle)",
      buckets: BATCH_OPS_BUCKETS,
      registers,
    });

    const gauge = (name: string, help: string) => new Gauge({ name, help, registers });
    const counter = (name: string, help: string) => new Counter({ name, help, registers });
    this.g = {
      ready: gauge(
        "kumo_node_ready",
        "1 when /readyz answers 200 (serving, every local shard has a leader and is caught up)",
      ),
      eventLoop: gauge(
        "kumo_event_loop_delay_p99_seconds",
        "p99 event-loop delay over the last 500 ms window (what load shedding compares with --shed-event-loop-delay-ms)",
      ),
      replicas: gauge("kumo_shard_replicas", "Shard replicas hosted on this node"),
      leaders: gauge("kumo_shard_leaders", "Shards this node leads"),
      quiesced: gauge(
        "kumo_shards_quiesced",
        "Local shard replicas currently quiesced (idle, no ticks)",
      ),
      underReplicated: gauge(
        "kumo_shards_under_replicated",
        "Shards led by this node with fewer voters than the shard map gives them, or a voter it cannot reach (counted by leaders only)",
      ),
      unavailable: gauge(
        "kumo_shards_unavailable",
        "Local shard replicas without quorum: no leader known for longer than --leaderless-timeout-ms",
      ),
      applyLag: gauge(
        "kumo_raft_apply_lag_entries",
        "Largest number of committed but not yet applied entries over the local replicas",
      ),
      dataBytes: gauge("kumo_storage_data_bytes", "Size of this node's database file"),
      diskFree: gauge(
        "kumo_disk_free_bytes",
        "Bytes available to Kumo on the filesystem of the data directory",
      ),
      diskSize: gauge("kumo_disk_size_bytes", "Size of the filesystem of the data directory"),
      chunks: gauge("kumo_chunks_stored", "Object chunks stored on this node's disk"),
      chunkBytes: gauge("kumo_chunks_stored_bytes", "Bytes of object chunks on this node's disk"),
      resyncQueue: gauge(
        "kumo_chunks_resync_queue_length",
        "Chunk replicas waiting to be re-replicated (missing or corrupt somewhere)",
      ),
    };
    this.c = {
      leaderChanges: counter(
        "kumo_raft_leader_changes_total",
        "Leader changes observed on local shard replicas (sampled every 500 ms)",
      ),
      cycles: counter("kumo_raft_cycles_total", "Multi-Raft host cycles (one write batch each)"),
      persisted: counter("kumo_raft_entries_persisted_total", "Raft log entries written locally"),
      applied: counter(
        "kumo_raft_entries_applied_total",
        "Raft entries applied to local state machines",
      ),
      messages: counter("kumo_raft_messages_sent_total", "Raft messages sent to other nodes"),
      batches: counter(
        "kumo_raft_message_batches_sent_total",
        "Batches of Raft messages sent (one per destination node per cycle)",
      ),
      fsyncs: counter("kumo_storage_fsyncs_total", "Durable commits (one fsync each)"),
      commits: counter("kumo_storage_commits_total", "Storage commits, durable or not"),
      written: counter("kumo_storage_written_bytes_total", "Bytes written to storage"),
      tSent: counter(
        "kumo_transport_messages_sent_total",
        "Messages sent to peers on the peer port",
      ),
      tDropped: counter(
        "kumo_transport_messages_dropped_total",
        "Messages to peers dropped (peer unreachable or queue full); Raft retries them",
      ),
      tBytes: counter("kumo_transport_sent_bytes_total", "Bytes sent to peers"),
      tReceived: counter("kumo_transport_messages_received_total", "Messages received from peers"),
      scrubErrors: counter(
        "kumo_chunks_scrub_errors_total",
        "Corrupt chunk replicas found (by the scrubber, by reads that verified a hash, by anti-entropy)",
      ),
      scrubbed: counter("kumo_chunks_scrubbed_total", "Chunks re-hashed by the scrubber"),
      scrubbedBytes: counter("kumo_chunks_scrubbed_bytes_total", "Bytes re-hashed by the scrubber"),
      repaired: counter(
        "kumo_chunks_repaired_total",
        "Chunk replicas restored (resync, scrub repair, read repair, anti-entropy)",
      ),
      gcDeleted: counter(
        "kumo_chunks_collected_total",
        "Unreferenced chunks deleted after the grace period",
      ),
      cacheHits: counter(
        "kumo_chunks_cache_hits_total",
        "Chunk reads served by the hot-chunk cache",
      ),
      cacheMisses: counter("kumo_chunks_cache_misses_total", "Chunk reads that missed the cache"),
      coalesced: counter(
        "kumo_chunks_coalesced_total",
        "Chunk reads that joined a fetch of the same chunk already in flight",
      ),
      chunkFailures: counter(
        "kumo_chunks_failed_total",
        "Chunk writes without a quorum and chunk reads without a good replica",
      ),
    };
    this.shardUnavailable = new Gauge({
      name: "kumo_shard_unavailable",
      help: "1 for each local shard replica without quorum right now (no series for healthy shards)",
      labelNames: ["shard", "keyspace"],
      registers,
    });
    this.peerReachable = new Gauge({
      name: "kumo_peer_reachable",
      help: "1 when this node's connection to the peer is up",
      labelNames: ["peer"],
      registers,
    });
    new Gauge({
      name: "kumo_build_info",
      help: "Always 1; the version is a label",
      labelNames: ["version"],
      registers,
    }).set({ version: version() }, 1);
  }

  /** Connects the scrape-time sources (once the node has built them). */
  attach(sources: MetricsSources): void {
    this.sources = sources;
  }

  // ------------------------------------------------------------------ hot-path hooks

  requestStarted(): void {
    this.inFlight.inc();
  }

  observeRequest(door: Door, op: string, status: number, seconds: number): void {
    this.inFlight.dec();
    const key = `${door}|${op}|${status}`;
    let ch = this.requestChildren.get(key);
    if (!ch) {
      const statusClass = `${Math.floor(status / 100)}xx`;
      ch = {
        count: this.requests.labels(door, op, String(status)),
        seconds: this.requestSeconds.labels(door, op, statusClass),
      };
      this.requestChildren.set(key, ch);
    }
    ch.count.inc();
    ch.seconds.observe(seconds);
  }

  refused(reason: "token" | "node" | "concurrency" | "event_loop"): void {
    // (The S3 door reports its refusals here too: they are SlowDown answers.)
    if (reason === "token" || reason === "node") this.throttled.inc({ scope: reason });
    else this.shed.inc({ reason });
  }

  proposal(result: string, seconds: number): void {
    this.proposals.inc({ result });
    if (result === "ok") this.proposalSeconds.observe(seconds);
  }

  read(result: string, seconds: number): void {
    this.reads.inc({ result });
    if (result === "ok") this.readSeconds.observe(seconds);
  }

  storageWrite(ops: number, sync: boolean, seconds: number): void {
    this.batchOps.observe(ops);
    if (sync) this.syncWriteSeconds.observe(seconds);
  }

  // ------------------------------------------------------------------ scrape

  /** The exposition text, with everything read at scrape time refreshed first. */
  async render(): Promise<string> {
    await this.refresh();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private async refresh(): Promise<void> {
    const s = this.sources;
    if (!s) return;
    const g = this.g;
    const c = this.c;
    g.eventLoop?.set(s.loop.delayMsP99() / 1000);

    s.watch.sample();
    const statuses: GroupStatus[] = [];
    for (const id of s.host.groupIds()) {
      const st = s.host.status(id);
      if (st) statuses.push(st);
    }
    const verdict = readiness(s.state(), placedHere(statuses, s.shards(), s.nodeId), s.watch);
    const shards = new Map(s.shards().map((sh) => [sh.id, sh]));
    g.ready?.set(verdict.ready ? 1 : 0);
    let leaders = 0;
    let underReplicated = 0;
    let applyLag = 0;
    for (const st of statuses) {
      applyLag = Math.max(applyLag, st.commit - st.applied);
      if (st.role !== "leader") continue;
      leaders++;
      const short = st.voters.length < (shards.get(st.id)?.replicas.length ?? 0);
      const unreachable = st.voters.some((v) => v !== s.nodeId && !s.transport.reachable(v));
      if (short || unreachable) underReplicated++;
    }
    g.replicas?.set(statuses.length);
    g.leaders?.set(leaders);
    g.quiesced?.set(s.host.quiescedGroups());
    g.underReplicated?.set(underReplicated);
    g.unavailable?.set(
      s.state() === "serving" ? verdict.unavailableShards.length : statuses.length,
    );
    g.applyLag?.set(applyLag);
    this.shardUnavailable.reset();
    for (const shard of verdict.unavailableShards)
      this.shardUnavailable.set({ shard, keyspace: shards.get(shard)?.keyspace ?? "" }, 1);
    this.peerReachable.reset();
    for (const peer of s.peers)
      this.peerReachable.set({ peer }, s.transport.reachable(peer) ? 1 : 0);

    const hs = s.host.stats;
    setTotal(c.leaderChanges as Counter, s.watch.leaderChanges());
    setTotal(c.cycles as Counter, hs.cycles);
    setTotal(c.persisted as Counter, hs.entriesPersisted);
    setTotal(c.applied as Counter, hs.entriesApplied);
    setTotal(c.messages as Counter, hs.messagesSent);
    setTotal(c.batches as Counter, hs.batchesSent);
    const es = s.engine.stats();
    setTotal(c.fsyncs as Counter, es.syncs);
    setTotal(c.commits as Counter, es.batches);
    setTotal(c.written as Counter, es.bytesWritten);
    const ts = s.transport.stats();
    setTotal(c.tSent as Counter, ts.messagesSent);
    setTotal(c.tDropped as Counter, ts.messagesDropped);
    setTotal(c.tBytes as Counter, ts.bytesSent);
    setTotal(c.tReceived as Counter, ts.messagesReceived ?? 0);
    const ch = s.chunks?.();
    if (ch) {
      g.chunks?.set(ch.chunks);
      g.chunkBytes?.set(ch.bytes);
      g.resyncQueue?.set(ch.resyncQueueLength);
      setTotal(c.scrubErrors as Counter, ch.corruptFound);
      setTotal(c.scrubbed as Counter, ch.scrubbed);
      setTotal(c.scrubbedBytes as Counter, ch.scrubbedBytes);
      setTotal(c.repaired as Counter, ch.repaired);
      setTotal(c.gcDeleted as Counter, ch.gcDeleted);
      setTotal(c.cacheHits as Counter, ch.cacheHits);
      setTotal(c.cacheMisses as Counter, ch.cacheMisses);
      setTotal(c.coalesced as Counter, ch.coalesced);
      setTotal(c.chunkFailures as Counter, ch.putFailed + ch.getFailed);
    } else setTotal(c.scrubErrors as Counter, 0);

    try {
      g.dataBytes?.set(s.dataBytes());
    } catch {
      // The file may not exist for a moment at start; the gauge keeps its last value.
    }
    try {
      const fs = await statfs(s.dataDir);
      g.diskFree?.set(fs.bavail * fs.bsize);
      g.diskSize?.set(fs.blocks * fs.bsize);
    } catch {
      // The data directory vanished or the filesystem does not say: keep the last values.
    }
  }
}

/**
 * The multi-Raft host with timing of proposals and linearizable reads: the only hook on the
 * write path (one clock read and one counter and histogram update per operation).
 */
export class MeteredHost<R, M extends GroupMachine<R>> extends MultiRaftHost<R, M> {
  constructor(
    cfg: HostConfig<R, M>,
    private readonly metrics: NodeMetrics,
  ) {
    super(cfg);
  }

  override propose(
    ...args: Parameters<MultiRaftHost<R, M>["propose"]>
  ): ReturnType<MultiRaftHost<R, M>["propose"]> {
    const t0 = performance.now();
    return super.propose(...args).then((o) => {
      this.metrics.proposal(o.ok ? "ok" : o.code, (performance.now() - t0) / 1000);
      return o;
    });
  }

  override linearizableRead(
    ...args: Parameters<MultiRaftHost<R, M>["linearizableRead"]>
  ): ReturnType<MultiRaftHost<R, M>["linearizableRead"]> {
    const t0 = performance.now();
    return super.linearizableRead(...args).then((o) => {
      this.metrics.read(o.ok ? "ok" : o.code, (performance.now() - t0) / 1000);
      return o;
    });
  }
}

/** `new MeteredHost(cfg, metrics)`, with the configuration last (it is the long argument). */
export function meteredHost<R, M extends GroupMachine<R>>(
  metrics: NodeMetrics,
  cfg: HostConfig<R, M>,
): MeteredHost<R, M> {
  return new MeteredHost(cfg, metrics);
}

/** A storage engine that times its write batches (for the host; reads go straight through). */
export class MeteredEngine implements StorageEngine {
  constructor(
    private readonly inner: StorageEngine,
    private readonly metrics: NodeMetrics,
  ) {}

  get(key: Uint8Array): Uint8Array | undefined {
    return this.inner.get(key);
  }

  scan(start: Uint8Array, end: Uint8Array, opts?: ScanOptions): Iterable<[Uint8Array, Uint8Array]> {
    return this.inner.scan(start, end, opts);
  }

  async write(ops: readonly WriteOp[], opts: { readonly sync: boolean }): Promise<void> {
    const t0 = performance.now();
    await this.inner.write(ops, opts);
    this.metrics.storageWrite(ops.length, opts.sync, (performance.now() - t0) / 1000);
  }

  stats(): EngineStats {
    return this.inner.stats();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
