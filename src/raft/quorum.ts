/**
 * Quorum math, kept apart from the protocol so it can be property-tested against a naive
 * version. A joint configuration is two majority configurations that must both agree.
 */
import type { NodeId } from "./types.js";

export type VoteResult = "pending" | "won" | "lost";

/**
 * The largest index acknowledged by a majority of `voters`: sort the acked indexes descending
 * and take the one at position floor(n/2). An empty config commits "everything" (Infinity),
 * so that in a joint config min(incoming, outgoing) is decided by the non-empty half.
 */
export function majorityCommitted(
  voters: ReadonlySet<NodeId>,
  acked: (id: NodeId) => number,
): number {
  const n = voters.size;
  if (n === 0) return Number.POSITIVE_INFINITY;
  const values: number[] = [];
  for (const id of voters) values.push(acked(id));
  values.sort((a, b) => b - a);
  return values[Math.floor(n / 2)] as number;
}

export function majorityVote(
  voters: ReadonlySet<NodeId>,
  votes: ReadonlyMap<NodeId, boolean>,
): VoteResult {
  const n = voters.size;
  if (n === 0) return "won";
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === undefined) missing++;
    else if (v) granted++;
  }
  const q = Math.floor(n / 2) + 1;
  if (granted >= q) return "won";
  if (granted + missing >= q) return "pending";
  return "lost";
}

/** A configuration as quorum math sees it: one or two voter sets. */
export interface JointVoters {
  readonly incoming: ReadonlySet<NodeId>;
  readonly outgoing: ReadonlySet<NodeId>;
}

export function jointCommitted(cfg: JointVoters, acked: (id: NodeId) => number): number {
  return Math.min(majorityCommitted(cfg.incoming, acked), majorityCommitted(cfg.outgoing, acked));
}

export function jointVote(cfg: JointVoters, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const a = majorityVote(cfg.incoming, votes);
  const b = majorityVote(cfg.outgoing, votes);
  if (a === b) return a;
  if (a === "lost" || b === "lost") return "lost";
  return "pending";
}

/** True when the set of nodes `active` contains a quorum of the configuration. */
export function jointHasQuorum(cfg: JointVoters, active: (id: NodeId) => boolean): boolean {
  const votes = new Map<NodeId, boolean>();
  for (const id of cfg.incoming) votes.set(id, active(id));
  for (const id of cfg.outgoing) votes.set(id, active(id));
  return jointVote(cfg, votes) === "won";
}

/** All voters of the configuration (union of both halves). */
export function allVoters(cfg: JointVoters): Set<NodeId> {
  return new Set([...cfg.incoming, ...cfg.outgoing]);
}
