/**
 * Flow control: the in-flight window of a follower in replicate state, probe state pacing,
 * append size limits, and recovery from lost appends.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
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
  sentOf,
} from "./_scenario.js";

const TEN = "0123456789"; // a 10-byte payload counts as 34 bytes (payload + 24)
const five = ["p0", "p1", "p2", "p3", "p4"].map((p) => p + TEN.slice(2));

describe("flow control", () => {
  const windows = [
    { name: "maxInflightMsgs 2", opts: { maxInflightMsgs: 2 }, expected: 2 },
    { name: "maxInflightMsgs 4", opts: { maxInflightMsgs: 4 }, expected: 4 },
    {
      name: "maxInflightBytes 100 (three 34-byte appends)",
      opts: { maxInflightBytes: 100 },
      expected: 3,
    },
    { name: "default window", opts: {}, expected: 5 },
  ];
  for (const { name, opts, expected } of windows) {
    // Rule: in replicate state the leader streams appends without waiting, but never more than
    // the in-flight window allows while they are unacknowledged.
    test(`unacknowledged appends are bounded by the window (${name})`, () => {
      const h = cluster("a", opts);
      assert.equal(progressOf(h, "a", "b").state, "replicate");
      h.dropType("appResp");
      const before = h.sent.length;
      proposeAll(h, "a", five);
      const apps = sentOf(h, "app", (m) => m.to === "b" && m.entries.length > 0, before);
      assert.equal(apps.length, expected);
      assert.equal(progressOf(h, "a", "b").match, 2, "nothing was acknowledged");
      // Once acknowledgements flow again everything is delivered.
      h.heal();
      h.tick(3);
      assertApplied(h, ABC, five);
    });
  }

  // Rule: a follower in probe state (leader does not know where its log matches) gets one
  // append, then nothing more until it answers or the next heartbeat is acknowledged.
  test("a follower in probe state gets one append at a time", () => {
    const h = new Harness(ABC);
    h.isolate("c");
    h.campaign("a");
    assert.equal(h.leader(), "a");
    assert.equal(progressOf(h, "a", "c").state, "probe");
    proposeAll(h, "a", five);
    h.tick(3);
    const toC = sentOf(h, "app", (m) => m.to === "c");
    assert.equal(toC.length, 1, "only the first probe was sent");
    assert.equal(commitOf(h, "a"), 7, "a and b commit without c");
    h.heal();
    h.tick(3);
    assert.equal(progressOf(h, "a", "c").state, "replicate");
    assertApplied(h, ABC, five);
  });

  for (const { maxAppendBytes, perMsg } of [
    { maxAppendBytes: 40, perMsg: 1 },
    { maxAppendBytes: 70, perMsg: 2 },
    { maxAppendBytes: 1 << 20, perMsg: 10 },
  ]) {
    // Rule: an append carries at most maxAppendBytes of entries (but always at least one).
    test(`catch-up appends respect maxAppendBytes ${maxAppendBytes}`, () => {
      const h = cluster("a", { maxAppendBytes });
      h.cutLink("a", "c");
      const vs = Array.from({ length: 10 }, (_, i) => `v${i}${TEN.slice(2)}`);
      proposeAll(h, "a", vs);
      assert.equal(lastIndexOf(h, "c"), 2);
      h.heal();
      const before = h.sent.length;
      h.tick(3);
      const apps = sentOf(h, "app", (m) => m.to === "c" && m.entries.length > 0, before);
      const sizes = apps.map((m) => m.entries.length);
      assert.ok(Math.max(...sizes) === perMsg, `entries per append: ${sizes}`);
      assert.equal(apps.length, Math.ceil(10 / perMsg), `sizes ${sizes}`);
      assertApplied(h, ABC, vs);
    });
  }

  // Rule: a lost append is detected (a later append does not match and is rejected, or a
  // heartbeat answer shows the follower is behind) and resent, so the follower converges.
  test("a lost append is resent after the next append is rejected", () => {
    const h = cluster("a");
    let dropped = 0;
    assert.ok(h.node("a").propose(new TextEncoder().encode("x")).ok);
    deliverDropping(
      h,
      (m) => m.type === "app" && m.to === "b" && m.entries.length > 0 && dropped++ === 0,
    );
    assert.equal(dropped, 2, "x went to b twice");
    // The commit broadcast (an empty append after x) did not match b's log: b rejected it.
    assert.equal(sentOf(h, "appResp", (m) => m.from === "b" && m.reject).length, 1);
    assert.equal(lastIndexOf(h, "b"), 3);
    assert.equal(commitOf(h, "b"), 3);
    assertApplied(h, ABC, ["x"]);
  });

  test("a lost append is resent after a heartbeat shows the follower is behind", () => {
    const h = cluster("a");
    assert.ok(h.node("a").propose(new TextEncoder().encode("x")).ok);
    // Every append to b is lost while the proposal is handled (x and the commit broadcast).
    deliverDropping(h, (m) => m.type === "app" && m.to === "b");
    assert.equal(lastIndexOf(h, "b"), 2, "b missed x");
    assert.equal(commitOf(h, "a"), 3, "a and c committed x");
    assert.equal(progressOf(h, "a", "b").match, 2);
    h.tick(1);
    assert.equal(lastIndexOf(h, "b"), 3);
    h.tick(1);
    assertApplied(h, ABC, ["x"]);
  });
});
