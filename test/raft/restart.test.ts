/**
 * Restart durability: what a node acknowledged (entries, votes, terms) is on disk before the
 * acknowledgement leaves, so a crash and restart (`stop` + `restart`) loses none of it.
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
  lastIndexOf,
  proposeAll,
  roleOf,
  sentOf,
  termOf,
} from "./_scenario.js";

describe("restart durability", () => {
  // Rule: a follower acknowledges an entry only once it is durable, so after the follower
  // crashes and restarts it still holds the entry and can carry it into the next term.
  test("an acknowledged entry survives the acknowledging follower's restart", () => {
    const h = cluster("a", { seed: 3 });
    h.cutLink("a", "c");
    const r = h.propose("a", "x");
    assert.ok(r.ok);
    assert.equal(commitOf(h, "a"), r.index, "committed with b's acknowledgement");
    h.stop("b");
    h.restart("b");
    assert.equal(h.node("b").termAt(r.index), 2);
    // The leader dies; c never saw x, so only b can win, and x must survive.
    h.stop("a");
    h.heal();
    h.tick(60);
    assert.equal(h.leader(), "b");
    h.tick(1);
    assertApplied(h, ["b", "c"], ["x"]);
  });

  // Rule: the term and the vote are durable: a restarted voter does not vote twice in a term.
  test("a restarted voter remembers its term and vote", () => {
    const h = new Harness(ABC, { preVote: false, checkQuorum: false });
    h.isolate("c");
    h.campaign("a"); // b votes for a in term 2
    assert.equal(h.leader(), "a");
    h.stop("b");
    h.restart("b");
    assert.equal(termOf(h, "b"), 2);
    assert.equal(h.node("b").status().vote, "a");
    h.heal();
    const before = h.sent.length;
    h.campaign("c"); // c (term 1) campaigns in term 2 as well
    assert.deepEqual(
      sentOf(h, "voteResp", (m) => m.to === "c" && m.from === "b", before).map((m) => m.reject),
      [true],
      "b already voted for a in term 2",
    );
    assert.notEqual(roleOf(h, "c"), "leader");
  });

  // Rule: restarting the leader loses nothing: it comes back as a follower of the same term
  // with its log, and the group carries on.
  test("a leader restart loses nothing", () => {
    const h = cluster("a", { seed: 5 });
    proposeAll(h, "a", ["x", "y"]);
    h.stop("a");
    h.restart("a");
    assert.equal(roleOf(h, "a"), "follower");
    assert.equal(termOf(h, "a"), 2);
    assert.equal(lastIndexOf(h, "a"), 4);
    h.tick(60);
    const l = h.leader();
    assert.ok(l);
    proposeAll(h, l, ["z"]);
    h.tick(1);
    assertApplied(h, ABC, ["x", "y", "z"]);
  });

  // Rule: rolling crash/restarts of every node, with writes in between, lose no acknowledged
  // (committed) value and keep the order.
  test("rolling restarts of every node keep every committed value in order", () => {
    const h = cluster("a", { seed: 21 });
    const acked: string[] = [];
    const write = (v: string) => {
      const l = h.leader() as NodeId;
      assert.ok(l, "there is a leader");
      const r = h.propose(l, v);
      assert.ok(r.ok);
      h.tick(1);
      assert.ok(commitOf(h, l) >= r.index, `${v} committed`);
      acked.push(v);
    };
    write("w0");
    for (const id of ["a", "b", "c", "a", "b", "c"]) {
      h.stop(id);
      h.tick(40);
      write(`${id}-down`);
      h.restart(id);
      h.tick(40);
      write(`${id}-back`);
    }
    h.tick(5);
    assertApplied(h, ABC, acked);
  });
});
