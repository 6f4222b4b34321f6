/**
 * Linearizable reads: ReadIndex (a heartbeat round confirms leadership), forwarding from
 * followers, leader leases, and the new-leader rule (wait for a commit in the current term).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Message, NodeId } from "../../src/raft/index.js";
import { Harness } from "../../src/sim/harness.js";
import {
  ABC,
  cluster,
  commitOf,
  deliverDropping,
  proposeAll,
  roleOf,
  sentOf,
  termOf,
  tickUntil,
} from "./_scenario.js";

const readStates = (h: Harness, id: NodeId) => h.peer(id).readStates;

describe("reads: ReadIndex", () => {
  // Rule: a ReadIndex on the leader is released only after a quorum acknowledged a heartbeat
  // sent after the read arrived; its index is the commit index at the time of the request.
  test("a read is released only once a quorum acknowledged a heartbeat round", () => {
    const h = cluster("a");
    proposeAll(h, "a", ["x"]);
    const commit = commitOf(h, "a");
    assert.equal(commit, 3);
    assert.deepEqual(h.node("a").readIndex("r1"), { ok: true });
    assert.deepEqual(h.node("a").readIndex("r2"), { ok: true });
    h.flush();
    // One heartbeat round serves both reads.
    assert.deepEqual(
      h.queue.map((m) => [m.type, m.to]),
      [
        ["heartbeat", "b"],
        ["heartbeat", "c"],
      ],
    );
    h.deliverOnly((m) => m.type === "heartbeat");
    assert.equal(h.queue.filter((m) => m.type === "heartbeatResp").length, 2);
    assert.deepEqual(readStates(h, "a"), [], "no acknowledgement yet");
    h.deliverOnly((m) => m.type === "heartbeatResp" && m.from === "b");
    assert.deepEqual(readStates(h, "a"), [
      { index: commit, context: "r1" },
      { index: commit, context: "r2" },
    ]);
  });

  // Rule: acknowledgements of a heartbeat sent BEFORE the read do not confirm it (the leader
  // may have been deposed in between).
  test("acknowledgements of an earlier heartbeat round do not release a read", () => {
    const h = cluster("a");
    h.node("a").tick(); // a heartbeat round starts ...
    h.flush();
    const early = new Set<Message>(h.queue.filter((m) => m.type === "heartbeat"));
    assert.equal(early.size, 2);
    assert.deepEqual(h.node("a").readIndex("late"), { ok: true }); // ... then the read arrives
    h.flush();
    h.deliverOnly((m) => early.has(m));
    h.deliverOnly((m) => m.type === "heartbeatResp");
    assert.deepEqual(readStates(h, "a"), [], "the early round's answers do not count");
    h.deliver();
    assert.deepEqual(readStates(h, "a"), [{ index: 2, context: "late" }]);
  });

  // Rule: a leader that cannot reach a quorum never confirms a read.
  test("a ReadIndex on an isolated leader never completes", () => {
    const h = cluster("a");
    h.isolate("a");
    assert.deepEqual(h.node("a").readIndex("r"), { ok: true });
    h.tick(30);
    assert.notEqual(roleOf(h, "a"), "leader", "a stepped down meanwhile");
    h.heal();
    h.tick(30);
    assert.deepEqual(readStates(h, "a"), []);
  });

  // Rule: a follower forwards ReadIndex to its leader, which confirms it with a heartbeat
  // round and answers with its commit index; the ReadState appears on the follower.
  test("a follower's ReadIndex is forwarded to the leader and answered", () => {
    const h = cluster("a");
    proposeAll(h, "a", ["x"]);
    h.dropType("heartbeatResp");
    assert.deepEqual(h.node("b").readIndex("rb"), { ok: true });
    h.deliver();
    assert.deepEqual(
      sentOf(h, "readIndex").map((m) => [m.from, m.to, m.context]),
      [["b", "a", "rb"]],
    );
    assert.deepEqual(readStates(h, "b"), [], "the leader has not confirmed its leadership yet");
    h.heal();
    h.tick(1);
    assert.deepEqual(readStates(h, "b"), [{ index: 3, context: "rb" }]);
    assert.deepEqual(readStates(h, "a"), [], "the leader does not keep the follower's read");
  });

  // Rule: a leader confirms no read for a node that may never apply up to the read's index:
  // one outside the configuration, or one that a change in the log (not applied yet) removes.
  // The refusal comes back as Ready.refusedReads, so the node can send its client elsewhere.
  test("a leader refuses the ReadIndex of a node its unapplied configuration change removes", () => {
    const h = cluster("a");
    proposeAll(h, "a", ["x"]);
    assert.ok(h.node("a").proposeConfChange({ changes: [{ type: "removeNode", node: "c" }] }).ok);
    assert.deepEqual(h.node("c").readIndex("rc"), { ok: true });
    assert.deepEqual(h.node("b").readIndex("rb"), { ok: true });
    h.flush();
    h.deliverOnly((m) => m.type === "readIndex");
    h.deliver();
    h.tick(1);
    assert.deepEqual(h.peer("c").refusedReads, ["rc"]);
    assert.deepEqual(readStates(h, "c"), []);
    assert.deepEqual(h.peer("b").refusedReads, []);
    assert.equal(readStates(h, "b").length, 1, "b's read is confirmed as usual");
    // Once removed, c is outside the configuration: still refused.
    assert.deepEqual(h.node("c").readIndex("rc2"), { ok: true });
    h.deliver();
    assert.deepEqual(h.peer("c").refusedReads, ["rc", "rc2"]);
  });

  // Rule: a follower that knows no leader refuses the read with NOT_LEADER.
  test("a ReadIndex with no known leader is refused", () => {
    const h = new Harness(ABC);
    assert.deepEqual(h.node("b").readIndex("r"), {
      ok: false,
      code: "NOT_LEADER",
      leaderHint: "",
    });
  });

  // Rule: reads waiting for confirmation are bounded (maxPendingReads); beyond, OVERLOADED.
  test("too many pending reads are refused with OVERLOADED", () => {
    const h = cluster("a", { maxPendingReads: 2 });
    h.isolate("a");
    assert.ok(h.node("a").readIndex("r1").ok);
    assert.ok(h.node("a").readIndex("r2").ok);
    const r = h.node("a").readIndex("r3");
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.code, "OVERLOADED");
  });

  // Rule: a new leader's commit index may lag until it commits an entry of its own term, so a
  // read waits for that and is then given at least the new no-op's index.
  test("a new leader's ReadIndex waits for the first commit in its term", () => {
    const h = new Harness(ABC);
    h.dropType("appResp"); // the new leader's no-op cannot commit
    h.campaign("a");
    assert.equal(roleOf(h, "a"), "leader");
    assert.equal(commitOf(h, "a"), 1);
    assert.deepEqual(h.node("a").readIndex("r"), { ok: true });
    h.tick(3);
    assert.ok(sentOf(h, "heartbeatResp").length > 0, "heartbeats are acknowledged meanwhile");
    assert.deepEqual(readStates(h, "a"), [], "no read index before a term-2 commit");
    h.heal();
    h.tick(2);
    assert.equal(commitOf(h, "a"), 2);
    assert.deepEqual(readStates(h, "a"), [{ index: 2, context: "r" }]);
  });
});

describe("reads: leader lease", () => {
  const lease = { readMode: "lease" as const };

  // Rule: with a fresh lease (a quorum acknowledged a recent heartbeat) the leader serves the
  // read at once, without a heartbeat round.
  test("a read is served immediately while the lease is fresh", () => {
    const h = cluster("a", lease);
    proposeAll(h, "a", ["x"]);
    h.tick(1);
    assert.equal(h.node("a").hasValidLease(), true);
    const before = h.sent.length;
    assert.deepEqual(h.node("a").readIndex("l1"), { ok: true });
    h.flush();
    assert.deepEqual(readStates(h, "a"), [{ index: 3, context: "l1" }]);
    assert.equal(h.sent.length, before, "no message was needed");
  });

  // Rule: the lease starts from acknowledged heartbeats, so a leader that has none yet must
  // run a heartbeat round.
  test("a leader with no acknowledged heartbeat has no lease", () => {
    const h = cluster("a", lease);
    assert.equal(h.node("a").hasValidLease(), false);
    assert.ok(h.node("a").readIndex("r").ok);
    h.flush();
    assert.deepEqual(readStates(h, "a"), []);
    assert.equal(h.queue.filter((m) => m.type === "heartbeat").length, 2);
    h.deliver();
    assert.deepEqual(readStates(h, "a"), [{ index: 2, context: "r" }]);
  });

  // Rule: once the lease may have expired (electionTimeout - drift ticks after the last
  // acknowledged heartbeat) an isolated leader no longer serves reads locally, even though it
  // has not stepped down yet.
  test("an isolated leader stops serving lease reads once the lease may have expired", () => {
    const h = cluster("a", lease);
    h.tick(1);
    h.isolate("a");
    assert.equal(h.node("a").hasValidLease(), true);
    const ticks = tickUntil(h, () => !h.node("a").hasValidLease(), 10, ["a"]);
    assert.equal(ticks, 8, "lease = 10-tick election timeout - 2 ticks of drift");
    assert.equal(roleOf(h, "a"), "leader", "still leader: check-quorum has not fired yet");
    const before = h.sent.length;
    assert.ok(h.node("a").readIndex("stale?").ok);
    h.tick(1, ["a"]);
    assert.deepEqual(readStates(h, "a"), [], "not served locally");
    assert.ok(sentOf(h, "heartbeat", () => true, before).length >= 2, "a round is needed");
    h.tick(20, ["a"]);
    assert.notEqual(roleOf(h, "a"), "leader");
    assert.deepEqual(readStates(h, "a"), []);
  });

  // Rule (why leases are sound): while the isolated leader's lease is valid no other node can
  // have been elected, because voters that acknowledged it ignore vote requests for longer.
  test("no other leader exists while an isolated leader's lease is valid", () => {
    const h = cluster("a", { ...lease, seed: 9 });
    h.tick(1);
    h.isolate("a");
    let validTicks = 0;
    let newLeader: NodeId | undefined;
    for (let i = 0; i < 40; i++) {
      h.tick(1);
      const other = ["b", "c"].find((id) => roleOf(h, id) === "leader");
      if (h.node("a").hasValidLease()) {
        validTicks++;
        assert.equal(other, undefined, `tick ${i}: ${other} leads during a's lease`);
      }
      newLeader ??= other;
    }
    assert.ok(validTicks > 0);
    assert.ok(newLeader, "b or c eventually leads");
    assert.ok(termOf(h, newLeader) > 2);
  });

  // Rule (the lease promise, docs/raft.md): a follower that acknowledged the leader's heartbeat
  // helps elect nobody else for an election timeout, itself included, so no other leader can
  // commit while the old leader still serves lease reads.
  test("a follower in lease cannot be made leader by an explicit campaign()", () => {
    const h = cluster("a", lease);
    h.cutLink("a", "c");
    h.tick(12); // c's lease on a runs out; a's lease rests on b's acknowledgements
    assert.equal(termOf(h, "c"), 2);
    h.isolate("a");
    assert.equal(h.node("a").hasValidLease(), true);
    h.node("b").campaign(); // b acknowledged a's heartbeat one tick ago
    h.deliver();
    assert.equal(h.node("a").hasValidLease(), true);
    assert.notEqual(roleOf(h, "b"), "leader", "b was elected during a's lease");
    // Nobody else leads while a's lease holds, so a's lease reads stay linearizable.
    for (const id of ["b", "c"]) assert.notEqual(roleOf(h, id), "leader");
  });

  // Rule: without check-quorum a leader never steps down by itself, so it can hold no lease.
  test("there is no lease without check-quorum", () => {
    const h = cluster("a", { ...lease, checkQuorum: false });
    h.tick(1);
    assert.equal(h.node("a").hasValidLease(), false);
    assert.ok(h.node("a").readIndex("r").ok);
    h.flush();
    assert.deepEqual(readStates(h, "a"), []);
  });

  // Rule: once a leadership transfer starts, the target may win while voters still honour our
  // lease, so lease reads stop for the rest of the term.
  test("a leader transferring leadership stops serving lease reads", () => {
    const h = cluster("a", lease);
    h.tick(1);
    assert.equal(h.node("a").hasValidLease(), true);
    h.dropType("timeoutNow");
    assert.deepEqual(h.node("a").transferLeadership("b"), { ok: true });
    h.deliver();
    assert.equal(roleOf(h, "a"), "leader");
    assert.equal(h.node("a").hasValidLease(), false);
    h.heal();
    h.tick(11); // the transfer is abandoned, yet the lease stays off for this term
    assert.equal(roleOf(h, "a"), "leader");
    assert.equal(h.node("a").status().leadTransferee, "");
    assert.equal(h.node("a").hasValidLease(), false);
  });
});

describe("reads: per-request mode", () => {
  // Rule: a follower's readIndex(ctx, "quorum") must not be served from the leader's lease.
  test("a follower's explicit quorum read is confirmed by a heartbeat round", () => {
    const h = cluster("a", { readMode: "lease" });
    h.tick(1);
    assert.equal(h.node("a").hasValidLease(), true);
    assert.ok(h.node("b").readIndex("fq", "quorum").ok);
    deliverDropping(h, (m) => m.type === "heartbeatResp");
    assert.deepEqual(readStates(h, "b"), [], "held back: no acknowledged round");
  });

  // Rule: readIndex(ctx, "quorum") on a lease-mode leader still runs a heartbeat round.
  test("an explicit quorum read on a lease-mode leader needs a heartbeat round", () => {
    const h = cluster("a", { readMode: "lease" });
    h.tick(1);
    assert.equal(h.node("a").hasValidLease(), true);
    assert.ok(h.node("a").readIndex("q", "quorum").ok);
    deliverDropping(h, (m) => m.type === "heartbeatResp");
    assert.deepEqual(readStates(h, "a"), [], "held back: no acknowledged round");
    h.tick(1);
    assert.deepEqual(readStates(h, "a"), [{ index: 2, context: "q" }]);
  });

  // Rule: the mode a read was requested with is kept while the read waits for the new
  // leader's first commit (a "quorum" read must not be turned into a lease read).
  test("a quorum read that waited for the first commit still needs a heartbeat round", () => {
    const h = new Harness(ABC, { readMode: "lease" });
    h.dropType("appResp"); // the no-op cannot commit yet
    h.campaign("a");
    h.tick(1); // heartbeats are acknowledged: the lease clock is fresh
    assert.equal(commitOf(h, "a"), 1);
    assert.ok(h.node("a").readIndex("q", "quorum").ok);
    h.heal();
    // Let the no-op commit while every heartbeat answer is lost.
    h.node("a").tick();
    h.flush();
    h.deliverOnly((m) => m.type === "heartbeat");
    h.deliverOnly((m) => m.type === "heartbeatResp"); // a resends the no-op on these
    deliverDropping(h, (m) => m.type === "heartbeatResp");
    assert.equal(commitOf(h, "a"), 2);
    assert.deepEqual(readStates(h, "a"), [], "a quorum read needs a round after the commit");
  });
});
