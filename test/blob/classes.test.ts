/**
 * Replication classes (src/blob/classes.ts) on three in-process nodes sharing one memory
 * network: each node runs the default class (3 copies) and classes 1 and 2 over the same ring,
 * cut to their first N owners. A class-N chunk lands on exactly its first N owners, anti-entropy
 * repairs a lost copy within the class and never adds a copy beyond N, reads fall back across
 * classes, and calls are routed by their method prefix.
 */
import assert from "node:assert/strict";
import { rm, unlink } from "node:fs/promises";
import { after, before, test } from "node:test";
import {
  BlobService,
  ChunkStore,
  classMethodPrefix,
  ReplicationClasses,
  type RingView,
  ringCut,
} from "../../src/blob/index.js";
import { partitionOf } from "../../src/placement/index.js";
import type { NodeId } from "../../src/raft/index.js";
import { MemoryNetwork, NoHandlerError } from "../../src/transport/index.js";
import { chunk, RING_ABC, tempDir } from "./_cluster.js";

const view: RingView = { ring: RING_ABC, partitions: RING_ABC.length };
const ids: NodeId[] = ["a", "b", "c"];
const nodes = new Map<NodeId, { classes: ReplicationClasses; stores: ChunkStore[] }>();
const dirs: string[] = [];
const stops: (() => Promise<void>)[] = [];

before(async () => {
  const net = new MemoryNetwork();
  const transports = new Map(ids.map((id) => [id, net.transport(id)]));
  for (const id of ids) {
    const t = transports.get(id) as ReturnType<MemoryNetwork["transport"]>;
    const service = async (replicas: number | undefined) => {
      const dir = await tempDir();
      dirs.push(dir);
      const store = await ChunkStore.open(dir);
      const cut = replicas === undefined ? (v: RingView) => v : ringCut(replicas);
      const svc = new BlobService({
        self: id,
        transport: t,
        store,
        ring: () => cut(view),
        callTimeoutMs: 1_000,
        writeQuorum: Math.min(2, replicas ?? 3),
        ...(replicas !== undefined ? { methodPrefix: classMethodPrefix(replicas) } : {}),
      });
      return { svc, store };
    };
    const d = await service(undefined);
    const one = await service(1);
    const two = await service(2);
    const classes = new ReplicationClasses(
      d.svc,
      new Map([
        [1, one.svc],
        [2, two.svc],
      ]),
    );
    await t.start({
      onRaft: () => {},
      onCall: (from, method, body) =>
        classes.handleCall(from, method, body) ?? Promise.reject(new NoHandlerError(method)),
    });
    stops.push(async () => {
      await classes.stop();
      await t.stop();
    });
    nodes.set(id, { classes, stores: [d.store, one.store, two.store] });
  }
  for (const a of ids) for (const b of ids) if (a !== b) transports.get(a)?.setPeer(b, b);
});

after(async () => {
  for (const s of stops) await s();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const node = (id: NodeId) => nodes.get(id) as { classes: ReplicationClasses; stores: ChunkStore[] };
const owners = (hash: Uint8Array) => RING_ABC[partitionOf(hash, RING_ABC.length)] as NodeId[];

/** The nodes whose store of class index `k` (0: default, 1: class 1, 2: class 2) has `hash`. */
async function holders(k: number, hash: Uint8Array): Promise<NodeId[]> {
  const out: NodeId[] = [];
  for (const id of ids) if ((await node(id).stores[k]?.get(hash))?.ok) out.push(id);
  return out;
}

test("a class-N chunk lives on exactly its first N owners; anti-entropy keeps it so", async () => {
  for (const n of [1, 2]) {
    const data = chunk(10_000);
    const p = await node("c").classes.putChunk(data, { replicas: n });
    assert.ok(p.ok, JSON.stringify(p));
    const want = owners(p.hash).slice(0, n).sort();
    // W = min(2, N) copies are durable at the answer; the rest (none here) would follow.
    assert.deepEqual((await holders(n, p.hash)).sort(), want, `class ${n}`);
    assert.deepEqual(await holders(0, p.hash), [], `class ${n}: nothing in the default store`);
    for (const id of ids) for (const s of node(id).classes.all()) await s.antiEntropyRound();
    for (const id of ids) for (const s of node(id).classes.all()) await s.runResync();
    assert.deepEqual((await holders(n, p.hash)).sort(), want, `class ${n} after anti-entropy`);
  }
});

test("anti-entropy repairs a lost copy within its class", async () => {
  const data = chunk(12_000);
  const p = await node("a").classes.putChunk(data, { replicas: 2 });
  assert.ok(p.ok);
  const [first, second] = owners(p.hash) as [NodeId, NodeId];
  await unlink(node(second).stores[2]?.pathOf(p.hash) as string);
  assert.deepEqual(await holders(2, p.hash), [first]);
  for (const id of ids) for (const s of node(id).classes.all()) await s.antiEntropyRound();
  for (const id of ids) for (const s of node(id).classes.all()) await s.runResync();
  assert.deepEqual((await holders(2, p.hash)).sort(), [first, second].sort());
});

test("reads take the body's class first and fall back to the others", async () => {
  const data = chunk(9_000);
  const p = await node("b").classes.putChunk(data, { replicas: 1 });
  assert.ok(p.ok);
  for (const id of ids) {
    const own = await node(id).classes.getChunk(p.hash, { replicas: 1 });
    assert.ok(own.ok && Buffer.from(own.data).equals(data), `${id}, class 1`);
    // Asked as a default-class chunk (e.g. a body restored from a backup): still found.
    const other = await node(id).classes.getChunk(p.hash);
    assert.ok(other.ok && Buffer.from(other.data).equals(data), `${id}, default class`);
  }
  const missing = await node("a").classes.getChunk(Buffer.alloc(32, 7), { replicas: 2 });
  assert.ok(!missing.ok);
  const st = node("a").classes.stats();
  assert.ok(st.getOk >= 2, JSON.stringify(st));
});
