/**
 * Leader election scenarios (after etcd raft's raft_test.go): election by timeout, election
 * safety, the log up-to-date check, stale leaders, pre-vote, check-quorum and the leader lease.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Prng } from "../../src/base/index.js";
import type { NodeId } from "../../src/raft/index.js";
import { Harness } from "../../src/sim/harness.js";
import {
  ABC,
  assertApplied,
  cluster,
  commitOf,
  lastIndexOf,
  proposeAll,
  roleOf,
  sentOf,
  termOf,
  tickUntil,
  valuesOf,
} from "./_scenario.js";

/**
 * Delivers a vote request for `term` from `from` (with its real last index and term) straight
 * to `to`: the voter's behaviour is under test, whatever the candidate's own lease says.
 */
function requestVote(h: ReturnType<typeof cluster>, from: string, to: string, term: number): void {
  const last = h.node(from).status().lastIndex;
  const logTerm = h.node(from).termAt(last) ?? 0;
  h.node(to).step({ type: "vote", from, to, term, index: last, logTerm, force: false });
  h.deliver();
}

describe("election", () => {
  for (const seed of [1, 2, 3, 7, 42]) {
    // Rule: with no leader, election timeouts alone produce exactly one leader everybody follows.
    test(`a leader is elected by ticking (seed ${seed})`, () => {
      const h = new Harness(ABC, { seed });
      h.tick(40);
      const leaders = ABC.filter((id) => roleOf(h, id) === "leader");
      assert.equal(leaders.length, 1);
      const l = leaders[0] as NodeId;
      for (const id of ABC) {
        assert.equal(h.node(id).basicStatus().leader, l, `${id} follows ${l}`);
        assert.equal(termOf(h, id), termOf(h, l));
      }
      // The very first election of a fresh group happens in term 2 (bootstrap is term 1).
      assert.equal(termOf(h, l), 2);
    });
  }

  // Rule (election safety): at most one leader per term, even under random partitions; and
  // every replica's applied sequence is a prefix of every other's (state machine safety).
  test("at most one leader per term under random partitions", () => {
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const ids = ["a", "b", "c", "d", "e"];
      const h = new Harness(ids, { seed });
      const rnd = new Prng(seed * 7919);
      for (let step = 0; step < 60; step++) {
        const l = h.leader();
        if (l && rnd.chance(0.6)) h.propose(l, `s${seed}-v${step}`);
        if (rnd.chance(0.15)) h.isolate(ids[rnd.int(ids.length)] as NodeId);
        if (rnd.chance(0.1)) {
          const cut = rnd.int(ids.length);
          h.partition(ids.slice(0, cut), ids.slice(cut));
        }
        if (rnd.chance(0.2)) h.heal();
        h.tick(1 + rnd.int(8));
      }
      h.heal();
      h.tick(60);
      // Everybody who led term T is the same node: check every message only a leader sends.
      const leaderOf = new Map<number, NodeId>();
      for (const m of h.sent) {
        if (m.type !== "app" && m.type !== "heartbeat" && m.type !== "snap") continue;
        const known = leaderOf.get(m.term);
        assert.ok(
          known === undefined || known === m.from,
          `term ${m.term}: ${known} and ${m.from}`,
        );
        leaderOf.set(m.term, m.from);
      }
      assert.ok(leaderOf.size >= 2, `seed ${seed}: the scenario should change leaders`);
      const longest = ids.map((id) => valuesOf(h, id)).sort((x, y) => y.length - x.length)[0];
      for (const id of ids) assert.deepEqual(valuesOf(h, id), longest, `seed ${seed}: ${id}`);
    }
  });

  for (const preVote of [false, true]) {
    // Rule (§5.4.1): a voter refuses a candidate whose log is less up to date than its own.
    test(`a candidate with a stale log cannot win (preVote ${preVote})`, () => {
      // Check-quorum off so that voters answer at once (no lease) and only the log check decides.
      const h = cluster("a", { preVote, checkQuorum: false });
      h.isolate("c");
      proposeAll(h, "a", ["x"]);
      assert.equal(commitOf(h, "a"), 3);
      assert.equal(lastIndexOf(h, "c"), 2, "c missed x");
      h.heal();
      const before = h.sent.length;
      h.campaign("c");
      const reqType = preVote ? "preVoteResp" : "voteResp";
      const answers = sentOf(h, reqType, (m) => m.to === "c", before);
      assert.deepEqual(answers.map((m) => [m.from, m.reject]).sort(), [
        ["a", true],
        ["b", true],
      ]);
      assert.notEqual(roleOf(h, "c"), "leader");
      h.tick(40);
      const l = h.leader();
      assert.ok(l === "a" || l === "b", `leader ${l} holds x`);
      assertApplied(h, ABC, ["x"]);
    });
  }

  // Rule: a leader cut off from the majority cannot commit; once healed it learns the new term,
  // steps down, and its uncommitted entry is replaced by the new leader's log.
  test("a partitioned old leader cannot commit and its entry is replaced", () => {
    const h = cluster("a");
    h.partition(["a"], ["b", "c"]);
    const lost = h.propose("a", "lost");
    assert.ok(lost.ok);
    assert.equal(lost.index, 3);
    // Only b and c tick, so a still believes it leads term 2.
    h.tick(40, ["b", "c"]);
    const newLeader = ["b", "c"].find((id) => roleOf(h, id) === "leader");
    assert.ok(newLeader, "b or c leads");
    assert.equal(roleOf(h, "a"), "leader");
    assert.equal(termOf(h, "a"), 2);
    assert.equal(commitOf(h, "a"), 2, "the old leader never commits its proposal");
    proposeAll(h, newLeader, ["after"]);
    h.heal();
    h.tick(5);
    assert.equal(roleOf(h, "a"), "follower");
    assert.equal(h.node("a").basicStatus().leader, newLeader);
    const newTerm = termOf(h, newLeader);
    assert.ok(newTerm > 2);
    assert.equal(termOf(h, "a"), newTerm);
    // Index 3 now holds the new leader's entry (its no-op) on every replica.
    for (const id of ABC) assert.equal(h.node(id).termAt(3), newTerm, `${id} index 3`);
    assertApplied(h, ABC, ["after"]);
  });

  // Rule (pre-vote, §9.6): a node rejoining after a partition cannot disrupt a stable leader,
  // because its pre-votes fail and its term never grows while it is cut off.
  test("pre-vote: a rejoining node does not disrupt a stable leader", () => {
    const h = cluster("a", { seed: 3 });
    h.isolate("c");
    h.tick(100);
    assert.equal(termOf(h, "c"), 2, "pre-votes do not bump c's term");
    assert.ok(sentOf(h, "preVote", (m) => m.from === "c").length > 0, "c did try");
    h.heal();
    h.tick(50);
    assert.equal(h.leader(), "a");
    for (const id of ABC) assert.equal(termOf(h, id), 2, `${id} term`);
    proposeAll(h, "a", ["v"]);
    h.tick(1);
    assertApplied(h, ABC, ["v"]);
  });

  // Contrast: without pre-vote (and check-quorum) the rejoining node's inflated term forces the
  // leader to step down and a new election to happen.
  test("without pre-vote a rejoining node forces a new election", () => {
    const h = cluster("a", { seed: 3, preVote: false, checkQuorum: false });
    h.isolate("c");
    h.tick(100);
    const cTerm = termOf(h, "c");
    assert.ok(cTerm > 2, `c's term grew to ${cTerm} while isolated`);
    h.heal();
    h.tick(50);
    const l = h.leader();
    assert.ok(l);
    assert.ok(termOf(h, l) >= cTerm, "the group moved to (at least) c's term");
    for (const id of ABC) assert.equal(termOf(h, id), termOf(h, l));
  });

  // Rule (check-quorum): a leader that has not heard from a quorum for an election timeout
  // steps down; it must happen within two election timeouts of isolation.
  test("check-quorum: an isolated leader steps down within two election timeouts", () => {
    const h = cluster("a");
    h.tick(3);
    h.isolate("a");
    const ticks = tickUntil(h, () => roleOf(h, "a") !== "leader", 25, ["a"]);
    assert.ok(ticks > 10 && ticks <= 20, `stepped down after ${ticks} ticks`);
    assert.equal(termOf(h, "a"), 2, "stepping down does not change the term");
    assert.equal(h.node("a").basicStatus().leader, "");
  });

  // Contrast: without check-quorum an isolated leader believes it leads forever.
  test("without check-quorum an isolated leader keeps leading", () => {
    const h = cluster("a", { checkQuorum: false });
    h.isolate("a");
    h.tick(100, ["a"]);
    assert.equal(roleOf(h, "a"), "leader");
  });

  // Rule (leader lease): a follower that heard from its leader within the election timeout
  // ignores vote requests, so a disruptive candidate gets no answer and no term change.
  test("followers ignore vote requests while in lease", () => {
    const h = cluster("a", { preVote: false });
    h.tick(2);
    const before = h.sent.length;
    requestVote(h, "c", "b", 3); // a real vote request at term 3, no pre-vote
    requestVote(h, "c", "a", 3);
    assert.equal(sentOf(h, "voteResp", () => true, before).length, 0, "nobody answered");
    assert.equal(termOf(h, "b"), 2);
    assert.equal(h.node("b").status().vote, "a");
    assert.equal(roleOf(h, "a"), "leader");
    assert.equal(termOf(h, "a"), 2);
  });

  // Rule: once the lease is over (no leader heard for an election timeout), votes are granted.
  test("a follower out of lease grants its vote", () => {
    const h = cluster("a", { preVote: false });
    h.stop("a");
    h.tick(10, ["b"]); // only b's clock runs: its lease on a expires
    const before = h.sent.length;
    requestVote(h, "c", "b", 3);
    const answers = sentOf(h, "voteResp", (m) => m.to === "c", before);
    assert.deepEqual(
      answers.map((m) => [m.from, m.reject]),
      [["b", false]],
    );
    assert.equal(h.node("b").status().vote, "c");
    assert.equal(termOf(h, "b"), 3);
  });

  // Rule: a node restarting with a durable term >= 2 honours a possible lease for one election
  // timeout after boot (it may have acknowledged a heartbeat just before crashing).
  test("a restarted follower honours the lease for an election timeout", () => {
    const h = cluster("a", { preVote: false });
    h.stop("a");
    h.stop("b");
    h.restart("b");
    let before = h.sent.length;
    requestVote(h, "c", "b", 3);
    assert.equal(sentOf(h, "voteResp", (m) => m.to === "c", before).length, 0);
    h.tick(10, ["b"]);
    before = h.sent.length;
    requestVote(h, "c", "b", 3);
    assert.deepEqual(
      sentOf(h, "voteResp", (m) => m.to === "c", before).map((m) => m.reject),
      [false],
    );
  });
});
