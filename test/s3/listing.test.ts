/**
 * Listings with a delimiter, on the object index over a real 3-replica Raft group (one process,
 * memory engines): the replicas roll keys up into common prefixes where they scan them (KV
 * `Rollup`), so a page of N common prefixes is one KV read, not N; results match a model of S3's
 * rules for random key sets, delimiters, prefixes and page sizes, whether the replica is local,
 * remote (the forwarded read) or does not know rollups at all (plain keys, rolled up by the
 * caller); a version's sort id or an upload id after the object key never counts as part of it.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import fc from "fast-check";
import type { KvService, ListRequest } from "../../src/api/kv/service.js";
import {
  ByteBudget,
  CHUNK_INFLIGHT_BYTES_MAX,
  type ChunkPort,
  cmpUtf8,
  INDEX_KEYSPACE,
  newSortId,
  ObjectIndex,
  type ObjectRecord,
} from "../../src/api/s3/objects.js";
import { ShardMap } from "../../src/shard/index.js";
import { type KvCluster, mapOf, startKvCluster } from "../api/_kvcluster.js";

const enc = new TextEncoder();

/** Listings of inline objects never touch chunks. */
const noChunks: ChunkPort = {
  put: async () => ({ ok: false, message: "no chunks in this test" }),
  get: async () => ({ ok: false, code: "NOT_FOUND", message: "no chunks in this test" }),
};

let cluster: KvCluster;
/** KV list requests made through `kvOf` services (each says whether it asked for a rollup). */
const calls: ListRequest[] = [];
/** Common prefixes that came back rolled up by a replica, through `kvOf` services. */
let rolledUp = 0;

/** The service of node `i`, counting its list calls; `plain` drops rollups (an old replica). */
function kvOf(i: number, plain = false): KvService {
  const target = cluster.services[i] as KvService;
  return new Proxy(target, {
    get(t, p) {
      if (p === "list") {
        return (ks: string, req: ListRequest, c: "linearizable" | "stale") => {
          calls.push(req);
          const { rollup: _dropped, ...rest } = req;
          return t.list(ks, plain ? rest : req, c).then((r) => {
            if (r.ok) rolledUp += r.items.filter((i) => i.rolledUp).length;
            return r;
          });
        };
      }
      const v = Reflect.get(t, p);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
}

const indexOf = (kv: KvService) =>
  new ObjectIndex(kv, noChunks, new ByteBudget(CHUNK_INFLIGHT_BYTES_MAX));

let seq = 0;
function record(key: string, versioned = false): ObjectRecord {
  // Sort ids full of zeros, so that a delimiter "0" would find one if it looked past the key.
  const sortId = versioned
    ? `0000${newSortId(Date.now()).slice(4, 12)}0000000${seq++ % 10}`
    : undefined;
  return {
    key,
    versionId: sortId ? `v${sortId}` : "null",
    ...(sortId ? { sortId } : {}),
    size: 1,
    etag: '"x"',
    lastModifiedMs: 1,
    headers: {},
    meta: {},
    inline: "eA==",
  };
}

async function putAll(index: ObjectIndex, bid: string, keys: readonly string[], versioned = false) {
  for (const k of keys) {
    const r = await index.commit(
      bid,
      record(k, versioned),
      versioned ? "Enabled" : undefined,
      () => undefined,
    );
    assert.ok(r.ok, JSON.stringify(r));
  }
}

/** S3's rules, on a sorted set of keys: what a whole walk of `prefix`/`delimiter` lists. */
function model(keys: readonly string[], prefix: string, delimiter: string) {
  const entries: string[] = [];
  const prefixes: string[] = [];
  for (const k of [...new Set(keys)].sort(cmpUtf8)) {
    if (!k.startsWith(prefix)) continue;
    const rest = k.slice(prefix.length);
    const d = delimiter === "" ? -1 : rest.indexOf(delimiter);
    if (d < 0) entries.push(k);
    else {
      const cp = prefix + rest.slice(0, d + delimiter.length);
      if (prefixes[prefixes.length - 1] !== cp) prefixes.push(cp);
    }
  }
  return { entries, prefixes };
}

/** Walks every page (`max` per page), as a client does with continuation tokens. */
async function walk(
  index: ObjectIndex,
  bid: string,
  prefix: string,
  delimiter: string,
  max: number,
) {
  const entries: string[] = [];
  const prefixes: string[] = [];
  let afterKey: string | undefined;
  for (let pages = 0; ; pages++) {
    assert.ok(pages < 1000, "the walk does not end");
    const r = await index.list(bid, { prefix, delimiter, after: afterKey, max });
    assert.ok(r.ok, JSON.stringify(r));
    assert.ok(r.page.entries.length + r.page.prefixes.length <= max, "page over max");
    entries.push(...r.page.entries.map((e) => e.key));
    prefixes.push(...r.page.prefixes);
    if (!r.page.truncated) return { entries, prefixes };
    assert.ok(r.page.last !== undefined, "a truncated page says where it ended");
    afterKey = r.page.last;
  }
}

before(async () => {
  cluster = await startKvCluster(mapOf(1, INDEX_KEYSPACE, "_s3.0"));
  await cluster.createEverywhere("_s3.0");
});

after(async () => {
  await cluster?.stop();
});

test("a page of 1,000 common prefixes is one KV read, not one per prefix", async () => {
  const index = indexOf(kvOf(0));
  const keys: string[] = [];
  for (let i = 0; i < 1000; i++) for (let j = 0; j < 2; j++) keys.push(`k/${i}/${j}`);
  keys.push("k/top", "other");
  await putAll(index, "big", keys);
  calls.length = 0;
  const r = await index.list("big", { prefix: "k/", delimiter: "/", after: undefined, max: 1000 });
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(r.page.prefixes.length, 1000);
  assert.deepEqual(r.page.prefixes, model(keys, "k/", "/").prefixes);
  // "k/top" sorts after every "k/<digits>/": the page is full of prefixes and says so.
  assert.deepEqual(r.page.entries, []);
  assert.ok(r.page.truncated, "k/top is still to come");
  // One read answers the page (two if a shard boundary or the page limit cut it): before the
  // replicas rolled keys up, this page took 1,000 reads.
  assert.ok(calls.length <= 2, `${calls.length} KV reads for one page`);
  assert.ok(calls.every((c) => c.rollup !== undefined));
});

/** Keys over a small alphabet, so that prefixes and delimiters collide often. */
const keyArb = fc
  .array(fc.constantFrom("a", "b", "/", "-", "é"), { minLength: 1, maxLength: 6 })
  .map((cs) => cs.join(""));

let run = 0;
for (const [name, node, forwarded, plain] of [
  ["on the local replica", 0, false, false],
  ["forwarded to a replica elsewhere", 0, true, false],
  ["with replicas that do not roll up (plain keys)", 1, false, true],
] as const) {
  test(`delimiter walks match S3's rules, ${name}`, async () => {
    const svc = cluster.services[node] as KvService;
    if (forwarded) {
      // n1's map places the shard on n2 and n3 only: n1 sends its reads there (JSON over the
      // transport), although it has a replica.
      const start = new Uint8Array([...enc.encode(INDEX_KEYSPACE), 0]);
      svc.setShardMap(
        new ShardMap(2, [
          {
            name: INDEX_KEYSPACE,
            sharding: "range",
            shards: [
              {
                id: "_s3.0",
                keyspace: INDEX_KEYSPACE,
                start,
                end: new Uint8Array(0),
                replicas: ["n2", "n3"],
              },
            ],
          },
        ]),
      );
    }
    try {
      rolledUp = 0;
      const index = indexOf(kvOf(node, plain));
      await fc.assert(
        fc.asyncProperty(
          fc.uniqueArray(keyArb, { minLength: 1, maxLength: 24 }),
          fc.constantFrom("/", "-", "a/", "é"),
          fc.constantFrom("", "a", "a/", "b-", "/"),
          fc.integer({ min: 1, max: 6 }),
          async (keys, delimiter, prefix, max) => {
            const bid = `p${run++}`;
            await putAll(index, bid, keys);
            const want = model(keys, prefix, delimiter);
            const got = await walk(index, bid, prefix, delimiter, max);
            assert.deepEqual(got, want);
          },
        ),
        { numRuns: 12, seed: 42 },
      );
      // The walks above are right either way (the gateway rolls plain keys up itself): what
      // shows the replica did the work, locally or behind a forwarded read, is what came back.
      if (plain) assert.equal(rolledUp, 0);
      else assert.ok(rolledUp > 0, "no common prefix came back rolled up by a replica");
    } finally {
      if (forwarded) svc.setShardMap(mapOf(3, INDEX_KEYSPACE, "_s3.0"));
    }
  });
}

test("a version's sort id and an upload's id are not part of the key a delimiter splits", async () => {
  const index = indexOf(kvOf(0));
  // Sort ids and upload ids are digits and hex: a delimiter "0" must not cut inside them.
  await putAll(index, "ver", ["x", "y0z", "y0w", "q"], true);
  await putAll(index, "ver", ["x"], true);
  const v = await index.listVersions("ver", {
    prefix: "",
    delimiter: "0",
    after: undefined,
    max: 100,
  });
  assert.ok(v.ok, JSON.stringify(v));
  assert.deepEqual(v.prefixes, ["y0"]);
  assert.deepEqual(
    v.entries.map((e) => e.key),
    ["q", "x", "x"],
  );
  for (const key of ["a/1", "a/2", "b", "c0d"]) {
    const up = await index.createUpload("ver", {
      key,
      uploadId: "00000000000000000000000000000000",
      initiatedMs: 1,
      initiator: "test",
      headers: {},
      meta: {},
    });
    assert.ok(up.ok, JSON.stringify(up));
  }
  for (const delimiter of ["/", "0"]) {
    const u = await index.listUploads("ver", { prefix: "", delimiter, after: undefined, max: 100 });
    assert.ok(u.ok, JSON.stringify(u));
    const want = model(["a/1", "a/2", "b", "c0d"], "", delimiter);
    assert.deepEqual(
      { entries: u.uploads.map((x) => x.key), prefixes: u.prefixes },
      want,
      `delimiter ${delimiter}`,
    );
  }
});
