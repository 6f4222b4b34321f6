/**
 * Snapshots and log compaction: catching up a follower whose entries were compacted away,
 * recovering from storage after compaction, and whole-cluster crash/restart.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Message, NodeId } from "../../src/raft/index.js";
import {
  ABC,
  assertApplied,
  cluster,
  lastIndexOf,
  progressOf,
  proposeAll,
  sentOf,
  tickDropping,
  valuesOf,
} from "./_scenario.js";

const values = (n: number, prefix = "v") => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
const firstIndexOf = (h: ReturnType<typeof cluster>, id: NodeId) => h.node(id).status().firstIndex;

describe("snapshots", () => {
  // Rule: when the entries a follower needs were compacted, the leader sends its snapshot; the
  // follower restores it and then continues from the log.
  test("a follower that was down during compaction catches up from a snapshot", () => {
    const h = cluster("a");
    h.stop("c");
    const vs = values(20);
    proposeAll(h, "a", vs);
    h.peer("a").compact(0);
    h.peer("b").compact(0);
    const snapIndex = h.peer("a").storage.snapshot().meta.index;
    assert.equal(snapIndex, 22);
    assert.equal(firstIndexOf(h, "a"), 23);
    h.restart("c");
    assert.equal(lastIndexOf(h, "c"), 2);
    h.tick(3);
    const snaps = sentOf(h, "snap", (m) => m.to === "c");
    assert.equal(snaps.length, 1);
    assert.equal(snaps[0]?.snapshot.meta.index, snapIndex);
    assert.deepEqual(snaps[0]?.snapshot.meta.confState.voters, ["a", "b", "c"]);
    assert.equal(firstIndexOf(h, "c"), snapIndex + 1, "c's log now starts after the snapshot");
    assert.equal(h.peer("c").storage.snapshot().meta.index, snapIndex, "snapshot persisted");
    assertApplied(h, ABC, vs);
    proposeAll(h, "a", ["after"]);
    h.tick(1);
    assertApplied(h, ABC, [...vs, "after"]);
    assert.equal(lastIndexOf(h, "c"), lastIndexOf(h, "a"));
  });

  // Rule: a snapshot the storage cannot provide right now is owed, not forgotten: the host's
  // retrySnapshots() (called when its provider can answer) sends it without waiting for a
  // heartbeat answer, which under load may keep arriving while the provider is unavailable.
  test("a snapshot the storage could not provide is sent on retrySnapshots(), without a heartbeat", () => {
    const h = cluster("a");
    h.stop("c");
    proposeAll(h, "a", values(10));
    h.peer("a").compact(0);
    const storage = h.peer("a").storage;
    const real = storage.snapshot.bind(storage);
    storage.snapshot = () => undefined as unknown as ReturnType<typeof real>;
    h.restart("c");
    h.tick(3);
    const leader = h.node("a");
    assert.equal(sentOf(h, "snap").length, 0, "no snapshot while the storage refuses");
    assert.ok(leader.hasSnapshotsWanted(), "the refused snapshot is owed");
    // Nothing retries without a heartbeat answer: delivering what is in flight sends nothing.
    h.deliver();
    assert.equal(sentOf(h, "snap").length, 0);
    storage.snapshot = real;
    const sent = h.sent.length;
    leader.retrySnapshots();
    assert.equal(leader.hasSnapshotsWanted(), false);
    h.flush();
    const snaps = sentOf(h, "snap", (m) => m.to === "c", sent);
    assert.equal(snaps.length, 1, "sent at once, before any heartbeat");
    h.deliver();
    assertApplied(h, ABC, values(10));
    // A follower's retrySnapshots() is a no-op.
    h.node("b").retrySnapshots();
    assert.equal(h.node("b").hasSnapshotsWanted(), false);
  });

  // Rule: a snapshot in flight pauses appends to that follower; if its acknowledgement is lost
  // the leader falls back to probing after snapshotRetryTicks and the follower still converges.
  test("appends pause while a snapshot is in flight; a lost ack is recovered", () => {
    const h = cluster("a", { snapshotRetryTicks: 6 });
    h.stop("c");
    proposeAll(h, "a", values(5));
    h.peer("a").compact(0);
    const snapIndex = h.peer("a").storage.snapshot().meta.index;
    h.restart("c");
    // c's acknowledgement of the snapshot is lost (its earlier rejection is not).
    const lostAck = (m: Message) =>
      m.type === "appResp" && m.from === "c" && !m.reject && m.index >= snapIndex;
    tickDropping(h, 1, ABC, lostAck);
    assert.equal(sentOf(h, "snap", (m) => m.to === "c").length, 1);
    assert.equal(firstIndexOf(h, "c"), snapIndex + 1, "c installed the snapshot");
    assert.equal(progressOf(h, "a", "c").state, "snapshot");
    const before = h.sent.length;
    proposeAll(h, "a", ["p"]);
    tickDropping(h, 2, ABC, lostAck);
    assert.equal(sentOf(h, "app", (m) => m.to === "c", before).length, 0, "paused");
    assert.equal(progressOf(h, "a", "c").state, "snapshot");
    h.tick(2);
    assert.equal(progressOf(h, "a", "c").state, "snapshot", "still waiting for the retry");
    h.tick(4);
    assert.equal(progressOf(h, "a", "c").state, "replicate");
    assertApplied(h, ABC, [...values(5), "p"]);
  });

  // Rule: a new node that joins after the log was compacted is initialised by a snapshot and
  // then applies the entries after it (including its own admission).
  test("a node added after compaction is initialised from a snapshot", () => {
    const h = cluster("a");
    proposeAll(h, "a", values(8));
    for (const id of ABC) h.peer(id).compact(0);
    h.addEmptyPeer("d");
    assert.ok(h.proposeConfChange("a", { changes: [{ type: "addVoter", node: "d" }] }).ok);
    h.tick(2);
    assert.equal(sentOf(h, "snap", (m) => m.to === "d").length, 1);
    assert.deepEqual(h.node("d").status().conf.voters, ["a", "b", "c", "d"]);
    assertApplied(h, ["a", "b", "c", "d"], values(8));
  });

  // Rule: a node restarting from storage after compaction restores the snapshot, replays the
  // committed entries after it, and loses nothing.
  test("a node restarted after compaction recovers its state from storage", () => {
    const h = cluster("a");
    proposeAll(h, "a", values(10));
    h.tick(1);
    h.peer("b").compact(2); // snapshot at 12, keep entries 11 and 12
    assert.equal(firstIndexOf(h, "b"), 11);
    proposeAll(h, "a", ["x", "y"]);
    h.tick(1);
    h.stop("b");
    h.restart("b");
    assert.equal(firstIndexOf(h, "b"), 11);
    assert.equal(lastIndexOf(h, "b"), 14);
    assert.deepEqual(valuesOf(h, "b"), [...values(10), "x", "y"], "restored without the leader");
    h.tick(2);
    proposeAll(h, "a", ["z"]);
    h.tick(1);
    assertApplied(h, ABC, [...values(10), "x", "y", "z"]);
  });

  // Rule: committed entries survive a crash of every node at once (some compacted, some not).
  test("a crash and restart of all nodes keeps every committed value", () => {
    const h = cluster("a", { seed: 12 });
    const vs = values(12);
    proposeAll(h, "a", vs.slice(0, 6));
    h.tick(1);
    h.peer("a").compact(0);
    h.peer("c").compact(3);
    proposeAll(h, "a", vs.slice(6));
    h.tick(1);
    for (const id of ABC) h.stop(id);
    for (const id of ABC) h.restart(id);
    h.tick(60);
    const l = h.leader();
    assert.ok(l, "a leader is elected after the restart");
    proposeAll(h, l, ["after"]);
    h.tick(2);
    assertApplied(h, ABC, [...vs, "after"]);
  });
});
