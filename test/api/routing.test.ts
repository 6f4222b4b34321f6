/**
 * Routing of KV requests when the shard map and the replicas disagree for a moment, on three
 * real multi-Raft hosts in one process (memory engines, memory network): a keyspace deleted and
 * created again under the same name while a node still routes by the old map, and a keyspace
 * whose replicas are not created yet when the first request names it. Both must answer from the
 * current shards within the request deadline, never "unavailable".
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { KvService } from "../../src/api/kv/service.js";
import {
  type Host,
  type KvCluster,
  mapOf as mapIn,
  NODE_IDS,
  startKvCluster,
} from "./_kvcluster.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const mapOf = (version: number, shardId: string) => mapIn(version, "ks", shardId);
let cluster: KvCluster;
let services: KvService[];
const createEverywhere = (shardId: string) => cluster.createEverywhere(shardId);

before(async () => {
  cluster = await startKvCluster(mapOf(1, "ks.a.0"));
  services = cluster.services;
  await createEverywhere("ks.a.0");
});

after(async () => {
  await cluster?.stop();
});

test("a node routing by the map of a deleted keyspace follows the one of the same name created since", async () => {
  const [kv1, , kv3] = services as [KvService, KvService, KvService];
  const w = await kv1.put("ks", enc.encode("old"), enc.encode("1"), { kind: "none" });
  assert.ok(w.ok, JSON.stringify(w));
  // The keyspace goes (every replica of its shard is dropped) and comes back as shard ks.b.0.
  // n1 and n2 know; n3 still routes by the old map until it asks (its resolver).
  for (const h of cluster.hosts) h.removeGroup("ks.a.0");
  await createEverywhere("ks.b.0");
  services[0]?.setShardMap(mapOf(2, "ks.b.0"));
  services[1]?.setShardMap(mapOf(2, "ks.b.0"));
  let resolved = 0;
  kv3.setKeyspaceResolver(async () => {
    resolved++;
    kv3.setShardMap(mapOf(2, "ks.b.0"));
  });
  for (const consistency of ["linearizable", "stale"] as const) {
    kv3.setShardMap(mapOf(1, "ks.a.0"));
    const l = await kv3.list(
      "ks",
      { prefix: new Uint8Array(0), startAfter: undefined, limit: 10 },
      consistency,
    );
    assert.ok(l.ok, `${consistency}: ${JSON.stringify(l)}`);
    assert.deepEqual(l.items, [], consistency); // the new keyspace starts empty
  }
  assert.ok(resolved >= 2, "n3 refreshed its map");
  const g = await kv3.get("ks", enc.encode("old"), "linearizable");
  assert.ok(g.ok && g.item === undefined, JSON.stringify(g));
});

test("a request for a keyspace whose replicas are still being created waits for them", async () => {
  const kv3 = services[2] as KvService;
  for (const kv of services) kv.setShardMap(mapOf(3, "ks.c.0"));
  // Asking the metadata group again changes nothing: the map is already the newest.
  kv3.setKeyspaceResolver(async () => kv3.setShardMap(mapOf(3, "ks.c.0")));
  // The replicas appear a moment after the map names them (nodes refresh at their own pace).
  const creating = new Promise<void>((resolve) =>
    setTimeout(() => void createEverywhere("ks.c.0").then(resolve), 300),
  );
  const [l, w] = await Promise.all([
    kv3.list("ks", { prefix: new Uint8Array(0), startAfter: undefined, limit: 10 }, "linearizable"),
    kv3.put("ks", enc.encode("k"), enc.encode("v"), { kind: "none" }),
  ]);
  await creating;
  assert.ok(l.ok, JSON.stringify(l));
  assert.ok(w.ok, JSON.stringify(w));
  const g = await kv3.get("ks", enc.encode("k"), "linearizable");
  assert.ok(g.ok && g.item !== undefined && dec.decode(g.item.value) === "v", JSON.stringify(g));
});

test("read counters exist only for the shards a node still holds", async () => {
  const kv1 = services[0] as KvService;
  kv1.setShardMap(mapOf(4, "ks.c.0"));
  const g = await kv1.get("ks", enc.encode("k"), "linearizable");
  assert.ok(g.ok, JSON.stringify(g));
  assert.ok(kv1.readsOf("ks.c.0") > 0);
  kv1.forgetReadsExcept(new Set(["ks.c.0"]));
  assert.ok(kv1.readsOf("ks.c.0") > 0, "a hosted shard keeps its counter");
  kv1.forgetReadsExcept(new Set());
  assert.equal(kv1.readsOf("ks.c.0"), 0);
});

test("a write through a node whose replica the group removed, still in the map, reaches the leader", async () => {
  // A replica being moved away: the group has applied its removal, the map (written after the
  // move) still lists it. Its forwards are refused by the leader; the write must go to the
  // leader directly and succeed, not wait for a leader this replica will never hear from.
  await createEverywhere("ks.d.0");
  for (const kv of services) {
    kv.setShardMap(mapOf(5, "ks.d.0"));
    kv.setKeyspaceResolver(async () => kv.setShardMap(mapOf(5, "ks.d.0")));
  }
  const first = await (services[0] as KvService).put("ks", enc.encode("m"), enc.encode("0"), {
    kind: "none",
  });
  assert.ok(first.ok, JSON.stringify(first));
  const lead = cluster.hosts.findIndex((h) => h.status("ks.d.0")?.role === "leader");
  assert.ok(lead >= 0, "the group has a leader");
  const gone = (lead + 1) % 3; // any other node: its replica is the one moved away
  const [hostL, kvL, kvGone] = [cluster.hosts[lead], services[lead], services[gone]] as [
    Host,
    KvService,
    KvService,
  ];
  const goneId = NODE_IDS[gone] as string;
  const cc = hostL.proposeConfChange("ks.d.0", { changes: [{ type: "removeNode", node: goneId }] });
  assert.ok(cc.ok, JSON.stringify(cc));
  for (let i = 0; hostL.status("ks.d.0")?.voters.includes(goneId); i++) {
    assert.ok(i < 500, "the removal applies on the leader");
    await new Promise((r) => setTimeout(r, 10));
  }
  const w = await kvGone.put("ks", enc.encode("m"), enc.encode("1"), { kind: "none" });
  assert.ok(w.ok, JSON.stringify(w));
  const g = await kvL.get("ks", enc.encode("m"), "linearizable");
  assert.ok(g.ok && g.item !== undefined && dec.decode(g.item.value) === "1", JSON.stringify(g));
  // A linearizable read through that node too: its replica will never apply the leader's newest
  // entries, so the leader refuses to confirm the read there and serves it itself.
  const w2 = await kvL.put("ks", enc.encode("m"), enc.encode("2"), { kind: "none" });
  assert.ok(w2.ok, JSON.stringify(w2));
  const g2 = await kvGone.get("ks", enc.encode("m"), "linearizable");
  assert.ok(
    g2.ok && g2.item !== undefined && dec.decode(g2.item.value) === "2",
    JSON.stringify(g2),
  );
});
