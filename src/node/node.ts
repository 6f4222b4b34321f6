/**
 * The composition root of one Kumo node: opens storage, starts the transport, the multi-Raft
 * host with this node's shard replicas, and the HTTP doors. The only place with real timers,
 * sockets and files wired together.
 */
import { randomInt } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { statfs } from "node:fs/promises";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { join } from "node:path";
import { Counter } from "prom-client";
import { BackupService } from "../api/admin/backup.js";
import {
  KeyspaceAdmin,
  KeyspaceHttpApi,
  META_SHARD,
  metaKeyspace,
  REPORT_INTERVAL_MS,
  staticKeyspaces,
} from "../api/admin/keyspaces.js";
import { RingKeeper } from "../api/admin/ring.js";
import { TokensHttpApi } from "../api/admin/tokens-http.js";
import { readSecretKeyFile, SecretBox } from "../api/auth/secrets.js";
import { NodeAuthenticator, TOKEN_REFRESH_MS, TokenStore } from "../api/auth/tokens.js";
import { ConsoleApi } from "../api/console/index.js";
import { HttpError, KvHttpApi, requireAuthenticated, sendError, sendJson } from "../api/kv/http.js";
import { KvService } from "../api/kv/service.js";
import { S3KeysHttpApi } from "../api/s3/admin.js";
import { S3Meta } from "../api/s3/meta.js";
import { type ChunkPort, INDEX_KEYSPACE, ObjectIndex } from "../api/s3/objects.js";
import { S3_DEFAULTS, S3Api } from "../api/s3/server.js";
import {
  BlobService,
  ChunkStore,
  classDirName,
  classMethodPrefix,
  ReplicationClasses,
  ringCut,
} from "../blob/index.js";
import type { MultiRaftHost } from "../multiraft/index.js";
import type { NodeReport } from "../placement/index.js";
import type { NodeId } from "../raft/index.js";
import { type ApplyResult, initialShardMap, ShardMachine, ShardMap } from "../shard/index.js";
import { LmdbEngine, type StorageEngine } from "../storage/index.js";
import { GrpcTransport } from "../transport/index.js";
import { type NodeConfig, parseLabels, parseRootKey } from "./config.js";
import { createDoorServer, type DoorLimits } from "./doors.js";
import { createLogger, type Logger, requestIdOf } from "./log.js";
import { MeteredEngine, meteredHost, version } from "./metrics.js";
import { Operability } from "./ops.js";
import {
  DRAINING_LEASE_MS,
  DRAINING_RENEW_MS,
  DrainingPeers,
  drainServer,
  encodeDraining,
  handOverLeadership,
  NODE_DRAINING,
} from "./shutdown.js";
import { fetchTrusting, registerTlsMetrics, TlsFiles } from "./tls.js";
import { startTracing, type Tracing } from "./tracing.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const CLUSTER_KEY = enc.encode("c/cluster");
/** Set once the initial shards of this node were created (first start of an initial member). */
const GROUPS_CREATED_KEY = enc.encode("c/groups-created");
/** Where the metadata group was last seen placed (JSON node ids); read at start. */
const META_PLACEMENT_KEY = enc.encode("c/meta-placement");
/** Transport method: "which cluster is this?" (answered with the stored ClusterIdentity). */
const CLUSTER_INFO = "cluster.info";
/** Asks a node about its replica of the metadata group (see `metaInfo`). */
const META_INFO = "cluster.meta";
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
  private reportTimer: NodeJS.Timeout | undefined;
  private keyspaces: KeyspaceAdmin | undefined;
  private identity: ClusterIdentity | undefined;
  private stopping = false;
  private ops: Operability | undefined;
  private blob: ReplicationClasses | undefined;
  private ring: RingKeeper | undefined;
  private s3meta: S3Meta | undefined;
  private backup: BackupService | undefined;
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

  /** Certificate files being watched (peer mTLS, client ports), for reloads and metrics. */
  private readonly tlsFiles: TlsFiles[] = [];

  private async openTls(
    name: string,
    certFile: string | undefined,
    keyFile: string | undefined,
    caFile?: string,
  ): Promise<TlsFiles | undefined> {
    if (certFile === undefined || keyFile === undefined) return undefined;
    const files = await TlsFiles.open(
      { certFile, keyFile, ...(caFile !== undefined ? { caFile } : {}) },
      { name, reloadIntervalMs: this.cfg.tlsReloadIntervalMs, log: this.log },
    );
    files.start();
    this.tlsFiles.push(files);
    return files;
  }

  /** Re-reads every certificate file now (SIGHUP); a bad replacement keeps the old one. */
  async reloadTls(): Promise<void> {
    await Promise.all(this.tlsFiles.map((t) => t.check()));
  }

  /** How this node calls other nodes' HTTPS API ports: trusting --client-tls-ca or --tls-ca. */
  private peerFetch(peerTls: TlsFiles | undefined): typeof fetch {
    const own = this.cfg.clientTlsCa;
    const ca = own !== undefined ? readFileSync(own) : undefined;
    return fetchTrusting(() => ca ?? peerTls?.current().ca);
  }

  private doorLimits(requestTimeoutMs: number): DoorLimits {
    return {
      headersTimeoutMs: this.cfg.httpHeadersTimeoutMs,
      idleTimeoutMs: this.cfg.httpIdleTimeoutMs,
      headerBytesMax: this.cfg.httpHeaderBytesMax,
      requestTimeoutMs,
      keepAliveTimeoutMs: 65_000,
    };
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
    // Certificates are re-read every --tls-reload-interval and on SIGHUP (`reloadTls`); a
    // node does not start without usable ones.
    const peerTls = await this.openTls("peer", cfg.tlsCert, cfg.tlsKey, cfg.tlsCa);
    const clientTls = await this.openTls("client", cfg.clientTlsCert, cfg.clientTlsKey);
    const transport = new GrpcTransport({
      self: cfg.id,
      listen: cfg.peer,
      ...(peerTls && cfg.tlsCa && cfg.tlsCert && cfg.tlsKey
        ? {
            tls: { caFile: cfg.tlsCa, certFile: cfg.tlsCert, keyFile: cfg.tlsKey, source: peerTls },
          }
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
        if (method === NODE_DRAINING) {
          this.drainingPeers.onAnnouncement(from, body);
          return Promise.resolve(new Uint8Array(0));
        }
        if (method === META_INFO) return Promise.resolve(this.metaInfo());
        if (!this.kv) return Promise.reject(new Error("this node is starting"));
        if (method.startsWith("blob.")) {
          const answer = this.blob?.handleCall(from, method, body);
          if (answer) return answer;
          return Promise.reject(new Error("this node is starting"));
        }
        if (method.startsWith("backup.") && this.backup)
          return this.backup.handleCall(from, method, body);
        return this.kv.handleCall(from, method, body);
      },
    });
    for (const p of cfg.join) transport.setPeer(p.id, p.address);
    const identity = await this.clusterIdentity(engine, transport);
    this.identity = identity;
    const members = identity.members;
    const ops = new Operability(cfg, this.log);
    this.ops = ops;
    registerTlsMetrics(ops.metrics.registry, () => this.tlsFiles);
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
    const metaSeen = engine.get(META_PLACEMENT_KEY);
    const fixed = [
      ...staticKeyspaces(initialShardMap(members, identity.shards, identity.replicas)),
      metaKeyspace(members, metaSeen ? (JSON.parse(dec.decode(metaSeen)) as NodeId[]) : undefined),
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
      {
        id: cfg.id,
        peer: cfg.peer,
        api: cfg.api,
        s3: cfg.s3,
        labels: parseLabels(cfg.labels),
        version: version(),
      },
      (m) => transport.setPeer(m.id, m.peer),
      {
        onPlacement: (replicas) =>
          void engine
            .write(
              [{ op: "put", key: META_PLACEMENT_KEY, value: enc.encode(JSON.stringify(replicas)) }],
              {
                sync: false,
              },
            )
            .catch((err: unknown) =>
              this.log.warn({ err }, "keeping the metadata placement failed"),
            ),
        discover: (peers) => this.discoverMeta(peers),
      },
    );
    this.keyspaces = keyspaces;
    kv.setKeyspaceResolver(() => keyspaces.refresh());

    // Object storage: the chunk ring (a record of the metadata group), this node's chunk files
    // and chunk service, the bucket and key records, the object index.
    const ring = new RingKeeper(kv, keyspaces, host, cfg.chunkReplicas);
    this.ring = ring;
    // The default class (the ring's R copies), and replication classes 1..R-1
    // (src/blob/classes.ts) for buckets that keep fewer copies.
    const chunkService = async (n: number | undefined) => {
      const cut = n === undefined ? undefined : ringCut(n);
      return new BlobService({
        self: cfg.id,
        transport,
        store: await ChunkStore.open(join(cfg.data, n === undefined ? "chunks" : classDirName(n))),
        ring: () => (cut ? cut(ring.current()) : ring.current()),
        writeQuorum: Math.min(cfg.chunkWriteQuorum, n ?? cfg.chunkWriteQuorum),
        // A class gets a quarter of the hot-chunk cache: the default class serves most reads.
        cacheBytesMax: n === undefined ? cfg.chunkCacheBytes : Math.floor(cfg.chunkCacheBytes / 4),
        ...(n === undefined ? {} : { methodPrefix: classMethodPrefix(n) }),
        onError: (what, err) => this.log.warn({ err, what }, "chunk background task failed"),
      });
    };
    const classes = new Map<number, BlobService>();
    for (let n = 1; n < cfg.chunkReplicas; n++) classes.set(n, await chunkService(n));
    const blob = new ReplicationClasses(await chunkService(undefined), classes);
    this.blob = blob;
    const chunks: ChunkPort = {
      put: (data, opts) => blob.putChunk(data, opts),
      get: (hash, opts) => blob.getChunk(hash, opts),
    };
    // Credentials (docs/kv-api.md "Authentication", docs/s3.md "Security"): KV token records
    // and S3 access keys live in the metadata group; S3 secrets are sealed under the cluster
    // secret key when there is one.
    const box = cfg.secretKeyFile ? new SecretBox(readSecretKeyFile(cfg.secretKeyFile)) : undefined;
    if (!box)
      this.log.warn(
        "no --secret-key-file: S3 secret access keys are stored unencrypted in the metadata group",
      );
    const s3meta = new S3Meta(kv, box, (accessKeyId) =>
      this.log.error(
        { accessKeyId },
        "an S3 access key's secret is sealed under another secret key (or none is configured); the key cannot authenticate on this node",
      ),
    );
    this.s3meta = s3meta;
    const tokenStore = new TokenStore(kv);
    const auth = new NodeAuthenticator(cfg.tokens, cfg.adminTokens, tokenStore);
    if (!auth.configured)
      this.log.warn(
        "no --tokens and no --admin-tokens: every KV and admin request is refused (401)",
      );
    else if (cfg.adminTokens.length === 0 && cfg.tokens.length > 0)
      this.log.info(
        "no --admin-tokens: the --tokens are admin credentials too (set --admin-tokens to separate them)",
      );
    this.auth = auth;
    const tokensHttp = new TokensHttpApi(tokenStore, auth);
    this.tokensHttp = tokensHttp;
    const index = new ObjectIndex(kv, chunks);
    this.index = index;
    this.swept = new Counter({
      name: "kumo_s3_abandoned_bodies_swept_total",
      help: "Bodies of uploads that never committed (their node crashed, or they outlasted --s3-upload-deadline) whose chunk references were removed",
      registers: [ops.metrics.registry],
    });
    const s3api = new S3Api(s3meta, index, {
      domains: cfg.s3Domains,
      region: cfg.s3Region,
      putBytesMax: S3_DEFAULTS.putBytesMax,
      partBytesMin: S3_DEFAULTS.partBytesMin,
      log: this.log,
      ensureIndex: () => this.ensureObjectIndex(),
      nodeId: cfg.id,
    });
    const s3keys = new S3KeysHttpApi(s3meta, auth, cfg.chunkReplicas);
    this.s3keys = s3keys;
    // Backups: consistent cuts, image transfer, bulk load for restores (docs/operations.md).
    this.backup = new BackupService({
      self: cfg.id,
      host,
      kv,
      transport,
      dir: join(cfg.data, "backup"),
      admin: auth,
      members: () => keyspaces.members,
      refreshMap: () => keyspaces.refresh(),
      chunks: { get: (h) => blob.getChunk(h), put: (d) => blob.putChunk(d) },
      ensureIndex: () => this.ensureObjectIndex(),
      bucketCount: async () => {
        const r = await s3meta.listBuckets();
        if (!r.ok) throw new HttpError(503, "UNAVAILABLE", r.message, { "retry-after": "1" });
        return r.buckets.length;
      },
      onError: (what, err) => this.log.warn({ err, what }, "backup"),
    });
    for (const service of blob.all())
      service.startBackground({
        scrubBytesPerSec: cfg.scrubBytesPerSec,
        antiEntropyIntervalMs: cfg.antiEntropyIntervalMs,
        gc: {
          isReferenced: (h) => index.isReferenced(h),
          graceMs: cfg.chunkGcGraceMs,
          intervalMs: Math.min(cfg.chunkGcGraceMs, 600_000),
        },
      });
    const keyspacesHttp = new KeyspaceHttpApi(keyspaces, auth, auth);
    const http = new KvHttpApi(kv, {
      tokens: auth,
      keyBytesMax: cfg.keyBytesMax,
      valueBytesMax: cfg.valueBytesMax,
      listLimitMax: cfg.listLimitMax,
    });
    const gateway = ops.start({
      host,
      engine,
      transport,
      shardMap: () => kv.shardMap(),
      state: () =>
        this.stopping
          ? this.drained
            ? "stopping"
            : "draining"
          : this.ready
            ? "serving"
            : "starting",
      chunks: () => blob.stats(),
      auth,
    });
    // The web console (/console/ and /v1/admin/console/, docs/console.md).
    this.console = new ConsoleApi({
      adminTokens: auth,
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
        ...(clientTls ? { peerScheme: "https", peerFetch: this.peerFetch(peerTls) } : {}),
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
    this.api = createDoorServer(
      (req, res) => {
        // Draining: answer, then close the connection, so a kept-alive client reconnects
        // (through its load balancer, to another node).
        if (this.stopping) res.setHeader("connection", "close");
        gateway.serve(req, res, () => this.serveApi(http, keyspacesHttp, req, res));
      },
      // The API door keeps node's default whole-request deadline (KV values are small).
      this.doorLimits(300_000),
      clientTls,
    );
    await listen(this.api, cfg.api);
    // The S3 door shares the node's request metrics, rate limits (per access key) and load
    // shedding with the KV door; a refusal is S3's SlowDown.
    s3api.useGate({
      admit: (tenant) => ops.limiter.admit(tenant),
      refused: (reason) => ops.metrics.refused(reason),
      started: () => ops.metrics.requestStarted(),
      observe: (op, status, seconds) => ops.metrics.observeRequest("s3", op, status, seconds),
    });
    this.s3 = createDoorServer(
      (req, res) => {
        if (this.stopping) res.setHeader("connection", "close");
        void s3api.handle(req, res, requestIdOf(req));
      },
      this.doorLimits(0), // large uploads and downloads take as long as they take
      clientTls,
    );
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
    // The node's report to the placement leader: disk, load, and the shards it leads.
    this.reportTimer = setInterval(() => {
      void statfs(cfg.data)
        .then((fs) =>
          keyspaces.report({
            capacityBytes: fs.blocks * fs.bsize,
            usedBytes: (fs.blocks - fs.bfree) * fs.bsize,
          }),
        )
        .catch((err: unknown) => this.log.warn({ err }, "placement report failed"));
    }, REPORT_INTERVAL_MS);
    this.reportTimer.unref();
    // Token records on their own timer (not behind the placement round, whose length varies):
    // a revoked token is refused everywhere within REVOCATION_BOUND_MS.
    this.tokenTimer = setInterval(() => {
      if (!this.stopping)
        void tokenStore
          .refresh()
          .catch((err: unknown) => this.log.warn({ err }, "token refresh failed"));
    }, TOKEN_REFRESH_MS);
    this.tokenTimer.unref();
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
    this.sweepAbandonedBodies();
    if (this.cfg.secretKeyFile !== undefined && !this.keysSealed) {
      // Access keys written before the secret key was configured: sealed now (once per start).
      const n = await meta.sealPlaintextKeys();
      this.keysSealed = true;
      if (n > 0) this.log.info({ keys: n }, "sealed plaintext S3 secrets under the secret key");
    }
  }

  /**
   * On the metadata leader: removes the bodies of uploads that never committed, at most one
   * sweep at a time, one every min(--s3-upload-deadline, 60 s). In the background: a sweep that
   * finds abandoned bodies reads every chunk reference.
   */
  private sweepAbandonedBodies(): void {
    const index = this.index;
    const now = Date.now();
    const everyMs = Math.min(this.cfg.s3UploadDeadlineMs, 60_000);
    if (!index || this.sweeping || now - this.sweptMs < everyMs) return;
    if (!this.kv?.hasKeyspace(INDEX_KEYSPACE)) return;
    this.sweeping = true;
    this.sweptMs = now;
    void index
      .sweepOrphans(this.cfg.s3UploadDeadlineMs)
      .then((r) => {
        if (!r.ok) {
          this.log.warn({ code: r.code, message: r.message }, "sweeping abandoned uploads failed");
          return;
        }
        this.swept?.inc(r.swept);
        if (r.swept > 0 || r.settled > 0)
          this.log.info(
            { swept: r.swept, settled: r.settled, refsScanned: r.refsScanned },
            "swept abandoned uploads",
          );
      })
      .catch((err: unknown) => this.log.warn({ err }, "sweeping abandoned uploads failed"))
      .finally(() => {
        this.sweeping = false;
      });
  }

  private index: ObjectIndex | undefined;
  private swept: Counter | undefined;
  private sweeping = false;
  private sweptMs = 0;
  private rootKeyStored = false;
  private indexCreated: Promise<boolean> | undefined;
  private s3keys: S3KeysHttpApi | undefined;
  private tokensHttp: TokensHttpApi | undefined;
  private auth: NodeAuthenticator | undefined;
  private tokenTimer: NodeJS.Timeout | undefined;
  /** Plaintext S3 secrets were re-sealed (or there were none); not tried again. */
  private keysSealed = false;
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
      // Never back to a node that is shutting down (src/node/shutdown.ts).
      if (this.transport?.reachable(preferred) && !this.drainingPeers.has(preferred))
        host.transferLeadership(shard.id, preferred);
    }
  }

  /**
   * This node's view of the metadata group (transport method META_INFO): its voters and term
   * when it holds a replica, else null. A node that cannot reach the group where its map says
   * asks every member and follows the leader's answer, else the highest term's.
   */
  private metaInfo(): Uint8Array {
    const st = this.host?.status(META_SHARD);
    const info =
      st && !st.joint ? { voters: st.voters, term: st.term, leader: st.role === "leader" } : null;
    return enc.encode(JSON.stringify(info));
  }

  private async discoverMeta(peers: readonly NodeId[]): Promise<readonly NodeId[] | undefined> {
    const transport = this.transport;
    if (!transport) return undefined;
    type Info = { voters: NodeId[]; term: number; leader: boolean } | null;
    const answers = await Promise.all(
      peers
        .filter((p) => p !== this.cfg.id)
        .map(async (p) => {
          const a = await transport.call(p, META_INFO, new Uint8Array(0), 1_000);
          return a.ok ? (JSON.parse(dec.decode(a.body)) as Info) : null;
        }),
    );
    const seen = answers.filter((a): a is NonNullable<Info> => a !== null && a.voters.length > 0);
    seen.sort((a, b) => Number(b.leader) - Number(a.leader) || b.term - a.term);
    return seen[0]?.voters;
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
        await requireAuthenticated(this.auth ?? this.cfg.tokens, req);
        if (req.method !== "GET")
          throw new HttpError(405, "METHOD_NOT_ALLOWED", "GET only", { allow: "GET" });
        return sendJson(res, 200, this.clusterStatus());
      }
      if (this.tokensHttp && (await this.tokensHttp.handle(req, res, url))) return;
      if (this.s3keys && (await this.s3keys.handle(req, res, url))) return;
      if (this.backup && (await this.backup.handle(req, res, url))) return;
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
        // The version it runs (mixed during a rolling upgrade; null: registered by a version
        // that did not report it, or not registered yet).
        version:
          n.id === this.cfg.id
            ? this.versionText
            : (this.keyspaces?.memberRecord(n.id)?.version ?? null),
        // Shutting down: handing its leadership over (docs/operations.md, "Rolling upgrades").
        draining: n.id === this.cfg.id ? this.stopping : this.drainingPeers.has(n.id),
        // Placement labels (zone, rack) as the node registered them.
        labels: this.keyspaces?.memberRecord(n.id)?.labels ?? {},
        // From its latest report (null: none in the last few seconds).
        ...reportView(this.keyspaces?.reportOf(n.id)),
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

  /** This build's version (src/node/metrics.ts), read once. */
  private readonly versionText = version();
  /** Peers that announced they are shutting down (no leadership goes to them). */
  private readonly drainingPeers = new DrainingPeers();
  /** Set once the HTTP listeners are closed (the state is "stopping" from then on). */
  private drained = false;
  private stopped: Promise<void> | undefined;

  /**
   * Graceful shutdown (SIGTERM, SIGINT, or a caller), in phases, each logged with its duration
   * (docs/operations.md, "Rolling upgrades"):
   * 1. draining: /readyz answers 503 "draining" (load balancers stop sending), the gRPC health
   *    says NOT_SERVING, peers are told not to hand leadership to this node, and every response
   *    from now on carries `Connection: close`, so kept-alive clients reconnect elsewhere;
   * 2. leadership: every shard this node leads is handed to its most up-to-date reachable voter
   *    (a Raft leadership transfer: nothing committed is lost, and the shard is never leaderless
   *    for an election timeout), until it leads none or `shutdownLeadershipTimeoutMs` passes;
   *    the listeners stay open at least `shutdownDelayMs`, for load balancers to notice;
   * 3. HTTP: the listeners close, idle keep-alive connections are closed, requests in flight
   *    finish (their connections are cut after `shutdownDrainTimeoutMs`);
   * 4. the chunk service, Raft host, transport and storage stop.
   * Until step 4 the node still replicates and votes: it remains one of its shards' quorum.
   * Calling it again returns the same shutdown.
   */
  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  private leadingGroups(): number {
    const host = this.host;
    if (!host) return 0;
    return host.groupIds().filter((id) => host.status(id)?.role === "leader").length;
  }

  /** Tells every peer this node is draining, for `forMs` (bounded: never holds the shutdown). */
  private async announceDraining(forMs: number): Promise<void> {
    const transport = this.transport;
    if (!transport) return;
    const peers = (this.keyspaces?.members ?? this.cfg.join.map((p) => p.id)).filter(
      (id) => id !== this.cfg.id,
    );
    const body = encodeDraining(forMs);
    await Promise.all(peers.map((id) => transport.call(id, NODE_DRAINING, body, 500)));
  }

  private async shutdown(): Promise<void> {
    const cfg = this.cfg;
    const ms = (since: number) => Math.round(performance.now() - since);
    const t0 = performance.now();
    const wasServing = this.ready;
    this.stopping = true;
    if (this.balanceTimer) clearInterval(this.balanceTimer);
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    if (this.reportTimer) clearInterval(this.reportTimer);
    if (this.tokenTimer) clearInterval(this.tokenTimer);
    this.transport?.setServing(false);

    // 1. Draining.
    this.log.info(
      { phase: "draining", leading: this.leadingGroups() },
      "shutdown: draining (/readyz answers 503, no new leadership for this node)",
    );
    await this.announceDraining(DRAINING_LEASE_MS);
    const renew = setInterval(
      () => void this.announceDraining(DRAINING_LEASE_MS),
      DRAINING_RENEW_MS,
    );
    renew.unref();

    // 2. Leadership handover.
    const host = this.host;
    const transport = this.transport;
    if (wasServing && host && transport) {
      const t1 = performance.now();
      const r = await handOverLeadership({
        self: cfg.id,
        host,
        eligible: (id) => transport.reachable(id) && !this.drainingPeers.has(id),
        deadlineMs: t1 + Math.max(cfg.shutdownLeadershipTimeoutMs, cfg.shutdownDelayMs),
        // The listeners stay open at least shutdownDelayMs (for load balancers to notice the
        // 503); leadership that comes back meanwhile is handed over again.
        holdUntilMs: t0 + cfg.shutdownDelayMs,
      });
      const fields = { phase: "leadership", ms: ms(t1), ...r };
      if (r.leading === 0) this.log.info(fields, "shutdown: leadership handed over");
      else
        this.log.warn(
          fields,
          r.outcome === "timeout"
            ? "shutdown: some shards could not hand their leadership over in time; they elect a new leader after this node stops"
            : "shutdown: no other replica can lead some shards (down or stopping too)",
        );
      const delayMs = cfg.shutdownDelayMs - (performance.now() - t0);
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    }

    // 3. HTTP: no new connections; requests in flight finish.
    const t2 = performance.now();
    this.log.info(
      { phase: "http", leadingAtClose: this.leadingGroups() },
      "shutdown: closing the HTTP listeners",
    );
    const cut = await Promise.all([
      drainServer(this.api, cfg.shutdownDrainTimeoutMs),
      drainServer(this.s3, cfg.shutdownDrainTimeoutMs),
    ]);
    this.drained = true;
    clearInterval(renew);
    this.log.info(
      { phase: "http", ms: ms(t2), connectionsCut: cut.some((c) => c) },
      "shutdown: HTTP connections drained",
    );

    // 4. The rest.
    const t3 = performance.now();
    for (const t of this.tlsFiles) t.stop();
    this.ops?.stop();
    await this.blob?.stop();
    await this.host?.stop();
    await this.transport?.stop();
    await this.engine?.close();
    this.log.info({ phase: "stopped", ms: ms(t3), totalMs: ms(t0) }, "shutdown: stopped");
    // Last: the spans the steps above ended are exported before the process exits.
    await this.tracing?.shutdown();
  }
}

/** A member's report as `GET /v1/cluster` shows it. */
function reportView(r: NodeReport | undefined) {
  return {
    capacityBytes: r?.capacityBytes ?? null,
    usedBytes: r?.usedBytes ?? null,
    readsPerSec: r ? Math.round(r.load.readsPerSec) : null,
    writesPerSec: r ? Math.round(r.load.writesPerSec) : null,
  };
}
