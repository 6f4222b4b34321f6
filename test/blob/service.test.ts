/**
 * BlobService on an in-process cluster (a, b, c own every partition; d is a gateway that owns
 * nothing): quorum writes, verified reads with failover, coalescing and the cache, and the
 * repair loops (resync, scrub, anti-entropy, offload, GC) driven by direct calls.
 */
import assert from "node:assert/strict";
import { unlink, utimes } from "node:fs/promises";
import { afterEach, describe, test } from "node:test";
import {
  BLOB_GET,
  BLOB_INVENTORY,
  CACHE_ENTRY_OVERHEAD_BYTES,
  hashHex,
  sha256,
} from "../../src/blob/index.js";
import { NoHandlerError } from "../../src/transport/index.js";
import { BlobCluster, chunk, corrupt, eventually, exists } from "./_cluster.js";

let cluster: BlobCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

async function start(options: Parameters<typeof BlobCluster.create>[1] = {}) {
  cluster = await BlobCluster.create(["a", "b", "c", "d"], options);
  return cluster;
}

/** Puts through `via` and waits until every owner holds the chunk. */
async function putEverywhere(c: BlobCluster, data: Buffer, via = "a"): Promise<Buffer> {
  const r = await c.node(via).svc.putChunk(data);
  assert.ok(r.ok, r.ok ? "" : r.message);
  const hash = r.hash;
  for (const id of c.ownersOf(hash)) {
    await eventually(async () => (await c.fileOf(id, hash)) !== undefined, `${id} has the chunk`);
  }
  return hash;
}

const TEN_MINUTES = 600_000;

describe("BlobService: quorum writes", () => {
  test("W=2 of 3: one owner down still succeeds; the missing replica is queued", async () => {
    const c = await start();
    c.faults.isolate("c");
    const data = chunk(50_000);
    const r = await c.node("a").svc.putChunk(data);
    assert.ok(r.ok, r.ok ? "" : r.message);
    assert.ok(r.hash.equals(sha256(data)));
    assert.deepEqual([...r.stored].sort(), ["a", "b"]);
    assert.ok((await c.fileOf("a", r.hash))?.equals(data));
    assert.ok((await c.fileOf("b", r.hash))?.equals(data));
    assert.equal(await c.fileOf("c", r.hash), undefined);
    await eventually(() => c.node("a").svc.resyncPending(r.hash, "c"), "(hash, c) queued");
    assert.equal(c.node("a").svc.stats().resyncQueueLength, 1);
  });

  test("a per-call write quorum: W=3 fails with an owner down, W=1 succeeds with two down", async () => {
    const c = await start();
    c.faults.isolate("c");
    const strict = await c.node("a").svc.putChunk(chunk(1000), { writeQuorum: 3 });
    assert.equal(strict.ok ? "ok" : strict.code, "QUORUM_FAILED");
    c.faults.isolate("b");
    const lax = await c.node("a").svc.putChunk(chunk(1000), { writeQuorum: 1 });
    assert.ok(lax.ok);
    assert.deepEqual([...lax.stored], ["a"]);
  });

  test("a gateway that owns nothing writes to the owners", async () => {
    const c = await start();
    c.faults.isolate("b");
    const r = await c.node("d").svc.putChunk(chunk(1000));
    assert.ok(r.ok);
    assert.deepEqual([...r.stored].sort(), ["a", "c"]);
    assert.equal(await c.fileOf("d", r.hash), undefined);
  });

  test("two owners down: QUORUM_FAILED, and nothing is queued for repair", async () => {
    const c = await start();
    c.faults.isolate("b");
    c.faults.isolate("c");
    const r = await c.node("a").svc.putChunk(chunk(1000));
    assert.equal(r.ok, false);
    assert.equal(r.ok ? "" : r.code, "QUORUM_FAILED");
    await new Promise((res) => setTimeout(res, 20));
    assert.equal(c.node("a").svc.stats().resyncQueueLength, 0);
    assert.equal(c.node("a").svc.stats().putFailed, 1);
  });

  test("resolves on W acknowledgements without waiting for a slow owner", async () => {
    const c = await start();
    c.faults.delay("a", "c", 600);
    const data = chunk(20_000);
    const t0 = Date.now();
    const r = await c.node("a").svc.putChunk(data);
    const elapsed = Date.now() - t0;
    assert.ok(r.ok);
    assert.ok(elapsed < 400, `took ${elapsed} ms`);
    assert.equal(await c.fileOf("c", r.hash), undefined, "c's write is still on the wire");
    await eventually(async () => (await c.fileOf("c", r.hash))?.equals(data) === true, "c has it");
  });
});

describe("BlobService: reads", () => {
  test("an owner reads locally; unknown chunks are NOT_FOUND, or UNAVAILABLE if a node is down", async () => {
    const c = await start();
    const data = chunk(3000);
    const hash = await putEverywhere(c, data);
    const before = c.served(BLOB_GET);
    const r = await c.node("a").svc.getChunk(hash);
    assert.ok(r.ok && Buffer.from(r.data).equals(data));
    assert.equal(c.served(BLOB_GET), before, "no remote fetch");
    const nothing = sha256(chunk(10));
    const r2 = await c.node("d").svc.getChunk(nothing);
    assert.equal(r2.ok ? "ok" : r2.code, "NOT_FOUND");
    c.faults.isolate("c");
    const r3 = await c.node("d").svc.getChunk(sha256(chunk(10)));
    assert.equal(r3.ok ? "ok" : r3.code, "UNAVAILABLE");
  });

  test("a node that knows no ring yet answers UNAVAILABLE for a chunk it lacks, never NOT_FOUND", async () => {
    const c = await start();
    const hash = await putEverywhere(c, chunk(2000));
    c.view = undefined as unknown as typeof c.view; // as on a node that just started
    const r = await c.node("d").svc.getChunk(hash);
    assert.equal(r.ok ? "ok" : r.code, "UNAVAILABLE");
  });

  test("an owner's corrupt local file: quarantined, served from a peer, repaired locally", async () => {
    const c = await start();
    const data = chunk(40_000);
    const hash = await putEverywhere(c, data);
    await corrupt(c.node("a").store.pathOf(hash), 1234);
    const r = await c.node("a").svc.getChunk(hash);
    assert.ok(r.ok && Buffer.from(r.data).equals(data));
    assert.equal((await c.quarantined("a")).length, 1);
    assert.ok(c.node("a").svc.stats().corruptFound >= 1);
    await eventually(
      async () => (await c.fileOf("a", hash))?.equals(data) === true,
      "a's copy is good again (read repair)",
    );
  });

  test("a gateway fails over when the first owner's copy is corrupt; resync repairs it", async () => {
    const c = await start();
    const data = chunk(40_000);
    const hash = await putEverywhere(c, data);
    const first = c.ownersOf(hash)[0] as string;
    await corrupt(c.node(first).store.pathOf(hash), 5);
    const d = c.node("d").svc;
    const r = await d.getChunk(hash);
    assert.ok(r.ok && Buffer.from(r.data).equals(data));
    assert.equal((await c.quarantined(first)).length, 1, "the corrupt file was quarantined");
    assert.equal(await c.fileOf(first, hash), undefined);
    assert.ok(d.resyncPending(hash, first), "the corrupt replica is queued for repair");
    const rep = await d.runResync();
    assert.equal(rep.done, 1);
    assert.ok((await c.fileOf(first, hash))?.equals(data));
  });

  test("a gateway skips an unreachable first owner instead of waiting on it", async () => {
    const c = await start();
    const data = chunk(10_000);
    const hash = await putEverywhere(c, data);
    const first = c.ownersOf(hash)[0] as string;
    c.faults.isolate(first);
    const d = c.node("d").svc;
    const r = await d.getChunk(hash);
    assert.ok(r.ok && Buffer.from(r.data).equals(data));
    assert.equal(d.stats().remoteFetches, 1, "asked only a reachable owner");
  });

  test("coalescing: 20 concurrent gets of a cold chunk on a non-owner make 1 remote fetch", async () => {
    const c = await start();
    const data = chunk(100_000);
    const hash = await putEverywhere(c, data);
    const before = c.served(BLOB_GET);
    const d = c.node("d").svc;
    const results = await Promise.all(Array.from({ length: 20 }, () => d.getChunk(hash)));
    for (const r of results) assert.ok(r.ok && Buffer.from(r.data).equals(data));
    assert.equal(c.served(BLOB_GET) - before, 1);
    assert.equal(d.stats().coalesced, 19);
    assert.equal(d.stats().remoteFetches, 1);
    // Now hot: served from the cache.
    const again = await d.getChunk(hash);
    assert.ok(again.ok);
    assert.equal(c.served(BLOB_GET) - before, 1);
    assert.equal(d.stats().cacheHits, 1);
  });

  test("the hot-chunk cache stays within its byte bound and evicts least recently used", async () => {
    const size = 64 * 1024;
    const cacheBytesMax = 3 * (size + CACHE_ENTRY_OVERHEAD_BYTES) + 100;
    const c = await start({ svc: { cacheBytesMax } });
    const hashes: Buffer[] = [];
    for (let i = 0; i < 5; i++) hashes.push(await putEverywhere(c, chunk(size)));
    const d = c.node("d").svc;
    for (const h of hashes) {
      assert.ok((await d.getChunk(h)).ok);
      assert.ok(d.stats().cacheBytes <= cacheBytesMax, `${d.stats().cacheBytes} bytes cached`);
    }
    assert.equal(d.stats().cacheEvictions, 2);
    let before = c.served(BLOB_GET);
    assert.ok((await d.getChunk(hashes[4] as Buffer)).ok);
    assert.equal(c.served(BLOB_GET), before, "the most recent chunk is cached");
    before = c.served(BLOB_GET);
    assert.ok((await d.getChunk(hashes[0] as Buffer)).ok);
    assert.equal(c.served(BLOB_GET), before + 1, "the oldest was evicted");
    assert.ok(d.stats().cacheBytes <= cacheBytesMax);
  });
});

describe("BlobService: repair", () => {
  test("resync brings a down owner's copy back after it returns (with backoff)", async () => {
    const c = await start();
    c.faults.isolate("c");
    const data = chunk(30_000);
    const r = await c.node("a").svc.putChunk(data);
    assert.ok(r.ok);
    const a = c.node("a").svc;
    await eventually(() => a.resyncPending(r.hash, "c"), "queued");
    const down = await a.runResync();
    assert.deepEqual(down, { attempted: 1, done: 0, failed: 1 });
    c.faults.heal();
    assert.equal((await a.runResync()).attempted, 0, "still backing off");
    c.clockMs += TEN_MINUTES;
    assert.deepEqual(await a.runResync(), { attempted: 1, done: 1, failed: 0 });
    assert.ok((await c.fileOf("c", r.hash))?.equals(data));
    assert.equal(a.stats().resyncQueueLength, 0);
    assert.equal(a.stats().repaired, 1);
  });

  test("the scrubber finds a corrupt file and repairs it from a peer", async () => {
    const c = await start();
    const data = chunk(64 * 1024);
    const others = [chunk(1000), chunk(2000)];
    const hash = await putEverywhere(c, data);
    for (const o of others) await putEverywhere(c, o);
    const path = c.node("b").store.pathOf(hash);
    await corrupt(path, 999);
    const r = await c.node("b").svc.scrubStep(1 << 30);
    assert.equal(r.chunks, 3);
    assert.equal(r.corrupt, 1);
    assert.equal(r.repaired, 1);
    assert.equal(r.wrapped, true);
    assert.ok((await c.fileOf("b", hash))?.equals(data), "the file's bytes are right again");
    assert.equal((await c.quarantined("b")).length, 1);
    const s = c.node("b").svc.stats();
    assert.equal(s.corruptFound, 1);
    assert.equal(s.scrubbed, 3);
  });

  test("the scrubber keeps to its budget and resumes where it stopped", async () => {
    const c = await start();
    for (let i = 0; i < 4; i++) await putEverywhere(c, chunk(10_000));
    const b = c.node("b").svc;
    const steps = [];
    for (let i = 0; i < 4; i++) steps.push(await b.scrubStep(1));
    assert.deepEqual(
      steps.map((s) => [s.chunks, s.wrapped]),
      [
        [1, false],
        [1, false],
        [1, false],
        [1, true],
      ],
    );
    assert.equal((await b.scrubStep(1 << 30)).chunks, 4, "starts over after wrapping");
  });

  test("anti-entropy: equal digests exchange nothing; a deleted file is restored", async () => {
    const c = await start();
    const datas = [chunk(5000), chunk(6000), chunk(7000), chunk(8000)];
    const hashes: Buffer[] = [];
    for (const d of datas) hashes.push(await putEverywhere(c, d));
    const a = c.node("a").svc;
    const before = c.served(BLOB_INVENTORY);
    const quiet = await a.antiEntropyRound();
    assert.equal(quiet.partitions, 4);
    assert.equal(quiet.compared, 8);
    assert.equal(quiet.differing, 0);
    assert.equal(quiet.enqueued, 0);
    assert.equal(c.served(BLOB_INVENTORY) - before, 2, "one digest call per peer, no lists");
    // Lose a file on c (a push from a is needed) and one on a (a pulls it).
    const lostOnC = hashes[1] as Buffer;
    const lostOnA = hashes[2] as Buffer;
    await unlink(c.node("c").store.pathOf(lostOnC));
    await unlink(c.node("a").store.pathOf(lostOnA));
    const round = await a.antiEntropyRound();
    assert.ok(round.differing >= 2, `differing ${round.differing}`);
    assert.ok(a.resyncPending(lostOnC, "c"));
    assert.ok(a.resyncPending(lostOnA, "a"));
    const rep = await a.runResync();
    assert.equal(rep.failed, 0);
    assert.ok((await c.fileOf("c", lostOnC))?.equals(datas[1] as Buffer));
    assert.ok((await c.fileOf("a", lostOnA))?.equals(datas[2] as Buffer));
    const after = await a.antiEntropyRound();
    assert.equal(after.differing, 0);
  });

  test("anti-entropy walks paged lists in order and finds every difference", async () => {
    const c = await start({ ring: [["a", "b", "c"]], svc: { inventoryPageHashes: 2 } });
    const hashes: Buffer[] = [];
    for (let i = 0; i < 12; i++) hashes.push(await putEverywhere(c, chunk(100 + i)));
    hashes.sort(Buffer.compare);
    const lostOnC = [hashes[0], hashes[5], hashes[11]] as Buffer[];
    const lostOnA = [hashes[3], hashes[4]] as Buffer[];
    for (const h of lostOnC) await unlink(c.node("c").store.pathOf(h));
    for (const h of lostOnA) await unlink(c.node("a").store.pathOf(h));
    // A chunk only c has (a write that reached c alone).
    const onlyOnC = chunk(77);
    await c.node("c").store.put(sha256(onlyOnC), onlyOnC);
    const a = c.node("a").svc;
    const round = await a.antiEntropyRound();
    // a vs c: 3 to push, 2 + 1 to pull; a vs b: 2 to pull (already queued once: dedup).
    assert.equal(round.differing, 2);
    assert.equal(a.stats().resyncQueueLength, 6);
    for (const h of lostOnC) assert.ok(a.resyncPending(h, "c"));
    for (const h of [...lostOnA, sha256(onlyOnC)]) assert.ok(a.resyncPending(h, "a"));
    assert.equal((await a.runResync()).done, 6);
    for (const h of lostOnC) assert.ok(await exists(c.node("c").store.pathOf(h)));
    for (const h of lostOnA) assert.ok(await exists(c.node("a").store.pathOf(h)));
    assert.ok(await exists(c.node("a").store.pathOf(sha256(onlyOnC))));
    const again = await a.antiEntropyRound();
    assert.equal(again.differing, 1, "b still lacks the chunk only c had");
    assert.ok(a.resyncPending(sha256(onlyOnC), "b"));
  });

  test("startBackground runs the loops on timers; stop ends them", async () => {
    const c = await start();
    const data = chunk(8000);
    const hash = await putEverywhere(c, data);
    await corrupt(c.node("b").store.pathOf(hash), 3);
    const b = c.node("b").svc;
    b.startBackground({ scrubBytesPerSec: 1 << 30, scrubIntervalMs: 10, resyncIntervalMs: 10 });
    await eventually(
      async () => (await c.fileOf("b", hash))?.equals(data) === true,
      "the scrubber repaired b's copy",
    );
    await b.stop();
    const scrubbed = b.stats().scrubbed;
    await new Promise((res) => setTimeout(res, 50));
    assert.equal(b.stats().scrubbed, scrubbed, "no more scrubbing after stop");
  });

  test("ring change: offload moves chunks to the new owner, then removes them", async () => {
    const c = await start();
    const datas = [chunk(1000), chunk(2000), chunk(3000), chunk(4000), chunk(5000)];
    const hashes: Buffer[] = [];
    for (const d of datas) hashes.push(await putEverywhere(c, d));
    // d replaces c everywhere.
    c.view = {
      partitions: c.view.partitions,
      ring: c.view.ring.map((owners) => owners.map((o) => (o === "c" ? "d" : o))),
    };
    const cs = c.node("c").svc;
    // While the new owner is unreachable, nothing is deleted.
    c.faults.isolate("d");
    const blocked = await cs.antiEntropyRound();
    assert.equal(blocked.partitions, 0);
    assert.equal(blocked.offloaded, 0);
    assert.equal(blocked.offloadPending, 5);
    for (const h of hashes) assert.ok(await exists(c.node("c").store.pathOf(h)));
    c.faults.heal();
    const moved = await cs.antiEntropyRound();
    assert.equal(moved.offloaded, 5);
    for (const [i, h] of hashes.entries()) {
      assert.ok((await c.fileOf("d", h))?.equals(datas[i] as Buffer), "d has it");
      assert.equal(await c.fileOf("c", h), undefined, "c let it go");
      assert.ok(await exists(c.node("a").store.pathOf(h)));
      assert.ok(await exists(c.node("b").store.pathOf(h)));
    }
    assert.equal(c.node("c").store.stats().chunks, 0);
    // d's data is still readable from anywhere.
    const r = await c.node("c").svc.getChunk(hashes[0] as Buffer);
    assert.ok(r.ok);
  });

  test("GC deletes only old unreferenced chunks; young, referenced and unknown are kept", async () => {
    const c = await start();
    const a = c.node("a");
    const kinds = ["young", "referenced", "unreferenced", "unknown", "throws", "reput"] as const;
    const byHex = new Map<string, (typeof kinds)[number]>();
    const hashes = new Map<(typeof kinds)[number], Buffer>();
    const datas = new Map<(typeof kinds)[number], Buffer>();
    const nowMs = Date.now();
    const oldS = (nowMs - 2 * 3_600_000) / 1000;
    for (const k of kinds) {
      const data = chunk(1000);
      const hash = sha256(data);
      assert.ok((await a.store.put(hash, data)).ok);
      byHex.set(hashHex(hash), k);
      hashes.set(k, hash);
      datas.set(k, data);
      if (k !== "young") await utimes(a.store.pathOf(hash), oldS, oldS);
    }
    // A writer stores "reput" again just before the round (a new object with the same bytes).
    await a.store.put(hashes.get("reput") as Buffer, datas.get("reput") as Buffer);
    const asked: string[] = [];
    const isReferenced = async (hash: Uint8Array): Promise<boolean | undefined> => {
      const k = byHex.get(hashHex(hash));
      asked.push(k ?? "?");
      if (k === "referenced") return true;
      if (k === "unknown") return undefined;
      if (k === "throws") throw new Error("index unreachable");
      return false;
    };
    const r = await a.svc.gcRound(isReferenced, 3_600_000, Date.now());
    assert.equal(r.deleted, 1);
    assert.equal(r.young, 2);
    assert.deepEqual(asked.sort(), ["referenced", "throws", "unknown", "unreferenced"]);
    for (const k of kinds) {
      assert.equal(
        await exists(a.store.pathOf(hashes.get(k) as Buffer)),
        k !== "unreferenced",
        `${k} ${k === "unreferenced" ? "deleted" : "kept"}`,
      );
    }
    assert.equal(a.svc.stats().gcDeleted, 1);
  });
});

describe("BlobService: the wire", () => {
  test("handleCall serves blob.* only; unknown blob methods and malformed bodies are refused", async () => {
    const c = await start();
    const svc = c.node("a").svc;
    assert.equal(svc.handleCall("x", "kv.get", new Uint8Array()), undefined);
    await assert.rejects(
      svc.handleCall("x", "blob.nope", new Uint8Array()) as Promise<Uint8Array>,
      NoHandlerError,
    );
    const bad = await (svc.handleCall("x", BLOB_GET, new Uint8Array(5)) as Promise<Uint8Array>);
    assert.equal(bad[0], 7, "BAD_REQUEST");
    const r = await c.node("d").t.call("a", "blob.has", new Uint8Array(33), 1000);
    assert.ok(r.ok && r.body[0] === 7);
  });
});
