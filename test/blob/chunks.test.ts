/** ChunkStore: durable, verified, content-addressed chunk files on one node's disk. */
import assert from "node:assert/strict";
import { mkdir, readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, test } from "node:test";
import {
  CHUNK_BYTES_MAX,
  ChunkStore,
  hashHex,
  QUARANTINE_DIR,
  sha256,
} from "../../src/blob/index.js";
import { partitionOf } from "../../src/placement/index.js";
import { chunk, corrupt, exists, tempDir } from "./_cluster.js";

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  dirs.length = 0;
});

async function fresh(): Promise<{ dir: string; store: ChunkStore }> {
  const dir = await tempDir();
  dirs.push(dir);
  return { dir, store: await ChunkStore.open(dir) };
}

describe("ChunkStore", () => {
  test("put stores under a two-level fan-out by SHA-256; get returns the bytes", async () => {
    const { dir, store } = await fresh();
    const data = chunk(10_000);
    const hash = sha256(data);
    const hex = hashHex(hash);
    assert.deepEqual(await store.put(hash, data), { ok: true, created: true });
    const path = join(dir, hex.slice(0, 2), hex.slice(2, 4), hex);
    assert.equal(store.pathOf(hash), path);
    assert.deepEqual(await readdir(join(dir, hex.slice(0, 2), hex.slice(2, 4))), [hex]);
    const r = await store.get(hash);
    assert.ok(r.ok);
    assert.ok(r.data.equals(data));
    assert.equal(await store.has(hash), true);
    assert.equal(await store.size(hash), 10_000);
    assert.deepEqual(
      { chunks: store.stats().chunks, bytes: store.stats().bytes },
      { chunks: 1, bytes: 10_000 },
    );
    // Idempotent: the same chunk again is fine and changes nothing.
    assert.deepEqual(await store.put(hash, data), { ok: true, created: false });
    assert.equal(store.stats().chunks, 1);
  });

  test("put refuses data that does not hash to the name, and oversized chunks", async () => {
    const { store } = await fresh();
    const data = chunk(100);
    const wrong = sha256(chunk(100));
    const r = await store.put(wrong, data);
    assert.equal(r.ok ? "ok" : r.code, "HASH_MISMATCH");
    assert.equal(await store.has(wrong), false);
    const big = Buffer.alloc(CHUNK_BYTES_MAX + 1);
    const r2 = await store.put(sha256(big), big);
    assert.equal(r2.ok ? "ok" : r2.code, "TOO_LARGE");
    assert.equal(store.stats().chunks, 0);
  });

  test("get: missing is NOT_FOUND; a corrupt file is quarantined and reported CORRUPT", async () => {
    const { dir, store } = await fresh();
    const data = chunk(4096);
    const hash = sha256(data);
    const missing = await store.get(hash);
    assert.equal(missing.ok ? "ok" : missing.code, "NOT_FOUND");
    await store.put(hash, data);
    await corrupt(store.pathOf(hash), 100);
    const r = await store.get(hash);
    assert.equal(r.ok ? "ok" : r.code, "CORRUPT");
    assert.equal(await exists(store.pathOf(hash)), false, "the corrupt file left the store");
    const q = await readdir(join(dir, QUARANTINE_DIR));
    assert.equal(q.length, 1);
    assert.ok(q[0]?.startsWith(hashHex(hash)));
    assert.equal(store.stats().quarantined, 1);
    assert.equal(store.stats().chunks, 0);
    // A good copy can be written again.
    assert.deepEqual(await store.put(hash, data), { ok: true, created: true });
    assert.ok((await store.get(hash)).ok);
  });

  test("put over a damaged file replaces it (and quarantines the damaged one)", async () => {
    const { store } = await fresh();
    const data = chunk(2048);
    const hash = sha256(data);
    await store.put(hash, data);
    await corrupt(store.pathOf(hash), 7);
    assert.deepEqual(await store.put(hash, data), { ok: true, created: true });
    const r = await store.get(hash);
    assert.ok(r.ok && r.data.equals(data));
    assert.equal(store.stats().quarantined, 1);
  });

  test("open removes stale temp files and counts what is stored", async () => {
    const { dir, store } = await fresh();
    const a = chunk(1000);
    const b = chunk(3000);
    await store.put(sha256(a), a);
    await store.put(sha256(b), b);
    const hex = hashHex(sha256(a));
    const leaf = join(dir, hex.slice(0, 2), hex.slice(2, 4));
    await writeFile(join(leaf, `${hex}.tmp-deadbeef`), "half a chunk");
    await mkdir(join(dir, "ff", "ee"), { recursive: true });
    await writeFile(join(dir, "ff", "ee", `${"f".repeat(64)}.tmp-1`), "x");
    const reopened = await ChunkStore.open(dir);
    assert.equal(reopened.stats().tempFilesRemoved, 2);
    assert.equal(reopened.stats().chunks, 2);
    assert.equal(reopened.stats().bytes, 4000);
    assert.deepEqual(
      (await readdir(leaf)).filter((f) => f.includes(".tmp-")),
      [],
    );
    assert.ok((await readdir(leaf)).includes(hex));
    assert.deepEqual(await readdir(join(dir, "ff", "ee")), []);
  });

  test("list: sorted inventory with sizes and mtimes, by partition, after a cursor", async () => {
    const { store } = await fresh();
    const hexes: string[] = [];
    for (let i = 0; i < 40; i++) {
      const d = chunk(10 + i);
      await store.put(sha256(d), d);
      hexes.push(hashHex(sha256(d)));
    }
    hexes.sort();
    const all = await store.listAll();
    assert.deepEqual(
      all.map((x) => x.hex),
      hexes,
    );
    for (const info of all) {
      assert.equal(info.bytes, (await stat(store.pathOf(info.hash))).size);
      assert.ok(info.mtimeMs > 0);
    }
    for (const partitions of [1, 4, 16, 1024]) {
      const seen: string[] = [];
      for (let p = 0; p < partitions; p++) {
        const part = await store.listAll({ partition: p, partitions });
        for (const x of part) assert.equal(partitionOf(x.hex, partitions), p);
        seen.push(...part.map((x) => x.hex));
      }
      assert.deepEqual(seen, hexes, `partitions ${partitions}`);
    }
    const cursor = hexes[20] as string;
    const rest: string[] = [];
    for await (const h of store.hashes({ after: cursor })) rest.push(h);
    assert.deepEqual(rest, hexes.slice(21));
  });

  test("delete: olderThanMs keeps a young file; a re-put refreshes an old file's mtime", async () => {
    const { store } = await fresh();
    const data = chunk(500);
    const hash = sha256(data);
    await store.put(hash, data);
    const hourAgoS = (Date.now() - 3_600_000) / 1000;
    const cutoff = Date.now() - 60_000;
    assert.deepEqual(await store.delete(hash, { olderThanMs: cutoff }), {
      ok: true,
      outcome: "YOUNG",
    });
    await utimes(store.pathOf(hash), hourAgoS, hourAgoS);
    // A writer puts the same content again: it must be protected from collection from now on.
    await store.put(hash, data);
    assert.ok((await stat(store.pathOf(hash))).mtimeMs > cutoff);
    assert.equal((await store.delete(hash, { olderThanMs: cutoff })).ok, true);
    assert.equal(await store.has(hash), true);
    // A repair copy (mtimeMs given) keeps the source's age and does not touch existing files.
    await utimes(store.pathOf(hash), hourAgoS, hourAgoS);
    await store.put(hash, data, { mtimeMs: 0 });
    assert.ok((await stat(store.pathOf(hash))).mtimeMs < cutoff);
    assert.deepEqual(await store.delete(hash, { olderThanMs: cutoff }), {
      ok: true,
      outcome: "DELETED",
    });
    assert.deepEqual(await store.delete(hash), { ok: true, outcome: "MISSING" });
    assert.equal(store.stats().chunks, 0);
    assert.equal(store.stats().bytes, 0);
  });
});
