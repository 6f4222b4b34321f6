/**
 * Elastic membership on real processes: two nodes join a running 3-node cluster (started with
 * `--join` naming the existing nodes); the balancer moves replicas to them and leadership
 * follows, while a client keeps writing and reading through the original nodes without a
 * single failed request.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { runCli, TestCluster, waitFor } from "./_cluster.js";

const ARGS = ["--tick-ms", "20", "--election-ticks", "10", "--shards", "6"];
let c: TestCluster;

before(async () => {
  c = await TestCluster.start({ nodes: 3, args: ARGS });
});

after(async () => {
  await c?.stop();
});

interface View {
  nodes: { id: string; state: string }[];
  shards: { id: string; keyspace: string; replicas: string[]; leader: string | null }[];
}

test("joined nodes get replicas and leaders while clients keep working", async () => {
  let stop = false;
  const failures: string[] = [];
  let ops = 0;
  const client = (async () => {
    for (let i = 0; !stop; i++) {
      const node = ["n1", "n2", "n3"][i % 3] as string;
      const key = `el-${i % 50}`;
      const w = await c.req(node, "PUT", `/v1/kv/default/${key}`, {
        body: `v${i}`,
        timeoutMs: 10_000,
      });
      if (w.status !== 200) failures.push(`PUT ${key} via ${node}: ${w.status} ${w.text}`);
      const r = await c.req(node, "GET", `/v1/kv/default/${key}`, { timeoutMs: 10_000 });
      if (r.status !== 200 || r.text !== `v${i}`)
        failures.push(`GET ${key} via ${node}: ${r.status} ${r.text} (wrote v${i})`);
      ops += 2;
    }
  })();
  try {
    await joinAndBalance();
  } finally {
    // Stop the client whatever happened (a failed wait must not leave it running forever).
    stop = true;
    await client;
  }
  assert.ok(ops > 20, `only ${ops} operations ran`);
  assert.deepEqual(failures, []);
  // The joined nodes serve reads and writes themselves.
  const w = await c.req("n5", "PUT", "/v1/kv/default/from-n5", { body: "x" });
  assert.equal(w.status, 200, w.text);
  const g = await c.req("n4", "GET", "/v1/kv/default/from-n5");
  assert.equal(g.text, "x");
});

async function joinAndBalance(): Promise<void> {
  await c.addNode();
  await c.addNode();
  // Every node learns of the new members.
  await waitFor(
    async () => {
      const v = JSON.parse((await c.req("n1", "GET", "/v1/cluster")).text) as View;
      return ["n4", "n5"].every((id) => v.nodes.some((n) => n.id === id && n.state === "alive"));
    },
    20_000,
    "n1 to see n4 and n5 alive",
  );
  // Replicas move until the load is even (6 shards x 3 replicas over 5 nodes: 3 or 4 each),
  // and the new nodes lead shards.
  await waitFor(
    async () => {
      const views = await Promise.all(
        c.ids().map(async (id) => JSON.parse((await c.req(id, "GET", "/v1/cluster")).text) as View),
      );
      const shards = (views[0] as View).shards.filter((s) => s.keyspace === "default");
      const load = new Map<string, number>();
      for (const s of shards) for (const r of s.replicas) load.set(r, (load.get(r) ?? 0) + 1);
      const counts = c.ids().map((id) => load.get(id) ?? 0);
      if (Math.max(...counts) - Math.min(...counts) > 1) return false;
      const leaders = new Set<string>();
      for (const v of views)
        for (const s of v.shards)
          if (s.keyspace === "default" && s.leader && s.replicas.includes(s.leader))
            leaders.add(s.leader);
      return leaders.has("n4") || leaders.has("n5");
    },
    90_000,
    "replicas balanced over 5 nodes and a new node leading",
  );
}

test("a drained node gives up every replica; a removed one is retired", async () => {
  const replicasOf = async (id: string) => {
    const ks = JSON.parse((await c.req("n1", "GET", "/v1/keyspaces/default")).text) as {
      shards: { replicas: string[] }[];
    };
    return ks.shards.filter((s) => s.replicas.includes(id)).length;
  };
  assert.ok((await replicasOf("n5")) > 0, "n5 holds replicas before the drain");
  // Through the CLI, which waits for the moves (a progress bar on a terminal; JSON here).
  const d = await runCli(
    [
      "node",
      "drain",
      "n5",
      "--wait",
      "--timeout",
      "60s",
      "--json",
      "--endpoint",
      c.node("n2").api,
      "--token",
      c.token,
    ],
    90_000,
  );
  assert.equal(d.code, 0, d.stderr);
  const drained = JSON.parse(d.stdout) as { node: string; admin: string; movedReplicas: number };
  assert.deepEqual([drained.node, drained.admin], ["n5", "draining"]);
  assert.ok(drained.movedReplicas > 0, d.stdout);
  assert.equal(await replicasOf("n5"), 0, "--wait returned before n5 was empty");
  // Every key is still readable, through the drained node too.
  const w = await c.req("n5", "PUT", "/v1/kv/default/after-drain", { body: "ok" });
  assert.equal(w.status, 200, w.text);
  assert.equal((await c.req("n1", "GET", "/v1/kv/default/after-drain")).text, "ok");
  const rm = await c.req("n3", "POST", "/v1/nodes/n5/remove");
  assert.equal(rm.status, 200, rm.text);
  await waitFor(
    async () => {
      const v = JSON.parse((await c.req("n1", "GET", "/v1/cluster")).text) as {
        nodes: { id: string; admin: string }[];
      };
      return v.nodes.find((n) => n.id === "n5")?.admin === "removed";
    },
    10_000,
    "n5 shown as removed",
  );
  // A removed node cannot be brought back by "activate"; unknown nodes are 404.
  assert.equal((await c.req("n1", "POST", "/v1/nodes/n5/activate")).status, 409);
  assert.equal((await c.req("n1", "POST", "/v1/nodes/nope/drain")).status, 404);
  assert.equal((await c.req("n1", "GET", "/v1/nodes/n5/drain")).status, 405);
});
