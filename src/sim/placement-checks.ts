/**
 * Pure checks of the placement simulation (src/sim/placement.ts): how a configuration's quorums
 * relate, whether keyspace records tile their key space, whether a chunk ring is well formed.
 * Kept apart from the simulation so that each rule reads on its own and can be unit-tested.
 */

import { type KeyspaceRecord, keyspacePrefixHex, type Ring } from "../placement/index.js";
import type { ConfState, NodeId } from "../raft/index.js";

/** Voters of a (possibly joint) configuration; `outgoing` is empty outside a joint one. */
export interface VoterSets {
  readonly voters: readonly NodeId[];
  readonly outgoing: readonly NodeId[];
}

export function voterSets(cs: ConfState): VoterSets {
  return { voters: cs.voters, outgoing: cs.votersOutgoing };
}

function majority(voters: readonly NodeId[], has: (id: NodeId) => boolean): boolean {
  if (voters.length === 0) return true;
  let n = 0;
  for (const v of voters) if (has(v)) n++;
  return n * 2 > voters.length;
}

/** Do the nodes for which `has` holds form a quorum (a majority of each non-empty half)? */
export function isQuorum(cfg: VoterSets, has: (id: NodeId) => boolean): boolean {
  return majority(cfg.voters, has) && majority(cfg.outgoing, has);
}

/**
 * Does every quorum of `after` share a node with every quorum of `before`? This is what makes
 * a membership change safe: a quorum of the new configuration always contains a node that
 * holds everything the old one committed, and two leaders (one per configuration) cannot be
 * elected for the same term. A single-voter change and the two steps of joint consensus pass;
 * replacing a voter in one step does not. Brute force over the union (at most ~14 nodes here).
 */
export function quorumsIntersect(before: VoterSets, after: VoterSets): boolean {
  const all = [
    ...new Set([...before.voters, ...before.outgoing, ...after.voters, ...after.outgoing]),
  ];
  const bit = new Map(all.map((id, i) => [id, i]));
  for (let mask = 0; mask < 1 << all.length; mask++) {
    const inS = (id: NodeId): boolean => ((mask >> (bit.get(id) as number)) & 1) === 1;
    if (isQuorum(after, inS) && isQuorum(before, (id) => !inS(id))) return false;
  }
  return true;
}

/**
 * Why the records do not tile their key spaces exactly once (empty: they do). Each record's
 * shards start at the keyspace prefix, each ends where the next starts, ranges are not empty,
 * the last is unbounded, and no shard id appears twice anywhere.
 */
export function tilingErrors(records: readonly KeyspaceRecord[]): string[] {
  const errors: string[] = [];
  const ids = new Set<string>();
  for (const rec of records) {
    const prefix = keyspacePrefixHex(rec.name);
    const shards = rec.shards;
    if (shards.length === 0) {
      errors.push(`${rec.name}: no shards`);
      continue;
    }
    if (shards[0]?.start !== prefix)
      errors.push(`${rec.name}: first shard starts at ${shards[0]?.start}, not ${prefix}`);
    shards.forEach((s, i) => {
      if (ids.has(s.id)) errors.push(`${rec.name}: duplicate shard id ${s.id}`);
      ids.add(s.id);
      const next = shards[i + 1];
      if (next !== undefined && s.end !== next.start)
        errors.push(`${rec.name}: ${s.id} ends at ${s.end} but ${next.id} starts at ${next.start}`);
      if (s.end !== "" && s.end <= s.start)
        errors.push(`${rec.name}: ${s.id} is empty or reversed`);
      if (next === undefined && s.end !== "")
        errors.push(`${rec.name}: last shard ${s.id} ends at ${s.end}, not ""`);
      if (new Set(s.replicas).size !== s.replicas.length)
        errors.push(`${rec.name}: ${s.id} lists a replica twice: ${s.replicas.join(",")}`);
    });
  }
  return errors;
}

/**
 * Why a chunk ring is malformed for `nodes` (empty: it is fine): every partition lists
 * min(replicas, nodes) distinct nodes, all of them in `nodes`.
 */
export function ringErrors(
  ring: Ring,
  nodes: ReadonlySet<NodeId>,
  replicas: number,
  partitions: number,
): string[] {
  const errors: string[] = [];
  if (ring.length !== partitions) errors.push(`${ring.length} partitions, not ${partitions}`);
  const want = Math.min(replicas, nodes.size);
  ring.forEach((list, p) => {
    if (errors.length >= 3) return;
    if (list.length !== want) errors.push(`partition ${p}: ${list.length} nodes, not ${want}`);
    if (new Set(list).size !== list.length) errors.push(`partition ${p}: a node twice`);
    const stray = list.filter((id) => !nodes.has(id));
    if (stray.length > 0) errors.push(`partition ${p}: ${stray.join(",")} not live and active`);
  });
  return errors;
}

/** Same rings, slot for slot? */
export function sameRing(a: Ring, b: Ring): boolean {
  return (
    a.length === b.length &&
    a.every((list, p) => {
      const other = b[p] as readonly NodeId[];
      return list.length === other.length && list.every((id, i) => id === other[i]);
    })
  );
}
