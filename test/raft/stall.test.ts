/**
 * Time that passes while a node cannot run (its event loop blocked, the process stopped) reaches
 * Raft in one `elapse(ticks)`: the lease clock gets every tick, the election and heartbeat
 * timers at most half an election timeout. A group whose replicas all stall together (each
 * applies the same large entry, a split, at the same log position) keeps its leader; a stalled
 * leader's lease is over all the same.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ABC, cluster, roleOf, termOf } from "./_scenario.js";

describe("stalls", () => {
  // 10-tick election timeout (randomized up to 20): a stall of three timeouts, on every replica.
  const STALL_TICKS = 30;

  test("replicas that stalled together for three election timeouts keep their leader", () => {
    const h = cluster("a");
    h.tick(1);
    h.deliver();
    for (const id of ABC) h.node(id).elapse(STALL_TICKS);
    h.deliver();
    h.tick(3);
    h.deliver();
    assert.equal(h.leader(), "a");
    for (const id of ABC) assert.equal(termOf(h, id), 2, `term on ${id}`);
    assert.equal(roleOf(h, "a"), "leader", "check-quorum did not depose it");
  });

  // Why elapse exists: the same stall delivered as ticks one by one (what the host did before)
  // starts an election on the followers, and check-quorum deposes the leader, before anyone
  // reads the heartbeats that show the leader alive.
  test("the same stall counted tick by tick would have deposed the leader", () => {
    const h = cluster("a");
    h.tick(1);
    h.deliver();
    for (const id of ABC) for (let i = 0; i < STALL_TICKS; i++) h.node(id).tick();
    h.deliver();
    // Check-quorum deposed the leader during its own stall, and every replica campaigned.
    assert.notEqual(roleOf(h, "a"), "leader", "the leader stepped down");
    assert.equal(h.leader(), undefined, "the group has no leader until an election ends");
  });

  test("a stalled leader's lease is over: the lease clock gets every owed tick", () => {
    const h = cluster("a", { readMode: "lease" });
    h.tick(1);
    h.deliver();
    assert.equal(h.node("a").hasValidLease(), true);
    h.node("a").elapse(STALL_TICKS);
    assert.equal(h.node("a").hasValidLease(), false, "no local read on a lease that may be gone");
    assert.equal(roleOf(h, "a"), "leader");
  });

  test("a short delay is delivered in full", () => {
    // Up to half an election timeout, elapse is plain ticks: a follower that stops hearing
    // from its leader still campaigns after the election timeout, however late its timer fires.
    const h = cluster("a");
    h.isolate("a");
    let elapsed = 0;
    while (termOf(h, "b") === 2 && termOf(h, "c") === 2 && elapsed < 40) {
      for (const id of ["b", "c"]) h.node(id).elapse(5);
      h.deliver();
      elapsed += 5;
    }
    assert.ok(elapsed <= 20, `a follower campaigned after ${elapsed} ticks (timeout 10-20)`);
    assert.ok(termOf(h, "b") > 2 || termOf(h, "c") > 2);
  });
});
