/**
 * Raft paper, Figure 8: why a leader must not commit an entry of an earlier term by counting
 * replicas. The script below builds the figure's situation deterministically; with the planted
 * bug the entry is "committed", then overwritten, and two replicas apply different entries at
 * the same index. With the real rule nothing unsafe happens.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Entry } from "../../src/raft/index.js";
import { Harness } from "../../src/sim/harness.js";

function figure8(commitOldTermByCounting: boolean): {
  appliedAt3: Map<string, string>;
  aCommit: number;
} {
  // Pre-vote and check-quorum off: this scenario is about the commit rule alone.
  const h = new Harness(["a", "b", "c", "d", "e"], {
    preVote: false,
    checkQuorum: false,
    maxAppendBytes: 1, // one entry per append, so entries can be delivered selectively
    testingBugs: { commitOldTermByCounting },
  });
  // (a) a leads term 2 and writes X (index 3) to b only.
  h.campaign("a");
  assert.equal(h.leader(), "a");
  h.cutLink("a", "c");
  h.cutLink("a", "d");
  h.cutLink("a", "e");
  assert.ok(h.propose("a", "X").ok);
  assert.equal(h.node("b").termAt(3), 2);
  h.stop("a");
  // (b) e leads term 3 with votes from c and d, and writes its no-op (index 3) locally only.
  h.heal();
  h.dropType("app");
  h.campaign("e");
  assert.equal(h.node("e").basicStatus().role, "leader");
  assert.equal(h.node("e").termAt(3), 3);
  h.stop("e");
  h.heal();
  // (c) a restarts and leads term 4; X reaches c, a's own no-op (index 4) does not.
  h.restart("a");
  h.cutLink("a", "d");
  // c may see (and reject) the first probe; once it holds X, appends carrying index 4 are lost.
  h.filter = (m) =>
    !(
      m.type === "app" &&
      m.to === "c" &&
      h.node("c").termAt(3) === 2 &&
      m.entries.some((en) => en.index >= 4)
    );
  for (let i = 0; i < 3 && h.node("a").basicStatus().role !== "leader"; i++) h.campaign("a");
  assert.equal(h.node("a").basicStatus().role, "leader");
  assert.equal(h.node("c").termAt(3), 2, "X reached c");
  const aCommit = h.node("a").basicStatus().commit;
  h.stop("a");
  // (d) e restarts and wins term 5+ with c and d (its last term 3 beats their 2) and overwrites.
  h.filter = undefined;
  h.heal();
  h.restart("e");
  for (let i = 0; i < 3 && h.node("e").basicStatus().role !== "leader"; i++) h.campaign("e");
  assert.equal(h.node("e").basicStatus().role, "leader");
  h.tick(3);
  // The committed term at index 3, per replica that considers index 3 committed (a is down, but
  // its last state is what it acknowledged to clients).
  const appliedAt3 = new Map<string, string>();
  for (const id of ["a", "b", "c", "d", "e"]) {
    const st = h.node(id).basicStatus();
    if (st.commit >= 3) appliedAt3.set(id, `term ${h.node(id).termAt(3)}`);
  }
  assert.ok(h.machine("a").applied.some((x: Entry) => x.index === 3) === aCommit >= 3);
  return { appliedAt3, aCommit };
}

test("figure 8: counting replicas of an old-term entry commits it, then it is overwritten", () => {
  const { appliedAt3, aCommit } = figure8(true);
  assert.ok(aCommit >= 3, "the buggy leader committed X");
  assert.equal(appliedAt3.get("a"), "term 2");
  assert.equal(appliedAt3.get("e"), "term 3");
  // The new leader committed its own entry at the same index: a committed entry was lost.
  assert.ok(
    new Set(appliedAt3.values()).size > 1,
    `divergent applies: ${JSON.stringify([...appliedAt3])}`,
  );
});

test("figure 8: the real rule never commits the old-term entry, so replicas agree", () => {
  const { appliedAt3, aCommit } = figure8(false);
  assert.ok(aCommit < 3, "X is not committed by counting");
  assert.ok(
    new Set(appliedAt3.values()).size <= 1,
    `replicas agree: ${JSON.stringify([...appliedAt3])}`,
  );
});
