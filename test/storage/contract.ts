/**
 * The StorageEngine contract, run against every engine (test/storage/engine.test.ts): ordering,
 * ranges, atomic batches, call-order visibility, sync accounting and, for durable engines,
 * persistence across close/reopen. Includes a model-based random test against a naive map.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import type { StorageEngine, WriteOp } from "../../src/storage/index.js";
import { compareBytes, KEY_BYTES_MAX } from "../../src/storage/index.js";

export interface EngineHandle {
  readonly engine: StorageEngine;
  /** Closes the engine and opens the same store again (durable engines only). */
  readonly reopen?: () => Promise<StorageEngine>;
  /** Closes the latest engine and removes whatever the factory created. */
  readonly dispose: () => Promise<void>;
}

export type EngineFactory = () => Promise<EngineHandle>;

const b = (...bytes: number[]) => new Uint8Array(bytes);
const put = (key: Uint8Array, value: Uint8Array): WriteOp => ({ op: "put", key, value });
const del = (key: Uint8Array): WriteOp => ({ op: "del", key });
const delRange = (start: Uint8Array, end: Uint8Array): WriteOp => ({ op: "delRange", start, end });
const hex = (u: Uint8Array) => Buffer.from(u).toString("hex");
const pairs = (it: Iterable<[Uint8Array, Uint8Array]>) =>
  [...it].map(([k, v]) => `${hex(k)}=${hex(v)}`);
const keysOf = (it: Iterable<[Uint8Array, Uint8Array]>) => [...it].map(([k]) => hex(k));

/** Runs `body` on a fresh engine from `factory`, always disposing of it. */
async function withEngine(
  factory: EngineFactory,
  body: (h: EngineHandle) => Promise<void>,
): Promise<void> {
  const h = await factory();
  try {
    await body(h);
  } finally {
    await h.dispose();
  }
}

// Keys chosen to catch signed-byte and length-ordering mistakes.
const ORDERED_KEYS = [
  b(0x00),
  b(0x01),
  b(0x01, 0x00),
  b(0x01, 0xff),
  b(0x02),
  b(0x7f),
  b(0x7f, 0xff, 0xff),
  b(0x80),
  b(0x80, 0x00),
  b(0xfe, 0xff),
  b(0xff),
  b(0xff, 0x00),
  b(0xff, 0xff),
];

export function engineContract(name: string, factory: EngineFactory): void {
  describe(`StorageEngine contract: ${name}`, () => {
    test("get, put, overwrite, del", () =>
      withEngine(factory, async ({ engine: e }) => {
        assert.equal(e.get(b(1)), undefined);
        await e.write([put(b(1), b(10)), put(b(2), b(20))], { sync: true });
        assert.deepEqual(e.get(b(1)), b(10));
        await e.write([put(b(1), b(11))], { sync: false });
        assert.deepEqual(e.get(b(1)), b(11));
        await e.write([del(b(1)), del(b(99))], { sync: true });
        assert.equal(e.get(b(1)), undefined);
        assert.deepEqual(e.get(b(2)), b(20));
      }));

    test("empty and large values round-trip; returned and written buffers are not aliased", () =>
      withEngine(factory, async ({ engine: e }) => {
        const big = new Uint8Array(1 << 20).map((_, i) => i * 7);
        const key = b(5);
        const val = b(1, 2, 3);
        await e.write([put(b(1), b()), put(b(2), big), put(key, val)], { sync: true });
        assert.deepEqual(e.get(b(1)), b());
        assert.deepEqual(e.get(b(2)), big);
        key[0] = 6;
        val[0] = 9;
        assert.deepEqual(
          e.get(b(5)),
          b(1, 2, 3),
          "stored data must not alias the caller's buffers",
        );
        const got = e.get(b(5)) as Uint8Array;
        got[0] = 42;
        assert.deepEqual(e.get(b(5)), b(1, 2, 3), "returned buffers must be copies");
        const [[k, v]] = [...e.scan(b(5), b(6))] as [[Uint8Array, Uint8Array]];
        k[0] = 0;
        v[0] = 0;
        assert.deepEqual(e.get(b(5)), b(1, 2, 3));
      }));

    test("scan orders keys bytewise (bytes > 0x7f, prefixes first)", () =>
      withEngine(factory, async ({ engine: e }) => {
        const shuffled = [...ORDERED_KEYS].reverse();
        await e.write(
          shuffled.map((k) => put(k, k)),
          { sync: true },
        );
        const all = keysOf(e.scan(b(0x00), b(0xff, 0xff, 0xff)));
        assert.deepEqual(all, ORDERED_KEYS.map(hex));
        assert.deepEqual(
          keysOf(e.scan(b(0x00), b(0xff, 0xff, 0xff), { reverse: true })),
          ORDERED_KEYS.map(hex).reverse(),
        );
      }));

    test("scan bounds: start inclusive, end exclusive, limit, reverse, empty ranges", () =>
      withEngine(factory, async ({ engine: e }) => {
        await e.write(
          ORDERED_KEYS.map((k) => put(k, b(k.length))),
          { sync: true },
        );
        assert.deepEqual(keysOf(e.scan(b(0x01), b(0x02))), ["01", "0100", "01ff"]);
        assert.deepEqual(keysOf(e.scan(b(0x01), b(0x02), { reverse: true })), [
          "01ff",
          "0100",
          "01",
        ]);
        assert.deepEqual(keysOf(e.scan(b(0x01), b(0x02), { limit: 2 })), ["01", "0100"]);
        assert.deepEqual(keysOf(e.scan(b(0x01), b(0x02), { limit: 2, reverse: true })), [
          "01ff",
          "0100",
        ]);
        assert.deepEqual(keysOf(e.scan(b(0x7f), b(0x80, 0x00))), ["7f", "7fffff", "80"]);
        assert.deepEqual(keysOf(e.scan(b(0x7f), b(0x80, 0x00), { reverse: true })), [
          "80",
          "7fffff",
          "7f",
        ]);
        // Bounds that are not stored keys.
        assert.deepEqual(keysOf(e.scan(b(0x01, 0x01), b(0x7f, 0x00))), ["01ff", "02", "7f"]);
        assert.deepEqual(keysOf(e.scan(b(0x01, 0x01), b(0x7f, 0x00), { reverse: true })), [
          "7f",
          "02",
          "01ff",
        ]);
        assert.deepEqual(keysOf(e.scan(b(0x02), b(0x02))), []);
        assert.deepEqual(keysOf(e.scan(b(0x03), b(0x02))), []);
        assert.deepEqual(keysOf(e.scan(b(0x03), b(0x02), { reverse: true })), []);
        assert.deepEqual(keysOf(e.scan(b(0x00), b(0xff), { limit: 0 })), []);
        assert.deepEqual(pairs(e.scan(b(0xff), b(0xff, 0x00, 0x00))), ["ff=01", "ff00=02"]);
      }));

    test("delRange deletes [start, end) and composes with puts in the same batch", () =>
      withEngine(factory, async ({ engine: e }) => {
        await e.write(
          ORDERED_KEYS.map((k) => put(k, k)),
          { sync: true },
        );
        await e.write([delRange(b(0x01), b(0x7f))], { sync: true });
        assert.deepEqual(keysOf(e.scan(b(0x00), b(0x90))), ["00", "7f", "7fffff", "80", "8000"]);
        // put then delRange: deleted; delRange then put: kept.
        await e.write([put(b(0x10), b(1)), delRange(b(0x00), b(0x20)), put(b(0x11), b(2))], {
          sync: false,
        });
        assert.equal(e.get(b(0x10)), undefined);
        assert.equal(e.get(b(0x00)), undefined);
        assert.deepEqual(e.get(b(0x11)), b(2));
        // An empty or inverted range deletes nothing.
        await e.write([delRange(b(0x80), b(0x80)), delRange(b(0xff), b(0x80))], { sync: true });
        assert.deepEqual(keysOf(e.scan(b(0x80), b(0xff, 0xff, 0x00))), [
          "80",
          "8000",
          "feff",
          "ff",
          "ff00",
          "ffff",
        ]);
        await e.write([delRange(b(0x00), b(0xff, 0xff, 0xff))], { sync: true });
        assert.deepEqual(keysOf(e.scan(b(0x00), b(0xff, 0xff, 0xff))), []);
      }));

    test("a batch is all or nothing: a malformed op refuses the whole batch", () =>
      withEngine(factory, async ({ engine: e }) => {
        assert.throws(() => e.write([put(b(1), b(1)), put(b(), b(2))], { sync: true }));
        assert.throws(() =>
          e.write([put(b(1), b(1)), put(new Uint8Array(KEY_BYTES_MAX + 1), b(2))], { sync: true }),
        );
        assert.equal(e.get(b(1)), undefined);
        await e.write([put(b(2), b(2))], { sync: true });
        assert.deepEqual(keysOf(e.scan(b(0), b(0xff))), ["02"]);
      }));

    test("a resolved batch is visible whole, and so is every batch written before it", () =>
      withEngine(factory, async ({ engine: e }) => {
        const n = 50;
        const done: Promise<void>[] = [];
        for (let i = 0; i < n; i++) {
          const ops = [put(b(1, i), b(i)), put(b(2, i), b(i)), put(b(3, i), b(i))];
          const p = e.write(ops, { sync: i % 3 === 0 });
          done.push(
            p.then(() => {
              // Every batch up to i is fully visible once batch i has resolved.
              for (let j = 0; j <= i; j++) {
                for (const pre of [1, 2, 3]) assert.deepEqual(e.get(b(pre, j)), b(j));
              }
            }),
          );
        }
        await Promise.all(done);
      }));

    test("concurrent writes apply in call order", () =>
      withEngine(factory, async ({ engine: e }) => {
        const done: Promise<void>[] = [];
        for (let i = 0; i < 200; i++) {
          const ops: WriteOp[] = [put(b(7), b(i & 0xff, i >> 8))];
          if (i % 10 === 5) ops.push(delRange(b(8), b(9)));
          else ops.push(put(b(8, i & 0xff), b(i & 0xff)));
          done.push(e.write(ops, { sync: i % 4 === 0 }));
        }
        await Promise.all(done);
        assert.deepEqual(e.get(b(7)), b(199 & 0xff, 199 >> 8));
        // The last delRange was batch 195; batches 196..199 wrote keys 8/196..8/199 after it.
        assert.deepEqual(
          keysOf(e.scan(b(8), b(9))),
          Array.from({ length: 4 }, (_, j) => hex(b(8, 196 + j))),
        );
      }));

    test("stats count batches and syncs", () =>
      withEngine(factory, async ({ engine: e }) => {
        const s0 = e.stats();
        for (let i = 0; i < 5; i++) await e.write([put(b(i + 1), b(i))], { sync: true });
        const s1 = e.stats();
        assert.equal(s1.batches - s0.batches, 5);
        // At least one durable commit each; an engine may also sync in the background (LMDB
        // drains its write-ahead log into the B-tree on a timer).
        assert.ok(s1.syncs - s0.syncs >= 5, "each awaited sync batch is a durable commit");
        assert.ok(s1.bytesWritten - s0.bytesWritten >= 10);
        await e.write([put(b(9), b(9))], { sync: false });
        const s2 = e.stats();
        assert.equal(s2.batches - s1.batches, 1);
        assert.equal(s2.syncs, s1.syncs, "a sync:false batch does not sync by itself");
        await Promise.all(
          Array.from({ length: 10 }, (_, i) => e.write([put(b(20 + i), b(i))], { sync: true })),
        );
        const s3 = e.stats();
        assert.equal(s3.batches - s2.batches, 10);
        const concurrentSyncs = s3.syncs - s2.syncs;
        assert.ok(concurrentSyncs >= 1 && concurrentSyncs <= 10, `syncs ${concurrentSyncs}`);
      }));

    test("random operations match a naive model (reads between unawaited writes)", async () => {
      const key = fc.oneof(
        fc.constantFrom(0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff).map((x) => b(x)),
        fc.uint8Array({ minLength: 1, maxLength: 3 }),
      );
      const op: fc.Arbitrary<WriteOp> = fc.oneof(
        {
          weight: 5,
          arbitrary: fc.tuple(key, fc.uint8Array({ maxLength: 4 })).map(([k, v]) => put(k, v)),
        },
        { weight: 2, arbitrary: key.map((k) => del(k)) },
        { weight: 1, arbitrary: fc.tuple(key, key).map(([s, t]) => delRange(s, t)) },
      );
      const step = fc.oneof(
        {
          weight: 4,
          arbitrary: fc.record({
            kind: fc.constant("write" as const),
            ops: fc.array(op, { minLength: 0, maxLength: 5 }),
            sync: fc.boolean(),
            wait: fc.boolean(),
          }),
        },
        {
          weight: 2,
          arbitrary: fc.record({
            kind: fc.constant("scan" as const),
            start: key,
            end: key,
            limit: fc.option(fc.nat(6), { nil: undefined }),
            reverse: fc.boolean(),
          }),
        },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant("get" as const), key }) },
        { weight: 1, arbitrary: fc.record({ kind: fc.constant("settle" as const) }) },
      );
      await fc.assert(
        fc.asyncProperty(fc.array(step, { maxLength: 40 }), (steps) =>
          withEngine(factory, async ({ engine: e }) => {
            const model = new Map<string, Uint8Array>();
            const pending: Promise<void>[] = [];
            const modelScan = (s: Uint8Array, t: Uint8Array, limit?: number, reverse?: boolean) => {
              const ks = [...model.keys()]
                .map((k) => new Uint8Array(Buffer.from(k, "hex")))
                .filter((k) => compareBytes(k, s) >= 0 && compareBytes(k, t) < 0)
                .sort(compareBytes);
              if (reverse) ks.reverse();
              return ks
                .slice(0, limit ?? ks.length)
                .map((k) => `${hex(k)}=${hex(model.get(hex(k)) as Uint8Array)}`);
            };
            for (const s of steps) {
              if (s.kind === "write") {
                const p = e.write(s.ops, { sync: s.sync });
                for (const o of s.ops) {
                  if (o.op === "put") model.set(hex(o.key), o.value.slice());
                  else if (o.op === "del") model.delete(hex(o.key));
                  else {
                    for (const k of [...model.keys()]) {
                      const kb = new Uint8Array(Buffer.from(k, "hex"));
                      if (compareBytes(kb, o.start) >= 0 && compareBytes(kb, o.end) < 0)
                        model.delete(k);
                    }
                  }
                }
                if (s.wait) await p;
                else pending.push(p);
              } else if (s.kind === "settle") {
                await Promise.all(pending.splice(0));
              } else if (s.kind === "get") {
                // Reads are only promised to see resolved writes: settle first.
                await Promise.all(pending.splice(0));
                const got = e.get(s.key);
                const want = model.get(hex(s.key));
                assert.deepEqual(
                  got === undefined ? undefined : hex(got),
                  want === undefined ? undefined : hex(want),
                );
              } else {
                await Promise.all(pending.splice(0));
                const opts = {
                  ...(s.limit !== undefined ? { limit: s.limit } : {}),
                  reverse: s.reverse,
                };
                assert.deepEqual(
                  pairs(e.scan(s.start, s.end, opts)),
                  modelScan(s.start, s.end, s.limit, s.reverse),
                );
              }
            }
            await Promise.all(pending);
            assert.deepEqual(
              pairs(e.scan(b(0), b(0xff, 0xff, 0xff, 0xff))),
              modelScan(b(0), b(0xff, 0xff, 0xff, 0xff)),
            );
          }),
        ),
        { numRuns: 60 },
      );
    });

    test("close/reopen keeps every resolved batch (durable engines)", async (t) => {
      const h = await factory();
      await h.dispose();
      if (!h.reopen) {
        t.skip("not a durable engine");
        return;
      }
      await withEngine(factory, async (h) => {
        const e = h.engine;
        await e.write([put(b(1), b(1)), put(b(2), b(2)), put(b(3), b(3))], { sync: true });
        await e.write([del(b(2)), put(b(4), b(4))], { sync: false });
        await e.write([delRange(b(3), b(4))], { sync: false });
        // close() commits the buffered sync:false batches.
        const e2 = await (h.reopen as () => Promise<StorageEngine>)();
        assert.deepEqual(pairs(e2.scan(b(0), b(0xff))), ["01=01", "04=04"]);
        await e2.write([put(b(5), b(5))], { sync: true });
        const e3 = await (h.reopen as () => Promise<StorageEngine>)();
        assert.deepEqual(pairs(e3.scan(b(0), b(0xff))), ["01=01", "04=04", "05=05"]);
      });
    });
  });
}
