/**
 * Membership reconciliation, the decision: the next safe step of a shard's Raft configuration
 * toward the replicas its record lists. The shard's leader carries it out (KeyspaceAdmin), and
 * the placement simulator runs the very same function.
 * 1. a listed node that is not in the group joins as a learner (it catches up by snapshot);
 * 2. once caught up it is promoted, and voters no longer listed are removed, in one change
 *    (up-replicate before removing: the group never has fewer voters than it wants);
 * 3. leftover unlisted voters or learners are removed, never below the wanted size.
 */
import type { ConfChange, NodeId } from "../raft/index.js";

/** What the leader knows of its group (not in a joint configuration). */
export interface GroupMembership {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** How far each follower's log matches the leader's. */
  readonly match: ReadonlyMap<NodeId, number>;
  readonly commit: number;
}

/** Voters the record no longer lists, those not alive first (they are the ones to lose first). */
export function unlistedVoters(
  g: GroupMembership,
  replicas: readonly NodeId[],
  alive: (id: NodeId) => boolean,
): NodeId[] {
  const want = new Set(replicas);
  return g.voters.filter((v) => !want.has(v)).sort((a, b) => Number(alive(a)) - Number(alive(b)));
}

export function nextMembershipChange(
  g: GroupMembership,
  replicas: readonly NodeId[],
  alive: (id: NodeId) => boolean,
): ConfChange | undefined {
  const want = new Set(replicas);
  const voters = new Set(g.voters);
  const learners = new Set(g.learners);
  const missing = replicas.filter((r) => !voters.has(r) && !learners.has(r));
  const caughtUp = g.learners.filter((l) => want.has(l) && (g.match.get(l) ?? 0) >= g.commit);
  const extraVoters = unlistedVoters(g, replicas, alive);
  const extraLearners = g.learners.filter((l) => !want.has(l));
  if (caughtUp.length > 0) {
    // Up-replicate before removing: with two replacements pending and one learner caught up,
    // one unlisted voter goes now and the other with the next learner (the simulator's
    // "replica-dip" check).
    const removable = Math.max(
      0,
      Math.min(extraVoters.length, g.voters.length + caughtUp.length - replicas.length),
    );
    return {
      changes: [
        ...caughtUp.map((node) => ({ type: "addVoter" as const, node })),
        ...extraVoters.slice(0, removable).map((node) => ({ type: "removeNode" as const, node })),
      ],
    };
  }
  if (missing.length > 0) return { changes: [{ type: "addLearner", node: missing[0] as NodeId }] };
  if (extraLearners.length > 0 || (extraVoters.length > 0 && g.learners.length === 0)) {
    const node = (extraLearners[0] ?? extraVoters[0]) as NodeId;
    if (voters.has(node) && g.voters.length - 1 < replicas.length) return undefined;
    return { changes: [{ type: "removeNode", node }] };
  }
  return undefined;
}
