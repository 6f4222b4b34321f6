/**
 * Operability of one node, wired in one place: metrics, event-loop monitoring, shard watching,
 * readiness, limits and the admin API, behind the gateway that fronts the API port. The node
 * creates it before its Raft host (the host and its engine report to the metrics) and starts it
 * once the host runs.
 */
import type { IncomingMessage } from "node:http";
import { AdminHttpApi } from "../api/admin/limits-http.js";
import type { NodeAuthenticator } from "../api/auth/tokens.js";
import { LIMIT_KEYS, type LimitBounds, Limiter, type LimitSettings } from "../api/limits.js";
import type { MultiRaftHost } from "../multiraft/index.js";
import type { ApplyResult, ShardMachine, ShardMap } from "../shard/index.js";
import type { StorageEngine } from "../storage/index.js";
import type { GrpcTransport } from "../transport/index.js";
import { type NodeConfig, OPTIONS } from "./config.js";
import { Gateway } from "./gateway.js";
import { EventLoopMonitor, placedHere, type Readiness, readiness, ShardWatch } from "./health.js";
import type { Logger } from "./log.js";
import { type ChunkStats, NodeMetrics } from "./metrics.js";

/** The admin API accepts a limit within the same bounds as its configuration option. */
export function limitBounds(): LimitBounds {
  const out: Record<string, { min: number; max: number }> = {};
  for (const k of LIMIT_KEYS) {
    const o = OPTIONS.find((x) => x.key === k);
    out[k] = { min: o?.min ?? 0, max: o?.max ?? Number.MAX_SAFE_INTEGER };
  }
  return out as LimitBounds;
}

export type NodeState = "starting" | "serving" | "draining" | "stopping";

export interface OperabilityParts {
  readonly host: MultiRaftHost<ApplyResult, ShardMachine>;
  readonly engine: StorageEngine & { dataBytes(): number };
  readonly transport: GrpcTransport;
  readonly shardMap: () => ShardMap;
  readonly state: () => NodeState;
  readonly chunks?: () => ChunkStats;
  /** The node's authenticator (absent: the configured token lists, as before token records). */
  readonly auth?: NodeAuthenticator;
}

export class Operability {
  readonly metrics: NodeMetrics;
  readonly loop = new EventLoopMonitor();
  readonly limiter: Limiter;
  private watch: ShardWatch | undefined;

  constructor(
    private readonly cfg: NodeConfig,
    private readonly log: Logger,
  ) {
    this.metrics = new NodeMetrics(cfg.id);
    // Only the limits: the settings are shown by the admin API, and the rest of the
    // configuration holds secrets.
    const settings: LimitSettings = {
      tokenRatePerSecond: cfg.tokenRatePerSecond,
      tokenBurstRequests: cfg.tokenBurstRequests,
      nodeRatePerSecond: cfg.nodeRatePerSecond,
      nodeBurstRequests: cfg.nodeBurstRequests,
      concurrentRequestsMax: cfg.concurrentRequestsMax,
      shedEventLoopDelayMs: cfg.shedEventLoopDelayMs,
    };
    this.limiter = new Limiter({
      settings,
      nowMs: () => performance.now(),
      eventLoopDelayMs: () => this.loop.delayMsP99(),
    });
  }

  /** Starts the monitors and returns the gateway for the API port. */
  start(parts: OperabilityParts): Gateway {
    const cfg = this.cfg;
    const { host } = parts;
    this.loop.start();
    const transport = parts.transport;
    const watch = new ShardWatch(
      {
        self: cfg.id,
        groupIds: () => host.groupIds(),
        leaderOf: (id) => host.leaderOf(id),
        leaderReachesQuorum: (id) => {
          const voters = host.status(id)?.voters ?? [];
          const up = voters.filter((v) => v === cfg.id || transport.reachable(v)).length;
          return 2 * up > voters.length;
        },
      },
      cfg.leaderlessTimeoutMs,
    );
    this.watch = watch;
    watch.start();
    const verdict = (): Readiness => {
      watch.sample();
      const statuses = host.groupIds().flatMap((id) => host.status(id) ?? []);
      return readiness(
        parts.state(),
        placedHere(statuses, parts.shardMap().shards(), cfg.id),
        watch,
      );
    };
    this.metrics.attach({
      nodeId: cfg.id,
      dataDir: cfg.data,
      peers: cfg.join.map((p) => p.id),
      host,
      engine: parts.engine,
      dataBytes: () => parts.engine.dataBytes(),
      transport: parts.transport,
      ...(parts.chunks ? { chunks: parts.chunks } : {}),
      shards: () => parts.shardMap().shards(),
      watch,
      loop: this.loop,
      state: parts.state,
    });
    const admin = new AdminHttpApi(this.limiter, {
      tokens: parts.auth ?? (cfg.adminTokens.length > 0 ? cfg.adminTokens : cfg.tokens),
      bounds: limitBounds(),
      onLimitsChanged: (limits, changes) => this.log.info({ changes, limits }, "limits changed"),
    });
    return new Gateway({
      nodeId: cfg.id,
      log: this.log,
      metrics: this.metrics,
      limiter: this.limiter,
      loop: this.loop,
      admin,
      tokens: cfg.tokens,
      ...(parts.auth ? { tenantOf: (req: IncomingMessage) => parts.auth?.tenantOf(req) } : {}),
      readiness: verdict,
    });
  }

  stop(): void {
    this.watch?.stop();
    this.loop.stop();
  }
}
