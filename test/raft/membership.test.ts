/**
 * Membership: learners, single-voter changes, joint consensus (enter, auto-leave, both
 * majorities), and the rules that guard conf changes (one at a time, validity).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ConfChange, NodeId } from "../../src/raft/index.js";
import { Harness } from "../../src/sim/harness.js";
import {
  ABC,
  assertApplied,
  cluster,
  commitOf,
  deliverRounds,
  lastIndexOf,
  progressOf,
  proposeAll,
  roleOf,
  sentOf,
  termOf,
  valuesOf,
} from "./_scenario.js";

const addVoter = (node: NodeId) => ({ type: "addVoter" as const, node });
const addLearner = (node: NodeId) => ({ type: "addLearner" as const, node });
const removeNode = (node: NodeId) => ({ type: "removeNode" as const, node });
const confOf = (h: Harness, id: NodeId) => h.node(id).status().conf;

/** `voters` with `voters[0]` leading, plus an empty peer added as a learner and caught up. */
function withLearner(voters: readonly NodeId[], learner: NodeId, options = {}): Harness {
  const leader = voters[0] as NodeId;
  const h = new Harness(voters, options);
  h.campaign(leader);
  h.addEmptyPeer(learner);
  assert.ok(h.proposeConfChange(leader, { changes: [addLearner(learner)] }).ok);
  h.tick(2);
  assert.deepEqual(confOf(h, learner).learners, [learner]);
  assert.deepEqual(confOf(h, learner).voters, [...voters].sort());
  return h;
}

/** a, b, c with a leading, moved into the joint config {a,d,e} & {a,b,c} (no auto-leave). */
function jointABCtoADE(): Harness {
  const h = cluster("a", { seed: 4 });
  h.addEmptyPeer("d");
  h.addEmptyPeer("e");
  const cc: ConfChange = {
    changes: [addVoter("d"), addVoter("e"), removeNode("b"), removeNode("c")],
    autoLeave: false,
  };
  assert.ok(h.proposeConfChange("a", cc).ok);
  h.tick(3);
  for (const id of ["a", "b", "c", "d", "e"]) {
    assert.deepEqual(confOf(h, id).voters, ["a", "d", "e"], `${id} incoming`);
    assert.deepEqual(confOf(h, id).votersOutgoing, ["a", "b", "c"], `${id} outgoing`);
  }
  return h;
}

describe("learners", () => {
  // Rule: a learner receives the whole log and applies it like any replica.
  test("a learner receives and applies the log", () => {
    const h = withLearner(ABC, "d");
    assert.equal(progressOf(h, "a", "d").isLearner, true);
    proposeAll(h, "a", ["x", "y"]);
    h.tick(1);
    assertApplied(h, ["a", "b", "c", "d"], ["x", "y"]);
    assert.equal(lastIndexOf(h, "d"), lastIndexOf(h, "a"));
  });

  // Rule: a learner never campaigns, however long it goes without hearing from a leader.
  test("an isolated learner never campaigns", () => {
    const h = withLearner(ABC, "d");
    const term = termOf(h, "d");
    h.isolate("d");
    h.tick(200);
    assert.equal(termOf(h, "d"), term);
    assert.equal(roleOf(h, "d"), "follower");
    assert.equal(sentOf(h, "preVote", (m) => m.from === "d").length, 0);
    assert.equal(sentOf(h, "vote", (m) => m.from === "d").length, 0);
  });

  // Rule: candidates do not ask learners for votes; learners play no part in elections.
  test("a learner is not asked to vote", () => {
    const h = withLearner(ABC, "d", { seed: 2 });
    h.stop("a");
    h.tick(60);
    const l = h.leader();
    assert.ok(l === "b" || l === "c", `new leader ${l}`);
    assert.ok(sentOf(h, "preVote").length > 0);
    assert.equal(sentOf(h, "preVote", (m) => m.to === "d" || m.from === "d").length, 0);
    assert.equal(sentOf(h, "vote", (m) => m.to === "d" || m.from === "d").length, 0);
    assert.equal(h.node("d").basicStatus().leader, l, "the learner follows the new leader");
  });

  // Rule: a learner's acknowledgement does not count toward the commit quorum.
  test("a learner's acknowledgement does not count toward commit", () => {
    const h = withLearner(["a", "b"], "c");
    h.cutLink("a", "b");
    const r = h.propose("a", "x");
    assert.ok(r.ok);
    assert.equal(progressOf(h, "a", "c").match, r.index, "the learner acknowledged x");
    assert.equal(commitOf(h, "a"), r.index - 1, "a + learner is not a quorum of {a, b}");
    assert.deepEqual(valuesOf(h, "a"), []);
    h.heal();
    h.tick(2);
    assertApplied(h, ["a", "b", "c"], ["x"]);
  });

  // Rule: an empty node added as a learner catches up, and once promoted it is a full voter.
  test("a new empty node added as a learner, then promoted, catches up and votes", () => {
    const h = withLearner(ABC, "d", { seed: 6 });
    const vs = ["v1", "v2", "v3", "v4", "v5"];
    proposeAll(h, "a", vs);
    h.tick(1);
    assertApplied(h, ["d"], vs);
    const r = h.proposeConfChange("a", { changes: [addVoter("d")] });
    assert.ok(r.ok);
    h.tick(1);
    for (const id of ["a", "b", "c", "d"]) {
      assert.deepEqual(confOf(h, id).voters, ["a", "b", "c", "d"]);
      assert.deepEqual(confOf(h, id).learners, []);
      assert.deepEqual(confOf(h, id).votersOutgoing, [], "a promotion is a simple change");
    }
    assert.equal(progressOf(h, "a", "d").isLearner, false);
    h.stop("a");
    h.tick(60);
    assert.ok(sentOf(h, "preVote", (m) => m.to === "d").length > 0, "d is asked to vote");
    const l = h.leader();
    assert.ok(l && l !== "a");
    proposeAll(h, l, ["w"]);
    h.tick(1);
    assertApplied(h, ["b", "c", "d"], [...vs, "w"]);
  });
});

describe("membership", () => {
  // Rule: a single voter is its own quorum: it elects itself, commits and serves reads alone.
  test("a single-node group commits and reads on its own", () => {
    const h = new Harness(["a"]);
    h.tick(20);
    assert.equal(h.leader(), "a");
    proposeAll(h, "a", ["x"]);
    assertApplied(h, ["a"], ["x"]);
    assert.ok(h.node("a").readIndex("r").ok);
    h.flush();
    assert.deepEqual(h.peer("a").readStates, [{ index: 3, context: "r" }]);
  });

  // Rule: adding one voter is a simple change; afterwards the quorum is 3 of 4.
  test("adding a voter", () => {
    const h = cluster("a");
    proposeAll(h, "a", ["x"]);
    h.addEmptyPeer("d");
    assert.ok(h.proposeConfChange("a", { changes: [addVoter("d")] }).ok);
    h.tick(2);
    for (const id of ["a", "b", "c", "d"]) {
      assert.deepEqual(confOf(h, id).voters, ["a", "b", "c", "d"], id);
      assert.deepEqual(confOf(h, id).votersOutgoing, [], id);
    }
    assertApplied(h, ["a", "b", "c", "d"], ["x"]);
    // With 4 voters, a + b is no longer a quorum (with 3 it would be).
    h.cutLink("a", "c");
    h.cutLink("a", "d");
    const r = h.propose("a", "y");
    assert.ok(r.ok);
    assert.equal(commitOf(h, "a"), r.index - 1);
    h.heal();
    h.tick(2);
    assertApplied(h, ["a", "b", "c", "d"], ["x", "y"]);
  });

  // Rule: removing a follower shrinks the quorum; the removed node gets no more traffic and
  // cannot disrupt the group.
  test("removing a follower", () => {
    const h = cluster("a");
    assert.ok(h.proposeConfChange("a", { changes: [removeNode("c")] }).ok);
    h.tick(1);
    assert.deepEqual(confOf(h, "a").voters, ["a", "b"]);
    assert.deepEqual(confOf(h, "b").voters, ["a", "b"]);
    const before = h.sent.length;
    h.tick(50);
    assert.equal(sentOf(h, "app", (m) => m.to === "c", before).length, 0);
    assert.equal(sentOf(h, "heartbeat", (m) => m.to === "c", before).length, 0);
    assert.equal(h.leader(), "a");
    assert.equal(termOf(h, "a"), 2, "c did not disrupt the group");
    proposeAll(h, "a", ["x"]);
    h.tick(1);
    assertApplied(h, ["a", "b"], ["x"]);
    assert.deepEqual(valuesOf(h, "c"), []);
  });

  // Rule: a leader removed from the configuration steps down once the change is applied, never
  // campaigns again, and the remaining voters elect a new leader.
  test("removing the leader", () => {
    const h = cluster("a", { seed: 8 });
    const r = h.proposeConfChange("a", { changes: [removeNode("a")] });
    assert.ok(r.ok);
    assert.equal(commitOf(h, "a"), r.index, "committed with a's old quorum");
    assert.equal(roleOf(h, "a"), "follower", "stepped down after applying its removal");
    const before = h.sent.length;
    h.tick(60);
    const l = h.leader();
    assert.ok(l === "b" || l === "c", `new leader ${l}`);
    assert.ok(termOf(h, l) > 2);
    assert.deepEqual(confOf(h, l).voters, ["b", "c"]);
    assert.equal(sentOf(h, "preVote", (m) => m.from === "a", before).length, 0);
    assert.equal(sentOf(h, "vote", (m) => m.from === "a", before).length, 0);
    proposeAll(h, l, ["x"]);
    h.tick(1);
    assertApplied(h, ["b", "c"], ["x"]);
  });

  // Rule (joint consensus): replacing a member changes two voters, so it goes through the joint
  // configuration C(old,new) and, with autoLeave, the leader then leaves it by itself.
  test("replacing a member goes through a joint config and auto-leaves", () => {
    const h = cluster("a");
    h.addEmptyPeer("d");
    const r = h.node("a").proposeConfChange({ changes: [removeNode("c"), addVoter("d")] });
    assert.ok(r.ok);
    const seen = new Set<string>();
    deliverRounds(h, () => {
      const cs = confOf(h, "a");
      seen.add(`${cs.voters}|${cs.votersOutgoing}`);
    });
    h.tick(3);
    assert.ok(seen.has("a,b,d|a,b,c"), `joint config observed: ${[...seen]}`);
    for (const id of ["a", "b", "d"]) {
      const cs = confOf(h, id);
      assert.deepEqual(cs.voters, ["a", "b", "d"], id);
      assert.deepEqual(cs.votersOutgoing, [], `${id} left the joint config`);
    }
    // Two conf entries: entering (r.index) and leaving (r.index + 1).
    assert.equal(lastIndexOf(h, "a"), r.index + 1);
    assert.equal(commitOf(h, "a"), r.index + 1);
    proposeAll(h, "a", ["x"]);
    h.tick(1);
    assertApplied(h, ["a", "b", "d"], ["x"]);
  });

  // Rule: a leader that is only in the outgoing half keeps leading through the joint config
  // and steps down once the leave is applied; the new voters then elect a leader.
  test("replacing the leader: it leads through the joint config, then steps down", () => {
    const h = cluster("a", { seed: 14 });
    h.addEmptyPeer("d");
    assert.ok(h.node("a").proposeConfChange({ changes: [removeNode("a"), addVoter("d")] }).ok);
    let jointWhileLeading = 0;
    deliverRounds(h, () => {
      if (confOf(h, "a").votersOutgoing.length > 0 && roleOf(h, "a") === "leader") {
        jointWhileLeading++;
      }
    });
    assert.ok(jointWhileLeading > 0, "a led in the joint config");
    assert.deepEqual(confOf(h, "a").voters, ["b", "c", "d"]);
    assert.deepEqual(confOf(h, "a").votersOutgoing, []);
    assert.equal(roleOf(h, "a"), "follower");
    h.tick(60);
    const l = h.leader();
    assert.ok(l && l !== "a", `new leader ${l}`);
    proposeAll(h, l, ["x"]);
    h.tick(1);
    assertApplied(h, ["b", "c", "d"], ["x"]);
  });

  // Rule: if the leader dies before leaving a joint config (autoLeave), the next leader leaves it.
  test("a new leader finishes leaving a joint config", () => {
    const h = cluster("a", { seed: 15 });
    h.addEmptyPeer("d");
    assert.ok(h.node("a").proposeConfChange({ changes: [removeNode("c"), addVoter("d")] }).ok);
    let crashed = false;
    deliverRounds(h, () => {
      if (!crashed && confOf(h, "a").votersOutgoing.length > 0) {
        // a dies right after applying the joint config (and appending the leave): nothing it
        // sent from then on arrives.
        h.isolate("a");
        h.stop("a");
        crashed = true;
      }
    });
    assert.ok(crashed);
    assert.equal(lastIndexOf(h, "b"), 3, "the leave entry never left a");
    assert.equal(commitOf(h, "b"), 2, "b does not even know the joint config committed");
    h.tick(80);
    const l = h.leader();
    assert.ok(l && l !== "a", `new leader ${l}`);
    h.tick(5);
    for (const id of ["b", "d"]) {
      assert.deepEqual(confOf(h, id).voters, ["a", "b", "d"], id);
      assert.deepEqual(confOf(h, id).votersOutgoing, [], `${id} left the joint config`);
    }
    assert.ok((h.node("b").termAt(4) ?? 0) > 2, "index 4 is the new leader's, not a's leave");
    const l2 = h.leader() as NodeId;
    proposeAll(h, l2, ["x"]);
    h.tick(1);
    assertApplied(h, ["b", "d"], ["x"]);
  });

  // Rule: in a joint config a ReadIndex is confirmed only by a quorum of BOTH halves.
  test("in a joint config a ReadIndex needs heartbeat acks from both majorities", () => {
    const h = jointABCtoADE();
    const commit = commitOf(h, "a");
    assert.ok(h.node("a").readIndex("j").ok);
    h.flush();
    h.deliverOnly((m) => m.type === "heartbeat");
    h.deliverOnly((m) => m.type === "heartbeatResp" && (m.from === "d" || m.from === "e"));
    assert.deepEqual(h.peer("a").readStates, [], "the incoming majority alone is not enough");
    h.deliverOnly((m) => m.type === "heartbeatResp" && m.from === "b");
    assert.deepEqual(h.peer("a").readStates, [{ index: commit, context: "j" }]);
  });

  // Rule: check-quorum in a joint config needs both halves: a leader that only hears from the
  // incoming majority steps down.
  test("in a joint config a leader that lost the outgoing majority steps down", () => {
    const h = jointABCtoADE();
    h.cutLink("a", "b");
    h.cutLink("a", "c");
    h.tick(25, ["a", "d", "e"]);
    assert.notEqual(roleOf(h, "a"), "leader");
  });

  // Rule: demoting a voter to learner is a simple change; the learner keeps replicating.
  test("demoting a voter to a learner", () => {
    const h = cluster("a");
    assert.ok(h.proposeConfChange("a", { changes: [addLearner("c")] }).ok);
    h.tick(1);
    for (const id of ABC) {
      assert.deepEqual(confOf(h, id).voters, ["a", "b"]);
      assert.deepEqual(confOf(h, id).learners, ["c"]);
    }
    // c's acknowledgement no longer counts: with b cut off nothing commits.
    h.cutLink("a", "b");
    const r = h.propose("a", "x");
    assert.ok(r.ok);
    assert.equal(progressOf(h, "a", "c").match, r.index);
    assert.equal(commitOf(h, "a"), r.index - 1);
    h.heal();
    h.tick(2);
    assertApplied(h, ABC, ["x"]);
  });

  // Rule: with autoLeave false the joint config stays until an explicit empty change leaves it.
  test("a joint config without autoLeave is left by an explicit empty change", () => {
    const h = jointABCtoADE();
    h.tick(20);
    assert.deepEqual(confOf(h, "a").votersOutgoing, ["a", "b", "c"], "still joint");
    // Entering another joint config from a joint config is invalid.
    const again = h.proposeConfChange("a", { changes: [addVoter("b"), addVoter("c")] });
    assert.equal(again.ok, false);
    assert.equal(!again.ok && again.code, "INVALID_CONF_CHANGE");
    assert.ok(h.proposeConfChange("a", { changes: [] }).ok);
    h.tick(2);
    for (const id of ["a", "d", "e"]) {
      assert.deepEqual(confOf(h, id).voters, ["a", "d", "e"]);
      assert.deepEqual(confOf(h, id).votersOutgoing, []);
    }
  });

  for (const { cut, holders } of [
    { cut: ["b", "c"], holders: ["d", "e"] }, // the incoming majority has it, the outgoing not
    { cut: ["d", "e"], holders: ["b", "c"] }, // the outgoing majority has it, the incoming not
  ]) {
    // Rule (joint consensus): in C(old,new) an entry commits only with a majority of BOTH.
    test(`in a joint config a commit needs both majorities (cut ${cut})`, () => {
      const h = jointABCtoADE();
      for (const id of cut) h.cutLink("a", id);
      const r = h.propose("a", "j");
      assert.ok(r.ok);
      for (const id of holders) assert.equal(progressOf(h, "a", id).match, r.index, id);
      assert.equal(commitOf(h, "a"), r.index - 1, "one majority is not enough");
      assert.deepEqual(valuesOf(h, "a"), []);
      h.heal();
      h.tick(2);
      assert.equal(commitOf(h, "a"), r.index);
      assertApplied(h, ["a", "b", "c", "d", "e"], ["j"]);
    });
  }

  // Rule: only one conf change may be in flight; the next waits until the previous is applied.
  test("a second conf change while one is pending returns CONF_CHANGE_PENDING", () => {
    const h = cluster("a");
    h.addEmptyPeer("d");
    h.addEmptyPeer("e");
    assert.ok(h.node("a").proposeConfChange({ changes: [addLearner("d")] }).ok);
    assert.deepEqual(h.node("a").proposeConfChange({ changes: [addLearner("e")] }), {
      ok: false,
      code: "CONF_CHANGE_PENDING",
    });
    h.deliver();
    assert.ok(h.node("a").proposeConfChange({ changes: [addLearner("e")] }).ok);
    h.tick(2);
    assert.deepEqual(confOf(h, "a").learners, ["d", "e"]);
  });

  // Rule: the automatic leave of a joint config is itself a pending conf change.
  test("no new conf change while the automatic leave is pending", () => {
    const h = cluster("a");
    h.addEmptyPeer("d");
    assert.ok(h.node("a").proposeConfChange({ changes: [removeNode("c"), addVoter("d")] }).ok);
    // Whenever the leader is in the joint config (the leave is pending), try another change.
    let tried = 0;
    deliverRounds(h, () => {
      if (confOf(h, "a").votersOutgoing.length === 0) return;
      tried++;
      const r = h.node("a").proposeConfChange({ changes: [addLearner("c")] });
      assert.deepEqual(r, { ok: false, code: "CONF_CHANGE_PENDING" });
    });
    assert.ok(tried > 0, "the leader was seen in the joint config");
    h.tick(2);
    assert.deepEqual(confOf(h, "a").votersOutgoing, []);
    assert.ok(h.proposeConfChange("a", { changes: [addLearner("c")] }).ok);
  });

  const invalid: { name: string; voters: NodeId[]; cc: ConfChange }[] = [
    { name: "removing the last voter", voters: ["a"], cc: { changes: [removeNode("a")] } },
    {
      name: "removing every voter",
      voters: ["a", "b", "c"],
      cc: { changes: [removeNode("a"), removeNode("b"), removeNode("c")] },
    },
    {
      name: "leaving a joint config when not in one",
      voters: ["a", "b", "c"],
      cc: { changes: [] },
    },
    { name: "a change naming no node", voters: ["a", "b", "c"], cc: { changes: [addVoter("")] } },
  ];
  for (const { name, voters, cc } of invalid) {
    // Rule: invalid changes are refused up front with a typed error and nothing is appended.
    test(`invalid conf change is refused: ${name}`, () => {
      const h = new Harness(voters);
      h.campaign("a");
      assert.equal(roleOf(h, "a"), "leader");
      const last = lastIndexOf(h, "a");
      const r = h.proposeConfChange("a", cc);
      assert.equal(r.ok, false);
      assert.equal(!r.ok && r.code, "INVALID_CONF_CHANGE");
      assert.equal(lastIndexOf(h, "a"), last);
      assert.deepEqual(confOf(h, "a").voters, voters);
    });
  }

  // Rule: conf changes, like proposals, are accepted only by the leader.
  test("a conf change on a follower returns NOT_LEADER", () => {
    const h = cluster("a");
    assert.deepEqual(h.proposeConfChange("b", { changes: [removeNode("c")] }), {
      ok: false,
      code: "NOT_LEADER",
      leaderHint: "a",
    });
  });
});
