/**
 * The LMDB engine's write-ahead log: the record codec (every truncation and corruption decodes
 * to an intact prefix), and recovery after kill -9 with everything durable only in the log:
 * complete replay, a torn tail, a corrupt record, and a stale segment LMDB already holds.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFile, readdir, readFile, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import {
  compareBytes,
  decodeU64,
  LmdbEngine,
  strBytes,
  type WriteOp,
} from "../../src/storage/index.js";
import { decodeSegment, encodeRecord } from "../../src/storage/wal.js";
import { removeDir, tempDir } from "./_util.js";
import { batchKey, batchValue, KEYS_PER_BATCH } from "./crash_child.js";

const CHILD = fileURLToPath(new URL("./crash_child.js", import.meta.url));

// Spread into plain objects: fc.record builds null-prototype ones, which deepEqual tells apart.
const op: fc.Arbitrary<WriteOp> = fc
  .oneof(
    fc.record({
      op: fc.constant("put" as const),
      key: fc.uint8Array({ minLength: 1, maxLength: 20 }),
      value: fc.uint8Array({ maxLength: 300 }),
    }),
    fc.record({
      op: fc.constant("del" as const),
      key: fc.uint8Array({ minLength: 1, maxLength: 20 }),
    }),
    fc.record({
      op: fc.constant("delRange" as const),
      start: fc.uint8Array({ maxLength: 8 }),
      end: fc.uint8Array({ maxLength: 8 }),
    }),
  )
  .map((o): WriteOp => ({ ...o }));
const batches = fc.array(fc.array(op, { minLength: 1, maxLength: 6 }), {
  minLength: 1,
  maxLength: 8,
});

function segmentOf(bs: WriteOp[][]): Buffer {
  return Buffer.concat(bs.map((ops) => encodeRecord(ops)));
}

describe("WAL records", () => {
  test("round trip", () =>
    fc.assert(
      fc.property(batches, (bs) => {
        const d = decodeSegment(segmentOf(bs));
        assert.deepEqual(d.batches, bs);
      }),
    ));

  test("every truncation decodes to the intact records before the cut", () =>
    fc.assert(
      fc.property(batches, fc.nat(), (bs, cutSeed) => {
        const buf = segmentOf(bs);
        const cut = cutSeed % (buf.length + 1);
        const d = decodeSegment(buf.subarray(0, cut));
        // Exactly the records that end at or before the cut.
        let end = 0;
        let whole = 0;
        for (const ops of bs) {
          end += encodeRecord(ops).length;
          if (end <= cut) whole++;
        }
        assert.deepEqual(d.batches, bs.slice(0, whole));
      }),
    ));

  test("a flipped byte ends the log at the record holding it, never yields garbage", () =>
    fc.assert(
      fc.property(batches, fc.nat(), fc.integer({ min: 1, max: 255 }), (bs, at, x) => {
        const buf = Buffer.from(segmentOf(bs));
        const i = at % buf.length;
        buf[i] = (buf[i] as number) ^ x;
        const d = decodeSegment(buf);
        let end = 0;
        let before = 0;
        for (const ops of bs) {
          end += encodeRecord(ops).length;
          if (end <= i) before++;
        }
        assert.deepEqual(d.batches, bs.slice(0, before));
      }),
    ));
});

/** Runs the child to write `count` sync batches (LMDB commits off), then kills it with SIGKILL. */
function writeAndKill(dir: string, count: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dir, String(count)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    const guard = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (s: string) => {
      if (s.includes("done")) child.kill("SIGKILL");
    });
    child.stderr.on("data", (d) => {
      err += d;
    });
    child.on("error", reject);
    child.on("exit", (_code, signal) => {
      clearTimeout(guard);
      if (signal === "SIGKILL" && err === "") resolve();
      else reject(new Error(`child: ${signal} ${err}`));
    });
  });
}

async function onlySegment(dir: string): Promise<string> {
  const names = (await readdir(join(dir, "wal"))).filter((n) => n.endsWith(".log"));
  assert.equal(names.length, 1, `segments: ${names}`);
  return join(dir, "wal", names[0] as string);
}

/** Opens the store and checks that exactly batches 1..n are present, complete. */
async function expectBatches(dir: string, n: number): Promise<LmdbEngine> {
  const engine = await LmdbEngine.open(dir);
  const c = engine.get(strBytes("c"));
  assert.equal(c ? decodeU64(c) : 0, n, "counter");
  const rows = [...engine.scan(strBytes("b/"), strBytes("b0"))];
  assert.equal(rows.length, n * KEYS_PER_BATCH);
  for (let k = 1; k <= n; k++) {
    for (let j = 0; j < KEYS_PER_BATCH; j++) {
      const [key, value] = rows[(k - 1) * KEYS_PER_BATCH + j] as [Uint8Array, Uint8Array];
      assert.equal(compareBytes(key, batchKey(k, j)), 0);
      assert.deepEqual(value, batchValue(k, j));
    }
  }
  return engine;
}

describe("WAL recovery after kill -9", () => {
  test("every batch acknowledged only in the log is replayed, once", async () => {
    const dir = await tempDir("wal");
    try {
      await writeAndKill(dir, 50);
      let engine = await expectBatches(dir, 50);
      assert.deepEqual(engine.recovery, { segments: 1, records: 50, tornBytes: 0 });
      assert.deepEqual(await readdir(join(dir, "wal")), [], "replayed segments are removed");
      await engine.close();
      engine = await expectBatches(dir, 50);
      assert.deepEqual(engine.recovery, { segments: 0, records: 0, tornBytes: 0 });
      await engine.close();
    } finally {
      await removeDir(dir);
    }
  });

  test("a torn tail loses only the record it cuts", async () => {
    const dir = await tempDir("wal");
    try {
      await writeAndKill(dir, 20);
      const seg = await onlySegment(dir);
      const size = (await readFile(seg)).length;
      await truncate(seg, size - 3);
      const engine = await expectBatches(dir, 19);
      assert.equal(engine.recovery.records, 19);
      assert.ok(engine.recovery.tornBytes > 0);
      // Generations go on after recovery: new batches land and survive another crash.
      await engine.close();
      await writeAndKill(dir, 5);
      await (await expectBatches(dir, 24)).close();
    } finally {
      await removeDir(dir);
    }
  });

  test("a corrupt record ends replay there: nothing after it is applied", async () => {
    const dir = await tempDir("wal");
    try {
      await writeAndKill(dir, 20);
      const seg = await onlySegment(dir);
      const buf = await readFile(seg);
      // Find the start of record 11 by walking the length fields.
      let at = 0;
      for (let i = 0; i < 10; i++) at += 8 + buf.readUInt32BE(at);
      const flipped = Buffer.from(buf);
      flipped[at + 20] = (flipped[at + 20] as number) ^ 0x5a;
      await writeFile(seg, flipped);
      const engine = await expectBatches(dir, 10);
      assert.equal(engine.recovery.records, 10);
      await engine.close();
    } finally {
      await removeDir(dir);
    }
  });

  test("a segment LMDB already holds is never replayed (it would undo newer writes)", async () => {
    const dir = await tempDir("wal");
    try {
      await writeAndKill(dir, 10);
      const stale = join(dir, "stale.bak");
      const seg = await onlySegment(dir);
      await copyFile(seg, stale);
      const engine = await expectBatches(dir, 10);
      // Newer writes overwrite the counter the stale segment also writes.
      await engine.write(
        [
          { op: "put", key: batchKey(11, 0), value: batchValue(11, 0) },
          { op: "put", key: strBytes("c"), value: new Uint8Array([0, 0, 0, 0, 0, 0, 0, 77]) },
        ],
        { sync: true },
      );
      await engine.close();
      await copyFile(stale, seg);
      const again = await LmdbEngine.open(dir);
      try {
        assert.equal(decodeU64(again.get(strBytes("c")) as Uint8Array), 77);
        assert.equal(again.recovery.records, 0);
        assert.deepEqual(await readdir(join(dir, "wal")), []);
      } finally {
        await again.close();
      }
    } finally {
      await removeDir(dir);
    }
  });
});
