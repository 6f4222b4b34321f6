/** Quiescence: idle groups stop ticking and sending; anything that happens wakes them. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Harness } from "../../src/sim/harness.js";

/** A settled group: its leader `l` and followers `f`. */
function settled(opts = {}): { h: Harness; l: string; f: [string, string] } {
  const h = new Harness(["a", "b", "c"], opts);
  h.tick(30);
  const l = h.leader();
  assert.ok(l, "a leader was elected");
  h.propose(l, "x");
  h.tick(2);
  const f = ["a", "b", "c"].filter((id) => id !== l) as [string, string];
  return { h, l, f };
}

describe("quiescence", () => {
  // Rule: a caught-up leader quiesces, followers follow, and then ticks produce nothing at all.
  test("an idle group quiesces and sends nothing while ticking", () => {
    const { h, l } = settled();
    assert.equal(h.node(l).quiesce(), true);
    h.deliver();
    for (const id of ["a", "b", "c"]) assert.equal(h.node(id).isQuiesced(), true, id);
    const before = h.sent.length;
    h.tick(100);
    assert.equal(h.sent.length, before, "no message in 100 ticks");
    assert.equal(h.leader(), l);
  });

  // Rule: a proposal wakes the group and commits as usual.
  test("a proposal wakes the group", () => {
    const { h, l } = settled();
    h.node(l).quiesce();
    h.deliver();
    assert.ok(h.propose(l, "y").ok);
    h.tick(1);
    for (const id of ["a", "b", "c"]) {
      assert.equal(h.node(id).isQuiesced(), false, id);
      assert.deepEqual(h.machine(id).values(), ["x", "y"]);
    }
  });

  // Rule: a leader does not quiesce while any replica lacks part of the log.
  test("no quiescence while a follower lags", () => {
    const { h, l, f } = settled();
    h.cutLink(l, f[1]);
    h.propose(l, "y");
    assert.equal(h.node(l).quiesce(), false);
    h.heal();
    h.tick(2);
    assert.equal(h.node(l).quiesce(), true);
  });

  // Rule: followers woken by their host after the leader's node died elect a new leader.
  test("woken followers elect a new leader when the quiesced leader is gone", () => {
    const { h, l, f } = settled();
    h.node(l).quiesce();
    h.deliver();
    h.stop(l);
    h.tick(50, f);
    for (const id of f)
      assert.equal(h.node(id).basicStatus().leader, l, "still asleep: nobody noticed");
    for (const id of f) h.node(id).unquiesce();
    h.tick(50, f);
    const nl = h.leader();
    assert.ok(nl && f.includes(nl), `new leader: ${nl}`);
    assert.ok(h.propose(nl, "z").ok);
    h.tick(1, f);
    assert.deepEqual(h.machine(f[0]).values(), ["x", "z"]);
  });

  // Rule: a leader's clock stands still while quiesced, so waking it forgets the lease.
  test("waking a quiesced leader invalidates its lease until a new heartbeat round", () => {
    const { h, l } = settled({ readMode: "lease" });
    assert.equal(h.node(l).hasValidLease(), true);
    h.node(l).quiesce();
    h.deliver();
    h.node(l).unquiesce();
    assert.equal(h.node(l).hasValidLease(), false);
    h.deliver(); // the wake-up heartbeats are answered
    assert.equal(h.node(l).hasValidLease(), true);
  });
});
