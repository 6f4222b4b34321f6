/**
 * Repair on real processes: a node killed for good is declared dead after --dead-after, every
 * shard it held gets a replacement replica on a survivor (learner, caught up, promoted by a
 * joint change, then the dead one removed), and every acknowledged key stays readable.
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
  "4",
  "--suspect-after",
  "1s",
  "--dead-after",
  "3s",
];
let c: TestCluster;

before(async () => {
  c = await TestCluster.start({ nodes: 4, args: ARGS });
});

after(async () => {
  await c?.stop();
});

interface ClusterView {
  nodes: { id: string; state?: string }[];
  shards: {
    id: string;
    keyspace: string;
    replicas: string[];
    voters: string[] | null;
    leader: string | null;
  }[];
}

test("a dead node's replicas are re-created on the survivors; no acknowledged key is lost", async () => {
  const keys = Array.from({ length: 60 }, (_, i) => `k${i}`);
  for (const [i, k] of keys.entries()) {
    const r = await c.req(["n1", "n3", "n4"][i % 3] as string, "PUT", `/v1/kv/default/${k}`, {
      body: `v${i}`,
    });
    assert.equal(r.status, 200, r.text);
  }
  const victim = "n2"; // also a member of the metadata group
  await c.kill(victim);
  const survivors = ["n1", "n3", "n4"];
  // Declared dead, then every default shard lists 3 replicas, none on the victim, and each
  // shard's Raft configuration (as its leader's node reports it) matches.
  await waitFor(
    async () => {
      const r = await c.req("n1", "GET", "/v1/cluster");
      const v = JSON.parse(r.text) as ClusterView;
      if (v.nodes.find((n) => n.id === victim)?.state !== "dead") return false;
      const shards = v.shards.filter((s) => s.keyspace === "default");
      return shards.every(
        (s) =>
          s.replicas.length === 3 &&
          !s.replicas.includes(victim) &&
          s.leader !== null &&
          s.leader !== victim,
      );
    },
    30_000,
    "every shard re-placed off the dead node",
  );
  await waitFor(
    async () => {
      for (const n of survivors) {
        const v = JSON.parse((await c.req(n, "GET", "/v1/cluster")).text) as ClusterView;
        for (const s of v.shards.filter((x) => x.keyspace === "default" && x.leader === n)) {
          if (!s.voters || [...s.voters].sort().join() !== [...s.replicas].sort().join())
            return false;
        }
      }
      return true;
    },
    30_000,
    "every shard's voters to match its new replicas",
  );
  for (const [i, k] of keys.entries()) {
    const g = await c.req(survivors[i % 3] as string, "GET", `/v1/kv/default/${k}`);
    assert.equal(g.status, 200, `${k}: ${g.text}`);
    assert.equal(g.text, `v${i}`);
  }
  // The status summary agrees, the metadata group included: it is re-placed like any shard
  // (its replica on n2 moves to n4), so nothing is under-replicated and n2 holds nothing.
  await waitFor(
    async () => {
      const v = JSON.parse((await c.req("n3", "GET", "/v1/cluster")).text) as {
        summary: { underReplicated: number };
        nodes: { id: string; state: string; replicas: number }[];
      };
      const dead = v.nodes.find((n) => n.id === victim);
      return v.summary.underReplicated === 0 && dead?.state === "dead" && dead.replicas === 0;
    },
    15_000,
    "status summary without under-replicated shards",
  );
  // And the repaired shards take writes.
  const w = await c.req("n4", "PUT", "/v1/kv/default/after", { body: "x" });
  assert.equal(w.status, 200, w.text);
});
