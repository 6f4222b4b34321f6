/**
 * Liveness from heartbeats, and the replicas a node may drop. Pure: the caller passes the
 * placement leader's clock reading.
 */
import { assert } from "../base/index.js";
import type { NodeId } from "../raft/index.js";
import type { ClusterView, Member, NodeState } from "./types.js";

/** Silent this long: suspect (gets no new replicas, is not replaced yet). */
export const SUSPECT_AFTER_MS_DEFAULT = 10_000;
/**
 * Silent this long: dead (its replicas are re-created elsewhere). The same defaults as the
 * node's `--suspect-after` / `--dead-after` (docs/configuration.md); a restart must finish
 * within it, or the node's data is copied around.
 */
export const DEAD_AFTER_MS_DEFAULT = 60_000;

export interface LivenessTimeouts {
  readonly suspectAfterMs: number;
  readonly deadAfterMs: number;
}

export const LIVENESS_TIMEOUTS_DEFAULT: LivenessTimeouts = {
  suspectAfterMs: SUSPECT_AFTER_MS_DEFAULT,
  deadAfterMs: DEAD_AFTER_MS_DEFAULT,
};

/**
 * The liveness of a member at `nowMs` (the leader's clock, the one `lastHeartbeatMs` was
 * recorded with). A heartbeat "from the future" (a clock that went backwards) counts as fresh.
 */
export function livenessAt(
  member: Pick<Member, "lastHeartbeatMs">,
  nowMs: number,
  timeouts: LivenessTimeouts = LIVENESS_TIMEOUTS_DEFAULT,
): NodeState {
  assert(
    timeouts.suspectAfterMs > 0 && timeouts.deadAfterMs >= timeouts.suspectAfterMs,
    "liveness timeouts must satisfy 0 < suspectAfter <= deadAfter",
  );
  const silentMs = nowMs - member.lastHeartbeatMs;
  if (silentMs >= timeouts.deadAfterMs) return "dead";
  if (silentMs >= timeouts.suspectAfterMs) return "suspect";
  return "alive";
}

/**
 * The shards among `hosted` whose local replica on `node` is stale and may be deleted: the
 * shard is gone from the map (merged, or its keyspace dropped), or the node is neither a
 * desired voter nor in the shard's actual configuration as its leader reports it. A node that
 * comes back after being replaced finds its old replicas here. A shard without a report yet
 * is kept: only its leader's report proves the configuration moved on, so a replica is never
 * dropped while it may still count towards a quorum. `view` must be the committed map, at
 * least as new as the replicas (a shard created by a split after an older map was read would
 * look unknown).
 */
export function staleReplicas(
  view: Pick<ClusterView, "shards" | "stats">,
  node: NodeId,
  hosted: readonly string[],
): string[] {
  const byId = new Map(view.shards.map((s) => [s.id, s]));
  return hosted.filter((id) => {
    const shard = byId.get(id);
    if (shard === undefined) return true;
    if (shard.voters.includes(node)) return false;
    const stats = view.stats[id];
    if (stats === undefined) return false;
    return !stats.voters.includes(node) && !stats.learners.includes(node);
  });
}
