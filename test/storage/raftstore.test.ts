/**
 * GroupStorage against the reference MemoryStorage: random sequences of appends (with
 * conflicting-suffix replacement), hard-state changes, compactions, snapshot installs and
 * restarts, on both engines; several groups per engine; corruption detection; byte limits.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  applyConfChange,
  bootstrapStorage,
  type ConfChange,
  type ConfState,
  decodeConfChange,
  EMPTY_CONF,
  type Entry,
  encodeConfChange,
  type HardState,
  MemoryStorage,
  type Ready,
  type Snapshot,
} from "../../src/raft/index.js";
import {
  CorruptionError,
  entryKey,
  GroupStorage,
  LmdbEngine,
  MemoryEngine,
  type StorageEngine,
  strBytes,
  TAIL_ENTRIES_MAX,
  type TailCacheLimits,
  type WriteOp,
} from "../../src/storage/index.js";
import { removeDir, tempDir, withLmdb } from "./_util.js";

const CONF: ConfState = { ...EMPTY_CONF, voters: ["a", "b", "c"] };

function ready(parts: Partial<Pick<Ready, "hardState" | "snapshot" | "entries">>): Ready {
  const entries = parts.entries ?? [];
  return {
    softState: undefined,
    hardState: parts.hardState,
    snapshot: parts.snapshot,
    entries,
    mustSync: entries.length > 0 || parts.hardState !== undefined || parts.snapshot !== undefined,
    messages: [],
    refusedProposals: [],
    refusedReads: [],
    eagerMessages: [],
    committedEntries: [],
    readStates: [],
  };
}

/** Persists `rd` the way a host does: stage, one batch, then persisted. */
async function persist(engine: StorageEngine, g: GroupStorage, rd: Ready, sync = true) {
  const ops: WriteOp[] = [];
  g.stage(rd, ops);
  await engine.write(ops, { sync });
  g.persisted(rd);
}

/** Applies `rd` to the reference exactly as MemoryPeer does. */
function persistRef(m: MemoryStorage, rd: Ready): void {
  if (rd.snapshot) m.applySnapshot(rd.snapshot);
  m.append(rd.entries);
  if (rd.hardState) m.setHardState(rd.hardState);
}

const provider =
  (g: () => GroupStorage): (() => Snapshot) =>
  () => {
    const s = g();
    const index = s.firstIndex() - 1;
    return { meta: { index, term: s.term(index) ?? 0, confState: CONF }, data: new Uint8Array() };
  };

/** Asserts that `g` answers every RaftStorage read like the reference `m`. */
function assertSame(g: GroupStorage, m: MemoryStorage, where: string): void {
  assert.equal(g.firstIndex(), m.firstIndex(), `${where}: firstIndex`);
  assert.equal(g.lastIndex(), m.lastIndex(), `${where}: lastIndex`);
  assert.deepEqual(g.hardState(), m.hardState(), `${where}: hardState`);
  assert.deepEqual(g.snapshotMeta(), m.snapshotMeta(), `${where}: snapshotMeta`);
  for (let i = Math.max(0, m.firstIndex() - 2); i <= m.lastIndex() + 1; i++) {
    assert.equal(g.term(i), m.term(i), `${where}: term(${i})`);
  }
  const lo = m.firstIndex();
  const hi = m.lastIndex() + 1;
  if (lo < hi) {
    for (const maxBytes of [0, 40, 100, Number.POSITIVE_INFINITY]) {
      assert.deepEqual(
        g.entries(lo, hi, maxBytes),
        m.entries(lo, hi, maxBytes),
        `${where}: entries ${maxBytes}`,
      );
    }
    const mid = lo + Math.floor((hi - lo) / 2);
    assert.deepEqual(
      g.entries(mid, hi, 60),
      m.entries(mid, hi, 60),
      `${where}: entries from ${mid}`,
    );
    // The newest entries (served by the tail cache when it holds them), and slices ending early.
    for (let from = Math.max(lo, hi - 4); from < hi; from++) {
      assert.deepEqual(
        g.entries(from, hi, Number.POSITIVE_INFINITY),
        m.entries(from, hi, Number.POSITIVE_INFINITY),
        `${where}: entries from ${from}`,
      );
      assert.deepEqual(g.entries(from, from + 1, 0), m.entries(from, from + 1, 0));
    }
  }
}

type Action =
  | {
      kind: "append";
      back: number;
      terms: number[];
      /** A configuration entry at position `ccAt` (if within the append). */
      cc: ConfChange | undefined;
      ccAt: number;
      data: Uint8Array;
      hs: boolean;
    }
  | { kind: "hardState"; term: number; vote: string; commit: number }
  | { kind: "compact"; frac: number }
  | { kind: "snapshot"; ahead: number; term: number; follow: number }
  | { kind: "restart" };

const confChangeArb: fc.Arbitrary<ConfChange> = fc.record({
  changes: fc.array(
    fc.record({
      type: fc.constantFrom("addVoter" as const, "addLearner" as const, "removeNode" as const),
      node: fc.constantFrom("a", "b", "c", "d", "e"),
    }),
    { maxLength: 3 },
  ),
  autoLeave: fc.boolean(),
});

const CONFS: readonly ConfState[] = [
  CONF,
  { ...EMPTY_CONF, voters: ["a", "b", "d"], learners: ["e"] },
  {
    ...EMPTY_CONF,
    voters: ["a", "d"],
    votersOutgoing: ["a", "b", "c"],
    learnersNext: ["c"],
    autoLeave: true,
  },
];

/** The configuration at `index`: the reference's base plus its configuration entries, as raft applies them. */
function confAt(m: MemoryStorage, index: number): ConfState {
  let conf = m.snapshotMeta().confState;
  if (index <= m.firstIndex() - 1) return conf;
  for (const e of m.entries(m.firstIndex(), index + 1, Number.POSITIVE_INFINITY)) {
    if (e.type !== "conf") continue;
    const r = applyConfChange(conf, decodeConfChange(e.data));
    if (r.ok) conf = r.confState;
  }
  return conf;
}

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("append" as const),
      back: fc.nat(6),
      terms: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 6 }),
      cc: fc.option(confChangeArb, { nil: undefined, freq: 2 }),
      ccAt: fc.nat(5),
      data: fc.uint8Array({ maxLength: 40 }),
      hs: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("hardState" as const),
      term: fc.nat(9),
      vote: fc.constantFrom("", "a", "b", "ünïcode"),
      commit: fc.nat(30),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("compact" as const),
      frac: fc.double({ min: 0, max: 1, noNaN: true }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("snapshot" as const),
      ahead: fc.integer({ min: -3, max: 6 }),
      term: fc.integer({ min: 1, max: 9 }),
      follow: fc.nat(3),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("restart" as const) }) },
);

/**
 * Runs `actions` against GroupStorage on `engine` and against MemoryStorage, comparing after
 * every step. `restart` reloads the group (and reopens the engine when `reopen` is given).
 */
async function runModel(
  actions: readonly Action[],
  engine0: StorageEngine,
  reopen?: (e: StorageEngine) => Promise<StorageEngine>,
  tail?: TailCacheLimits,
): Promise<StorageEngine> {
  let engine = engine0;
  const ref = new MemoryStorage();
  let g: GroupStorage = GroupStorage.load(engine, "g7", undefined, tail);
  g.setSnapshotProvider(provider(() => g));
  for (const [n, a] of actions.entries()) {
    const where = `step ${n} ${a.kind}`;
    if (a.kind === "append") {
      const last = ref.lastIndex();
      const start = Math.max(1, last + 1 - a.back);
      const entries: Entry[] = a.terms.map((term, i) =>
        a.cc && i === a.ccAt
          ? { term, index: start + i, type: "conf", data: encodeConfChange(a.cc) }
          : {
              term,
              index: start + i,
              type: "normal",
              data: a.data.subarray(0, (a.data.length * (i + 1)) / a.terms.length),
            },
      );
      const hs: HardState | undefined = a.hs
        ? { term: a.terms[0] as number, vote: "a", commit: start - 1 }
        : undefined;
      const rd = ready({ entries, hardState: hs });
      await persist(engine, g, rd, n % 3 !== 0);
      persistRef(ref, rd);
    } else if (a.kind === "hardState") {
      const rd = ready({ hardState: { term: a.term, vote: a.vote, commit: a.commit } });
      await persist(engine, g, rd);
      persistRef(ref, rd);
    } else if (a.kind === "compact") {
      const point = ref.firstIndex() - 1;
      const index = Math.min(
        ref.lastIndex(),
        point + Math.floor(a.frac * (ref.lastIndex() - point + 1)),
      );
      const ops: WriteOp[] = [];
      const did = g.compact(index, index, ops);
      assert.equal(did, index > point, `${where}: compact(${index}) staged`);
      await engine.write(ops, { sync: true });
      if (index > point) {
        ref.createSnapshot(index, confAt(ref, index), new Uint8Array());
        ref.compact(index);
      }
    } else if (a.kind === "snapshot") {
      const index = Math.max(1, ref.lastIndex() + a.ahead);
      const confState = CONFS[a.term % CONFS.length] as ConfState;
      const snapshot: Snapshot = {
        meta: { index, term: a.term, confState },
        data: new Uint8Array([1]),
      };
      const entries: Entry[] = Array.from({ length: a.follow }, (_, i) => ({
        term: a.term,
        index: index + 1 + i,
        type: "normal",
        data: new Uint8Array([i]),
      }));
      const applies = index > ref.firstIndex() - 1;
      // A snapshot at or below the compaction point is ignored by both (raft never sends one).
      const rd = ready({ snapshot, entries: applies ? entries : [] });
      await persist(engine, g, rd);
      persistRef(ref, rd);
      if (applies) assert.deepEqual(g.snapshotMeta(), snapshot.meta, `${where}: snapshot meta`);
    } else {
      if (reopen) engine = await reopen(engine);
      g = GroupStorage.load(engine, "g7", undefined, tail);
      g.setSnapshotProvider(provider(() => g));
    }
    assertSame(g, ref, where);
  }
  // Whatever happened, a reload sees the same state.
  const again = GroupStorage.load(engine, "g7");
  assertSame(again, ref, "final reload");
  return engine;
}

describe("GroupStorage", () => {
  test("matches MemoryStorage under random appends, truncations, compactions and snapshots (MemoryEngine)", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(actionArb, { maxLength: 60, size: "medium" }), async (actions) => {
        await runModel(actions, new MemoryEngine());
      }),
      { numRuns: 500 },
    );
  });

  test("matches MemoryStorage with a tiny tail cache (eviction by count and by bytes)", async () => {
    for (const tail of [
      { entriesMax: 3, bytesMax: 1 << 20 },
      { entriesMax: 1 << 10, bytesMax: 150 },
      { entriesMax: 0, bytesMax: 0 },
    ]) {
      await fc.assert(
        fc.asyncProperty(
          fc.array(actionArb, { maxLength: 60, size: "medium" }),
          async (actions) => {
            await runModel(actions, new MemoryEngine(), undefined, tail);
          },
        ),
        { numRuns: 150 },
      );
    }
  });

  test("the newest entries are read from memory, older ones from the engine", async () => {
    const engine = new MemoryEngine();
    let scans = 0;
    let gets = 0;
    const counting: StorageEngine = Object.assign(Object.create(engine) as StorageEngine, {
      scan: (...a: Parameters<StorageEngine["scan"]>) => {
        scans++;
        return engine.scan(...a);
      },
      get: (...a: Parameters<StorageEngine["get"]>) => {
        gets++;
        return engine.get(...a);
      },
    });
    const g = GroupStorage.load(counting, "g1");
    const total = TAIL_ENTRIES_MAX + 20;
    for (let i = 1; i <= total; i += 10) {
      const entries: Entry[] = Array.from({ length: 10 }, (_, k) => ({
        term: 1,
        index: i + k,
        type: "normal" as const,
        data: new Uint8Array([k]),
      }));
      await persist(counting, g, ready({ entries }));
    }
    scans = 0;
    gets = 0;
    const newest = g.entries(total - 10, total + 1, Number.POSITIVE_INFINITY);
    assert.equal(newest.length, 11);
    assert.equal(g.term(total - 5), 1);
    assert.equal(scans + gets, 0, "the tail was read from the engine");
    const oldest = g.entries(1, 5, Number.POSITIVE_INFINITY);
    assert.deepEqual(
      oldest.map((e) => e.index),
      [1, 2, 3, 4],
    );
    assert.ok(scans > 0, "evicted entries come from the engine");
    // A compaction drops cached entries below the new base; a reload starts with no cache.
    const ops: WriteOp[] = [];
    g.compact(total - 3, total, ops);
    await counting.write(ops, { sync: true });
    assert.deepEqual(
      g.entries(total - 2, total + 1, Number.POSITIVE_INFINITY).map((e) => e.index),
      [total - 2, total - 1, total],
    );
    scans = 0;
    const again = GroupStorage.load(counting, "g1");
    scans = 0;
    assert.equal(again.entries(total, total + 1, Number.POSITIVE_INFINITY).length, 1);
    assert.equal(scans, 1);
  });

  test("matches MemoryStorage on LmdbEngine, across close/reopen", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(actionArb, { maxLength: 40, size: "medium" }), async (actions) => {
        const dir = await tempDir("raftstore");
        let engine: StorageEngine = await LmdbEngine.open(dir);
        try {
          engine = await runModel(actions, engine, async (e) => {
            await e.close();
            return LmdbEngine.open(dir);
          });
        } finally {
          await engine.close();
          await removeDir(dir);
        }
      }),
      { numRuns: 40 },
    );
  });

  test("regression: an append wholly below the log base changes nothing (not even conf markers)", async () => {
    // Found by the LMDB property run: the skipped append used to delete entry 2's conf marker,
    // so the compaction below folded the wrong configuration into the log base.
    const actions: Action[] = [
      { kind: "snapshot", ahead: 0, term: 1, follow: 0 },
      {
        kind: "append",
        back: 0,
        terms: [1],
        cc: { changes: [{ type: "addVoter", node: "e" }], autoLeave: false },
        ccAt: 0,
        data: new Uint8Array(),
        hs: false,
      },
      {
        kind: "append",
        back: 2,
        terms: [1],
        cc: undefined,
        ccAt: 0,
        data: new Uint8Array(),
        hs: false,
      },
      { kind: "compact", frac: 0.5 },
    ];
    await runModel(actions, new MemoryEngine());
    await withLmdb((engine) => runModel(actions, engine));
  });

  test("bootstrap stages exactly what bootstrapStorage writes", async () => {
    const engine = new MemoryEngine();
    const ops: WriteOp[] = [];
    GroupStorage.bootstrap("g1", ["a", "b", "c"], ops);
    await engine.write(ops, { sync: true });
    const ref = new MemoryStorage();
    bootstrapStorage(ref, ["a", "b", "c"]);
    assertSame(GroupStorage.load(engine, "g1"), ref, "bootstrap");
    assert.deepEqual(GroupStorage.load(engine, "g1").snapshot()?.meta.index, 0);
  });

  test("several groups share an engine independently; destroy removes one; listGroups", () =>
    withLmdb(async (engine) => {
      const ids = ["1", "10", "2", "g.x"];
      const refs = new Map(ids.map((id) => [id, new MemoryStorage()]));
      const groups = new Map(ids.map((id) => [id, GroupStorage.load(engine, id)]));
      for (let round = 0; round < 20; round++) {
        // One batch for every group's Ready: group commit.
        const ops: WriteOp[] = [];
        const rds = new Map<string, Ready>();
        for (const [k, id] of ids.entries()) {
          const ref = refs.get(id) as MemoryStorage;
          const start = Math.max(1, ref.lastIndex() + 1 - ((round + k) % 3));
          const entries: Entry[] = [0, 1, 2].map((i) => ({
            term: round + 1,
            index: start + i,
            type: "normal",
            data: strBytes(`${id}:${round}:${i}`),
          }));
          const rd = ready({
            entries,
            hardState: { term: round + 1, vote: id, commit: start - 1 },
          });
          (groups.get(id) as GroupStorage).stage(rd, ops);
          rds.set(id, rd);
        }
        if (round === 10) (groups.get("2") as GroupStorage).compact(5, 5, ops);
        await engine.write(ops, { sync: true });
        for (const id of ids) {
          (groups.get(id) as GroupStorage).persisted(rds.get(id) as Ready);
          persistRef(refs.get(id) as MemoryStorage, rds.get(id) as Ready);
        }
        if (round === 10) {
          const r = refs.get("2") as MemoryStorage;
          r.createSnapshot(5, confAt(r, 5), new Uint8Array());
          r.compact(5);
        }
      }
      for (const id of ids) {
        const g = GroupStorage.load(engine, id);
        g.setSnapshotProvider(provider(() => g));
        assertSame(g, refs.get(id) as MemoryStorage, `group ${id}`);
      }
      assert.deepEqual(GroupStorage.listGroups(engine), ["1", "10", "2", "g.x"]);
      const ops: WriteOp[] = [];
      GroupStorage.destroy("1", ops);
      await engine.write(ops, { sync: true });
      assert.deepEqual(GroupStorage.listGroups(engine), ["10", "2", "g.x"]);
      const gone = GroupStorage.load(engine, "1");
      assert.equal(gone.lastIndex(), 0);
      assert.deepEqual(gone.hardState(), { term: 0, vote: "", commit: 0 });
      for (const id of ["10", "2", "g.x"]) {
        const g = GroupStorage.load(engine, id);
        g.setSnapshotProvider(provider(() => g));
        assertSame(g, refs.get(id) as MemoryStorage, `group ${id} after destroying 1`);
      }
    }));

  test("a flipped byte in a stored entry is reported, never returned", () =>
    withLmdb(async (engine) => {
      const w = GroupStorage.load(engine, "7");
      const entries: Entry[] = Array.from({ length: 10 }, (_, i) => ({
        term: 3,
        index: i + 1,
        type: "normal",
        data: strBytes(`payload ${i}`),
      }));
      await persist(engine, w, ready({ entries, hardState: { term: 3, vote: "a", commit: 4 } }));
      // The writer serves its newest entries from memory; a fresh load reads them from the disk.
      const g = GroupStorage.load(engine, "7");
      for (const at of [0, 5, 13, 20, 22]) {
        // Flip one byte of entry 5 (crc, term, index, type or data) directly through the engine.
        const key = entryKey("7", 5);
        const good = engine.get(key) as Uint8Array;
        const bad = good.slice();
        bad[at] = (bad[at] as number) ^ 0x01;
        await engine.write([{ op: "put", key, value: bad }], { sync: true });
        const isCorrupt = (err: unknown) =>
          err instanceof CorruptionError &&
          err.code === "CORRUPT_ENTRY" &&
          err.group === "7" &&
          err.index === 5;
        assert.throws(() => g.term(5), isCorrupt, `byte ${at}: term`);
        assert.throws(
          () => g.entries(1, 11, Number.POSITIVE_INFINITY),
          isCorrupt,
          `byte ${at}: entries`,
        );
        assert.throws(() => g.entries(5, 6, 0), isCorrupt);
        // Entries before the corrupt one are still served.
        assert.equal(g.entries(1, 5, Number.POSITIVE_INFINITY).length, 4);
        await engine.write([{ op: "put", key, value: good }], { sync: true });
        assert.equal(g.term(5), 3);
      }
      // A corrupt last entry or hard state stops load(); a missing entry is corruption too.
      const lastKey = entryKey("7", 10);
      const last = (engine.get(lastKey) as Uint8Array).slice();
      last[25] = (last[25] as number) ^ 0x80;
      await engine.write([{ op: "put", key: lastKey, value: last }], { sync: true });
      assert.throws(() => GroupStorage.load(engine, "7"), CorruptionError);
      await engine.write([{ op: "del", key: entryKey("7", 7) }], { sync: true });
      assert.throws(
        () => g.entries(6, 9, Number.POSITIVE_INFINITY),
        (e: unknown) => e instanceof CorruptionError && e.index === 7,
      );
      assert.throws(() => g.term(7), CorruptionError);
      const hsKey = strBytes("r/7/hs");
      const hs = (engine.get(hsKey) as Uint8Array).slice();
      hs[6] = (hs[6] as number) ^ 0x04;
      await engine.write([{ op: "put", key: hsKey, value: hs }], { sync: true });
      assert.throws(
        () => GroupStorage.load(engine, "7"),
        (e: unknown) => e instanceof CorruptionError && e.code === "CORRUPT_META",
      );
    }));

  test("entries() byte limits behave like MemoryStorage (at least one entry)", async () => {
    const engine = new MemoryEngine();
    const g = GroupStorage.load(engine, "g");
    const ref = new MemoryStorage();
    const entries: Entry[] = Array.from({ length: 30 }, (_, i) => ({
      term: 1 + Math.floor(i / 7),
      index: i + 1,
      type: i % 5 === 0 ? "conf" : "normal",
      data: new Uint8Array(i * 3),
    }));
    const rd = ready({ entries });
    await persist(engine, g, rd);
    persistRef(ref, rd);
    for (const maxBytes of [0, 1, 24, 25, 50, 100, 500, 2000, Number.POSITIVE_INFINITY]) {
      for (const [lo, hi] of [
        [1, 31],
        [10, 20],
        [29, 31],
        [5, 6],
        [7, 7],
      ] as const) {
        assert.deepEqual(
          g.entries(lo, hi, maxBytes),
          ref.entries(lo, hi, maxBytes),
          `${lo},${hi},${maxBytes}`,
        );
      }
    }
    assert.equal(g.entries(30, 31, 0).length, 1);
    assert.throws(() => g.entries(0, 3, 100), /out of/);
    assert.throws(() => g.entries(3, 32, 100), /out of/);
  });

  test("compaction is bounded by the caller's applied index and the last index", async () => {
    const engine = new MemoryEngine();
    const g = GroupStorage.load(engine, "g");
    const entries: Entry[] = [1, 2, 3].map((index) => ({
      term: 1,
      index,
      type: "normal",
      data: new Uint8Array(),
    }));
    await persist(engine, g, ready({ entries }));
    assert.throws(() => g.compact(3, 2, []), /applied/);
    assert.throws(() => g.compact(4, 9, []), /last index/);
    const ops: WriteOp[] = [];
    assert.equal(g.compact(3, 3, ops), true);
    await engine.write(ops, { sync: true });
    assert.equal(g.firstIndex(), 4);
    assert.equal(g.lastIndex(), 3);
    assert.equal(g.term(3), 1);
    assert.equal(g.compact(2, 3, []), false);
    // A compacted group needs a snapshot provider: the log alone cannot make a snapshot.
    assert.throws(() => GroupStorage.load(engine, "g").snapshot(), /snapshot provider/);
  });
});
