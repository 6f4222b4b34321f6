/**
 * /readyz's verdict (src/node/health.ts) with a fake clock: a shard counts as without quorum
 * only once it has had no leader for the leaderless timeout (an election or a leadership
 * transfer is not an outage), at once if it never had one since the node started (a replica
 * created later gets the timeout to find its first leader), and at once when this node leads it
 * without reaching a majority; leader changes are counted.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { GroupStatus } from "../../src/multiraft/index.js";
import {
  EventLoopMonitor,
  effectiveDelayMs,
  placedHere,
  READY_APPLY_LAG_ENTRIES_MAX,
  readiness,
  ShardWatch,
} from "../../src/node/health.js";

function setup() {
  const clock = { ms: 0 };
  const leaders = new Map<string, string | undefined>([
    ["s1", undefined],
    ["s2", undefined],
  ]);
  const quorum = new Map<string, boolean>();
  const watch = new ShardWatch(
    {
      self: "n1",
      groupIds: () => [...leaders.keys()],
      leaderOf: (id) => leaders.get(id),
      leaderReachesQuorum: (id) => quorum.get(id) ?? true,
    },
    2000,
    () => clock.ms,
  );
  const statuses = (): Pick<GroupStatus, "id" | "commit" | "applied">[] =>
    [...leaders.keys()].map((id) => ({ id, commit: 10, applied: 10 }));
  return { clock, leaders, quorum, watch, statuses };
}

test("not ready while starting, draining or stopping, whatever the shards", () => {
  const { watch, statuses } = setup();
  assert.deepEqual(
    readiness("starting", statuses(), watch).reasons.map((r) => r.code),
    ["STARTING"],
  );
  assert.deepEqual(
    readiness("draining", statuses(), watch).reasons.map((r) => r.code),
    ["DRAINING"],
  );
  assert.deepEqual(
    readiness("stopping", statuses(), watch).reasons.map((r) => r.code),
    ["STOPPING"],
  );
});

test("a shard that never had a leader is unavailable; one between leaders only after the timeout", () => {
  const { clock, leaders, watch, statuses } = setup();
  watch.sample();
  let r = readiness("serving", statuses(), watch);
  assert.equal(r.ready, false);
  assert.deepEqual(r.unavailableShards, ["s1", "s2"]);
  assert.ok(r.reasons.every((x) => x.code === "NO_LEADER" && x.message.includes(x.shard ?? "?")));

  leaders.set("s1", "n2");
  leaders.set("s2", "n1");
  watch.sample();
  assert.equal(readiness("serving", statuses(), watch).ready, true);

  // An election: no leader for a moment is not an outage...
  clock.ms += 500;
  leaders.set("s1", undefined);
  watch.sample();
  clock.ms += 1500;
  assert.equal(readiness("serving", statuses(), watch).ready, true);
  // ...but past the leaderless timeout it is.
  clock.ms += 600;
  r = readiness("serving", statuses(), watch);
  assert.deepEqual(r.unavailableShards, ["s1"]);
  // A new leader (another node): ready again, and one leader change counted.
  leaders.set("s1", "n3");
  watch.sample();
  assert.equal(readiness("serving", statuses(), watch).ready, true);
  assert.equal(watch.leaderChanges(), 1);
});

test("a replica created while the node runs gets the leaderless timeout to see its first leader", () => {
  const { clock, leaders, watch, statuses } = setup();
  leaders.set("s1", "n2");
  leaders.set("s2", "n2");
  watch.sample();
  assert.equal(readiness("serving", statuses(), watch).ready, true);
  // A new keyspace's shard appears on every node at once, electing its first leader: the node
  // stays in its load balancer meanwhile (if it left, so would every other node).
  clock.ms += 1000;
  leaders.set("s3", undefined);
  watch.sample();
  clock.ms += 1900;
  assert.equal(readiness("serving", statuses(), watch).ready, true);
  // One that finds no leader within the timeout has no quorum.
  clock.ms += 200;
  assert.deepEqual(readiness("serving", statuses(), watch).unavailableShards, ["s3"]);
  leaders.set("s3", "n3");
  watch.sample();
  assert.equal(readiness("serving", statuses(), watch).ready, true);
});

test("a leader that cannot reach a majority counts as no quorum at once", () => {
  const { leaders, quorum, watch, statuses } = setup();
  leaders.set("s1", "n1");
  leaders.set("s2", "n2");
  watch.sample();
  assert.equal(readiness("serving", statuses(), watch).ready, true);
  quorum.set("s1", false);
  assert.deepEqual(readiness("serving", statuses(), watch).unavailableShards, ["s1"]);
});

test("a replica far behind in applying is catching up, not ready", () => {
  const { leaders, watch, statuses } = setup();
  leaders.set("s1", "n2");
  leaders.set("s2", "n2");
  watch.sample();
  const st = statuses().map((s) =>
    s.id === "s2" ? { ...s, commit: s.applied + READY_APPLY_LAG_ENTRIES_MAX + 1 } : s,
  );
  const r = readiness("serving", st, watch);
  assert.equal(r.ready, false);
  assert.deepEqual(
    r.reasons.map((x) => [x.code, x.shard]),
    [["CATCHING_UP", "s2"]],
  );
  assert.deepEqual(r.unavailableShards, []);
});

test("event-loop delay: a loop busy with its own work counts; a stopped process does not", () => {
  // Normal windows: the p99 stands.
  assert.equal(effectiveDelayMs(4, 0, 120), 4);
  // Blocked by 2 s of synchronous work: late, and the CPU shows it.
  assert.equal(effectiveDelayMs(2_000, 2_010, 2_050), 2_010);
  // SIGSTOPped for 2.6 s, then 30 ms of work: late, but not overloaded (no shedding).
  assert.equal(effectiveDelayMs(2_600, 2_610, 30), 30);
  assert.equal(effectiveDelayMs(10, 0, -1), 0);
});

test("the event-loop monitor sees a loop blocked by work", async () => {
  const m = new EventLoopMonitor(100);
  m.start();
  try {
    const until = performance.now() + 350;
    while (performance.now() < until) {
      // busy: the loop cannot turn
    }
    // The window that contained the block reports it (read it before later windows roll).
    let most = 0;
    for (let i = 0; i < 15; i++) {
      await new Promise((r) => setTimeout(r, 10));
      most = Math.max(most, m.delayMsP99());
    }
    assert.ok(most >= 150, `delay ${most} ms after a 350 ms block`);
  } finally {
    m.stop();
  }
});

test("readiness counts only the replicas the shard map places here", () => {
  const statuses = [{ id: "s1" }, { id: "s2" }, { id: "s3" }];
  const shards = [
    { id: "s1", replicas: ["n1", "n2"] },
    { id: "s2", replicas: ["n2", "n3"] }, // moved away while n1 was down: a stale copy
  ];
  // s3 is not in the map yet (a split half before its record): it counts.
  assert.deepEqual(
    placedHere(statuses, shards, "n1").map((s) => s.id),
    ["s1", "s3"],
  );
});
