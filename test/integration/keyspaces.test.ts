/**
 * Keyspaces end to end on a real 3-node cluster: created through one node and used through any
 * other at once, hash and range sharding, key-ordered listings across shards, conflicts, bad
 * names, deletion only when empty (or forced) and a fresh keyspace under a reused name.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { errorBody, TestCluster, waitFor } from "./_cluster.js";

// Small shards: the range keyspace below splits after a few dozen KiB.
const ARGS = ["--tick-ms", "20", "--election-ticks", "10", "--split-bytes", "16384"];
let c: TestCluster;

before(async () => {
  c = await TestCluster.start({ nodes: 3, args: ARGS });
});

after(async () => {
  await c?.stop();
});

interface Described {
  name: string;
  sharding: string;
  replicas: number;
  shards: { id: string; start: string; end: string; replicas: string[]; leader: string | null }[];
}

async function createKs(
  node: string,
  name: string,
  spec: unknown,
): Promise<{ status: number; text: string }> {
  return c.req(node, "PUT", `/v1/keyspaces/${name}`, {
    body: JSON.stringify(spec),
    headers: { "content-type": "application/json" },
    timeoutMs: 20_000,
  });
}

async function putKey(node: string, ks: string, key: string, value: string): Promise<void> {
  const r = await c.req(node, "PUT", `/v1/kv/${ks}/${key}`, { body: value });
  assert.equal(r.status, 200, `PUT ${ks}/${key} via ${node}: ${r.status} ${r.text}`);
}

describe("keyspaces", () => {
  test("a hash keyspace created through one node serves writes and reads through the others", async () => {
    const r = await createKs("n1", "users", { sharding: "hash", replicas: 3, shards: 4 });
    assert.equal(r.status, 201, r.text);
    const d = JSON.parse(r.text) as Described;
    assert.equal(d.sharding, "hash");
    assert.equal(d.shards.length, 4);
    for (const s of d.shards) assert.equal(new Set(s.replicas).size, 3, JSON.stringify(s));
    // Right away, through the other nodes (they learn of it when the request names it).
    for (let i = 0; i < 20; i++)
      await putKey(i % 2 ? "n2" : "n3", "users", `u${String(i).padStart(2, "0")}`, `v${i}`);
    const g = await c.req("n2", "GET", "/v1/kv/users/u07");
    assert.equal(g.status, 200);
    assert.equal(g.text, "v7");
    // A listing merges the shards into key order.
    const l = await c.req("n1", "GET", "/v1/kv/users?limit=100");
    const keys = (JSON.parse(l.text) as { items: { key: string }[] }).items.map((i) => i.key);
    assert.deepEqual(
      keys,
      Array.from({ length: 20 }, (_, i) => `u${String(i).padStart(2, "0")}`),
    );
    // The default keyspace is separate.
    assert.equal((await c.req("n1", "GET", "/v1/kv/default/u07")).status, 404);
  });

  test("a range keyspace keeps keys ordered in one shard to start with", async () => {
    const r = await createKs("n2", "events", { sharding: "range" });
    assert.equal(r.status, 201, r.text);
    const d = JSON.parse(r.text) as Described;
    assert.equal(d.shards.length, 1);
    assert.equal(d.shards[0]?.end, "");
    for (const k of ["2026-01-03", "2026-01-01", "2026-01-02"]) await putKey("n3", "events", k, k);
    const l = await c.req("n1", "GET", "/v1/kv/events?prefix=2026-01&limit=10");
    assert.deepEqual(
      (JSON.parse(l.text) as { items: { key: string }[] }).items.map((i) => i.key),
      ["2026-01-01", "2026-01-02", "2026-01-03"],
    );
    const listed = await c.req("n3", "GET", "/v1/keyspaces");
    const names = (JSON.parse(listed.text) as { keyspaces: { name: string }[] }).keyspaces.map(
      (k) => k.name,
    );
    assert.deepEqual(names, ["default", "events", "users"]);
    const one = await c.req("n3", "GET", "/v1/keyspaces/events");
    assert.equal(one.status, 200);
    assert.equal((JSON.parse(one.text) as Described).sharding, "range");
  });

  test("creating again: same settings is a no-op (200), different settings conflict (409)", async () => {
    const same = await createKs("n3", "events", { sharding: "range" });
    assert.equal(same.status, 200, same.text);
    const other = await createKs("n3", "events", { sharding: "hash" });
    assert.equal(other.status, 409, other.text);
    assert.equal(errorBody(other.text)?.code, "KEYSPACE_EXISTS");
    assert.equal((await createKs("n1", "default", {})).status, 409);
  });

  test("bad names and bodies get 400 with a reason; unknown keyspaces 404", async () => {
    for (const [name, spec] of [
      ["Upper", {}],
      ["_system", {}],
      ["x".repeat(41), {}],
      ["ok", { sharding: "zigzag" }],
      ["ok", { replicas: 0 }],
      ["ok", { sharding: "range", shards: 4 }],
      ["ok", { colour: "blue" }],
    ] as const) {
      const r = await createKs("n1", name, spec);
      assert.equal(r.status, 400, `${name} ${JSON.stringify(spec)}: ${r.text}`);
      assert.ok(errorBody(r.text)?.message, r.text);
    }
    const notJson = await c.req("n1", "PUT", "/v1/keyspaces/ok", { body: "{" });
    assert.equal(notJson.status, 400);
    // The keyspace API reads at most 64 KiB of body.
    const huge = await c.req("n1", "PUT", "/v1/keyspaces/ok", {
      body: JSON.stringify({ sharding: "hash", pad: "x".repeat(70 << 10) }),
    });
    assert.equal(huge.status, 413, huge.text);
    assert.ok(errorBody(huge.text)?.code, huge.text);
    assert.equal((await c.req("n1", "GET", "/v1/keyspaces/nope")).status, 404);
    assert.equal((await c.req("n1", "GET", "/v1/kv/nope/k")).status, 404);
    // The system keyspace is not reachable through the KV API.
    assert.equal((await c.req("n1", "GET", "/v1/kv/_meta?limit=10")).status, 404);
    const unauth = await c.req("n1", "GET", "/v1/keyspaces", {
      headers: { authorization: "Bearer nope" },
    });
    assert.equal(unauth.status, 401);
  });

  test("delete only when empty or forced; a new keyspace of the same name starts empty", async () => {
    const nonEmpty = await c.req("n2", "DELETE", "/v1/keyspaces/events");
    assert.equal(nonEmpty.status, 409, nonEmpty.text);
    assert.equal(errorBody(nonEmpty.text)?.code, "KEYSPACE_NOT_EMPTY");
    assert.equal((await c.req("n2", "DELETE", "/v1/keyspaces/default")).status, 409);
    const forced = await c.req("n2", "DELETE", "/v1/keyspaces/events?force=true");
    assert.equal(forced.status, 200, forced.text);
    assert.equal((await c.req("n1", "GET", "/v1/kv/events/2026-01-01")).status, 404);
    assert.equal((await createKs("n1", "events", { sharding: "range" })).status, 201);
    const l = await c.req("n3", "GET", "/v1/kv/events?limit=10");
    assert.equal(l.status, 200, l.text);
    assert.deepEqual((JSON.parse(l.text) as { items: unknown[] }).items, []);
    // An empty keyspace deletes without force.
    assert.equal((await c.req("n3", "DELETE", "/v1/keyspaces/events")).status, 200);
    assert.equal((await c.req("n3", "DELETE", "/v1/keyspaces/events")).status, 404);
  });

  test("a growing hash keyspace splits in hash order; routing and the merged listing follow", async () => {
    assert.equal((await createKs("n2", "accounts", { sharding: "hash", shards: 2 })).status, 201);
    const value = "u".repeat(100);
    const keys = Array.from({ length: 600 }, (_, i) => `acct-${String(i).padStart(4, "0")}`);
    // Eight writers through every node: no write fails while the shards split underneath.
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let i = next++; i < keys.length; i = next++) {
          const node = ["n1", "n2", "n3"][(i + w) % 3] as string;
          await putKey(node, "accounts", keys[i] as string, value);
        }
      }),
    );
    let d: Described | undefined;
    await waitFor(
      async () => {
        d = JSON.parse((await c.req("n1", "GET", "/v1/keyspaces/accounts")).text) as Described;
        return d.shards.length >= 4;
      },
      30_000,
      "the hash keyspace to split into 4+ shards",
    );
    const shards = (d as Described).shards;
    for (let i = 1; i < shards.length; i++) assert.equal(shards[i - 1]?.end, shards[i]?.start);
    // A listing is the scatter-gather over every shard, merged into key order, paged.
    for (const n of ["n1", "n2", "n3"]) {
      const got: string[] = [];
      let after = "";
      for (;;) {
        const q = `limit=128&keys_only=true${after ? `&start_after=${after}` : ""}`;
        const l = await c.req(n, "GET", `/v1/kv/accounts?${q}`);
        assert.equal(l.status, 200, l.text);
        const page = JSON.parse(l.text) as { items: { key: string }[]; next: string | null };
        got.push(...page.items.map((i) => i.key));
        if (!page.next) break;
        after = page.next;
      }
      assert.deepEqual(got, keys, `listing through ${n}`);
    }
    for (const k of [keys[0], keys[300], keys[599]] as string[]) {
      const g = await c.req("n3", "GET", `/v1/kv/accounts/${k}`);
      assert.equal(g.status, 200, `${k}: ${g.text}`);
      assert.equal(g.text, value);
    }
  });

  test("sequential inserts split a range keyspace into shards led by several nodes", async () => {
    assert.equal((await createKs("n1", "series", { sharding: "range" })).status, 201);
    const nodes = ["n1", "n2", "n3"];
    const value = "v".repeat(100);
    const keys = Array.from({ length: 800 }, (_, i) => `t${String(i).padStart(5, "0")}`);
    // Eight writers, each through its own node in turn: every write must succeed while the
    // keyspace splits underneath (stale routes are retried inside the node).
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let i = next++; i < keys.length; i = next++) {
          await putKey(nodes[(i + w) % 3] as string, "series", keys[i] as string, value);
        }
      }),
    );
    let d: Described | undefined;
    await waitFor(
      async () => {
        const r = await c.req("n2", "GET", "/v1/keyspaces/series");
        d = JSON.parse(r.text) as Described;
        return d.shards.length >= 3;
      },
      30_000,
      "the range keyspace to split into 3+ shards",
    );
    const shards = (d as Described).shards;
    // The shards tile the keyspace in order.
    for (let i = 1; i < shards.length; i++) assert.equal(shards[i - 1]?.end, shards[i]?.start);
    assert.equal(shards[shards.length - 1]?.end, "");
    // Every key is where a listing through any node finds it, in order, and point reads agree.
    for (const n of nodes) {
      const l = await c.req(n, "GET", "/v1/kv/series?limit=1000&keys_only=true");
      assert.equal(l.status, 200, l.text);
      const got = (JSON.parse(l.text) as { items: { key: string }[] }).items.map((i) => i.key);
      assert.deepEqual(got, keys, `listing through ${n}`);
    }
    for (const k of [keys[0], keys[399], keys[799]] as string[]) {
      const g = await c.req("n3", "GET", `/v1/kv/series/${k}`);
      assert.equal(g.status, 200, `${k}: ${g.text}`);
      assert.equal(g.text, value);
    }
    // Leadership of the halves spreads over the nodes (the preferred leader rotates per split).
    await waitFor(
      async () => {
        const r = await c.req("n1", "GET", "/v1/keyspaces/series");
        const leaders = new Set((JSON.parse(r.text) as Described).shards.map((s) => s.leader));
        return leaders.size >= 2 && !leaders.has(null);
      },
      20_000,
      "split shards led by 2+ nodes",
    );
  });
});
