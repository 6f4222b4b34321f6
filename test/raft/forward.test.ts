/**
 * Forwarded proposals (MsgProp): a follower hands its clients' proposals to the leader inside
 * Raft. The rules the host relies on (docs/raft.md, "Forwarded proposals"):
 * - a forwarded entry is appended only in the term it was forwarded in;
 * - whatever is not appended is either refused explicitly (Ready.refusedProposals) or lost with
 *   a leader change, and then an entry of a later term gets applied first.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { MsgProp, NodeId } from "../../src/raft/index.js";
import type { Harness } from "../../src/sim/harness.js";
import { cluster, commitOf, termOf, tickUntil, valuesOf } from "./_scenario.js";

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

function forward(h: Harness, id: NodeId, value: string) {
  return h.node(id).proposeOrForward(bytes(value));
}

/** "b" forwards `value`; its MsgProp is taken off the network (the caller delivers it). */
function interceptProp(h: Harness, value: string): MsgProp {
  assert.ok(forward(h, "b", value).ok);
  h.flush();
  const prop = h.queue.find((m): m is MsgProp => m.type === "prop");
  assert.ok(prop);
  h.queue.length = 0;
  return prop;
}

describe("forwarded proposals", () => {
  test("a follower's proposals reach the leader in one message and commit everywhere", () => {
    const h = cluster("a");
    const r1 = forward(h, "b", "x");
    const r2 = forward(h, "b", "y");
    assert.deepEqual(r1, { ok: true, forwardedTo: "a", term: 2 });
    assert.deepEqual(r2, { ok: true, forwardedTo: "a", term: 2 });
    h.flush();
    const props = h.queue.filter((m) => m.type === "prop");
    assert.equal(props.length, 1, "both proposals share one MsgProp");
    h.deliver();
    for (const id of ["a", "b", "c"]) assert.deepEqual(valuesOf(h, id), ["x", "y"]);
    // Each entry carries the term it was forwarded in.
    const st = h.node("b").status();
    assert.equal(st.term, 2);
    assert.equal(h.node("b").termAt(commitOf(h, "b")), 2);
  });

  test("on the leader, proposeOrForward appends like propose", () => {
    const h = cluster("a");
    const r = forward(h, "a", "x");
    assert.ok(r.ok && "index" in r, JSON.stringify(r));
    h.deliver();
    assert.deepEqual(valuesOf(h, "c"), ["x"]);
  });

  test("without a known leader a follower refuses at once", () => {
    const h = cluster("a");
    h.isolate("b");
    tickUntil(h, () => h.node("b").basicStatus().leader === "", 100, ["b"]);
    const r = forward(h, "b", "x");
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.code, "NOT_LEADER");
  });

  test("a node that is no longer leader refuses forwarded proposals explicitly", () => {
    const h = cluster("a");
    const prop = interceptProp(h, "x");
    // Deliver the MsgProp to "c" as if "a" had moved: "c" is a follower and must refuse.
    h.node("c").step({ ...prop, to: "c" });
    h.deliver();
    assert.deepEqual(
      h.peer("b").refused.map((r) => [text(r.data), r.reason]),
      [["x", "NOT_LEADER"]],
    );
    assert.deepEqual(valuesOf(h, "a"), []);
  });

  test("a MsgProp from an older term is refused, never appended in a newer one", () => {
    const h = cluster("a");
    const prop = interceptProp(h, "old");
    // "c" takes over in term 3, then the stale MsgProp arrives at "c".
    assert.deepEqual(h.node("a").transferLeadership("c"), { ok: true });
    h.deliver();
    assert.equal(termOf(h, "c"), 3);
    assert.equal(h.leader(), "c");
    h.node("c").step({ ...prop, to: "c" });
    h.deliver();
    assert.deepEqual(
      h.peer("b").refused.map((r) => [text(r.data), r.reason]),
      [["old", "NOT_LEADER"]],
    );
    for (const id of ["a", "b", "c"]) assert.deepEqual(valuesOf(h, id), []);
  });

  test("a term change empties the forward buffer into refusals", () => {
    const h = cluster("a");
    assert.ok(forward(h, "b", "x").ok);
    // Before b's next ready(), a message of a newer term arrives.
    h.node("b").step({
      type: "heartbeat",
      from: "c",
      to: "b",
      term: 5,
      commit: 0,
      seq: 0,
      sentTick: 0,
    });
    h.deliver();
    assert.deepEqual(
      h.peer("b").refused.map((r) => [text(r.data), r.reason]),
      [["x", "NOT_LEADER"]],
    );
    assert.deepEqual(valuesOf(h, "a"), []);
  });

  test("an overloaded leader refuses with OVERLOADED", () => {
    const h = cluster("a", { maxUncommittedBytes: 256 });
    h.cutLink("a", "c");
    h.cutLink("a", "b");
    // Fill a's uncommitted budget (nothing commits with both links cut).
    for (let i = 0; i < 20; i++) h.node("a").propose(bytes("z".repeat(64)));
    h.heal();
    h.cutLink("a", "c");
    h.node("a").quiesce();
    assert.ok(forward(h, "b", "x".repeat(64)).ok);
    h.flush();
    h.deliverOnly((m) => m.type === "prop"); // a refuses...
    h.deliverOnly((m) => m.type === "propResp"); // ...and b learns it
    assert.deepEqual(
      h.peer("b").refused.map((r) => r.reason),
      ["OVERLOADED"],
    );
  });
});

describe("forwarded proposals: duplicates", () => {
  test("a duplicated MsgProp is appended once", () => {
    const h = cluster("a");
    assert.ok(forward(h, "b", "once").ok);
    h.flush();
    const prop = h.queue.find((m) => m.type === "prop");
    assert.ok(prop);
    h.deliver();
    h.node("a").step(prop); // the network delivers it again
    h.deliver();
    for (const id of ["a", "b", "c"]) assert.deepEqual(valuesOf(h, id), ["once"]);
    assert.deepEqual(h.peer("b").refused, [], "a duplicate is ignored, not refused");
  });

  // Rule: a late copy of a MsgProp the node took while it led that term is never refused as
  // "not appended" after it stepped down or restarted: the client would write twice (found by
  // the simulator, seed 295 of 5 nodes: a leader resumed from a pause, took a forward, lost its
  // term, then refused the network's duplicate of it).
  for (const how of ["a transfer (new term)", "check-quorum (same term)", "a restart"] as const) {
    test(`a duplicate that arrives after ${how} is "outcome unknown", never "not appended"`, () => {
      const h = cluster("a");
      assert.ok(forward(h, "b", "once").ok);
      h.flush();
      const prop = h.queue.find((m): m is MsgProp => m.type === "prop");
      assert.ok(prop);
      h.deliverOnly((m) => m.type === "prop"); // a appends it (term 2) ...
      assert.equal(h.node("a").status().lastIndex, 3);
      if (how === "a transfer (new term)") {
        assert.deepEqual(h.node("a").transferLeadership("c"), { ok: true });
        h.deliver();
        assert.equal(termOf(h, "c"), 3);
      } else if (how === "check-quorum (same term)") {
        h.isolate("a");
        tickUntil(h, () => h.node("a").basicStatus().role !== "leader", 40, ["a"]);
        assert.equal(termOf(h, "a"), 2);
        h.heal();
      } else {
        h.restart("a");
      }
      assert.notEqual(h.node("a").basicStatus().role, "leader");
      h.node("a").step(prop); // ... and the network delivers it again
      h.flush();
      h.deliverOnly((m) => m.type === "propResp");
      // Never "not appended" (NOT_LEADER: the client would write it again); "outcome unknown"
      // where the node cannot tell a late copy of what it took from a new message.
      assert.deepEqual(
        h.peer("b").refused.map((r) => r.reason),
        ["UNKNOWN"],
      );
    });
  }

  // Limit: a node remembers the last 64 terms it led (LED_TERMS_MAX). A MsgProp of a term it
  // did not lead is "not appended" while that term is newer than the oldest it remembers, and
  // "unknown" once it is older (the node may have led it then).
  for (const [rounds, reason] of [
    [63, "NOT_LEADER"],
    [64, "UNKNOWN"],
  ] as const) {
    test(`a MsgProp of a term the node did not lead, after ${rounds + 2} leaderships: ${reason}`, () => {
      const h = cluster("a"); // a leads term 2
      assert.deepEqual(h.node("a").transferLeadership("b"), { ok: true });
      h.deliver(); // b leads term 3
      assert.ok(forward(h, "c", "old").ok);
      h.flush();
      const prop = h.queue.find((m): m is MsgProp => m.type === "prop");
      assert.ok(prop && prop.term === 3);
      h.queue.length = 0;
      const leadAgain = () => {
        assert.deepEqual(h.node("b").transferLeadership("a"), { ok: true });
        h.deliver();
        assert.equal(h.leader(), "a");
      };
      leadAgain(); // a leads term 4
      for (let i = 0; i < rounds; i++) {
        assert.deepEqual(h.node("a").transferLeadership("b"), { ok: true });
        h.deliver();
        leadAgain();
      }
      h.node("a").step({ ...prop, to: "a" });
      h.flush();
      h.deliverOnly((m) => m.type === "propResp");
      assert.deepEqual(
        h.peer("c").refused.map((r) => [text(r.data), r.reason]),
        [["old", reason]],
      );
    });
  }

  test("a restarted follower's proposals are not mistaken for duplicates", () => {
    const h = cluster("a");
    assert.ok(forward(h, "b", "before").ok);
    h.deliver();
    h.restart("b");
    h.tick(3); // b hears from its leader again
    assert.ok(forward(h, "b", "after").ok);
    h.deliver();
    assert.deepEqual(valuesOf(h, "a"), ["before", "after"]);
  });
});

describe("forwarded proposals: membership", () => {
  test("a leader refuses proposals forwarded by a node outside its configuration", () => {
    const h = cluster("a");
    const prop = interceptProp(h, "x");
    // The same MsgProp, as if sent by a node that is not a member (e.g. just removed).
    h.node("a").step({ ...prop, from: "z" });
    assert.equal(
      h.node("a").status().lastIndex,
      2,
      "nothing appended for a non-member (only the election's empty entry... and no more)",
    );
  });
});

describe("forwarded proposals: a pending removal", () => {
  // Once the leader applies c's removal it stops replicating to c, so c would never see an entry
  // appended after the change commit: its client would wait, then hear "outcome unknown".
  test("a leader refuses proposals from a node its unapplied configuration change removes", () => {
    const h = cluster("a");
    assert.ok(h.node("a").proposeConfChange({ changes: [{ type: "removeNode", node: "c" }] }).ok);
    assert.ok(forward(h, "c", "from-c").ok, "c has not seen the change yet");
    assert.ok(forward(h, "b", "from-b").ok);
    h.flush();
    // The proposals reach the leader while the change is appended but not committed.
    h.deliverOnly((m) => m.type === "prop");
    h.deliver();
    assert.deepEqual(
      h.peer("c").refused.map((r) => [text(r.data), r.reason]),
      [["from-c", "NOT_LEADER"]],
      "c's proposal is refused (certainly not appended), so c can send its client elsewhere",
    );
    assert.deepEqual(h.peer("b").refused, []);
    assert.deepEqual(valuesOf(h, "a"), ["from-b"]);
    assert.deepEqual(valuesOf(h, "b"), ["from-b"]);
    // Once the change is applied nothing is pending: b's proposals are taken as before.
    assert.ok(forward(h, "b", "later").ok);
    h.deliver();
    assert.deepEqual(valuesOf(h, "a"), ["from-b", "later"]);
  });
});

describe("eager messages while a Ready is in flight", () => {
  test("a commit reached during the leader's own write is announced at once; acks wait", () => {
    const h = cluster("a");
    assert.ok(h.node("a").propose(bytes("x")).ok);
    const rd = h.peer("a").beginReady(); // the leader's write of "x" is "in flight"
    assert.ok(rd);
    for (const m of rd.eagerMessages) h.node(m.to).step(m);
    // Both followers persist and acknowledge before the leader's write finishes.
    for (const id of ["b", "c"]) for (const m of h.peer(id).cycle()) h.node(m.to).step(m);
    const commit = h.node("a").basicStatus().commit;
    assert.equal(commit, rd.entries[rd.entries.length - 1]?.index, "committed by the followers");
    const eager = h.node("a").takeEagerMessages();
    assert.deepEqual(
      eager.map((m) => [m.type, m.to, m.type === "app" ? m.commit : -1]),
      [
        ["app", "b", commit],
        ["app", "c", commit],
      ],
    );
    // A follower's acknowledgements are never eager: they wait for its write.
    for (const m of eager) h.node(m.to).step(m);
    assert.deepEqual(h.node("b").takeEagerMessages(), []);
    assert.ok(h.node("b").hasReady(), "b's answer waits in its next Ready");
    h.peer("a").finishReady();
    h.deliver();
    for (const id of ["a", "b", "c"]) assert.deepEqual(valuesOf(h, id), ["x"]);
  });
});
