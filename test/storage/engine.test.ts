/** Runs the StorageEngine contract against both engines (and a stressed LMDB configuration). */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { LmdbEngine, type LmdbEngineOptions, MemoryEngine } from "../../src/storage/index.js";
import { withLmdb } from "./_util.js";
import { type EngineHandle, engineContract } from "./contract.js";

engineContract("MemoryEngine", async (): Promise<EngineHandle> => {
  const engine = new MemoryEngine();
  return { engine, dispose: () => engine.close() };
});

function lmdbFactory(opts: LmdbEngineOptions) {
  return async (): Promise<EngineHandle> => {
    // A dot in the directory name checks that it is not mistaken for a file name.
    const dir = await mkdtemp(join(tmpdir(), "kumo-storage.test-"));
    let engine = await LmdbEngine.open(dir, opts);
    return {
      engine,
      reopen: async () => {
        await engine.close();
        engine = await LmdbEngine.open(dir, opts);
        return engine;
      },
      dispose: async () => {
        await engine.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  };
}

engineContract("LmdbEngine", lmdbFactory({}));
// Tiny buffer bounds: commits start on size and time alone and overlap with reads and writes.
engineContract(
  "LmdbEngine (tiny write buffer)",
  lmdbFactory({ flushBytes: 200, bufferBytesMax: 1000, flushDelayMs: 0 }),
);

describe("LmdbEngine specifics", () => {
  const b = (...bytes: number[]) => new Uint8Array(bytes);

  test("sync:false batches are committed within flushDelayMs, and the buffer empties", () =>
    withLmdb(
      async (engine) => {
        await engine.write([{ op: "put", key: b(1), value: b(1) }], { sync: false });
        await engine.write([{ op: "delRange", start: b(0), end: b(1) }], { sync: false });
        assert.equal(engine.stats().syncs, 0);
        assert.deepEqual(engine.bufferStats().keys, 1);
        assert.deepEqual(engine.bufferStats().tombstones, 1);
        const t0 = Date.now();
        while (engine.stats().syncs === 0) {
          assert.ok(Date.now() - t0 < 2000, "the flush timer never fired");
          await new Promise((r) => setTimeout(r, 5));
        }
        assert.equal(engine.stats().syncs, 1, "both buffered batches share one commit");
        assert.deepEqual(engine.bufferStats(), { bytes: 0, keys: 0, tombstones: 0 });
        assert.deepEqual(engine.get(b(1)), b(1));
      },
      { flushDelayMs: 20 },
    ));

  test("a full write buffer applies backpressure: the write waits for its commit", () =>
    withLmdb(
      async (engine) => {
        const big = new Uint8Array(3000);
        await engine.write([{ op: "put", key: b(1), value: big }], { sync: false });
        assert.equal(engine.stats().syncs, 1, "over bufferBytesMax: resolved only once committed");
        assert.deepEqual(engine.bufferStats(), { bytes: 0, keys: 0, tombstones: 0 });
      },
      { flushBytes: 1000, bufferBytesMax: 2000, flushDelayMs: 60_000 },
    ));

  test("an empty sync batch is a barrier for earlier batches, and costs no sync on its own", () =>
    withLmdb(
      async (engine) => {
        await engine.write([], { sync: true });
        assert.equal(engine.stats().syncs, 0);
        await engine.write([{ op: "put", key: b(1), value: b(1) }], { sync: false });
        await engine.write([], { sync: true });
        // Durable in the write-ahead log; LMDB gets it with the next (timed) commit.
        assert.equal(engine.stats().syncs, 1);
        assert.equal(engine.walStats().syncs, 1);
        assert.equal(engine.bufferStats().keys, 1);
        await engine.flush();
        assert.deepEqual(engine.bufferStats(), { bytes: 0, keys: 0, tombstones: 0 });
        assert.equal(engine.walStats().segments, 0, "segments in LMDB are removed");
      },
      { flushDelayMs: 60_000 },
    ));

  test("sync batches are durable after one WAL round each, without an LMDB commit", () =>
    withLmdb(
      async (engine) => {
        for (let i = 0; i < 5; i++) {
          await engine.write([{ op: "put", key: b(i), value: b(i) }], { sync: true });
        }
        assert.equal(engine.walStats().syncs, 5);
        assert.equal(engine.stats().syncs, 5, "no LMDB commit yet");
        // Concurrent sync batches share rounds (group commit).
        await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            engine.write([{ op: "put", key: b(100, i), value: b(i) }], { sync: true }),
          ),
        );
        assert.ok(engine.walStats().syncs <= 7, `${engine.walStats().syncs} rounds`);
        assert.equal(engine.walStats().segments, 1);
      },
      { flushDelayMs: 60_000 },
    ));

  test("a directory can be open in one engine at a time", () =>
    withLmdb(async (_engine, dir) => {
      await assert.rejects(LmdbEngine.open(dir), /already open/);
      await assert.rejects(LmdbEngine.open(`${dir}/.`), /already open/);
    }));

  test("dataBytes reports the data file size", () =>
    withLmdb(async (engine) => {
      const before = engine.dataBytes();
      assert.ok(before > 0);
      const ops = Array.from({ length: 200 }, (_, i) => ({
        op: "put" as const,
        key: b(i >> 8, i & 0xff),
        value: new Uint8Array(4096),
      }));
      await engine.write(ops, { sync: true });
      assert.ok(engine.dataBytes() >= before + 200 * 4096, `${before} -> ${engine.dataBytes()}`);
    }));
});
