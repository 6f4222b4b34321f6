/**
 * Hostile peers: a message that is well formed on the wire but says impossible things (an
 * entry index that does not follow, a commit beyond the log, a snapshot older than what is
 * applied, a term of 2^53, an unknown sender) must be refused by the receiving node, never
 * crash it (an assertion in the core would stop the whole node: docs/raft.md, "Untrusted
 * messages"). Raft does not defend against a lying member (no Byzantine fault tolerance): a
 * well-formed message with a higher term is believed. What is checked is that the node lives
 * on and the group, with its other members, keeps committing.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { type Entry, invalidMessage, type Message, type NodeId } from "../../src/raft/index.js";
import { cluster, proposeAll, valuesOf } from "./_scenario.js";

const PLAIN = { noNullPrototype: true } as const;

/** Numbers near the interesting edges of a small log, and far outside it. */
const numArb = fc.oneof(fc.integer({ min: 0, max: 12 }), fc.constantFrom(2 ** 31, 2 ** 53 - 1));
const entryArb: fc.Arbitrary<Entry> = fc.record(
  {
    term: numArb,
    index: numArb,
    type: fc.constantFrom("normal" as const, "conf" as const),
    data: fc.uint8Array({ maxLength: 8 }),
  },
  PLAIN,
);
const idsArb = fc.array(fc.constantFrom("a", "b", "c", "x", ""), { maxLength: 4 });

function messageArb(to: NodeId): fc.Arbitrary<Message> {
  const base = { from: fc.constantFrom("a", "b", "c", "x", ""), to: fc.constant(to), term: numArb };
  return fc.oneof(
    fc.record(
      {
        type: fc.constant("app" as const),
        ...base,
        index: numArb,
        logTerm: numArb,
        entries: fc.array(entryArb, { maxLength: 4 }),
        commit: numArb,
      },
      PLAIN,
    ),
    fc.record(
      {
        type: fc.constant("appResp" as const),
        ...base,
        index: numArb,
        reject: fc.boolean(),
        rejectHint: numArb,
        logTerm: numArb,
      },
      PLAIN,
    ),
    fc.record(
      {
        type: fc.constantFrom("vote" as const, "preVote" as const),
        ...base,
        index: numArb,
        logTerm: numArb,
        force: fc.boolean(),
      },
      PLAIN,
    ),
    fc.record(
      {
        type: fc.constantFrom("voteResp" as const, "preVoteResp" as const),
        ...base,
        reject: fc.boolean(),
      },
      PLAIN,
    ),
    fc.record(
      {
        type: fc.constant("heartbeat" as const),
        ...base,
        commit: numArb,
        seq: numArb,
        sentTick: numArb,
        quiesce: fc.boolean(),
      },
      PLAIN,
    ),
    fc.record(
      { type: fc.constant("heartbeatResp" as const), ...base, seq: numArb, sentTick: numArb },
      PLAIN,
    ),
    fc.record(
      {
        type: fc.constant("snap" as const),
        ...base,
        snapshot: fc.record(
          {
            meta: fc.record(
              {
                index: numArb,
                term: numArb,
                confState: fc.record(
                  {
                    voters: idsArb,
                    learners: idsArb,
                    votersOutgoing: idsArb,
                    learnersNext: idsArb,
                    autoLeave: fc.boolean(),
                  },
                  PLAIN,
                ),
              },
              PLAIN,
            ),
            // The state machine's own format (the test's recording machine: JSON rows); what a
            // machine makes of bytes it cannot read is its host's business (test/multiraft).
            data: fc
              .array(fc.tuple(numArb, numArb, fc.string({ maxLength: 3 })), { maxLength: 3 })
              .map((rows) => new TextEncoder().encode(JSON.stringify(rows))),
          },
          PLAIN,
        ),
      },
      PLAIN,
    ),
    fc.record({ type: fc.constant("timeoutNow" as const), ...base }, PLAIN),
    fc.record(
      {
        type: fc.constant("readIndex" as const),
        ...base,
        context: fc.string({ maxLength: 4 }),
        mode: fc.constantFrom("quorum" as const, "lease" as const),
      },
      PLAIN,
    ),
    fc.record(
      {
        type: fc.constant("readIndexResp" as const),
        ...base,
        context: fc.string({ maxLength: 4 }),
        index: numArb,
      },
      PLAIN,
    ),
    fc.record(
      {
        type: fc.constant("prop" as const),
        ...base,
        entries: fc.array(entryArb, { maxLength: 3 }),
        incarnation: fc.string({ maxLength: 4 }),
        seq: numArb,
      },
      PLAIN,
    ),
    fc.record(
      {
        type: fc.constant("propResp" as const),
        ...base,
        entries: fc.array(entryArb, { maxLength: 3 }),
        reason: fc.constantFrom(
          "NOT_LEADER" as const,
          "OVERLOADED" as const,
          "TRANSFERRING" as const,
        ),
      },
      PLAIN,
    ),
  );
}

for (const target of ["a", "b"] as const) {
  test(`random hostile messages into the ${target === "a" ? "leader" : "a follower"} never throw`, () => {
    fc.assert(
      fc.property(fc.array(messageArb(target), { minLength: 1, maxLength: 8 }), (msgs) => {
        const h = cluster("a");
        proposeAll(h, "a", ["v1", "v2", "v3"]);
        h.deliver();
        for (const m of msgs) {
          h.node(target).step(m);
          h.flush();
        }
        // The group recovers: some node leads again and a new write commits on a majority.
        for (let round = 0; round < 60; round++) {
          h.tick(1);
          h.deliver(200);
        }
        const leader = ["a", "b", "c"].find((id) => h.node(id).basicStatus().role === "leader");
        assert.ok(leader, "no leader after the hostile messages");
        assert.ok(h.propose(leader, "after").ok);
        h.deliver(200);
        const applied = ["a", "b", "c"].filter((id) => valuesOf(h, id).includes("after"));
        assert.ok(applied.length >= 2, `"after" applied on ${applied.join(",")} only`);
      }),
      { numRuns: 400 },
    );
  });
}

test("what no correct peer sends is named", () => {
  const app = {
    type: "app" as const,
    from: "a",
    to: "b",
    term: 3,
    index: 4,
    logTerm: 2,
    commit: 4,
    entries: [
      { term: 2, index: 5, type: "normal" as const, data: new Uint8Array() },
      { term: 3, index: 6, type: "normal" as const, data: new Uint8Array() },
    ],
  };
  assert.equal(invalidMessage(app), undefined);
  const gap = { ...app, entries: [{ ...app.entries[0], index: 7 }] } as Message;
  assert.match(invalidMessage(gap) ?? "", /contiguous/);
  const back = { ...app, entries: [app.entries[1], { ...app.entries[0], index: 6 }] } as Message;
  assert.match(invalidMessage(back) ?? "", /contiguous|order/);
  assert.match(invalidMessage({ ...app, term: 1 }) ?? "", /term/);
  assert.match(invalidMessage({ ...app, from: "" }) ?? "", /sender/);
  assert.match(invalidMessage({ ...app, term: 2 ** 64 }) ?? "", /TERM_MAX/);
  const snap = {
    type: "snap" as const,
    from: "a",
    to: "b",
    term: 3,
    snapshot: {
      meta: {
        index: 9,
        term: 3,
        confState: {
          voters: ["a"],
          learners: [],
          votersOutgoing: [],
          learnersNext: [],
          autoLeave: false,
        },
      },
      data: new Uint8Array(),
    },
  };
  assert.equal(invalidMessage(snap), undefined);
  const noVoters = {
    ...snap,
    snapshot: {
      ...snap.snapshot,
      meta: { ...snap.snapshot.meta, confState: { ...snap.snapshot.meta.confState, voters: [] } },
    },
  };
  assert.match(invalidMessage(noVoters) ?? "", /voters/);
});
