/** Key helpers: big-endian u64 order and round trip, prefixEnd, concat, strings. */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  bytesStr,
  compareBytes,
  concat,
  decodeU64,
  hasPrefix,
  prefixEnd,
  strBytes,
  u64,
} from "../../src/storage/index.js";

const safeU64 = fc.maxSafeNat();

test("u64 round-trips and sorts numerically under bytewise comparison", () => {
  fc.assert(
    fc.property(safeU64, safeU64, (a, b) => {
      assert.equal(decodeU64(u64(a)), a);
      assert.equal(Math.sign(compareBytes(u64(a), u64(b))), Math.sign(a - b));
    }),
  );
  for (const n of [0, 1, 255, 256, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
    assert.equal(decodeU64(u64(n)), n);
  }
  assert.deepEqual(u64(0x0102030405), new Uint8Array([0, 0, 0, 1, 2, 3, 4, 5]));
  assert.throws(() => u64(-1));
  assert.throws(() => u64(2 ** 53));
  assert.throws(() => u64(1.5));
  // Stored values beyond 2^53 - 1 decode as -1 (corrupt), never as a rounded number.
  assert.equal(decodeU64(new Uint8Array([0, 0x20, 0, 0, 0, 0, 0, 0])), -1);
  assert.equal(decodeU64(new Uint8Array(8).fill(0xff)), -1);
});

test("prefixEnd is the smallest key above every key with the prefix", () => {
  assert.deepEqual(prefixEnd(strBytes("r/1/")), strBytes("r/10"));
  assert.deepEqual(prefixEnd(new Uint8Array([1, 0xff, 0xff])), new Uint8Array([2]));
  assert.deepEqual(prefixEnd(new Uint8Array([0x7f])), new Uint8Array([0x80]));
  assert.throws(() => prefixEnd(new Uint8Array([0xff, 0xff])));
  assert.throws(() => prefixEnd(new Uint8Array()));
  const bytes = fc.uint8Array({ minLength: 1, maxLength: 4 }).map((b) => {
    // Small alphabets make prefixes and 0xff runs likely.
    return b.map((x) => [0, 1, 0x7f, 0x80, 0xfe, 0xff][x % 6] as number);
  });
  fc.assert(
    fc.property(bytes, bytes, (p, k) => {
      fc.pre(p.some((x) => x !== 0xff));
      const end = prefixEnd(p);
      assert.ok(compareBytes(end, p) > 0);
      if (hasPrefix(k, p)) assert.ok(compareBytes(k, end) < 0, "a key with the prefix is below");
      else if (compareBytes(k, p) > 0)
        assert.ok(compareBytes(k, end) >= 0, "others above p are not");
    }),
    { numRuns: 2000 },
  );
});

test("concat, strBytes/bytesStr, compareBytes", () => {
  assert.deepEqual(concat(), new Uint8Array());
  assert.deepEqual(concat(strBytes("ab"), new Uint8Array(), strBytes("c")), strBytes("abc"));
  fc.assert(fc.property(fc.string(), (s) => assert.equal(bytesStr(strBytes(s)), s)));
  assert.throws(() => bytesStr(new Uint8Array([0xff])));
  assert.ok(compareBytes(new Uint8Array([1]), new Uint8Array([1, 0])) < 0);
  assert.ok(compareBytes(new Uint8Array([0x80]), new Uint8Array([0x7f, 0xff])) > 0);
  assert.equal(compareBytes(new Uint8Array([3, 4]), new Uint8Array([3, 4])), 0);
});
