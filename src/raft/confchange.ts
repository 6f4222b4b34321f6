/**
 * Membership changes. A change that alters at most one voter is applied directly (a single
 * server change is always quorum-safe once the leader has committed an entry of its own term);
 * any larger change goes through a joint configuration (old AND new majorities) and is left by
 * a second, empty change. This is etcd's ConfChangeV2 model.
 */
import { assert } from "../base/index.js";
import type { ConfChange, ConfState, NodeId } from "./types.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeConfChange(cc: ConfChange): Uint8Array {
  return encoder.encode(JSON.stringify({ changes: cc.changes, autoLeave: cc.autoLeave ?? true }));
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  const v = JSON.parse(decoder.decode(data)) as ConfChange;
  assert(Array.isArray(v.changes), "malformed conf change entry");
  return v;
}

export type ConfChangeOutcome =
  | { readonly ok: true; readonly confState: ConfState }
  | { readonly ok: false; readonly message: string };

export function isJoint(cs: ConfState): boolean {
  return cs.votersOutgoing.length > 0;
}

/** Applies `cc` to `cs`, returning the new configuration or why it is invalid. Pure. */
export function applyConfChange(cs: ConfState, cc: ConfChange): ConfChangeOutcome {
  if (cc.changes.length === 0) {
    if (!isJoint(cs))
      return { ok: false, message: "not in a joint configuration: nothing to leave" };
    const learners = new Set([...cs.learners, ...cs.learnersNext]);
    return {
      ok: true,
      confState: {
        voters: [...cs.voters],
        learners: [...learners].sort(),
        votersOutgoing: [],
        learnersNext: [],
        autoLeave: false,
      },
    };
  }
  if (isJoint(cs))
    return { ok: false, message: "already in a joint configuration: leave it first" };
  for (const ch of cc.changes) {
    if (typeof ch.node !== "string" || ch.node === "")
      return { ok: false, message: "a change names no node" };
  }

  const before = new Set(cs.voters);
  const incoming = new Set(cs.voters);
  const learners = new Set(cs.learners);
  const learnersNext = new Set<NodeId>();
  // Outgoing voters are only known once we decide to go joint; demotions of current voters are
  // tracked in `demoted` and become learnersNext (joint) or learners (simple).
  const demoted = new Set<NodeId>();
  for (const ch of cc.changes) {
    switch (ch.type) {
      case "addVoter":
        learners.delete(ch.node);
        demoted.delete(ch.node);
        incoming.add(ch.node);
        break;
      case "addLearner":
        incoming.delete(ch.node);
        if (before.has(ch.node)) demoted.add(ch.node);
        else learners.add(ch.node);
        break;
      case "removeNode":
        incoming.delete(ch.node);
        learners.delete(ch.node);
        demoted.delete(ch.node);
        break;
      default:
        return { ok: false, message: `unknown change type ${(ch as { type: unknown }).type}` };
    }
  }
  if (incoming.size === 0)
    return { ok: false, message: "a configuration needs at least one voter" };

  let changedVoters = 0;
  for (const id of incoming) if (!before.has(id)) changedVoters++;
  for (const id of before) if (!incoming.has(id)) changedVoters++;

  const simple = before.size === 0 || changedVoters <= 1;
  if (simple) {
    for (const id of demoted) learners.add(id);
    return {
      ok: true,
      confState: {
        voters: [...incoming].sort(),
        learners: [...learners].sort(),
        votersOutgoing: [],
        learnersNext: [],
        autoLeave: false,
      },
    };
  }
  for (const id of demoted) learnersNext.add(id);
  return {
    ok: true,
    confState: {
      voters: [...incoming].sort(),
      learners: [...learners].sort(),
      votersOutgoing: [...before].sort(),
      learnersNext: [...learnersNext].sort(),
      autoLeave: cc.autoLeave ?? true,
    },
  };
}

/** Every node the configuration replicates to (voters of both halves and learners). */
export function allMembers(cs: ConfState): Set<NodeId> {
  return new Set([...cs.voters, ...cs.votersOutgoing, ...cs.learners, ...cs.learnersNext]);
}
