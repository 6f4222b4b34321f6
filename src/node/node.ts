/**
 * The composition root of one Kumo node: opens storage, starts the transport, the multi-Raft
 * host with this node's shard replicas, and the HTTP doors. The only place with real timers,
 * sockets and files wired together.
 */
import { randomInt } from "node:crypto";
import { mkdirSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { join } from "node:path";
import { authorized, HttpError, KvHttpApi, sendError, sendJson } from "../api/kv/http.js";
import { KvService } from "../api/kv/service.js";
import { MultiRaftHost } from "../multiraft/index.js";
import { type ApplyResult, initialShardMap, ShardMachine, type ShardMap } from "../shard/index.js";
import { LmdbEngine, type StorageEngine } from "../storage/index.js";
import { GrpcTransport } from "../transport/index.js";
import type { NodeConfig } from "./config.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const CLUSTER_KEY = enc.encode("c/cluster");

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
  private map: ShardMap | undefined;
  private ready = false;
  private balanceTimer: NodeJS.Timeout | undefined;
  private stopping = false;

  constructor(
    readonly cfg: NodeConfig,
    private readonly onFatal: (err: unknown) => void = (err) => {
      console.error(`kumo ${cfg.id}: fatal:`, err);
      process.exit(1);
    },
  ) {}

  async start(): Promise<void> {
    const cfg = this.cfg;
    mkdirSync(cfg.data, { recursive: true });
    const engine = await LmdbEngine.open(join(cfg.data, "db"));
    this.engine = engine;
    const members = [cfg.id, ...cfg.join.map((p) => p.id)].sort();
    await this.checkClusterIdentity(engine, members);

    const transport = new GrpcTransport({
      self: cfg.id,
      listen: cfg.peer,
      ...(cfg.tlsCa && cfg.tlsCert && cfg.tlsKey
        ? { tls: { caFile: cfg.tlsCa, certFile: cfg.tlsCert, keyFile: cfg.tlsKey } }
        : {}),
    });
    this.transport = transport;
    const host = new MultiRaftHost<ApplyResult, ShardMachine>({
      nodeId: cfg.id,
      engine,
      transport,
      seed: randomInt(2 ** 31),
      tickMs: cfg.tickMs,
      electionTimeoutTicks: cfg.electionTicks,
      readMode: cfg.readMode,
      machine: (groupId) => new ShardMachine(engine, groupId),
      onFatal: (err) => this.onFatal(err),
    });
    this.host = host;
    const map = initialShardMap(members, cfg.shards, cfg.replicas);
    this.map = map;
    const kv = new KvService(cfg.id, host, transport, map, {
      requestTimeoutMs: cfg.requestTimeoutMs,
      leaderlessTimeoutMs: cfg.leaderlessTimeoutMs,
    });
    await transport.start({
      onRaft: (from, batch) => host.receive(from, batch),
      onCall: (from, method, body) => kv.handleCall(from, method, body),
    });
    for (const p of cfg.join) transport.setPeer(p.id, p.address);

    host.start();
    for (const shard of map.shards()) {
      if (shard.replicas.includes(cfg.id) && !host.hasGroup(shard.id))
        await host.createGroup(shard.id, shard.replicas);
    }

    const http = new KvHttpApi(kv, {
      tokens: cfg.tokens,
      keyBytesMax: cfg.keyBytesMax,
      valueBytesMax: cfg.valueBytesMax,
      listLimitMax: cfg.listLimitMax,
    });
    this.api = createServer((req, res) => void this.serveApi(http, req, res));
    this.api.keepAliveTimeout = 65_000;
    await listen(this.api, cfg.api);
    this.s3 = createServer((req, res) => this.serveS3(req, res));
    await listen(this.s3, cfg.s3);
    transport.setServing(true);
    this.ready = true;
    this.balanceTimer = setInterval(() => this.balanceLeaders(), 2_000);
    this.balanceTimer.unref();
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
    const map = this.map;
    if (!host || !map || this.stopping) return;
    for (const shard of map.shards()) {
      const preferred = shard.replicas[0];
      const st = host.status(shard.id);
      if (!preferred || preferred === this.cfg.id || st?.role !== "leader") continue;
      if (this.transport?.reachable(preferred)) host.transferLeadership(shard.id, preferred);
    }
  }

  /**
   * The member list is fixed when the cluster is created (until the placement driver makes it
   * elastic): refuse to start with a different one rather than split the shards differently.
   */
  private async checkClusterIdentity(
    engine: StorageEngine,
    members: readonly string[],
  ): Promise<void> {
    const stored = engine.get(CLUSTER_KEY);
    const want = JSON.stringify({ members, shards: this.cfg.shards, replicas: this.cfg.replicas });
    if (stored && dec.decode(stored) !== want) {
      throw new Error(
        `this data directory belongs to a cluster created as ${dec.decode(stored)}; ` +
          `this start describes ${want}. Start the node with its original --join, --shards and --replicas.`,
      );
    }
    if (!stored)
      await engine.write([{ op: "put", key: CLUSTER_KEY, value: enc.encode(want) }], {
        sync: true,
      });
  }

  private async serveApi(
    http: KvHttpApi,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    try {
      const url = new URL(req.url ?? "/", "http://kumo");
      if (url.pathname === "/healthz")
        return sendJson(res, 200, { status: "ok", node: this.cfg.id });
      if (url.pathname === "/readyz") {
        if (this.ready && !this.stopping)
          return sendJson(res, 200, { status: "ready", node: this.cfg.id });
        return sendJson(
          res,
          503,
          { status: "starting", node: this.cfg.id },
          { "retry-after": "1" },
        );
      }
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
      if (await http.handle(req, res, url)) return;
      throw new HttpError(404, "NOT_FOUND", `no route for ${req.method} ${url.pathname}`);
    } catch (err) {
      if (err instanceof HttpError) return sendError(res, err);
      console.error(`kumo ${this.cfg.id}: internal error:`, err);
      sendError(res, new HttpError(500, "INTERNAL", "internal error; see the node's log"));
    }
  }

  /** The S3 door arrives with the S3 issue; until then it answers with a proper S3 error. */
  private serveS3(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    const body =
      '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NotImplemented</Code>' +
      "<Message>The S3 API is not available yet on this Kumo version.</Message></Error>";
    res.writeHead(501, {
      "content-type": "application/xml",
      "content-length": Buffer.byteLength(body),
    });
    res.end(body);
  }

  clusterStatus(): unknown {
    const host = this.host;
    const map = this.map;
    if (!host || !map) return { node: this.cfg.id, ready: false };
    return {
      node: this.cfg.id,
      ready: this.ready,
      nodes: [
        { id: this.cfg.id, peer: this.cfg.peer, api: this.cfg.api, self: true },
        ...this.cfg.join.map((p) => ({
          id: p.id,
          peer: p.address,
          reachable: this.transport?.reachable(p.id) ?? false,
        })),
      ],
      shards: map.shards().map((s) => {
        const st = host.status(s.id);
        return {
          id: s.id,
          keyspace: s.keyspace,
          replicas: s.replicas,
          leader: st?.leader || null,
          term: st?.term ?? null,
          localRole: st?.role ?? null,
          commit: st?.commit ?? null,
          applied: st?.applied ?? null,
          quiesced: st?.quiesced ?? null,
        };
      }),
      stats: { host: host.stats, engine: this.engine?.stats(), transport: this.transport?.stats() },
    };
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.balanceTimer) clearInterval(this.balanceTimer);
    this.transport?.setServing(false);
    const close = (s: Server | undefined) =>
      new Promise<void>((r) => {
        if (!s) return r();
        s.close(() => r());
        s.closeAllConnections();
      });
    await Promise.all([close(this.api), close(this.s3)]);
    await this.host?.stop();
    await this.transport?.stop();
    await this.engine?.close();
  }
}
