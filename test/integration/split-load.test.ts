/**
 * Load-based splits on real processes: a range keyspace far below --split-bytes but written
 * faster than --split-load-ops-per-sec for a few seconds splits, and keeps every key.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { TestCluster, waitFor } from "./_cluster.js";

const ARGS = [
  "--tick-ms",
  "20",
  "--election-ticks",
  "10",
  "--split-bytes",
  String(1 << 30),
  "--split-load-ops-per-sec",
  "40",
];
let c: TestCluster;

before(async () => {
  c = await TestCluster.start({ nodes: 3, args: ARGS });
});

after(async () => {
  await c?.stop();
});

test("a range shard written faster than the load threshold splits; no key is lost", async () => {
  const r = await c.req("n1", "PUT", "/v1/keyspaces/hot", { body: '{"sharding":"range"}' });
  assert.equal(r.status, 201, r.text);
  let i = 0;
  const shards = async () =>
    (JSON.parse((await c.req("n2", "GET", "/v1/keyspaces/hot")).text) as { shards: unknown[] })
      .shards.length;
  const deadline = Date.now() + 30_000;
  // Eight writers, well over 40 writes/s, until the keyspace has split (bounded by the deadline).
  while ((await shards()) < 2 && Date.now() < deadline) {
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let k = 0; k < 10; k++) {
          const key = `e${String(i++).padStart(6, "0")}`;
          const p = await c.req(["n1", "n2", "n3"][w % 3] as string, "PUT", `/v1/kv/hot/${key}`, {
            body: "x",
          });
          assert.equal(p.status, 200, p.text);
        }
      }),
    );
  }
  await waitFor(async () => (await shards()) >= 2, 5_000, "a load split");
  // Every key, paged (a slow machine writes more keys before the split), across the split.
  const keys: string[] = [];
  let next: string | null = null;
  for (let page = 0; page < 100; page++) {
    const q: string = next === null ? "" : `&start_after=${encodeURIComponent(next)}`;
    const l = await c.req("n3", "GET", `/v1/kv/hot?limit=1000&keys_only=true${q}`);
    assert.equal(l.status, 200, l.text);
    const body = JSON.parse(l.text) as { items: { key: string }[]; next: string | null };
    keys.push(...body.items.map((x) => x.key));
    next = body.next;
    if (next === null) break;
  }
  assert.equal(keys.length, i);
  assert.deepEqual(keys, [...keys].sort());
});
