/**
 * The metadata group is placed like any shard (docs/placement.md, "The metadata group"): on a
 * cluster of five it grows to five voters, so losing two of the three nodes that created the
 * cluster leaves it writable; once they are declared dead it shrinks to the three survivors;
 * and a node that comes back with an outdated idea of where the group lives finds it again.
 * Without the `_meta` record (the group fixed on the first three members), the keyspace
 * creation after the double kill has no quorum and times out.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { TestCluster, waitFor } from "./_cluster.js";

const ARGS = [
  "--tick-ms",
  "20",
  "--election-ticks",
  "10",
  "--shards",
  "2",
  "--suspect-after",
  "1s",
  "--dead-after",
  "4s",
];
let c: TestCluster;

before(async () => {
  c = await TestCluster.start({ nodes: 3, args: ARGS });
});

after(async () => {
  await c?.stop();
});

interface View {
  shards: { id: string; replicas: string[]; voters: string[] | null; leader: string | null }[];
}

/** The metadata group as `via` sees it: the record's replicas, and the voters where it leads. */
async function meta(via: string): Promise<{ replicas: string[]; voters: string[] | null }> {
  const r = await c.req(via, "GET", "/v1/cluster", { timeoutMs: 5_000 });
  const s = (JSON.parse(r.text) as View).shards.find((x) => x.id === "meta");
  assert.ok(s, "no meta shard in /v1/cluster");
  return { replicas: [...s.replicas].sort(), voters: s.voters ? [...s.voters].sort() : null };
}

/** True once some live node leads "meta" with exactly `want` as voters, and its record agrees. */
async function metaIs(want: string[]): Promise<boolean> {
  for (const n of c.alive()) {
    const m = await meta(n.id).catch(() => undefined);
    if (
      m?.voters &&
      JSON.stringify(m.voters) === JSON.stringify(want) &&
      JSON.stringify(m.replicas) === JSON.stringify(want)
    ) {
      const st = JSON.parse((await c.req(n.id, "GET", "/v1/cluster")).text) as {
        shards: { id: string; localRole: string | null }[];
      };
      if (st.shards.find((s) => s.id === "meta")?.localRole === "leader") return true;
    }
  }
  return false;
}

test("the metadata group grows to five, survives two lost founders, shrinks, and is found again", async () => {
  assert.deepEqual((await meta("n1")).replicas, ["n1", "n2", "n3"]);
  // Every node reports its disk to the placement leader; any node shows the reports.
  await waitFor(
    async () => {
      const v = JSON.parse((await c.req("n2", "GET", "/v1/cluster")).text) as {
        nodes: { id: string; capacityBytes: number | null; usedBytes: number | null }[];
      };
      return v.nodes.every((n) => (n.capacityBytes ?? 0) > 0 && (n.usedBytes ?? -1) >= 0);
    },
    15_000,
    "every node's report (disk capacity) in GET /v1/cluster",
  );
  await c.addNode();
  await c.addNode();
  const five = ["n1", "n2", "n3", "n4", "n5"];
  await waitFor(() => metaIs(five), 60_000, "the metadata group to have five voters");

  // Two of the three founding members die for good: 3 of 5 voters remain, a quorum.
  await c.kill("n1");
  await c.kill("n2");
  // A metadata write (a keyspace whose replicas are all alive) through a node that joined later.
  await waitFor(
    async () => {
      const r = await c.req("n4", "PUT", "/v1/keyspaces/after", {
        body: JSON.stringify({ sharding: "range", replicas: 3, shards: 1 }),
        timeoutMs: 10_000,
      });
      return r.status === 201 || r.status === 200;
    },
    30_000,
    "a keyspace created with two founders dead",
  );
  await waitFor(
    async () =>
      (await c.req("n5", "PUT", "/v1/kv/after/k", { body: "v1", timeoutMs: 5_000 })).status === 200,
    30_000,
    "a write to the new keyspace",
  );
  // Declared dead: the group shrinks to the survivors.
  const three = ["n3", "n4", "n5"];
  await waitFor(() => metaIs(three), 60_000, "the metadata group to shrink to n3, n4, n5");

  // n1 comes back remembering five voters, itself among them; it is no longer one. It must
  // find the group (its map is refreshed from the records, not from its memory) and serve.
  await c.restart("n1");
  await waitFor(
    async () => {
      const r = await c.req("n1", "GET", "/v1/kv/after/k", { timeoutMs: 5_000 });
      return r.status === 200 && r.text === "v1";
    },
    30_000,
    "n1 to serve a keyspace created while it was dead",
  );
  const w = await c.req("n1", "PUT", "/v1/keyspaces/later", {
    body: JSON.stringify({ sharding: "hash", replicas: 3, shards: 1 }),
    timeoutMs: 15_000,
  });
  assert.ok(w.status === 201 || w.status === 200, `${w.status} ${w.text}`);
  // Alive again, n1 counts as eligible: with four members the group stays at three.
  assert.equal((await meta("n1")).replicas.length, 3);
});
