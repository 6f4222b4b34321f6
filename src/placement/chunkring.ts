/**
 * The chunk ring as a record of the metadata group (`ring`): which nodes hold each partition
 * of the chunk-hash space. The metadata leader recomputes it when the set of nodes that
 * should hold data changes (a node joins, is drained or removed, or is declared dead) and
 * writes it with a compare-and-set; every node reads it, and the blob layer writes, reads and
 * repairs chunks where it says. Keeping the previous layout as the starting point
 * (`computeRing`'s stickiness) moves only about 1/N of the data per membership change.
 *
 * Pure: the node gathers the members' records and liveness, this decides.
 */
import type { NodeId } from "../raft/index.js";
import type { MemberRecord } from "./keyspaces.js";
import { computeRing, RING_PARTITIONS_DEFAULT, type Ring } from "./ring.js";
import type { NodeState } from "./types.js";

export const RING_RECORD_KEY = "ring";

export interface RingRecord {
  /** Grows by one with every change (chunk holders compare versions, not layouts). */
  readonly version: number;
  readonly partitions: number;
  readonly replicas: number;
  readonly ring: Ring;
}

export interface RingMember {
  readonly id: NodeId;
  readonly record: MemberRecord | undefined;
  readonly state: NodeState;
}

/**
 * The nodes that hold chunks: active (not draining or removed) and not dead. A suspect node
 * keeps its partitions: a restart or a short partition must not trigger a data reshuffle.
 */
export function ringNodes(
  members: readonly RingMember[],
): { id: NodeId; zone: string; weight: number }[] {
  return members
    .filter((m) => m.record?.admin === undefined && m.state !== "dead")
    .map((m) => ({ id: m.id, zone: m.record?.labels?.zone ?? "", weight: 1 }));
}

/**
 * The ring the cluster should have, or undefined when `current` is still right. With no
 * eligible node at all the current ring is kept (writing an empty one would strand every chunk).
 */
export function nextRing(
  current: RingRecord | undefined,
  members: readonly RingMember[],
  replicas: number,
  partitions = RING_PARTITIONS_DEFAULT,
): RingRecord | undefined {
  const nodes = ringNodes(members);
  if (nodes.length === 0) return undefined;
  const want = Math.min(replicas, nodes.length);
  const ring = computeRing({
    nodes,
    partitions: current?.partitions ?? partitions,
    replicas: want,
    ...(current ? { previous: current.ring } : {}),
  });
  if (current && current.replicas === want && sameRing(current.ring, ring)) return undefined;
  return {
    version: (current?.version ?? 0) + 1,
    partitions: current?.partitions ?? partitions,
    replicas: want,
    ring,
  };
}

function sameRing(a: Ring, b: Ring): boolean {
  return (
    a.length === b.length &&
    a.every((ra, i) => {
      const rb = b[i] as NodeId[];
      return ra.length === rb.length && ra.every((x, j) => x === rb[j]);
    })
  );
}
