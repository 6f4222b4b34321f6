/**
 * The placement scenario of docs/placement.md on real processes, end to end: 3 nodes hold
 * 20,000 keys in a hash and a range keyspace (the range one, written in key order, splits into
 * several shards); 2 nodes join and get replicas and leaders while a client keeps reading and
 * writing; then one node is killed for good, and after the dead timeout every shard (the
 * metadata group's too) is back to 3 replicas on the survivors, and every key reads back.
 *
 * The client follows the documented retry policy (docs/kv-api.md): an answer of 503 with
 * `Retry-After`, or a connection that fails, is retried with backoff at the next node, up to
 * RETRIES times. A request that still fails is a failure of the test.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type HttpAnswer, TestCluster, waitFor } from "./_cluster.js";

const ARGS = [
  "--tick-ms",
  "20",
  "--election-ticks",
  "10",
  "--shards",
  "2",
  // Small shards, so that 10,000 sequential keys split the range keyspace several times.
  "--split-bytes",
  "131072",
  "--suspect-after",
  "1s",
  "--dead-after",
  "4s",
];
const KEYS_PER_KEYSPACE = 10_000;
const RETRIES = 6;
let c: TestCluster;

before(async () => {
  c = await TestCluster.start({ nodes: 3, args: ARGS });
});

after(async () => {
  await c?.stop();
});

interface View {
  nodes: { id: string; state: string }[];
  shards: {
    id: string;
    keyspace: string;
    replicas: string[];
    voters: string[] | null;
    leader: string | null;
  }[];
}

const retryable = (a: HttpAnswer) => a.status === 0 || (a.status === 503 && a.text.length > 0);

/** One request under the documented retry policy, at live nodes in turn from `first`. */
async function call(
  first: number,
  method: string,
  path: string,
  body?: string,
): Promise<HttpAnswer> {
  let last: HttpAnswer | undefined;
  for (let attempt = 0; attempt <= RETRIES; attempt++) {
    const live = c.alive();
    const node = live[(first + attempt) % live.length];
    if (!node) throw new Error("no live node");
    last = await c.req(node.id, method, path, {
      ...(body !== undefined ? { body } : {}),
      timeoutMs: 10_000,
    });
    if (!retryable(last)) return last;
    await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
  }
  return last as HttpAnswer;
}

const value = (k: string) => `${k}:${"x".repeat(48)}`;
const hashKey = (i: number) => `user-${(i * 7919) % 100_003}-${i}`;
const rangeKey = (i: number) => `t${String(i).padStart(6, "0")}`;

async function load(keyspace: string, keyOf: (i: number) => string): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async (_, w) => {
      for (let i = next++; i < KEYS_PER_KEYSPACE; i = next++) {
        const k = keyOf(i);
        const r = await call(w, "PUT", `/v1/kv/${keyspace}/${k}`, value(k));
        assert.equal(r.status, 200, `PUT ${keyspace}/${k}: ${r.status} ${r.text}`);
      }
    }),
  );
}

/** Every key of a keyspace, listed in pages through `via`. */
async function listAll(via: number, keyspace: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let after: string | null = "";
  while (after !== null) {
    const q: string = after === "" ? "" : `&start_after=${encodeURIComponent(after)}`;
    const r = await call(via, "GET", `/v1/kv/${keyspace}?limit=1000${q}`);
    assert.equal(r.status, 200, r.text);
    const page = JSON.parse(r.text) as {
      items: { key: string; value: string }[];
      next: string | null;
    };
    for (const i of page.items) out.set(i.key, Buffer.from(i.value, "base64").toString());
    after = page.next;
  }
  return out;
}

async function view(id: string): Promise<View> {
  return JSON.parse((await c.req(id, "GET", "/v1/cluster", { timeoutMs: 5_000 })).text) as View;
}

test("20,000 keys: 2 nodes join under load, one dies for good, every shard heals, nothing is lost", async () => {
  for (const [name, spec] of [
    ["h", { sharding: "hash", replicas: 3, shards: 4 }],
    ["r", { sharding: "range", replicas: 3 }],
  ] as const) {
    const r = await c.req("n1", "PUT", `/v1/keyspaces/${name}`, { body: JSON.stringify(spec) });
    assert.equal(r.status, 201, r.text);
  }
  const started = Date.now();
  await Promise.all([load("h", hashKey), load("r", rangeKey)]);
  const loadSecs = (Date.now() - started) / 1000;
  console.log(`# loaded ${2 * KEYS_PER_KEYSPACE} keys in ${loadSecs.toFixed(1)} s`);
  await waitFor(
    async () => (await view("n1")).shards.filter((s) => s.keyspace === "r").length >= 3,
    30_000,
    "the range keyspace to split into 3+ shards",
  );

  // A client reads and writes all along, through every live node in turn.
  let stop = false;
  const failures: string[] = [];
  let ops = 0;
  const client = (async () => {
    for (let i = 0; !stop; i++) {
      const k = `live-${i % 64}`;
      const w = await call(i, "PUT", `/v1/kv/h/${k}`, `v${i}`);
      if (w.status !== 200) failures.push(`PUT ${k}: ${w.status} ${w.text}`);
      const g = await call(i + 1, "GET", `/v1/kv/h/${k}`);
      if (g.status !== 200 || g.text !== `v${i}`)
        failures.push(`GET ${k}: ${g.status} ${g.text} (wrote v${i})`);
      const s = rangeKey(i % KEYS_PER_KEYSPACE);
      const gr = await call(i + 2, "GET", `/v1/kv/r/${s}`);
      if (gr.status !== 200 || gr.text !== value(s)) failures.push(`GET r/${s}: ${gr.status}`);
      ops += 3;
    }
  })();
  try {
    await c.addNode();
    await c.addNode();
    // The joined nodes take replicas and lead shards of the user keyspaces.
    await waitFor(
      async () => {
        const views = await Promise.all(c.ids().map((id) => view(id)));
        const user = (views[0] as View).shards.filter(
          (s) => s.keyspace === "h" || s.keyspace === "r",
        );
        const holds = (id: string) => user.some((s) => s.replicas.includes(id));
        const leads = (id: string) =>
          views.some((v) =>
            v.shards.some((s) => (s.keyspace === "h" || s.keyspace === "r") && s.leader === id),
          );
        return holds("n4") && holds("n5") && (leads("n4") || leads("n5"));
      },
      90_000,
      "n4 and n5 to hold replicas and lead shards",
    );

    // One node dies for good.
    const victim = "n2";
    await c.kill(victim);
    const survivors = ["n1", "n3", "n4", "n5"];
    let pending = "";
    await waitFor(
      async () => {
        const v = await view("n1");
        if (v.nodes.find((n) => n.id === victim)?.state !== "dead") return false;
        // A node knows the leaders of the shards it holds: ask every survivor.
        const led = new Set<string>();
        for (const n of survivors)
          for (const s of (await view(n)).shards) if (s.leader !== null) led.add(s.id);
        const bad = v.shards.filter(
          (s) => s.replicas.length !== 3 || s.replicas.includes(victim) || !led.has(s.id),
        );
        pending = bad.map((s) => `${s.id} [${s.replicas}] leader ${s.leader}`).join("; ");
        return bad.length === 0;
      },
      120_000,
      "every shard re-placed on 3 survivors",
    ).catch((e: Error) => {
      throw new Error(`${e.message}; still pending: ${pending}`);
    });
    // And each shard's Raft configuration (as its leader reports it) matches its placement.
    await waitFor(
      async () => {
        for (const n of survivors) {
          const v = await view(n);
          for (const s of v.shards.filter((x) => x.leader === n)) {
            if (!s.voters || [...s.voters].sort().join() !== [...s.replicas].sort().join())
              return false;
          }
        }
        return true;
      },
      60_000,
      "every shard's voters to match its placement",
    );
  } finally {
    stop = true;
    await client;
  }
  assert.ok(ops > 30, `only ${ops} client operations ran`);
  assert.deepEqual(failures, [], "client requests failed beyond the documented retries");

  // Every key is there, listed through two different survivors.
  for (const [name, keyOf] of [
    ["h", hashKey],
    ["r", rangeKey],
  ] as const) {
    const got = await listAll(name === "h" ? 0 : 1, name);
    for (let i = 0; i < KEYS_PER_KEYSPACE; i++) {
      const k = keyOf(i);
      assert.equal(got.get(k), value(k), `${name}/${k}`);
    }
  }
});
