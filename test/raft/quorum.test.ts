/** Property tests: the quorum and commit-index math against naive definitions. */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  jointCommitted,
  jointVote,
  majorityCommitted,
  majorityVote,
} from "../../src/raft/index.js";

/** Naive commit index: the largest i such that a majority acknowledged at least i. */
function naiveCommitted(acks: number[]): number {
  if (acks.length === 0) return Number.POSITIVE_INFINITY;
  const q = Math.floor(acks.length / 2) + 1;
  let best = 0;
  for (const candidate of acks) {
    if (acks.filter((a) => a >= candidate).length >= q) best = Math.max(best, candidate);
  }
  return best;
}

/** Naive vote: won with a majority of grants, lost when a majority is out of reach. */
function naiveVote(votes: (boolean | undefined)[]): string {
  if (votes.length === 0) return "won";
  const q = Math.floor(votes.length / 2) + 1;
  const yes = votes.filter((v) => v === true).length;
  const no = votes.filter((v) => v === false).length;
  if (yes >= q) return "won";
  if (votes.length - no < q) return "lost";
  return "pending";
}

const acksArb = fc.array(fc.nat({ max: 50 }), { maxLength: 9 });
const votesArb = fc.array(fc.constantFrom(true, false, undefined), { maxLength: 9 });

function asConfig(values: readonly unknown[], prefix: string): Set<string> {
  return new Set(values.map((_, i) => `${prefix}${i}`));
}

test("majorityCommitted equals the naive definition", () => {
  fc.assert(
    fc.property(acksArb, (acks) => {
      const ids = asConfig(acks, "n");
      const got = majorityCommitted(ids, (id) => acks[Number(id.slice(1))] as number);
      assert.equal(got, naiveCommitted(acks));
    }),
    { numRuns: 2000 },
  );
});

test("jointCommitted is the minimum of both halves, sharing nodes allowed", () => {
  fc.assert(
    fc.property(acksArb, acksArb, fc.nat({ max: 4 }), (a, b, shared) => {
      const incoming = asConfig(a, "n");
      // The outgoing half reuses the first `shared` ids of the incoming one (as in a replacement).
      const outgoing = new Set([...[...incoming].slice(0, shared), ...[...asConfig(b, "o")]]);
      const ack = (id: string): number =>
        id.startsWith("n")
          ? (a[Number(id.slice(1))] as number)
          : (b[Number(id.slice(1))] as number);
      const want = Math.min(
        naiveCommitted([...incoming].map(ack)),
        naiveCommitted([...outgoing].map(ack)),
      );
      assert.equal(jointCommitted({ incoming, outgoing }, ack), want);
    }),
    { numRuns: 2000 },
  );
});

test("majorityVote and jointVote equal the naive definitions", () => {
  fc.assert(
    fc.property(votesArb, votesArb, (a, b) => {
      const incoming = asConfig(a, "n");
      const outgoing = asConfig(b, "o");
      const votes = new Map<string, boolean>();
      for (const [i, v] of a.entries()) if (v !== undefined) votes.set(`n${i}`, v);
      for (const [i, v] of b.entries()) if (v !== undefined) votes.set(`o${i}`, v);
      assert.equal(majorityVote(incoming, votes), naiveVote(a));
      const x = naiveVote(a);
      const y = naiveVote(b);
      const joint = x === y ? x : x === "lost" || y === "lost" ? "lost" : "pending";
      assert.equal(jointVote({ incoming, outgoing }, votes), joint);
    }),
    { numRuns: 2000 },
  );
});

test("a commit index is never above what a majority acknowledged (safety)", () => {
  fc.assert(
    fc.property(fc.array(fc.nat({ max: 50 }), { minLength: 1, maxLength: 9 }), (acks) => {
      const ids = asConfig(acks, "n");
      const c = majorityCommitted(ids, (id) => acks[Number(id.slice(1))] as number);
      const atLeast = acks.filter((x) => x >= c).length;
      assert.ok(atLeast > acks.length / 2);
    }),
    { numRuns: 1000 },
  );
});
