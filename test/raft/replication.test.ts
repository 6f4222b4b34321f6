/**
 * Log replication scenarios: ordering, repair of divergent followers, fast backtracking, the
 * §5.4.2 commit rule, proposal routing and back-pressure.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { NodeId } from "../../src/raft/index.js";
import { Harness } from "../../src/sim/harness.js";
import {
  ABC,
  assertApplied,
  cluster,
  commitOf,
  deliverDropping,
  lastIndexOf,
  progressOf,
  proposeAll,
  roleOf,
  sentOf,
  termOf,
  valuesOf,
} from "./_scenario.js";

const values = (n: number, prefix = "v") => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

describe("replication", () => {
  // Rule (log matching): every replica ends up with the same log and applies it in order.
  test("entries replicate and apply in order on all nodes", () => {
    const h = cluster("a");
    const vs = values(10);
    proposeAll(h, "a", vs);
    h.tick(1);
    assertApplied(h, ABC, vs);
    const last = lastIndexOf(h, "a");
    assert.equal(last, 12, "bootstrap entry + leader no-op + 10 proposals");
    for (const id of ABC) {
      assert.equal(lastIndexOf(h, id), last);
      assert.equal(commitOf(h, id), last);
      for (let i = 1; i <= last; i++) assert.equal(h.node(id).termAt(i), h.node("a").termAt(i));
    }
  });

  // Rule: a proposal's result names the index and term it will be applied at if committed.
  test("a proposal returns the index and term of its entry", () => {
    const h = cluster("a");
    assert.deepEqual(h.propose("a", "x"), { ok: true, index: 3, term: 2 });
    assert.deepEqual(h.propose("a", "y"), { ok: true, index: 4, term: 2 });
  });

  // Rule (§5.3): a follower's uncommitted suffix that conflicts with the leader is truncated
  // and replaced by the leader's entries.
  test("a follower's divergent uncommitted suffix is overwritten", () => {
    const ids = ["a", "b", "c", "d", "e"];
    const h = new Harness(ids, { seed: 5 });
    h.campaign("a");
    for (const id of ["c", "d", "e"]) h.cutLink("a", id);
    proposeAll(h, "a", ["x1", "x2", "x3"]);
    assert.equal(lastIndexOf(h, "b"), 5, "b holds the uncommitted x1..x3");
    assert.equal(commitOf(h, "a"), 2, "2 of 5 is not a quorum");
    h.stop("a");
    h.heal();
    h.tick(40, ["c", "d", "e"]); // b's clock stands still: it keeps honouring a's lease
    const l = ["c", "d", "e"].find((id) => roleOf(h, id) === "leader") as NodeId;
    assert.ok(l, "c, d or e leads");
    proposeAll(h, l, ["y"]);
    h.tick(3);
    const t = termOf(h, l);
    assert.equal(h.node("b").termAt(3), t, "b's x1 was replaced by the new leader's no-op");
    assert.equal(lastIndexOf(h, "b"), lastIndexOf(h, l));
    assert.equal(lastIndexOf(h, l), 4);
    assertApplied(h, ["b", "c", "d", "e"], ["y"]);
  });

  // Rule (fast backtracking): a rejection carries a (index, term) hint so the leader skips a
  // whole conflicting term per round trip instead of one entry per round trip.
  test("a follower with a long conflicting suffix is repaired in few round trips", () => {
    const h = cluster("a", { seed: 11 });
    h.isolate("a");
    proposeAll(h, "a", values(30, "old")); // a: indexes 3..32, all term 2, never committed
    h.tick(40, ["b", "c"]);
    let l = ["b", "c"].find((id) => roleOf(h, id) === "leader") as NodeId;
    assert.ok(l);
    // The majority writes 3 terms' worth of entries (transfers bump the term each time).
    for (let round = 0; round < 3; round++) {
      proposeAll(h, l, values(10, `t${round}-`));
      const other = l === "b" ? "c" : "b";
      assert.deepEqual(h.node(l).transferLeadership(other), { ok: true });
      h.deliver();
      assert.equal(roleOf(h, other), "leader");
      l = other;
    }
    const leaderLast = lastIndexOf(h, l);
    assert.ok(leaderLast > 32);
    // The leader's optimistic next index for a is its own last index + 1: far beyond the match.
    assert.equal(progressOf(h, l, "a").next, leaderLast);
    const before = h.sent.length;
    h.heal();
    h.tick(5);
    const rejections = sentOf(h, "appResp", (m) => m.from === "a" && m.reject, before);
    assert.ok(rejections.length >= 1, "a must have rejected at least once");
    assert.ok(rejections.length <= 2, `${rejections.length} rejections for 30 conflicting entries`);
    assert.equal(lastIndexOf(h, "a"), leaderLast);
    for (let i = 1; i <= leaderLast; i++) assert.equal(h.node("a").termAt(i), h.node(l).termAt(i));
    assert.deepEqual(valuesOf(h, "a"), valuesOf(h, l));
    assert.equal(valuesOf(h, "a").length, 30);
    assert.ok(!valuesOf(h, "a").some((v) => v.startsWith("old")));
  });

  /**
   * Raft §5.4.2 / Figure 8 on three nodes: a (term 4) holds an old-term entry "old" at index 3
   * and gets it onto every replica, but its own no-op (index 4) is held back. Counting replicas
   * would commit "old"; the rule says wait for an entry of the current term.
   */
  function oldTermEntryScenario(commitOldTermByCounting: boolean): Harness {
    const h = new Harness(ABC, {
      preVote: false,
      checkQuorum: false,
      maxAppendBytes: 1, // one entry per append so entries can be held back individually
      testingBugs: { commitOldTermByCounting },
    });
    h.campaign("a");
    h.isolate("a");
    assert.deepEqual(h.propose("a", "old"), { ok: true, index: 3, term: 2 });
    // c campaigns in term 3: a steps down (its log wins the vote check), c gets no answer.
    h.heal();
    h.dropType("voteResp");
    h.campaign("c");
    assert.equal(roleOf(h, "a"), "follower");
    assert.equal(termOf(h, "a"), 3);
    h.heal();
    // a wins term 4; appends carrying term-4 entries to a replica that already holds "old" are lost.
    h.node("a").campaign();
    deliverDropping(
      h,
      (m) =>
        m.type === "app" && m.entries.some((e) => e.term === 4) && h.node(m.to).termAt(3) === 2,
    );
    assert.equal(roleOf(h, "a"), "leader");
    assert.equal(termOf(h, "a"), 4);
    return h;
  }

  // Rule (§5.4.2): a leader does not commit an earlier-term entry by counting replicas.
  test("an old-term entry on every replica is not committed until a current-term entry is", () => {
    const h = oldTermEntryScenario(false);
    for (const id of ABC) assert.equal(h.node(id).termAt(3), 2, `${id} holds "old"`);
    assert.equal(progressOf(h, "a", "b").match, 3);
    assert.equal(progressOf(h, "a", "c").match, 3);
    assert.equal(commitOf(h, "a"), 2, "not committed by counting");
    for (const id of ABC) assert.deepEqual(valuesOf(h, id), []);
    // Once the term-4 no-op replicates, both commit together.
    h.tick(3);
    assert.equal(commitOf(h, "a"), 4);
    assertApplied(h, ABC, ["old"]);
  });

  // Meta-check: the scenario above does detect the planted Figure 8 bug.
  test("the commit-rule scenario detects counting old-term replicas (planted bug)", () => {
    const h = oldTermEntryScenario(true);
    assert.equal(commitOf(h, "a"), 3, "the buggy leader commits by counting");
  });

  // Rule: only the leader accepts proposals; others refuse with a hint of who leads.
  test("proposals on a non-leader return NOT_LEADER with the right hint", () => {
    const h = new Harness(ABC);
    assert.deepEqual(h.propose("a", "x"), { ok: false, code: "NOT_LEADER", leaderHint: "" });
    h.campaign("a");
    for (const id of ["b", "c"]) {
      assert.deepEqual(h.propose(id, "x"), { ok: false, code: "NOT_LEADER", leaderHint: "a" });
    }
    assert.deepEqual(h.node("a").transferLeadership("b"), { ok: true });
    h.deliver();
    for (const id of ["a", "c"]) {
      assert.deepEqual(h.propose(id, "x"), { ok: false, code: "NOT_LEADER", leaderHint: "b" });
    }
    for (const id of ABC) assert.deepEqual(valuesOf(h, id), []);
  });

  // Rule: proposals beyond maxUncommittedBytes are refused (OVERLOADED) instead of growing the
  // log without bound; room frees up as entries commit.
  test("maxUncommittedBytes turns proposals into OVERLOADED while nothing commits", () => {
    // Each 10-byte payload counts as 34 bytes: two fit in 100, a third does not.
    const h = cluster("a", { maxUncommittedBytes: 100 });
    h.isolate("a");
    const p = "0123456789";
    assert.ok(h.propose("a", p).ok);
    assert.ok(h.propose("a", p).ok);
    const last = lastIndexOf(h, "a");
    const r = h.propose("a", p);
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.code, "OVERLOADED");
    assert.equal(lastIndexOf(h, "a"), last, "the refused proposal was not appended");
    h.heal();
    h.tick(2);
    assert.equal(commitOf(h, "a"), last);
    assert.ok(h.propose("a", p).ok, "accepted again once the backlog committed");
    h.tick(1);
    assertApplied(h, ABC, [p, p, p]);
  });

  // Rule: a single proposal larger than the limit is accepted when nothing is pending (else it
  // could never be proposed at all).
  test("a single oversized proposal is accepted when nothing is uncommitted", () => {
    const h = cluster("a", { maxUncommittedBytes: 10 });
    assert.ok(h.propose("a", "x".repeat(100)).ok);
    h.tick(1);
    assertApplied(h, ABC, ["x".repeat(100)]);
  });
});
