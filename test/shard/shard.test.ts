/** The shard state machine, its command codec and the shard map. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import type { Entry } from "../../src/raft/index.js";
import {
  decodeCommand,
  encodeCommand,
  encodeKey,
  hashPosition,
  initialShardMap,
  murmur3,
  SHARD_KEY_BYTES_MAX,
  type ShardCommand,
  ShardMachine,
} from "../../src/shard/index.js";
import { GroupStorage, MemoryEngine, type WriteOp } from "../../src/storage/index.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

const condArb = fc.oneof(
  fc.constant({ kind: "none" as const }),
  fc.constant({ kind: "ifAbsent" as const }),
  fc.nat({ max: 2 ** 40 }).map((revision) => ({ kind: "ifRevision" as const, revision })),
);
const cmdArb: fc.Arbitrary<ShardCommand> = fc.oneof(
  fc.record({
    op: fc.constant("put" as const),
    key: fc.uint8Array({ maxLength: 300 }),
    value: fc.uint8Array({ maxLength: 2000 }),
    cond: condArb,
  }),
  fc.record({
    op: fc.constant("delete" as const),
    key: fc.uint8Array({ maxLength: 300 }),
    cond: condArb,
  }),
  fc.constant({ op: "retire" as const }),
  fc.record({
    op: fc.constant("split" as const),
    at: fc.uint8Array({ minLength: 1, maxLength: 100 }),
    newShard: fc.constantFrom("ks.g.abc", "x"),
    voters: fc.array(fc.constantFrom("n1", "n2", "n3"), { maxLength: 3 }),
  }),
);

const plain = (c: ShardCommand) =>
  c.op === "retire"
    ? c
    : c.op === "split"
      ? { ...c, at: [...c.at] }
      : { ...c, key: [...c.key], ...(c.op === "put" ? { value: [...c.value] } : {}) };

test("command codec round-trips every command", () => {
  fc.assert(
    fc.property(cmdArb, (c) => {
      assert.deepEqual(plain(decodeCommand(encodeCommand(c))), plain(c));
    }),
    { numRuns: 500 },
  );
});

describe("shard machine", () => {
  let index = 0;
  function entry(c: ShardCommand): Entry {
    index++;
    return { term: 1, index, type: "normal", data: encodeCommand(c) };
  }
  function apply(m: ShardMachine, engine: MemoryEngine, c: ShardCommand) {
    const ops: WriteOp[] = [];
    const r = m.apply(entry(c), ops);
    m.stageApplied(ops);
    void engine.write(ops, { sync: false });
    m.batchCommitted();
    return r;
  }
  const k = (s: string) => enc.encode(s);

  test("put, compare-and-set, create-only, delete, revisions", () => {
    index = 0;
    const engine = new MemoryEngine();
    const m = new ShardMachine(engine, "s");
    assert.deepEqual(
      apply(m, engine, { op: "put", key: k("a"), value: k("1"), cond: { kind: "none" } }),
      { ok: true, revision: 1 },
    );
    assert.deepEqual(
      apply(m, engine, {
        op: "put",
        key: k("a"),
        value: k("2"),
        cond: { kind: "ifRevision", revision: 9 },
      }),
      {
        ok: false,
        code: "PRECONDITION_FAILED",
        revision: 1,
      },
    );
    assert.deepEqual(
      apply(m, engine, {
        op: "put",
        key: k("a"),
        value: k("2"),
        cond: { kind: "ifRevision", revision: 1 },
      }),
      { ok: true, revision: 3 },
    );
    assert.deepEqual(
      apply(m, engine, { op: "put", key: k("a"), value: k("x"), cond: { kind: "ifAbsent" } }),
      {
        ok: false,
        code: "PRECONDITION_FAILED",
        revision: 3,
      },
    );
    assert.deepEqual(
      apply(m, engine, { op: "put", key: k("b"), value: k("y"), cond: { kind: "ifAbsent" } }),
      { ok: true, revision: 5 },
    );
    assert.equal(dec.decode(m.get(k("a"))?.value), "2");
    assert.equal(m.get(k("a"))?.revision, 3);
    assert.deepEqual(apply(m, engine, { op: "delete", key: k("zzz"), cond: { kind: "none" } }), {
      ok: false,
      code: "NOT_FOUND",
    });
    assert.deepEqual(
      apply(m, engine, { op: "delete", key: k("a"), cond: { kind: "ifRevision", revision: 1 } }),
      {
        ok: false,
        code: "PRECONDITION_FAILED",
        revision: 3,
      },
    );
    assert.deepEqual(
      apply(m, engine, { op: "delete", key: k("a"), cond: { kind: "ifRevision", revision: 3 } }),
      { ok: true, revision: 8 },
    );
    assert.equal(m.get(k("a")), undefined);
    // "0" matches an absent key (If-Match: "0").
    assert.deepEqual(
      apply(m, engine, {
        op: "put",
        key: k("a"),
        value: k("3"),
        cond: { kind: "ifRevision", revision: 0 },
      }),
      { ok: true, revision: 9 },
    );
    assert.equal(m.applied, 9);
    // Reopening the machine from the engine recovers the applied index.
    assert.equal(new ShardMachine(engine, "s").applied, 9);
  });

  test("the longest allowed key fits in storage; a longer one is refused on apply, not stored", () => {
    index = 0;
    const engine = new MemoryEngine(); // enforces the engines' key limit
    const m = new ShardMachine(engine, "s".repeat(64)); // the longest shard id
    const longest = new Uint8Array(SHARD_KEY_BYTES_MAX).fill(0x61);
    assert.deepEqual(
      apply(m, engine, { op: "put", key: longest, value: k("v"), cond: { kind: "none" } }),
      {
        ok: true,
        revision: 1,
      },
    );
    assert.equal(dec.decode(m.get(longest)?.value), "v");
    const ops: WriteOp[] = [];
    const tooLong = new Uint8Array(SHARD_KEY_BYTES_MAX + 1).fill(0x61);
    assert.deepEqual(
      m.apply(entry({ op: "put", key: tooLong, value: k("v"), cond: { kind: "none" } }), ops),
      {
        ok: false,
        code: "INVALID_KEY",
      },
    );
    assert.deepEqual(
      m.apply(entry({ op: "delete", key: new Uint8Array(0), cond: { kind: "none" } }), ops),
      {
        ok: false,
        code: "INVALID_KEY",
      },
    );
    assert.deepEqual(ops, [], "nothing staged");
    assert.equal(m.applied, 3, "the entries still count as applied");
  });

  test("writes staged earlier in the same batch are seen by later entries", () => {
    index = 0;
    const engine = new MemoryEngine();
    const m = new ShardMachine(engine, "s");
    const ops: WriteOp[] = [];
    assert.deepEqual(
      m.apply(entry({ op: "put", key: k("a"), value: k("1"), cond: { kind: "ifAbsent" } }), ops),
      { ok: true, revision: 1 },
    );
    // Same batch, not yet written: create-only must now fail, CAS on revision 1 succeed.
    assert.equal(
      m.apply(entry({ op: "put", key: k("a"), value: k("2"), cond: { kind: "ifAbsent" } }), ops)
        ?.ok,
      false,
    );
    assert.deepEqual(
      m.apply(
        entry({ op: "put", key: k("a"), value: k("3"), cond: { kind: "ifRevision", revision: 1 } }),
        ops,
      ),
      {
        ok: true,
        revision: 3,
      },
    );
    assert.equal(m.get(k("a")), undefined, "not visible to readers before the batch is written");
    void engine.write(ops, { sync: true });
    m.batchCommitted();
    assert.equal(dec.decode(m.get(k("a"))?.value), "3");
  });

  test("scans are ordered, bounded and isolated per shard; snapshots restore exactly", () => {
    index = 0;
    const engine = new MemoryEngine();
    const m = new ShardMachine(engine, "s1");
    const other = new ShardMachine(engine, "s10"); // a shard id that is a prefix-extension of s1
    for (const key of ["b", "a", "c/1", "c/2", "\u00ff"])
      apply(m, engine, { op: "put", key: k(key), value: k(`v-${key}`), cond: { kind: "none" } });
    apply(other, engine, { op: "put", key: k("a"), value: k("other"), cond: { kind: "none" } });
    assert.deepEqual(
      m.scan(new Uint8Array(), undefined, 100).map((i) => dec.decode(i.key)),
      ["a", "b", "c/1", "c/2", "\u00ff"],
    );
    assert.deepEqual(
      m.scan(k("c/"), k("c0"), 1).map((i) => dec.decode(i.key)),
      ["c/1"],
    );
    const image = m.snapshotData();
    const copy = new ShardMachine(engine, "s2");
    const ops: WriteOp[] = [];
    copy.restore(image, 42, 7, ops);
    void engine.write(ops, { sync: true });
    copy.batchCommitted();
    assert.deepEqual(
      copy
        .scan(new Uint8Array(), undefined, 100)
        .map((i) => [dec.decode(i.key), dec.decode(i.value), i.revision]),
      m
        .scan(new Uint8Array(), undefined, 100)
        .map((i) => [dec.decode(i.key), dec.decode(i.value), i.revision]),
    );
    assert.equal(copy.applied, 42);
    assert.equal(dec.decode(other.get(k("a"))?.value), "other");
  });
});

/**
 * Applies commands to machines on `engine` as a host would (apply, stage, write, commit), with
 * log indexes from `index + 1` on and term `term`.
 */
function applier(engine: MemoryEngine, index = 0, term = 1) {
  return (mm: ShardMachine, c: ShardCommand) => {
    const ops: WriteOp[] = [];
    const r = mm.apply({ term, index: ++index, type: "normal", data: encodeCommand(c) }, ops);
    mm.stageApplied(ops);
    void engine.write(ops, { sync: false });
    mm.batchCommitted();
    return r;
  };
}

describe("shard machine: retiring", () => {
  test("a retired shard refuses every later write, on restart and through snapshots too", () => {
    const engine = new MemoryEngine();
    const m = new ShardMachine(engine, "r");
    const run = applier(engine);
    const put = {
      op: "put" as const,
      key: enc.encode("a"),
      value: enc.encode("1"),
      cond: { kind: "none" as const },
    };
    assert.equal(run(m, put)?.ok, true);
    assert.equal(m.retiredDurable, false);
    assert.deepEqual(run(m, { op: "retire" }), { ok: true, revision: 2 });
    assert.equal(m.retiredDurable, true);
    assert.deepEqual(run(m, put), { ok: false, code: "RETIRED" });
    assert.deepEqual(run(m, { op: "retire" }), { ok: false, code: "RETIRED" });
    // A restart reads the flag back.
    const again = new ShardMachine(engine, "r");
    assert.equal(again.retiredDurable, true);
    // A snapshot carries it to another replica, and the data with it.
    const other = new MemoryEngine();
    const copy = new ShardMachine(other, "r");
    const ops: WriteOp[] = [];
    copy.restore(m.snapshotData(), m.applied, 1, ops);
    void other.write(ops, { sync: false });
    copy.batchCommitted();
    assert.equal(copy.retiredDurable, true);
    assert.equal(new TextDecoder().decode(copy.get(enc.encode("a"))?.value), "1");
    // A snapshot of a live shard clears a stale flag.
    const live = new ShardMachine(new MemoryEngine(), "live");
    const ops2: WriteOp[] = [];
    copy.restore(live.snapshotData(), m.applied + 1, 1, ops2);
    void other.write(ops2, { sync: false });
    copy.batchCommitted();
    assert.equal(copy.retiredDurable, false);
    assert.equal(new ShardMachine(other, "r").retiredDurable, false);
  });
});

describe("shard machine: splitting", () => {
  test("a split moves the right half to a new group whose log continues the parent's", () => {
    const engine = new MemoryEngine();
    const m = new ShardMachine(engine, "p");
    let index = 10;
    const run = (mm: ShardMachine, c: ShardCommand, commit = true) => {
      const ops: WriteOp[] = [];
      const r = mm.apply({ term: 3, index: ++index, type: "normal", data: encodeCommand(c) }, ops);
      mm.stageApplied(ops);
      void engine.write(ops, { sync: false });
      if (commit) mm.batchCommitted();
      return r;
    };
    const put = (k: string, v: string) =>
      ({ op: "put", key: enc.encode(k), value: enc.encode(v), cond: { kind: "none" } }) as const;
    for (const k of ["a", "b", "c", "d"]) run(m, put(k, k));
    assert.equal(m.approximateSize().keys, 4);
    assert.equal(new TextDecoder().decode(m.middleKey()), "c");
    // Invalid splits change nothing.
    const split = (at: string) =>
      ({ op: "split", at: enc.encode(at), newShard: "p.1", voters: ["n1", "n2"] }) as const;
    assert.deepEqual(run(m, { ...split(""), at: new Uint8Array(0) }), {
      ok: false,
      code: "INVALID_SPLIT",
    });
    const r = run(m, split("c"));
    assert.deepEqual(r, { ok: true, revision: 16 });
    assert.deepEqual(m.takeCreatedGroups(), ["p.1"]);
    // The parent keeps [start, c) and refuses the rest as a stale route.
    assert.equal(m.ownsDurable(enc.encode("b")), true);
    assert.equal(m.ownsDurable(enc.encode("c")), false);
    assert.deepEqual(run(m, put("d", "x")), { ok: false, code: "WRONG_SHARD" });
    assert.deepEqual(
      m.scan(new Uint8Array(0), undefined, 10).map((i) => new TextDecoder().decode(i.key)),
      ["a", "b"],
    );
    // The size estimate follows the split (no rescan): what a fresh scan finds.
    assert.deepEqual(m.approximateSize(), new ShardMachine(engine, "p").approximateSize());
    assert.equal(m.approximateSize().keys, 2);
    assert.deepEqual(
      run(m, { ...split("b"), newShard: "p.2" }),
      { ok: true, revision: 18 },
      "a second split",
    );
    assert.equal(new ShardMachine(engine, "p.2").get(enc.encode("b"))?.revision, 12);
    // The child: the moved keys with their revisions, applied index = the split's, its own range.
    const child = new ShardMachine(engine, "p.1");
    // It starts with the size the split measured (a second machine would scan: the same).
    assert.deepEqual(child.approximateSize(), { bytes: 2 * (1 + 8 + 1), keys: 2 });
    assert.deepEqual(new ShardMachine(engine, "p.1").approximateSize(), child.approximateSize());
    assert.equal(child.applied, 16);
    assert.deepEqual(
      child
        .scan(new Uint8Array(0), undefined, 10)
        .map((i) => [new TextDecoder().decode(i.key), i.revision]),
      [
        ["c", 13],
        ["d", 14],
      ],
    );
    assert.equal(child.ownsDurable(enc.encode("b")), false);
    assert.equal(child.ownsDurable(enc.encode("zz")), true);
    // Its Raft log starts after the split entry, with the parent's voters.
    const gs = GroupStorage.load(engine, "p.1");
    assert.equal(gs.lastIndex(), 16);
    assert.deepEqual(gs.snapshotMeta().confState.voters, ["n1", "n2"]);
    // A snapshot of the child carries its range.
    const other = new MemoryEngine();
    const copy = new ShardMachine(other, "p.1");
    const ops: WriteOp[] = [];
    copy.restore(child.snapshotData(), 16, 3, ops);
    void other.write(ops, { sync: false });
    copy.batchCommitted();
    assert.deepEqual(copy.metaDurable, child.metaDurable);
  });

  test("the split-point searches run in steps, with the answers of the one-shot searches", () => {
    const engine = new MemoryEngine();
    const m = new ShardMachine(engine, "big");
    const ops: WriteOp[] = [];
    for (let i = 0; i < 20_000; i++) {
      const cmd = encodeCommand({
        op: "put",
        key: enc.encode(`k${String(i).padStart(5, "0")}`),
        value: new Uint8Array(i % 7),
        cond: { kind: "none" },
      });
      m.apply({ term: 1, index: i + 1, type: "normal", data: cmd }, ops);
    }
    m.stageApplied(ops);
    void engine.write(ops, { sync: false });
    m.batchCommitted();
    for (const [steps, once] of [
      [m.middleKeySteps(), m.middleKey()],
      [m.middleHashSteps(), m.middleHash()],
    ] as const) {
      let yields = 0;
      let r = steps.next();
      for (; !r.done; r = steps.next()) yields++;
      assert.ok(yields >= 2, `${yields} steps for 20,000 keys: the caller gets turns`);
      assert.deepEqual(r.value, once);
      assert.ok(once !== undefined);
    }
  });

  test("a hash keyspace's shard splits in hash order: each half owns a hash range", () => {
    const engine = new MemoryEngine();
    const m = new ShardMachine(engine, "h");
    const run = applier(engine);
    const keys = Array.from({ length: 40 }, (_, i) => `user-${i}`);
    for (const k of keys)
      run(m, { op: "put", key: enc.encode(k), value: enc.encode(k), cond: { kind: "none" } });
    const at = m.middleHash();
    assert.ok(at && at.byteLength === 4);
    const hashOf = (k: string) => hashPosition(enc.encode(k)).subarray(0, 4);
    const cmp = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b));
    const right = keys.filter((k) => cmp(hashOf(k), at) >= 0);
    assert.ok(right.length >= 10 && right.length <= 30, `${right.length} of 40 move`);
    // A key-order split of a hash shard, or a hash-order split of a range-split shard: refused.
    const split = { op: "split", at, newShard: "h.1", voters: ["n1"] } as const;
    assert.deepEqual(run(m, { ...split, at: enc.encode("user-5") }), { ok: true, revision: 41 });
    const ranged = new ShardMachine(engine, "h");
    assert.deepEqual(run(ranged, { ...split, newShard: "h.x", hashed: true }), {
      ok: false,
      code: "INVALID_SPLIT",
    });
    // On a fresh shard: the hash split.
    const e2 = new MemoryEngine();
    const p = new ShardMachine(e2, "p");
    const run2 = applier(e2, 100);
    for (const k of keys)
      run2(p, { op: "put", key: enc.encode(k), value: enc.encode(k), cond: { kind: "none" } });
    assert.equal(run2(p, { ...split, hashed: true })?.ok, true);
    const child = new ShardMachine(e2, "h.1");
    const names = (mm: ShardMachine) =>
      mm.scan(new Uint8Array(0), undefined, 100).map((i) => new TextDecoder().decode(i.key));
    assert.deepEqual(names(child), [...right].sort());
    assert.deepEqual(
      names(p),
      keys.filter((k) => !right.includes(k)).sort(),
      "the parent keeps the lower hash range",
    );
    for (const k of keys) {
      assert.equal(p.ownsDurable(enc.encode(k)), !right.includes(k), k);
      assert.equal(child.ownsDurable(enc.encode(k)), right.includes(k), k);
    }
    // A moved key written through the parent is a stale route; the child takes it.
    const moved = right[0] as string;
    const w = {
      op: "put",
      key: enc.encode(moved),
      value: enc.encode("x"),
      cond: { kind: "none" },
    } as const;
    assert.deepEqual(run2(p, w), { ok: false, code: "WRONG_SHARD" });
    assert.equal(run2(child, w)?.ok, true);
    assert.equal(child.metaDurable.hashed, true);
    // A key-order split of the hashed child is refused; a hash-order one of it works.
    assert.deepEqual(run2(child, { ...split, newShard: "h.2", at: enc.encode(moved) }), {
      ok: false,
      code: "INVALID_SPLIT",
    });
    const again = child.middleHash();
    assert.ok(again);
    assert.equal(run2(child, { ...split, newShard: "h.2", at: again, hashed: true })?.ok, true);
  });

  test("a split sees the writes staged earlier in the same batch", () => {
    const engine = new MemoryEngine();
    const m = new ShardMachine(engine, "q");
    const ops: WriteOp[] = [];
    const cmd = (c: ShardCommand, index: number) =>
      m.apply({ term: 1, index, type: "normal", data: encodeCommand(c) }, ops);
    cmd({ op: "put", key: enc.encode("k1"), value: enc.encode("1"), cond: { kind: "none" } }, 1);
    cmd({ op: "put", key: enc.encode("k2"), value: enc.encode("2"), cond: { kind: "none" } }, 2);
    cmd({ op: "split", at: enc.encode("k2"), newShard: "q.1", voters: ["n1"] }, 3);
    m.stageApplied(ops);
    void engine.write(ops, { sync: false });
    m.batchCommitted();
    assert.equal(m.get(enc.encode("k2")), undefined);
    assert.equal(new ShardMachine(engine, "q.1").get(enc.encode("k2"))?.revision, 2);
  });
});

describe("shard map", () => {
  test("shards tile the keyspace and every key has exactly one owner", () => {
    const map = initialShardMap(["n3", "n1", "n2", "n4"], 8, 3);
    const shards = map.shards("default");
    assert.equal(shards.length, 8);
    for (const s of shards) assert.equal(new Set(s.replicas).size, 3);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (key) => {
        const owner = map.locate("default", key);
        assert.ok(owner);
        const ek = encodeKey("default", key, "hash");
        const cmp = (a: Uint8Array, b: Uint8Array) =>
          Buffer.compare(Buffer.from(a), Buffer.from(b));
        assert.ok(cmp(owner.start, ek) <= 0);
        assert.ok(owner.end.byteLength === 0 || cmp(ek, owner.end) < 0);
      }),
      { numRuns: 2000 },
    );
    assert.equal(map.locate("nope", k("a")), undefined);
  });

  test("hash sharding spreads keys evenly", () => {
    const map = initialShardMap(["n1", "n2", "n3"], 8, 3);
    const counts = new Map<string, number>();
    for (let i = 0; i < 16_000; i++) {
      const id = map.locate("default", k(`user/${i}`))?.id as string;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    for (const [id, n] of counts) assert.ok(n > 1600 && n < 2400, `${id}: ${n} of 16000`);
    assert.equal(murmur3(k("hello")), murmur3(k("hello")));
  });

  function k(s: string): Uint8Array {
    return enc.encode(s);
  }
});
