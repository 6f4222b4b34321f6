/**
 * Leadership transfer (Raft thesis §3.10): catch the target up, send it TimeoutNow, refuse
 * proposals meanwhile, and give up after an election timeout.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { NodeId, TransferResult } from "../../src/raft/index.js";
import {
  ABC,
  assertApplied,
  cluster,
  lastIndexOf,
  proposeAll,
  roleOf,
  sentOf,
  termOf,
} from "./_scenario.js";

describe("leadership transfer", () => {
  // Rule: a transfer to an up-to-date follower completes at once (no election timeout): the
  // target campaigns in a higher term and voters grant it despite their leases.
  test("to an up-to-date follower: it becomes leader without waiting", () => {
    const h = cluster("a");
    proposeAll(h, "a", ["x"]);
    h.tick(2);
    const before = h.sent.length;
    assert.deepEqual(h.node("a").transferLeadership("b"), { ok: true });
    h.deliver(); // no tick at all
    assert.equal(h.leader(), "b");
    assert.equal(termOf(h, "b"), 3);
    for (const id of ABC) assert.equal(h.node(id).basicStatus().leader, "b", id);
    assert.equal(roleOf(h, "a"), "follower");
    assert.deepEqual(
      sentOf(h, "timeoutNow", () => true, before).map((m) => [m.from, m.to]),
      [["a", "b"]],
    );
    // The campaign skipped pre-vote and was forced through c's lease.
    const votes = sentOf(h, "vote", (m) => m.from === "b", before);
    assert.ok(votes.length > 0 && votes.every((m) => m.force));
    assert.deepEqual(
      sentOf(h, "voteResp", (m) => m.to === "b", before)
        .map((m) => [m.from, m.reject])
        .sort(),
      [
        ["a", false],
        ["c", false],
      ],
    );
    proposeAll(h, "b", ["y"]);
    h.tick(1);
    assertApplied(h, ABC, ["x", "y"]);
  });

  // Rule: a lagging target is first caught up (appends), only then sent TimeoutNow; meanwhile
  // the leader refuses proposals with TRANSFERRING so the target cannot fall behind again.
  test("to a lagging follower: catch up first, then TimeoutNow", () => {
    const h = cluster("a");
    h.cutLink("a", "c");
    proposeAll(h, "a", ["x", "y", "z"]);
    assert.equal(lastIndexOf(h, "c"), 2);
    h.heal();
    const before = h.sent.length;
    assert.deepEqual(h.node("a").transferLeadership("c"), { ok: true });
    assert.equal(h.node("a").status().leadTransferee, "c");
    assert.deepEqual(h.propose("a", "refused"), {
      ok: false,
      code: "TRANSFERRING",
      leaderHint: "c",
    });
    assert.equal(
      h.node("a").proposeConfChange({ changes: [{ type: "removeNode", node: "b" }] }).ok,
      false,
    );
    h.deliver();
    const log = h.sent.slice(before);
    let lastCatchUp = -1;
    log.forEach((m, i) => {
      if (m.type === "app" && m.to === "c" && m.entries.length > 0) lastCatchUp = i;
    });
    const timeoutNow = log.findIndex((m) => m.type === "timeoutNow");
    assert.ok(lastCatchUp >= 0, "c was sent the missing entries");
    assert.ok(timeoutNow > lastCatchUp, "TimeoutNow only after the catch-up append");
    assert.equal(log.filter((m) => m.type === "timeoutNow").length, 1);
    assert.equal(h.leader(), "c");
    assert.equal(termOf(h, "c"), 3);
    h.tick(1);
    assertApplied(h, ABC, ["x", "y", "z"]);
  });

  // Rule: a transfer that does not complete within an election timeout is abandoned and the
  // old leader goes on leading (and accepting proposals) in the same term.
  test("to an unreachable node: abandoned after an election timeout", () => {
    const h = cluster("a");
    h.isolate("c");
    assert.deepEqual(h.node("a").transferLeadership("c"), { ok: true });
    h.tick(9);
    assert.equal(h.node("a").status().leadTransferee, "c");
    assert.equal(h.propose("a", "early").ok, false);
    h.tick(1);
    assert.equal(h.node("a").status().leadTransferee, "");
    assert.equal(h.leader(), "a");
    assert.equal(termOf(h, "a"), 2);
    // c was up to date, so TimeoutNow went out at once, but it was lost.
    assert.equal(sentOf(h, "timeoutNow", (m) => m.to === "c").length, 1);
    assert.equal(termOf(h, "c"), 2);
    proposeAll(h, "a", ["late"]);
    h.tick(1);
    assertApplied(h, ["a", "b"], ["late"]);
  });

  const errors: { name: string; from: NodeId; to: NodeId; expected: TransferResult }[] = [
    {
      name: "to a learner",
      from: "a",
      to: "d",
      expected: { ok: false, code: "TARGET_IS_LEARNER" },
    },
    {
      name: "to an unknown node",
      from: "a",
      to: "zz",
      expected: { ok: false, code: "UNKNOWN_TARGET" },
    },
    {
      name: "to the leader itself",
      from: "a",
      to: "a",
      expected: { ok: false, code: "IS_LEADER" },
    },
    {
      name: "requested on a follower",
      from: "b",
      to: "c",
      expected: { ok: false, code: "NOT_LEADER", leaderHint: "a" },
    },
  ];
  for (const { name, from, to, expected } of errors) {
    // Rule: impossible transfers are refused with a typed error and change nothing.
    test(`a transfer ${name} is refused`, () => {
      const h = cluster("a");
      h.addEmptyPeer("d");
      assert.ok(h.proposeConfChange("a", { changes: [{ type: "addLearner", node: "d" }] }).ok);
      h.tick(1);
      assert.deepEqual(h.node(from).transferLeadership(to), expected);
      assert.equal(h.node("a").status().leadTransferee, "");
      h.tick(5);
      assert.equal(h.leader(), "a");
      assert.equal(termOf(h, "a"), 2);
      assert.ok(h.propose("a", "still-leading").ok);
    });
  }
});
