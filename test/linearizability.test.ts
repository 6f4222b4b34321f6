import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  checkLinearizable,
  type HistoryOp,
  type LinearizabilityResult,
} from "../src/sim/linearizability.js";

// ---------------------------------------------------------------------------------------------
// Hand-written histories. Ops default to key "k", client 0, status "ok"; `h` assigns ids.

type Draft = Omit<HistoryOp, "id">;
type Extra = Partial<Draft>;

const base = { client: 0, key: "k", status: "ok" } as const;
const W = (value: string, call: number, ret: number, x: Extra = {}): Draft => ({
  ...base,
  kind: "write",
  value,
  call,
  ret,
  ...x,
});
const R = (value: string | null, call: number, ret: number, x: Extra = {}): Draft => ({
  ...base,
  kind: "read",
  result: { value },
  call,
  ret,
  ...x,
});
const D = (call: number, ret: number, x: Extra = {}): Draft => ({
  ...base,
  kind: "delete",
  call,
  ret,
  ...x,
});
const CAS = (
  expect: string | null,
  value: string,
  ok: boolean,
  call: number,
  ret: number,
  x: Extra = {},
): Draft => ({ ...base, kind: "cas", expect, value, result: { ok }, call, ret, ...x });
const INFO = { status: "info", ret: 0 } as const;
const FAIL = { status: "fail" } as const;

function h(...drafts: Draft[]): HistoryOp[] {
  return drafts.map((d, id) => ({ id, ...d }));
}

function assertOk(result: LinearizabilityResult): void {
  assert.equal(result.ok, true, "reason" in result ? result.reason : "");
}

function assertViolation(result: LinearizabilityResult): void {
  assert.equal(result.ok, false, `expected a violation, got ${JSON.stringify(result)}`);
}

test("trivially linearizable histories", () => {
  assert.deepEqual(checkLinearizable([]), { ok: true, keys: 0, ops: 0 });
  assertOk(checkLinearizable(h(R(null, 0, 1))));
  assertOk(checkLinearizable(h(W("a", 0, 1), R("a", 2, 3), D(4, 5), R(null, 6, 7))));
  assertOk(checkLinearizable(h(R("x", 0, 1)), { initial: "x" }));
  // A read concurrent with a write may see either the old or the new value...
  assertOk(checkLinearizable(h(W("a", 0, 1), W("b", 2, 10), R("a", 3, 4), R("b", 5, 6))));
  // ...and two concurrent writes may be ordered either way.
  assertOk(checkLinearizable(h(W("a", 0, 10), W("b", 0, 10), R("a", 11, 12))));
  assertOk(checkLinearizable(h(W("a", 0, 10), W("b", 0, 10), R("b", 11, 12))));
  // Touching intervals (ret === call) are concurrent, not ordered.
  assertOk(checkLinearizable(h(W("a", 0, 5), R(null, 5, 6))));
  // cas: success and an ok "failed" cas acting as a read.
  assertOk(
    checkLinearizable(h(W("a", 0, 1), CAS("a", "b", true, 2, 3), CAS("a", "c", false, 4, 5))),
  );
  assertOk(checkLinearizable(h(CAS(null, "a", true, 0, 1), R("a", 2, 3))));
  // Keys are independent registers.
  const r = checkLinearizable(
    h(W("a", 0, 1, { key: "x" }), W("b", 0, 1, { key: "y" }), R("a", 2, 3, { key: "x" })),
  );
  assert.deepEqual(r, { ok: true, keys: 2, ops: 3 });
});

test("stale read after a completed write is rejected", () => {
  const r = checkLinearizable(h(W("1", 0, 1), W("2", 2, 3), R("1", 4, 5)));
  assertViolation(r);
  assert.ok(r.ok === false);
  assert.equal(r.key, "k");
  assert.ok(
    r.ops.some((op) => op.id === 2),
    "the stale read is reported",
  );
  assert.match(r.reason, /#2 .*read → "1"/);
});

test("read of a value never written is rejected", () => {
  assertViolation(checkLinearizable(h(W("a", 0, 1), R("zzz", 0, 5))));
  assertViolation(checkLinearizable(h(R("a", 0, 1))));
});

test("sequential reads must not go backwards", () => {
  // w(2) is concurrent with both reads, but once one read saw 2 a later read cannot see 1.
  assertViolation(checkLinearizable(h(W("1", 0, 1), W("2", 2, 20), R("2", 3, 4), R("1", 5, 6))));
  // Same with the two reads by different clients.
  assertViolation(
    checkLinearizable(h(W("1", 0, 1), W("2", 2, 20), R("2", 3, 4, { client: 1 }), R("1", 5, 6))),
  );
});

test("cas succeeding when its expected value could not be current is rejected", () => {
  assertViolation(checkLinearizable(h(W("a", 0, 1), W("b", 2, 3), CAS("a", "c", true, 4, 5))));
  // An ok cas that reports failure asserts current !== expect.
  assertViolation(checkLinearizable(h(W("a", 0, 1), CAS("a", "c", false, 2, 3))));
  // Concurrent with the write it is fine either way.
  assertOk(checkLinearizable(h(W("a", 0, 1), W("b", 2, 6), CAS("a", "c", true, 4, 5))));
});

test("lost writes are rejected", () => {
  // A completed write followed by reads of the older value: the write was lost.
  assertViolation(checkLinearizable(h(W("a", 0, 1), R(null, 2, 3))));
  // Two concurrent writes, both observed, then the first one shows up again.
  assertViolation(
    checkLinearizable(
      h(W("a", 0, 10), W("b", 0, 10), R("a", 11, 12), R("b", 13, 14), R("a", 15, 16)),
    ),
  );
  // A successful cas whose result disappears.
  assertViolation(checkLinearizable(h(W("a", 0, 1), CAS("a", "b", true, 2, 3), R("a", 4, 5))));
  // A delete that is undone.
  assertViolation(checkLinearizable(h(W("a", 0, 1), D(2, 3), R("a", 4, 5))));
});

test("info writes may explain a read", () => {
  assertOk(checkLinearizable(h(W("x", 0, 0, INFO), R("x", 5, 6))));
  // It may take effect late: after a read still seeing the old value.
  assertOk(checkLinearizable(h(W("x", 0, 0, INFO), R(null, 1, 2), R("x", 5, 6))));
  // Or never.
  assertOk(checkLinearizable(h(W("x", 0, 0, INFO), R(null, 1, 2), R(null, 5, 6))));
  // Info cas and delete too.
  assertOk(checkLinearizable(h(W("a", 0, 1), CAS("a", "b", false, 2, 0, INFO), R("b", 5, 6))));
  assertOk(checkLinearizable(h(W("a", 0, 1), D(2, 0, INFO), R(null, 5, 6))));
  // A chain of indeterminate ops, each enabling the next.
  assertOk(
    checkLinearizable(
      h(
        W("a", 0, 1),
        CAS("a", "b", false, 2, 0, INFO),
        CAS("b", "c", false, 3, 0, INFO),
        R("c", 9, 9),
      ),
    ),
  );
  // Identical timed-out ops are interchangeable, but each takes effect at most once.
  assertOk(checkLinearizable(h(D(0, 0, INFO), D(1, 0, INFO), W("a", 2, 3), R(null, 4, 5))));
  assertOk(
    checkLinearizable(
      h(W("x", 0, 0, INFO), W("x", 1, 0, INFO), R("x", 2, 3), W("y", 4, 5), R("x", 6, 7)),
    ),
  );
  assertViolation(
    checkLinearizable(h(W("x", 0, 0, INFO), R("x", 2, 3), W("y", 4, 5), R("x", 6, 7))),
  );
  // An info op can even be needed between two other ops it is not adjacent to in time.
  assertOk(
    checkLinearizable(
      h(W("a", 0, 1), W("x", 2, 0, INFO), CAS("a", "b", false, 5, 6), R("x", 7, 8)),
    ),
  );
});

test("info writes that cannot explain a read are rejected", () => {
  // The info write was invoked after the read returned.
  const r = checkLinearizable(h(R("x", 0, 1), W("x", 2, 0, INFO)));
  assertViolation(r);
  // An info write takes effect at most once.
  assertViolation(checkLinearizable(h(W("x", 0, 0, INFO), R("x", 1, 2), R(null, 3, 4))));
  // An info cas cannot take effect when its expectation never holds.
  assertViolation(
    checkLinearizable(h(W("a", 0, 1), CAS("zz", "b", false, 2, 0, INFO), R("b", 5, 6))),
  );
});

test("fail ops and info reads are ignored", () => {
  assertViolation(checkLinearizable(h(W("x", 0, 1, FAIL), R("x", 2, 3))));
  assertOk(checkLinearizable(h(W("x", 0, 1, FAIL), R(null, 2, 3))));
  // A failed read's garbage result and an info read's result carry no information.
  assertOk(checkLinearizable(h(R("garbage", 0, 1, FAIL), R("junk", 0, 0, INFO))));
  assert.deepEqual(checkLinearizable(h(R("junk", 0, 0, INFO), W("a", 0, 1))), {
    ok: true,
    keys: 1,
    ops: 1,
  });
});

test("malformed histories throw", () => {
  assert.throws(() => checkLinearizable([...h(R(null, 0, 1)), ...h(R(null, 0, 1))]), /duplicate/);
  assert.throws(() => checkLinearizable(h(R(null, 5, 1))), /ret must be/);
  assert.throws(
    () => checkLinearizable(h({ ...base, kind: "cas", value: "a", expect: null, call: 0, ret: 1 })),
    /result\.ok/,
  );
});

test("the search budget yields unknown", () => {
  // Many concurrent writes followed by a read that none of them explains: the search has to
  // try every ordering of the writes before concluding.
  const writes = Array.from({ length: 12 }, (_, i) => W(`v${i}`, 0, 100, { client: i }));
  const history = h(...writes, R("nope", 101, 102));
  const r = checkLinearizable(history, { maxStatesPerKey: 100 });
  assert.equal(r.ok, "unknown");
  assertViolation(checkLinearizable(history));
  // A violation on one key wins over unknown on another.
  const other = h(W("a", 0, 1, { key: "z" }), R(null, 2, 3, { key: "z" }));
  const both = [...history, ...other.map((op) => ({ ...op, id: op.id + 1000 }))];
  assert.equal(checkLinearizable(both, { maxStatesPerKey: 100 }).ok, false);
});

// ---------------------------------------------------------------------------------------------
// Property tests: histories produced by a real sequential register are always accepted.

interface GenOp {
  key: number;
  kind: "read" | "write" | "cas" | "delete";
  value: number;
  /** cas: 0 = expect the current value, else expect VALUES[expect - 1] (or null). */
  expect: number;
  fate: "ok" | "info-applied" | "info-lost" | "fail";
  before: number;
  after: number;
  client: number;
}

const VALUES = ["a", "b", "c", null] as const;

const genOp: fc.Arbitrary<GenOp> = fc.record({
  key: fc.integer({ min: 0, max: 2 }),
  kind: fc.constantFrom("read", "write", "cas", "delete"),
  value: fc.integer({ min: 0, max: 2 }),
  expect: fc.integer({ min: 0, max: VALUES.length }),
  fate: fc.constantFrom("ok", "ok", "ok", "ok", "ok", "info-applied", "info-lost", "fail"),
  before: fc.integer({ min: 0, max: 25 }),
  after: fc.integer({ min: 0, max: 25 }),
  client: fc.integer({ min: 0, max: 4 }),
});

/**
 * Executes the ops one at a time on a map of registers, op i taking effect at time 10*i, and
 * gives each an interval [10*i - before, 10*i + after] containing that instant, so the real
 * execution order is a valid linearization. Small offsets give sequential ops, large ones
 * overlap several neighbours.
 */
function execute(gen: readonly GenOp[]): HistoryOp[] {
  const regs = new Map<string, string | null>();
  return gen.map((g, i): HistoryOp => {
    const key = `k${g.key}`;
    const t = 10 * i;
    const current = regs.get(key) ?? null;
    const applies = g.fate === "ok" || g.fate === "info-applied";
    const status = g.fate === "ok" ? "ok" : g.fate === "fail" ? "fail" : "info";
    const common = { id: i, client: g.client, key, status, call: t - g.before } as const;
    const ret = status === "info" ? 0 : t + g.after;
    const value = VALUES[g.value] as string;
    switch (g.kind) {
      case "read":
        return { ...common, ret, kind: "read", result: { value: applies ? current : "junk" } };
      case "write":
        if (applies) regs.set(key, value);
        return { ...common, ret, kind: "write", value };
      case "delete":
        if (applies) regs.set(key, null);
        return { ...common, ret, kind: "delete" };
      default: {
        // cas
        const expect = g.expect === 0 ? current : (VALUES[g.expect - 1] ?? null);
        const ok = current === expect;
        if (applies && ok) regs.set(key, value);
        return { ...common, ret, kind: "cas", expect, value, result: { ok } };
      }
    }
  });
}

test("property: histories of a real register are linearizable", () => {
  fc.assert(
    fc.property(fc.array(genOp, { maxLength: 60 }), (gen) => {
      const r = checkLinearizable(execute(gen));
      assert.equal(r.ok, true, "reason" in r ? r.reason : "");
    }),
    { numRuns: 500 },
  );
});

test("property: a read of a value never written is always rejected", () => {
  fc.assert(
    fc.property(fc.array(genOp, { minLength: 1, maxLength: 60 }), fc.nat(), (gen, pick) => {
      const history = execute(gen);
      const reads = history.filter((op) => op.kind === "read" && op.status === "ok");
      fc.pre(reads.length > 0);
      const victim = reads[pick % reads.length]!;
      const mutated = history.map((op) =>
        op === victim ? { ...op, result: { value: "never-written" } } : op,
      );
      const r = checkLinearizable(mutated);
      assert.equal(r.ok, false);
      assert.ok(r.ok === false && r.key === victim.key);
    }),
    { numRuns: 500 },
  );
});

/**
 * Reference checker for tiny single-key histories: tries every order of every subset of the
 * info ops together with all the ok ops, respecting real-time order. Used to cross-check the
 * pruning in the real checker (memoization, info-op rules) on arbitrary, mostly invalid input.
 */
function bruteForce(history: readonly HistoryOp[]): boolean {
  const ops = history.filter(
    (op) => op.status !== "fail" && !(op.status === "info" && op.kind === "read"),
  );
  const ret = (op: HistoryOp): number => (op.status === "info" ? Number.POSITIVE_INFINITY : op.ret);
  const apply = (state: string | null, op: HistoryOp): string | null | undefined => {
    switch (op.kind) {
      case "read":
        return op.result?.value === state ? state : undefined;
      case "write":
        return op.value;
      case "delete":
        return null;
      case "cas":
        if (op.status === "info" || op.result?.ok)
          return state === op.expect ? op.value : undefined;
        return state !== op.expect ? state : undefined;
    }
  };
  const search = (state: string | null, remaining: readonly HistoryOp[]): boolean => {
    if (remaining.every((op) => op.status === "info")) return true;
    return remaining.some((op) => {
      if (remaining.some((other) => ret(other) < op.call)) return false;
      const next = apply(state, op);
      return (
        next !== undefined &&
        search(
          next,
          remaining.filter((o) => o !== op),
        )
      );
    });
  };
  return search(null, ops);
}

test("property: agrees with a brute-force checker on small arbitrary histories", () => {
  const arbOp = fc.record({
    kind: fc.constantFrom("read", "write", "cas", "delete"),
    value: fc.constantFrom("a", "b"),
    read: fc.constantFrom("a", "b", null),
    expect: fc.constantFrom("a", "b", null),
    casOk: fc.boolean(),
    status: fc.constantFrom("ok", "ok", "info", "fail"),
    call: fc.integer({ min: 0, max: 20 }),
    len: fc.integer({ min: 0, max: 10 }),
  });
  fc.assert(
    fc.property(fc.array(arbOp, { maxLength: 7 }), (drafts) => {
      const history = drafts.map((d, id): HistoryOp => {
        const common = { id, client: id, key: "k", status: d.status, call: d.call };
        const ret = d.call + d.len;
        switch (d.kind) {
          case "read":
            return { ...common, ret, kind: "read", result: { value: d.read } };
          case "write":
            return { ...common, ret, kind: "write", value: d.value };
          case "delete":
            return { ...common, ret, kind: "delete" };
          default: // cas
            return {
              ...common,
              ret,
              kind: "cas",
              expect: d.expect,
              value: d.value,
              result: { ok: d.casOk },
            };
        }
      });
      assert.equal(checkLinearizable(history).ok, bruteForce(history));
    }),
    { numRuns: 3000 },
  );
});

// ---------------------------------------------------------------------------------------------
// Scale: 10,000 ops, 10 keys, 10 clients, from a simulated concurrent register.

/** mulberry32: a tiny seeded PRNG so the big history is reproducible. */
function rng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Each client issues ops back to back with random gaps and latencies; every op takes effect
 * at a random instant inside its interval, and the ops are then executed on a map of
 * registers in that order to fill in results. A fraction `infoRate` time out (info; half of
 * those still take effect) and 1% fail without effect.
 */
function simulate(
  total: number,
  clients: number,
  keys: number,
  seed: number,
  infoRate = 0.01,
): HistoryOp[] {
  const random = rng(seed);
  const int = (n: number): number => Math.floor(random() * n);
  type Planned = { op: Omit<HistoryOp, "result" | "expect">; at: number; applies: boolean };
  const planned: Planned[] = [];
  for (let c = 0; c < clients; c++) {
    let now = 0;
    for (let i = 0; i < total / clients; i++) {
      const call = now + int(5);
      const ret = call + 1 + int(30);
      const roll = random();
      const status = roll < infoRate ? "info" : roll < infoRate + 0.01 ? "fail" : "ok";
      const kind = (["read", "read", "read", "write", "write", "cas", "cas", "delete"] as const)[
        int(8)
      ]!;
      const id = planned.length;
      planned.push({
        op: { id, client: c, key: `key${int(keys)}`, kind, value: `c${c}-${i}`, status, call, ret },
        at: call + random() * (ret - call),
        applies: status === "ok" || (status === "info" && random() < 0.5),
      });
      now = ret;
    }
  }
  const regs = new Map<string, string | null>();
  const history: HistoryOp[] = [];
  for (const { op, applies } of [...planned].sort((x, y) => x.at - y.at)) {
    const current = regs.get(op.key) ?? null;
    if (op.kind === "read") {
      history.push({ ...op, value: undefined, result: { value: applies ? current : "junk" } });
    } else if (op.kind === "write") {
      if (applies) regs.set(op.key, op.value!);
      history.push(op);
    } else if (op.kind === "delete") {
      if (applies) regs.set(op.key, null);
      history.push({ ...op, value: undefined });
    } else {
      // Usually expect the current value (a read-modify-write that wins), sometimes a stale one.
      const expect = random() < 0.6 ? current : `c${int(clients)}-${int(total / clients)}`;
      const ok = current === expect;
      if (applies && ok) regs.set(op.key, op.value!);
      history.push({ ...op, expect, result: { ok } });
    }
  }
  return history.sort((x, y) => x.id - y.id);
}

test("10,000 ops over 10 keys and 10 clients check in a few seconds", (t) => {
  const history = simulate(10_000, 10, 10, 42);
  let start = performance.now();
  const r = checkLinearizable(history);
  const okMs = performance.now() - start;
  assert.equal(r.ok, true, "reason" in r ? r.reason : "");
  assert.equal(r.ok === true && r.keys, 10);
  t.diagnostic(`valid 10,000-op history checked in ${okMs.toFixed(0)} ms`);

  // Corrupt one late read: the checker must find it, exploring a lot more before giving up.
  const reads = history.filter((op) => op.kind === "read" && op.status === "ok");
  const victim = reads[Math.floor(reads.length * 0.9)]!;
  const mutated = history.map((op) =>
    op === victim ? { ...op, result: { value: "c0-0-stale" } } : op,
  );
  start = performance.now();
  const bad = checkLinearizable(mutated);
  const badMs = performance.now() - start;
  assert.equal(bad.ok, false);
  assert.ok(bad.ok === false && bad.key === victim.key);
  t.diagnostic(`corrupted 10,000-op history rejected in ${badMs.toFixed(0)} ms`);
});

test("many timeouts and a single hot key stay tractable", (t) => {
  for (const [keys, infoRate] of [
    [10, 0.2],
    [1, 0.1],
  ] as const) {
    const history = simulate(5_000, 10, keys, 7, infoRate);
    const start = performance.now();
    const r = checkLinearizable(history);
    const ms = performance.now() - start;
    assert.equal(r.ok, true, "reason" in r ? r.reason : "");
    t.diagnostic(`5,000 ops, ${keys} key(s), ${infoRate * 100}% info: ${ms.toFixed(0)} ms`);
  }
});
