/**
 * What the health endpoints and the shard metrics are computed from:
 *
 * - `EventLoopMonitor`: the event loop's delay over the last window (p99), for /healthz, the
 *   metrics and load shedding;
 * - `ShardWatch`: samples which leader each local shard replica knows, to count leader changes
 *   and to tell a shard without quorum (no leader for longer than the leaderless timeout, as the
 *   KV door's fail-fast rule) from a shard in the middle of an ordinary election or transfer;
 * - `readiness`: /readyz's verdict and its reasons.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { GroupStatus } from "../multiraft/index.js";

/** Event-loop delay as a p99 over fixed windows (reset every window so it shows the present). */
function cpuMsNow(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * The delay a window reports: its p99 loop delay, or this timer's own lateness when larger (a
 * loop blocked across the whole window leaves few samples), but never more than the CPU time
 * the process used in the window. A loop delayed by its own work burns CPU for as long as it
 * is late; a process that was stopped (SIGSTOP, a paused container, a VM descheduled) is late
 * without having worked, and is not overloaded: shedding its first requests after it resumes
 * would only turn a pause into errors.
 */
export function effectiveDelayMs(p99Ms: number, lateMs: number, cpuUsedMs: number): number {
  return Math.min(Math.max(p99Ms, lateMs), Math.max(0, cpuUsedMs));
}

export class EventLoopMonitor {
  private readonly histogram = monitorEventLoopDelay({ resolution: 20 });
  private timer: NodeJS.Timeout | undefined;
  private p99Ms = 0;
  private lastRollMs = 0;

  constructor(private readonly windowMs = 500) {}

  start(): void {
    this.histogram.enable();
    this.lastRollMs = performance.now();
    this.timer = setInterval(() => this.roll(), this.windowMs);
    this.timer.unref();
  }

  private lastCpuMs = cpuMsNow();

  private roll(): void {
    const now = performance.now();
    const cpuMs = cpuMsNow();
    const lateMs = Math.max(0, now - this.lastRollMs - this.windowMs);
    this.lastRollMs = now;
    const p99Ms = this.histogram.count > 0 ? this.histogram.percentile(99) / 1e6 : 0;
    this.p99Ms = effectiveDelayMs(p99Ms, lateMs, cpuMs - this.lastCpuMs);
    this.lastCpuMs = cpuMs;
    this.histogram.reset();
  }

  /** The last complete window's p99 delay, in milliseconds. */
  delayMsP99(): number {
    return this.p99Ms;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.histogram.disable();
  }
}

export interface ShardWatchSource {
  /** This node's id. */
  readonly self: string;
  groupIds(): readonly string[];
  /** The leader this replica knows, or undefined (cheap: called for every group per sample). */
  leaderOf(groupId: string): string | undefined;
  /**
   * Whether this node, leading the group, reaches a majority of its voters. A quiesced leader
   * does not tick, so check-quorum never deposes it, yet it cannot commit anything alone.
   * Called at probe and scrape time only.
   */
  leaderReachesQuorum(groupId: string): boolean;
}

interface Seen {
  leader: string | undefined;
  /** Monotonic ms when a leader was last seen; undefined: never since this node started. */
  leaderSeenMs: number | undefined;
  /**
   * Monotonic ms when the replica was first seen, for a replica created while the node runs (a
   * new keyspace's shard, a split half, a replica moved here); undefined for those the node
   * started with.
   */
  createdMs: number | undefined;
}

/**
 * Samples every local group's known leader (cheap: no allocation per group beyond the first
 * sample) every `everyMs`, and on demand before answering a probe or a scrape.
 */
export class ShardWatch {
  private readonly seen = new Map<string, Seen>();
  private sampled = false;
  private changes = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly source: ShardWatchSource,
    private readonly leaderlessTimeoutMs: number,
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  start(everyMs = 500): void {
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  sample(): void {
    const now = this.nowMs();
    for (const id of this.source.groupIds()) {
      const leader = this.source.leaderOf(id);
      let s = this.seen.get(id);
      if (!s) {
        s = {
          leader: undefined,
          leaderSeenMs: undefined,
          createdMs: this.sampled ? now : undefined,
        };
        this.seen.set(id, s);
      }
      if (leader === undefined) continue;
      // A change is a new leader different from the last one seen (an election without a
      // leader in between counts once; flips faster than the sampling are not seen).
      if (s.leader !== undefined && s.leader !== leader) this.changes++;
      s.leader = leader;
      s.leaderSeenMs = now;
    }
    this.sampled = true;
  }

  /** Leader changes observed on local replicas since the node started. */
  leaderChanges(): number {
    return this.changes;
  }

  /**
   * Whether a local group counts as without quorum: no leader known now, and none seen within
   * the leaderless timeout (or ever since this node started, for a replica it started with; a
   * replica created since gets the leaderless timeout to see its first leader, so that creating
   * a keyspace, whose new shards are on every node at once, does not take every node out of
   * its load balancer while they elect); or this node leads it and cannot reach a majority of
   * its voters.
   */
  unavailable(groupId: string): boolean {
    const leader = this.source.leaderOf(groupId);
    if (leader === this.source.self) return !this.source.leaderReachesQuorum(groupId);
    if (leader !== undefined) return false;
    const s = this.seen.get(groupId);
    const sinceMs = s?.leaderSeenMs ?? s?.createdMs;
    return sinceMs === undefined || this.nowMs() - sinceMs > this.leaderlessTimeoutMs;
  }
}

/** A local replica counts as caught up while it has applied all but this many committed entries. */
export const READY_APPLY_LAG_ENTRIES_MAX = 1000;

/** Reasons listed in a /readyz answer at most (a node may host thousands of shards). */
export const READY_REASONS_MAX = 100;

export interface NotReadyReason {
  readonly code: "STARTING" | "DRAINING" | "STOPPING" | "NO_LEADER" | "CATCHING_UP";
  readonly shard?: string;
  readonly message: string;
}

export interface Readiness {
  readonly ready: boolean;
  readonly reasons: readonly NotReadyReason[];
  /** Local shards without quorum (all of them, even beyond READY_REASONS_MAX). */
  readonly unavailableShards: readonly string[];
}

/** /readyz's verdict from the node's state and its local replicas' status. */
/**
 * The local replicas that count for readiness: all but those the shard map places elsewhere.
 * A node that comes back after its replica was moved away still holds the old copy until it
 * is cleaned up (src/api/admin/keyspaces.ts, UNLISTED_GRACE_MS); that copy never hears of a
 * leader again, and must not keep the node out of its load balancer's pool meanwhile.
 */
export function placedHere<S extends { readonly id: string }>(
  statuses: readonly S[],
  shards: readonly { readonly id: string; readonly replicas: readonly string[] }[],
  self: string,
): S[] {
  const elsewhere = new Set(shards.filter((s) => !s.replicas.includes(self)).map((s) => s.id));
  return statuses.filter((st) => !elsewhere.has(st.id));
}

export function readiness(
  state: "starting" | "serving" | "draining" | "stopping",
  statuses: readonly Pick<GroupStatus, "id" | "commit" | "applied">[],
  watch: ShardWatch,
): Readiness {
  if (state === "starting")
    return {
      ready: false,
      reasons: [{ code: "STARTING", message: "the node is starting" }],
      unavailableShards: [],
    };
  // Draining: the node was asked to stop and hands its shard leadership and connections over
  // (src/node/node.ts, stop()); load balancers must send it nothing new from now on.
  if (state === "draining")
    return {
      ready: false,
      reasons: [{ code: "DRAINING", message: "the node is shutting down and draining" }],
      unavailableShards: [],
    };
  if (state === "stopping")
    return {
      ready: false,
      reasons: [{ code: "STOPPING", message: "the node is shutting down" }],
      unavailableShards: [],
    };
  const reasons: NotReadyReason[] = [];
  const unavailableShards: string[] = [];
  for (const st of statuses) {
    if (watch.unavailable(st.id)) {
      unavailableShards.push(st.id);
      reasons.push({
        code: "NO_LEADER",
        shard: st.id,
        message: `shard ${st.id} has no leader: its replicas cannot form a quorum (writes and linearizable reads fail; stale reads work)`,
      });
    } else if (st.commit - st.applied > READY_APPLY_LAG_ENTRIES_MAX) {
      reasons.push({
        code: "CATCHING_UP",
        shard: st.id,
        message: `the local replica of ${st.id} has ${st.commit - st.applied} committed entries left to apply`,
      });
    }
  }
  return { ready: reasons.length === 0, reasons, unavailableShards };
}
