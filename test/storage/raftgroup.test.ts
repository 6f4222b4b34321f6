/**
 * A real Raft group on GroupStorage: three RawNodes, each on its own LmdbEngine, hosted like a
 * real node does (ready → send eager messages → stage persist + apply into one batch → write →
 * persisted → advance → send). Elect, replicate 100 entries, compact, restart a node from its engine alone (load()),
 * and check it catches up (through a snapshot, since the others compacted past it).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Prng } from "../../src/base/index.js";
import {
  type ConfState,
  EMPTY_CONF,
  type Entry,
  type Message,
  type NodeId,
  RawNode,
  type Snapshot,
} from "../../src/raft/index.js";
import {
  bytesStr,
  concat,
  decodeU64,
  GroupStorage,
  LmdbEngine,
  prefixEnd,
  strBytes,
  u64,
  type WriteOp,
} from "../../src/storage/index.js";
import { removeDir, tempDir } from "./_util.js";

const GROUP = "g1";
const IDS: readonly NodeId[] = ["a", "b", "c"];
const CONF: ConfState = { ...EMPTY_CONF, voters: [...IDS] };

// The state machine lives in the same engine as the log, under m/: one batch persists both.
const M_VALUES = strBytes("m/v/");
const M_APPLIED = strBytes("m/applied");

/** One replica: engine, group storage, raft node; the state machine is the m/ keys. */
class Node {
  raw!: RawNode;
  storage!: GroupStorage;
  constructor(
    readonly id: NodeId,
    readonly dir: string,
    public engine: LmdbEngine,
    private readonly seed: number,
  ) {
    this.boot();
  }

  /** Builds the raft node from what the engine holds (start and restart alike). */
  boot(): void {
    const a = this.engine.get(M_APPLIED);
    const applied = a ? decodeU64(a) : 0;
    this.storage = GroupStorage.load(this.engine, GROUP, () => this.snapshot());
    this.raw = new RawNode({
      id: this.id,
      storage: this.storage,
      random: new Prng(this.seed),
      applied,
      electionTimeoutTicks: 10,
      heartbeatIntervalTicks: 1,
    });
  }

  applied(): number {
    const a = this.engine.get(M_APPLIED);
    return a ? decodeU64(a) : 0;
  }

  values(): string[] {
    return [...this.engine.scan(M_VALUES, prefixEnd(M_VALUES))].map(([, v]) => bytesStr(v));
  }

  /** A snapshot of the state machine at its applied index (the group's snapshot provider). */
  snapshot(): Snapshot {
    const index = this.applied();
    const term = this.storage.term(index);
    assert.ok(term !== undefined, `term of applied index ${index}`);
    const rows = [...this.engine.scan(M_VALUES, prefixEnd(M_VALUES))].map(([k, v]) => [
      decodeU64(k, M_VALUES.length),
      bytesStr(v),
    ]);
    return { meta: { index, term, confState: CONF }, data: strBytes(JSON.stringify(rows)) };
  }

  /** One host cycle: everything ready is persisted and applied in one batch per Ready. */
  async cycle(): Promise<Message[]> {
    const out: Message[] = [];
    while (this.raw.hasReady()) {
      const rd = this.raw.ready();
      // A leader's appends and heartbeats do not wait for this Ready's fsync.
      out.push(...rd.eagerMessages);
      const ops: WriteOp[] = [];
      this.storage.stage(rd, ops);
      if (rd.snapshot) {
        ops.push({ op: "delRange", start: M_VALUES, end: prefixEnd(M_VALUES) });
        const rows = JSON.parse(bytesStr(rd.snapshot.data)) as [number, string][];
        for (const [i, v] of rows) {
          ops.push({ op: "put", key: concat(M_VALUES, u64(i)), value: strBytes(v) });
        }
        ops.push({ op: "put", key: M_APPLIED, value: u64(rd.snapshot.meta.index) });
      }
      for (const e of rd.committedEntries) this.apply(e, ops);
      if (ops.length > 0) await this.engine.write(ops, { sync: rd.mustSync });
      this.storage.persisted(rd);
      this.raw.advance(rd);
      out.push(...rd.messages);
    }
    return out;
  }

  private apply(e: Entry, ops: WriteOp[]): void {
    if (e.type === "normal" && e.data.length > 0) {
      ops.push({ op: "put", key: concat(M_VALUES, u64(e.index)), value: e.data.slice() });
    }
    ops.push({ op: "put", key: M_APPLIED, value: u64(e.index) });
  }

  /** Compacts the log up to the applied index. */
  async compact(): Promise<void> {
    const applied = this.applied();
    const ops: WriteOp[] = [];
    if (this.storage.compact(applied, applied, ops)) await this.engine.write(ops, { sync: true });
  }
}

class Cluster {
  readonly down = new Set<NodeId>();
  constructor(readonly nodes: Map<NodeId, Node>) {}

  node(id: NodeId): Node {
    return this.nodes.get(id) as Node;
  }

  /** Runs host cycles and delivers messages until the network is quiet. */
  async pump(maxRounds = 200): Promise<void> {
    for (let round = 0; round < maxRounds; round++) {
      const msgs: Message[] = [];
      for (const [id, n] of this.nodes) if (!this.down.has(id)) msgs.push(...(await n.cycle()));
      if (msgs.length === 0) return;
      for (const m of msgs) if (!this.down.has(m.to)) this.node(m.to).raw.step(m);
    }
    assert.fail("the network did not quiesce");
  }

  async tick(times: number): Promise<void> {
    for (let i = 0; i < times; i++) {
      for (const [id, n] of this.nodes) if (!this.down.has(id)) n.raw.tick();
      await this.pump();
    }
  }

  leader(): Node | undefined {
    return [...this.nodes.values()].find(
      (n) => !this.down.has(n.id) && n.raw.basicStatus().role === "leader",
    );
  }

  async proposeAll(values: readonly string[]): Promise<void> {
    for (let i = 0; i < values.length; i += 10) {
      const leader = this.leader();
      assert.ok(leader, "no leader");
      for (const v of values.slice(i, i + 10)) {
        const r = leader.raw.propose(strBytes(v));
        assert.ok(r.ok, `proposal refused: ${JSON.stringify(r)}`);
      }
      await this.pump();
    }
    // One more round so followers learn the final commit index.
    await this.tick(2);
  }
}

test("a three-node Raft group runs on GroupStorage over LmdbEngine, and a restarted node catches up", async () => {
  const nodes = new Map<NodeId, Node>();
  const dirs: string[] = [];
  const engines: LmdbEngine[] = [];
  try {
    for (const [i, id] of IDS.entries()) {
      const dir = await tempDir(`raft-${id}`);
      dirs.push(dir);
      const engine = await LmdbEngine.open(dir);
      engines.push(engine);
      const ops: WriteOp[] = [];
      GroupStorage.bootstrap(GROUP, IDS, ops);
      await engine.write(ops, { sync: true });
      nodes.set(id, new Node(id, dir, engine, 100 + i));
    }
    const c = new Cluster(nodes);

    // Apply the bootstrap configuration entry first: raft does not campaign before that.
    await c.pump();
    c.node("a").raw.campaign();
    await c.pump();
    assert.equal(c.leader()?.id, "a");

    const first = Array.from({ length: 100 }, (_, i) => `v${i}`);
    await c.proposeAll(first);
    for (const id of IDS) assert.deepEqual(c.node(id).values(), first, `values on ${id}`);
    const syncs = IDS.map((id) => c.node(id).engine.stats().syncs);
    assert.ok(
      syncs.every((s) => s < 100),
      `batching keeps fsyncs below one per entry: ${syncs}`,
    );

    // c goes down; the others go on and compact past everything c has.
    c.down.add("c");
    const second = Array.from({ length: 50 }, (_, i) => `w${i}`);
    await c.proposeAll(second);
    for (const id of ["a", "b"]) await c.node(id).compact();
    const leader = c.node("a");
    const cLast = c.node("c").storage.lastIndex();
    assert.ok(leader.storage.firstIndex() > cLast + 1, "c needs a snapshot");

    // Restart c from its directory alone: close, reopen, load().
    const nc = c.node("c");
    await nc.engine.close();
    nc.engine = await LmdbEngine.open(nc.dir);
    nc.boot();
    assert.equal(nc.storage.lastIndex(), nc.raw.status().lastIndex);
    assert.deepEqual(nc.values(), first, "c restarts with what it had applied");
    c.down.delete("c");
    await c.tick(5);

    const all = [...first, ...second];
    for (const id of IDS)
      assert.deepEqual(c.node(id).values(), all, `values on ${id} after catch-up`);
    // c never compacted: a log base past its old last index is the installed snapshot.
    assert.ok(nc.storage.snapshotMeta().index > cLast, "c caught up through a snapshot");
    assert.deepEqual(nc.storage.snapshotMeta().confState, CONF);
    // And the group keeps working with c in it.
    await c.proposeAll(["x"]);
    for (const id of IDS) assert.deepEqual(c.node(id).values(), [...all, "x"]);
    // A final reload of every node sees what it holds in memory.
    for (const id of IDS) {
      const n = c.node(id);
      const again = GroupStorage.load(n.engine, GROUP);
      assert.equal(again.lastIndex(), n.storage.lastIndex());
      assert.equal(again.firstIndex(), n.storage.firstIndex());
      assert.deepEqual(again.hardState(), n.storage.hardState());
    }
  } finally {
    for (const n of nodes.values()) engines.push(n.engine);
    for (const e of engines) await e.close().catch(() => {});
    for (const dir of dirs) await removeDir(dir);
  }
});
