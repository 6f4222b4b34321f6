/**
 * Small helpers shared by the Raft scenario tests (test/raft/*.test.ts). Everything goes through
 * the public Harness API; nothing here changes protocol behaviour.
 */
import assert from "node:assert/strict";
import type { Message, MessageType, NodeId } from "../../src/raft/index.js";
import { Harness, type HarnessOptions } from "../../src/sim/harness.js";

export const ABC: readonly NodeId[] = ["a", "b", "c"];

/** A three-node group (a, b, c) where `leader` has won the first election (term 2). */
export function cluster(
  leader: NodeId = "a",
  options: HarnessOptions = {},
  voters: readonly NodeId[] = ABC,
): Harness {
  const h = new Harness(voters, options);
  h.campaign(leader);
  assert.equal(h.leader(), leader, `${leader} should have won the first election`);
  assert.equal(h.node(leader).basicStatus().term, 2);
  return h;
}

export const roleOf = (h: Harness, id: NodeId) => h.node(id).basicStatus().role;
export const termOf = (h: Harness, id: NodeId) => h.node(id).basicStatus().term;
export const commitOf = (h: Harness, id: NodeId) => h.node(id).basicStatus().commit;
export const lastIndexOf = (h: Harness, id: NodeId) => h.node(id).status().lastIndex;
export const valuesOf = (h: Harness, id: NodeId) => h.machine(id).values();

/** The leader's view of `id`'s replication progress. */
export function progressOf(h: Harness, leader: NodeId, id: NodeId) {
  const pr = h.node(leader).status().progress.get(id);
  assert.ok(pr, `${leader} has no progress for ${id}`);
  return pr;
}

/** Proposes each value on `id`, asserting every proposal is accepted. */
export function proposeAll(h: Harness, id: NodeId, values: readonly string[]): void {
  for (const v of values) {
    const r = h.propose(id, v);
    assert.ok(r.ok, `proposal ${v} on ${id} refused: ${JSON.stringify(r)}`);
  }
}

/** Asserts that every listed node applied exactly `values`, in order. */
export function assertApplied(h: Harness, ids: readonly NodeId[], values: readonly string[]): void {
  for (const id of ids) assert.deepEqual(valuesOf(h, id), values, `values applied on ${id}`);
}

/** The message interface(s) whose `type` can be T (MsgVote covers "vote" and "preVote"). */
export type MsgOf<T extends MessageType> = Message extends infer M
  ? M extends { type: infer U }
    ? T extends U
      ? M
      : never
    : never
  : never;

/** Messages sent since `h.sent[from]` with the given type (and matching the predicate). */
export function sentOf<T extends MessageType>(
  h: Harness,
  type: T,
  pred: (m: MsgOf<T>) => boolean = () => true,
  from = 0,
): MsgOf<T>[] {
  const out: MsgOf<T>[] = [];
  for (const m of h.sent.slice(from)) {
    if (m.type === type && pred(m as MsgOf<T>)) out.push(m as MsgOf<T>);
  }
  return out;
}

/**
 * Delivers until the network is quiet, silently dropping every message for which `drop` is true
 * (an etcd-style network filter built on the public queue).
 */
export function deliverDropping(h: Harness, drop: (m: Message) => boolean, maxRounds = 1000): void {
  h.flush();
  for (let i = 0; i < maxRounds; i++) {
    h.queue = h.queue.filter((m) => !drop(m));
    if (h.queue.length === 0) return;
    h.deliverOnly(() => true);
  }
  assert.fail("network did not quiesce");
}

/** Delivers one round at a time (everything queued now), calling `each` after every round. */
export function deliverRounds(h: Harness, each: () => void, maxRounds = 1000): void {
  h.flush();
  for (let i = 0; i < maxRounds && h.queue.length > 0; i++) {
    h.deliverOnly(() => true);
    each();
  }
  assert.equal(h.queue.length, 0, "network did not quiesce");
}

/** Ticks (one tick at a time) until `cond` holds; returns the number of ticks it took. */
export function tickUntil(
  h: Harness,
  cond: () => boolean,
  max: number,
  ids?: readonly NodeId[],
): number {
  for (let n = 0; n <= max; n++) {
    if (cond()) return n;
    h.tick(1, ids);
  }
  assert.fail(`condition not reached within ${max} ticks`);
}

/** Like `h.tick(n, ids)`, but delivers through `deliverDropping(h, drop)` after each tick. */
export function tickDropping(
  h: Harness,
  n: number,
  ids: readonly NodeId[],
  drop: (m: Message) => boolean,
): void {
  for (let i = 0; i < n; i++) {
    for (const id of ids) h.node(id).tick();
    deliverDropping(h, drop);
  }
}
