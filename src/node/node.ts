/**
 * The composition root of one Kumo node: opens storage, starts the transport, the multi-Raft
 * host with this node's shard replicas, and the HTTP doors. The only place with real timers,
 * sockets and files wired together.
 */
import { randomInt } from "node:crypto";
import { mkdirSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { join } from "node:path";
import {
  KeyspaceAdmin,
  KeyspaceHttpApi,
  metaKeyspace,
  staticKeyspaces,
} from "../api/admin/keyspaces.js";
import { RingKeeper } from "../api/admin/ring.js";
import { ConsoleApi } from "../api/console/index.js";
import { authorized, HttpError, KvHttpApi, sendError, sendJson } from "../api/kv/http.js";
import { KvService } from "../api/kv/service.js";
import { S3KeysHttpApi } from "../api/s3/admin.js";
import { S3Meta } from "../api/s3/meta.js";
import { type ChunkPort, INDEX_KEYSPACE, ObjectIndex } from "../api/s3/objects.js";
import { S3_DEFAULTS, S3Api } from "../api/s3/server.js";
import { BlobService, ChunkStore } from "../blob/index.js";
import type { MultiRaftHost } from "../multiraft/index.js";
import { type ApplyResult, initialShardMap, ShardMachine, ShardMap } from "../shard/index.js";
import { LmdbEngine, type StorageEngine } from "../storage/index.js";
import { GrpcTransport } from "../transport/index.js";
import { type NodeConfig, parseLabels, parseRootKey } from "./config.js";
import { createLogger, type Logger, requestIdOf } from "./log.js";
import { MeteredEngine, meteredHost, version } from "./metrics.js";
import { Operability } from "./ops.js";
import { startTracing, type Tracing } from "./tracing.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const CLUSTER_KEY = enc.encode("c/cluster");
/** Set once the initial shards of this node were created (first start of an initial member). */
const GROUPS_CREATED_KEY = enc.encode("c/groups-created");
/** Transport method: "which cluster is this?" (answered with the stored ClusterIdentity). */
const CLUSTER_INFO = "cluster.info";
/** How long a fresh node asks its seeds before it creates a cluster of its own. */
const JOIN_ASK_MS = 3_000;

interface ClusterIdentity {
  readonly members: readonly string[];
  readonly shards: number;
  readonly replicas: number;
}

function splitHostPort(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(":");
  return { host: addr.slice(0, i), port: Number(addr.slice(i + 1)) };
}

function listen(server: Server, addr: string): Promise<void> {
  const { host, port } = splitHostPort(addr);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

export class KumoNode {
  private engine: StorageEngine | undefined;
  private transport: GrpcTransport | undefined;
  private host: MultiRaftHost<ApplyResult, ShardMachine> | undefined;
  private api: Server | undefined;
  private s3: Server | undefined;
  private kv: KvService | undefined;
  private ready = false;
  private balanceTimer: NodeJS.Timeout | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  private keyspaces: KeyspaceAdmin | undefined;
  private identity: ClusterIdentity | undefined;
  private stopping = false;
  private ops: Operability | undefined;
  private blob: BlobService | undefined;
  private ring: RingKeeper | undefined;
  private s3meta: S3Meta | undefined;
  private tracing: Tracing | undefined;
  readonly log: Logger;

  constructor(
    readonly cfg: NodeConfig,
    private readonly onFatal: (err: unknown) => void = (err) => {
      this.log.fatal({ err }, "fatal error; stopping");
      process.exit(1);
    },
    log?: Logger,
  ) {
    this.log = log ?? createLogger({ level: cfg.logLevel, node: cfg.id });
  }

  async start(): Promise<void> {
    const cfg = this.cfg;
    // Off unless the OTEL_* variables ask for traces (docs/operations.md, "Tracing").
    this.tracing = startTracing({ nodeId: cfg.id, log: this.log, version: version() });
    mkdirSync(cfg.data, { recursive: true });
    const engine = await LmdbEngine.open(join(cfg.data, "db"));
    this.engine = engine;
    if (engine.recovery.segments > 0) {
      // Batches acknowledged before a crash that LMDB did not hold yet (docs/storage.md).
      this.log.info({ ...engine.recovery }, "storage recovered from the write-ahead log");
    }
    const transport = new GrpcTransport({
      self: cfg.id,
      listen: cfg.peer,
      ...(cfg.tlsCa && cfg.tlsCert && cfg.tlsKey
        ? { tls: { caFile: cfg.tlsCa, certFile: cfg.tlsCert, keyFile: cfg.tlsKey } }
        : {}),
    });
    this.transport = transport;
    // The transport starts first: a joining node asks its seeds who the cluster is before it
    // can build anything, and answers the same question for others. Raft traffic and requests
    // that arrive before the rest is wired are refused (the senders retry).
    await transport.start({
      onRaft: (from, batch) => this.host?.receive(from, batch),
      onCall: (from, method, body) => {
        if (method === CLUSTER_INFO) return Promise.resolve(this.clusterInfo());
        if (!this.kv) return Promise.reject(new Error("this node is starting"));
        if (method.startsWith("blob.")) {
          const answer = this.blob?.handleCall(from, method, body);
          if (answer) return answer;
          return Promise.reject(new Error("this node is starting"));
        }
        return this.kv.handleCall(from, method, body);
      },
    });
    for (const p of cfg.join) transport.setPeer(p.id, p.address);
    const identity = await this.clusterIdentity(engine, transport);
    this.identity = identity;
    const members = identity.members;
    const ops = new Operability(cfg, this.log);
    this.ops = ops;
    const host = meteredHost<ApplyResult, ShardMachine>(ops.metrics, {
      nodeId: cfg.id,
      engine: new MeteredEngine(engine, ops.metrics),
      transport,
      seed: randomInt(2 ** 31),
      tickMs: cfg.tickMs,
      electionTimeoutTicks: cfg.electionTicks,
      readMode: cfg.readMode,
      machine: (groupId) => new ShardMachine(engine, groupId),
      onFatal: (err) => this.onFatal(err),
    });
    this.host = host;
    // The keyspaces that exist without a record: "default" (fixed when the cluster was created)
    // and the metadata group's "_meta". Keyspaces created later come from the metadata group.
    const fixed = [
      ...staticKeyspaces(initialShardMap(members, identity.shards, identity.replicas)),
      metaKeyspace(members),
    ];
    const map = new ShardMap(0, fixed);
    const kv = new KvService(cfg.id, host, transport, map, {
      requestTimeoutMs: cfg.requestTimeoutMs,
      leaderlessTimeoutMs: cfg.leaderlessTimeoutMs,
    });
    host.start();
    this.kv = kv;
    // The initial shards are created once, on the first start of an initial member. Later the
    // keyspace records decide (a restarted node must not re-create replicas moved away).
    if (!engine.get(GROUPS_CREATED_KEY)) {
      for (const shard of map.shards()) {
        if (shard.replicas.includes(cfg.id) && !host.hasGroup(shard.id))
          await host.createGroup(shard.id, shard.replicas);
      }
      await engine.write([{ op: "put", key: GROUPS_CREATED_KEY, value: new Uint8Array([1]) }], {
        sync: true,
      });
    }

    const keyspaces = new KeyspaceAdmin(
      cfg.id,
      kv,
      host,
      members,
      fixed,
      (err) => this.log.warn({ err }, "keyspace refresh failed"),
      { bytes: cfg.splitBytes, loadOpsPerSec: cfg.splitLoadOpsPerSec },
      { suspectAfterMs: cfg.suspectAfterMs, deadAfterMs: cfg.deadAfterMs },
      { id: cfg.id, peer: cfg.peer, api: cfg.api, s3: cfg.s3, labels: parseLabels(cfg.labels) },
      (m) => transport.setPeer(m.id, m.peer),
    );
    this.keyspaces = keyspaces;
    kv.setKeyspaceResolver(() => keyspaces.refresh());

    // Object storage: the chunk ring (a record of the metadata group), this node's chunk files
    // and chunk service, the bucket and key records, the object index.
    const ring = new RingKeeper(kv, keyspaces, host, cfg.chunkReplicas);
    this.ring = ring;
    const store = await ChunkStore.open(join(cfg.data, "chunks"));
    const blob = new BlobService({
      self: cfg.id,
      transport,
      store,
      ring: () => ring.current(),
      writeQuorum: cfg.chunkWriteQuorum,
      cacheBytesMax: cfg.chunkCacheBytes,
      onError: (what, err) => this.log.warn({ err, what }, "chunk background task failed"),
    });
    this.blob = blob;
    const chunks: ChunkPort = {
      put: (data, opts) => blob.putChunk(data, opts),
      get: (hash) => blob.getChunk(hash),
    };
    const s3meta = new S3Meta(kv);
    this.s3meta = s3meta;
    const index = new ObjectIndex(kv, chunks);
    const s3api = new S3Api(s3meta, index, {
      domains: cfg.s3Domains,
      region: cfg.s3Region,
      putBytesMax: S3_DEFAULTS.putBytesMax,
      partBytesMin: S3_DEFAULTS.partBytesMin,
      log: this.log,
      ensureIndex: () => this.ensureObjectIndex(),
      nodeId: cfg.id,
    });
    const s3keys = new S3KeysHttpApi(
      s3meta,
      cfg.adminTokens.length > 0 ? cfg.adminTokens : cfg.tokens,
      cfg.chunkReplicas,
    );
    this.s3keys = s3keys;
    blob.startBackground({
      scrubBytesPerSec: cfg.scrubBytesPerSec,
      antiEntropyIntervalMs: cfg.antiEntropyIntervalMs,
      gc: {
        isReferenced: (h) => index.isReferenced(h),
        graceMs: cfg.chunkGcGraceMs,
        intervalMs: Math.min(cfg.chunkGcGraceMs, 600_000),
      },
    });
    const keyspacesHttp = new KeyspaceHttpApi(
      keyspaces,
      cfg.tokens,
      cfg.adminTokens.length > 0 ? cfg.adminTokens : cfg.tokens,
    );
    const http = new KvHttpApi(kv, {
      tokens: cfg.tokens,
      keyBytesMax: cfg.keyBytesMax,
      valueBytesMax: cfg.valueBytesMax,
      listLimitMax: cfg.listLimitMax,
    });
    const gateway = ops.start({
      host,
      engine,
      transport,
      shardMap: () => kv.shardMap(),
      state: () => (this.stopping ? "stopping" : this.ready ? "serving" : "starting"),
      chunks: () => blob.stats(),
    });
    // The web console (/console/ and /v1/admin/console/, docs/console.md).
    this.console = new ConsoleApi({
      adminTokens: cfg.adminTokens.length > 0 ? cfg.adminTokens : cfg.tokens,
      log: this.log,
      cluster: {
        nodeId: cfg.id,
        addresses: { api: cfg.api, s3: cfg.s3, peer: cfg.peer },
        labels: parseLabels(cfg.labels),
        dataDir: cfg.data,
        status: () => this.clusterStatus(),
        member: (id) => keyspaces.memberRecord(id),
        shardMap: () => kv.shardMap(),
        ring: () => ring.current(),
        dataBytes: () => engine.dataBytes(),
        chunks: () => blob.stats(),
        metrics: ops.metrics.registry,
      },
      browser: {
        kv,
        meta: s3meta,
        index,
        ensureIndex: () => this.ensureObjectIndex(),
        ...(cfg.s3RootKey ? { bucketOwner: parseRootKey(cfg.s3RootKey).accessKeyId } : {}),
        keyBytesMax: cfg.keyBytesMax,
        valueBytesMax: cfg.valueBytesMax,
        objectBytesMax: S3_DEFAULTS.putBytesMax,
        onError: (what, err) => this.log.warn({ err, what }, "console task failed"),
      },
    });
    this.api = createServer((req, res) =>
      gateway.serve(req, res, () => this.serveApi(http, keyspacesHttp, req, res)),
    );
    this.api.keepAliveTimeout = 65_000;
    await listen(this.api, cfg.api);
    // The S3 door shares the node's request metrics, rate limits (per access key) and load
    // shedding with the KV door; a refusal is S3's SlowDown.
    s3api.useGate({
      admit: (tenant) => ops.limiter.admit(tenant),
      refused: (reason) => ops.metrics.refused(reason),
      started: () => ops.metrics.requestStarted(),
      observe: (op, status, seconds) => ops.metrics.observeRequest("s3", op, status, seconds),
    });
    this.s3 = createServer((req, res) => {
      void s3api.handle(req, res, requestIdOf(req));
    });
    this.s3.keepAliveTimeout = 65_000;
    this.s3.headersTimeout = 30_000;
    this.s3.requestTimeout = 0; // large uploads and downloads take as long as they take
    await listen(this.s3, cfg.s3);
    transport.setServing(true);
    this.ready = true;
    this.balanceTimer = setInterval(() => this.balanceLeaders(), 2_000);
    this.balanceTimer.unref();
    // Keyspaces created or deleted through other nodes reach this one within a second (and at
    // once when a request names a keyspace this node does not know yet).
    // Placement, every second: liveness samples, then (on the metadata leader) repair of dead
    // nodes' replicas, then (on shard leaders) splits and membership changes toward the records.
    this.refreshTimer = setInterval(() => {
      keyspaces.observe((id) => transport.reachable(id), Date.now());
      void keyspaces
        .refresh()
        .then(() => keyspaces.repair(Date.now()))
        .then(() => {
          keyspaces.reconcile();
          return keyspaces.checkSplits();
        })
        .then(() => this.objectRound())
        .catch((err: unknown) => this.log.warn({ err }, "placement round failed"));
    }, 1_000);
    this.refreshTimer.unref();
    void keyspaces.refresh();
  }

  /**
   * Once a second, after the placement round: the chunk ring (recomputed by the metadata
   * leader when the data-holding nodes changed; re-read everywhere), the S3 key and bucket
   * caches, and on the metadata leader the root key.
   */
  private async objectRound(): Promise<void> {
    const ring = this.ring;
    const meta = this.s3meta;
    if (!ring || !meta || this.stopping) return;
    await ring.round(Date.now());
    await meta.refresh();
    if (this.host?.status("meta")?.role !== "leader") return;
    // (The object index keyspace is created with the first bucket: a cluster used only for
    // KV does not carry its Raft group.)
    if (this.cfg.s3RootKey !== undefined && !this.rootKeyStored) {
      const k = parseRootKey(this.cfg.s3RootKey);
      const r = await meta.putKey({
        ...k,
        name: "root",
        createdMs: Date.now(),
        grants: { "*": "owner" },
        createBuckets: true,
      });
      if (r.ok) this.rootKeyStored = true;
      else this.log.warn({ code: r.code, message: r.message }, "cannot store the S3 root key");
    }
  }

  private rootKeyStored = false;
  private indexCreated: Promise<boolean> | undefined;
  private s3keys: S3KeysHttpApi | undefined;
  private console: ConsoleApi | undefined;

  /** Creates the object index keyspace if it does not exist yet (idempotent; shared). */
  private ensureObjectIndex(): Promise<boolean> {
    const ks = this.keyspaces;
    if (!ks) return Promise.resolve(false);
    if (this.kv?.hasKeyspace(INDEX_KEYSPACE)) return Promise.resolve(true);
    this.indexCreated ??= ks
      .create(
        { name: INDEX_KEYSPACE, sharding: "range", replicas: this.identity?.replicas ?? 3 },
        true,
      )
      .then((r) => {
        if (!r.ok)
          this.log.warn({ code: r.code, message: r.message }, "cannot create the object index");
        return r.ok;
      })
      .finally(() => {
        this.indexCreated = undefined;
      });
    return this.indexCreated;
  }

  /**
   * Spreads shard leadership over the nodes: each shard's preferred leader is the first of its
   * replicas (the shard map assigns them round-robin), and a node leading a shard it is not
   * preferred for hands leadership over (a Raft leadership transfer: the target is caught up
   * first, no write is lost) once the preferred node is reachable. Elections land leaders
   * wherever timers fire first; without this, one node can end up leading most shards and
   * bottleneck every write. (The placement driver will balance on load instead.)
   */
  private balanceLeaders(): void {
    const host = this.host;
    const map = this.kv?.shardMap();
    if (!host || !map || this.stopping) return;
    for (const shard of map.shards()) {
      const preferred = shard.replicas[0];
      const st = host.status(shard.id);
      if (!preferred || preferred === this.cfg.id || st?.role !== "leader") continue;
      if (this.transport?.reachable(preferred)) host.transferLeadership(shard.id, preferred);
    }
  }

  /** What a node tells a joining one (transport method CLUSTER_INFO). */
  private clusterInfo(): Uint8Array {
    return enc.encode(JSON.stringify(this.identity ?? null));
  }

  /**
   * Who the cluster is: its initial members (they fix where "_meta" and the "default"
   * keyspace's first shards live) and the default keyspace's --shards and --replicas. Stored
   * on first start. A node starting with an empty data directory first asks its --join seeds:
   * if one belongs to a cluster already, this node joins that cluster (its own --join list and
   * --shards do not matter then); if none answers, it creates the cluster from its flags, as
   * every initial member does. Later starts use what is stored; --join then only gives seed
   * addresses, and a different --shards or --replicas is refused (they would describe another
   * layout).
   */
  private async clusterIdentity(
    engine: StorageEngine,
    transport: GrpcTransport,
  ): Promise<ClusterIdentity> {
    const cfg = this.cfg;
    const stored = engine.get(CLUSTER_KEY);
    if (stored) {
      const id = JSON.parse(dec.decode(stored)) as ClusterIdentity;
      if (id.shards !== cfg.shards || id.replicas !== cfg.replicas) {
        throw new Error(
          `this data directory belongs to a cluster created with --shards ${id.shards} --replicas ${id.replicas}; ` +
            `this start says --shards ${cfg.shards} --replicas ${cfg.replicas}. Start the node with the original values.`,
        );
      }
      return id;
    }
    let found: ClusterIdentity | undefined;
    // Ask until a seed knows its cluster, or one answers that it is as new as we are (the
    // initial members are starting together), or none has answered for JOIN_ASK_MS.
    let freshSeed = false;
    const until = Date.now() + JOIN_ASK_MS;
    while (!found && !freshSeed && cfg.join.length > 0 && Date.now() < until) {
      const answers = await Promise.all(
        cfg.join.map((p) => transport.call(p.id, CLUSTER_INFO, new Uint8Array(0), 1_000)),
      );
      for (const a of answers) {
        if (!a.ok) continue;
        const id = JSON.parse(dec.decode(a.body)) as ClusterIdentity | null;
        if (id) found = id;
        else freshSeed = true;
      }
      if (!found && !freshSeed) await new Promise((r) => setTimeout(r, 200));
    }
    const members = [cfg.id, ...cfg.join.map((p) => p.id)].sort();
    const identity = found ?? { members, shards: cfg.shards, replicas: cfg.replicas };
    if (found && !found.members.includes(cfg.id))
      this.log.info({ members: found.members }, "joining an existing cluster");
    await engine.write(
      [{ op: "put", key: CLUSTER_KEY, value: enc.encode(JSON.stringify(identity)) }],
      {
        sync: true,
      },
    );
    return identity;
  }

  private async serveApi(
    http: KvHttpApi,
    keyspacesHttp: KeyspaceHttpApi,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    try {
      // /healthz, /readyz, /metrics and /v1/admin are the gateway's (src/node/gateway.ts).
      const url = new URL(req.url ?? "/", "http://kumo");
      if (url.pathname === "/v1/cluster") {
        if (!authorized(req, this.cfg.tokens)) {
          throw new HttpError(401, "UNAUTHORIZED", "missing or invalid bearer token", {
            "www-authenticate": 'Bearer realm="kumo"',
          });
        }
        if (req.method !== "GET")
          throw new HttpError(405, "METHOD_NOT_ALLOWED", "GET only", { allow: "GET" });
        return sendJson(res, 200, this.clusterStatus());
      }
      if (this.s3keys && (await this.s3keys.handle(req, res, url))) return;
      if (this.console && (await this.console.handle(req, res, url))) return;
      if (await http.handle(req, res, url)) return;
      if (await keyspacesHttp.handle(req, res, url)) return;
      throw new HttpError(404, "NOT_FOUND", `no route for ${req.method} ${url.pathname}`);
    } catch (err) {
      if (err instanceof HttpError) return sendError(res, err);
      this.log.error({ reqId: res.getHeader("x-request-id"), err }, "internal error");
      sendError(res, new HttpError(500, "INTERNAL", "internal error; see the node's log"));
    }
  }

  /**
   * GET /v1/cluster: nodes (liveness, replicas and leaders per node), shards, and a summary of
   * what needs attention, from this node's point of view (leaders are known for the shards it
   * holds; liveness is what its own connections saw).
   */
  clusterStatus(): unknown {
    const host = this.host;
    const map = this.kv?.shardMap();
    if (!host || !map) return { node: this.cfg.id, ready: false };
    const now = Date.now();
    const stateOf = (id: string) =>
      id === this.cfg.id ? "alive" : (this.keyspaces?.livenessOf(id, now) ?? "alive");
    const shards = map.shards().map((s) => {
      const st = host.status(s.id);
      return {
        id: s.id,
        keyspace: s.keyspace,
        replicas: s.replicas,
        voters: st?.voters ?? null,
        learners: st?.learners ?? null,
        leader: st?.leader || null,
        term: st?.term ?? null,
        localRole: st?.role ?? null,
        commit: st?.commit ?? null,
        applied: st?.applied ?? null,
        quiesced: st?.quiesced ?? null,
      };
    });
    const replicasOn = (id: string) => shards.filter((s) => s.replicas.includes(id)).length;
    const leading = (id: string) => shards.filter((s) => s.leader === id).length;
    const sameSet = (a: readonly string[], b: readonly string[]) =>
      a.length === b.length && a.every((x) => b.includes(x));
    return {
      node: this.cfg.id,
      ready: this.ready,
      nodes: [
        { id: this.cfg.id, peer: this.cfg.peer, api: this.cfg.api, self: true },
        ...(this.keyspaces?.members ?? this.cfg.join.map((p) => p.id))
          .filter((id) => id !== this.cfg.id)
          .map((id) => ({
            id,
            peer:
              this.keyspaces?.memberRecord(id)?.peer ??
              this.cfg.join.find((p) => p.id === id)?.address ??
              "",
            reachable: this.transport?.reachable(id) ?? false,
          })),
      ].map((n) => ({
        ...n,
        admin: this.keyspaces?.memberRecord(n.id)?.admin ?? "active",
        // Placement labels (zone, rack) as the node registered them.
        labels: this.keyspaces?.memberRecord(n.id)?.labels ?? {},
        state: stateOf(n.id),
        replicas: replicasOn(n.id),
        leaders: leading(n.id),
      })),
      summary: {
        shards: shards.length,
        // A replica on a node that is not alive, or fewer replicas than placed.
        underReplicated: shards.filter((s) => s.replicas.some((r) => stateOf(r) !== "alive"))
          .length,
        // Shards this node holds that know no leader.
        unavailable: shards.filter((s) => s.localRole !== null && s.leader === null).length,
        // Shards this node leads whose Raft membership is still moving toward their placement.
        movesInProgress: shards.filter(
          (s) =>
            s.localRole === "leader" &&
            (!sameSet(s.voters ?? [], s.replicas) || (s.learners?.length ?? 0) > 0),
        ).length,
      },
      shards,
      stats: { host: host.stats, engine: this.engine?.stats(), transport: this.transport?.stats() },
    };
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.balanceTimer) clearInterval(this.balanceTimer);
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.ops?.stop();
    this.transport?.setServing(false);
    const close = (s: Server | undefined) =>
      new Promise<void>((r) => {
        if (!s) return r();
        s.close(() => r());
        s.closeAllConnections();
      });
    await Promise.all([close(this.api), close(this.s3)]);
    await this.blob?.stop();
    await this.host?.stop();
    await this.transport?.stop();
    await this.engine?.close();
    // Last: the spans the steps above ended are exported before the process exits.
    await this.tracing?.shutdown();
  }
}
