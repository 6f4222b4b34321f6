/** FaultyTransport over MemoryTransport: each rule behaves as documented in src/transport/faulty.ts. */
import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";
import { Prng } from "../../src/base/index.js";
import type { NodeId } from "../../src/raft/index.js";
import { FaultyTransport, MemoryNetwork, NetworkFaults } from "../../src/transport/index.js";
import { eventually, heartbeat, Recorder, seqOf, sleep, text } from "./_util.js";

interface FNode {
  readonly t: FaultyTransport;
  readonly rec: Recorder;
}

const live: FaultyTransport[] = [];

afterEach(async () => {
  await Promise.all(live.map((t) => t.stop()));
  live.length = 0;
});

/** Nodes on one memory network, sharing one rule set. */
async function cluster(
  ids: NodeId[],
  faults = new NetworkFaults(new Prng(1)),
): Promise<Record<NodeId, FNode>> {
  const net = new MemoryNetwork();
  const nodes: Record<NodeId, FNode> = {};
  for (const id of ids) {
    const t = new FaultyTransport(net.transport(id), { faults });
    live.push(t);
    const rec = new Recorder();
    await t.start(rec);
    nodes[id] = { t, rec };
  }
  for (const a of ids) for (const b of ids) if (a !== b) nodes[a]!.t.setPeer(b, b);
  return nodes;
}

/** Sends one heartbeat on every link and reports which links delivered it. */
async function probe(nodes: Record<NodeId, FNode>, seq: number): Promise<string[]> {
  const ids = Object.keys(nodes);
  const before = new Map(ids.map((id) => [id, nodes[id]!.rec.batches.length]));
  for (const a of ids)
    for (const b of ids) if (a !== b) nodes[a]!.t.send(b, [heartbeat(a, b, seq)]);
  await sleep(20);
  const delivered: string[] = [];
  for (const b of ids) {
    for (const x of nodes[b]!.rec.batches.slice(before.get(b))) delivered.push(`${x.from}->${b}`);
  }
  return delivered.sort();
}

describe("FaultyTransport", () => {
  test("partition cuts every link across the two sides, both ways; heal restores them", async () => {
    const n = await cluster(["a", "b", "c"]);
    assert.equal((await probe(n, 1)).length, 6);
    n.a!.t.partition(["a"], ["b", "c"]);
    assert.deepEqual(await probe(n, 2), ["b->c", "c->b"]);
    assert.equal(n.a!.t.reachable("b"), false);
    assert.equal(n.b!.t.reachable("c"), true);
    // A call across the partition fails at once, and never reaches the peer.
    const startMs = Date.now();
    const r = await n.b!.t.call("a", "echo", text("x"), 1_000);
    assert.equal(!r.ok && r.code, "UNREACHABLE");
    assert.ok(Date.now() - startMs < 100);
    assert.deepEqual(n.a!.rec.calls, []);
    const ok = await n.b!.t.call("c", "echo", text("x"), 1_000);
    assert.ok(ok.ok);
    n.c!.t.heal(); // any node's handle acts on the shared rules
    assert.equal((await probe(n, 3)).length, 6);
    assert.equal(n.b!.t.faultStats().cut, 1 + 1); // one probe batch + one call
  });

  test("isolate cuts a node from everyone, including nodes added later", async () => {
    const faults = new NetworkFaults(new Prng(1));
    const n = await cluster(["a", "b", "c"], faults);
    n.b!.t.isolate("c");
    assert.deepEqual(await probe(n, 1), ["a->b", "b->a"]);
    assert.equal(faults.isCut("zz", "c"), true);
    assert.equal(faults.isCut("c", "zz"), true);
    assert.equal(faults.isCut("zz", "a"), false);
  });

  test("cutOneWay: one direction only; a call whose answer cannot come back runs but times out", async () => {
    const n = await cluster(["a", "b"]);
    n.a!.t.cutOneWay("a", "b");
    assert.deepEqual(await probe(n, 1), ["b->a"]);
    assert.equal(n.a!.t.reachable("b"), false);
    assert.equal(n.b!.t.reachable("a"), true);

    // Request direction cut: UNREACHABLE at once, the handler never ran.
    const t0 = Date.now();
    const r1 = await n.a!.t.call("b", "echo", text("x"), 300);
    assert.equal(!r1.ok && r1.code, "UNREACHABLE");
    assert.ok(Date.now() - t0 < 100);
    assert.deepEqual(n.b!.rec.calls, []);

    // Response direction cut: the handler ran, the caller waited out its timeout: TIMEOUT.
    const t1 = Date.now();
    const r2 = await n.b!.t.call("a", "echo", text("x"), 300);
    const tookMs = Date.now() - t1;
    assert.equal(!r2.ok && r2.code, "TIMEOUT");
    assert.ok(tookMs >= 280 && tookMs < 1_000, `took ${tookMs} ms`);
    assert.deepEqual(n.a!.rec.calls, [{ from: "b", method: "echo" }]);
  });

  test("drop: probability 1 loses every batch and call, 0 removes the rule", async () => {
    const n = await cluster(["a", "b"]);
    n.a!.t.drop("a", "b", 1);
    for (let i = 0; i < 10; i++) n.a!.t.send("b", [heartbeat("a", "b", i)]);
    n.a!.t.drop("a", "b", 0);
    n.a!.t.send("b", [heartbeat("a", "b", 10)]);
    await eventually(
      () => n.b!.rec.batches.length === 1,
      "the one batch after the rule was removed",
    );
    assert.deepEqual(n.b!.rec.messages().map(seqOf), [10]);
    assert.equal(n.a!.t.faultStats().dropped, 10);
    n.a!.t.drop("a", "b", 1);
    const r = await n.a!.t.call("b", "echo", text("x"), 500);
    assert.equal(!r.ok && r.code, "UNREACHABLE");
    assert.deepEqual(n.b!.rec.calls, []);
  });

  test("drop is deterministic for a given seed", async () => {
    async function run(seed: number): Promise<number[]> {
      const n = await cluster(["a", "b"], new NetworkFaults(new Prng(seed)));
      n.a!.t.drop("a", "b", 0.5);
      for (let i = 0; i < 400; i++) n.a!.t.send("b", [heartbeat("a", "b", i)]);
      await sleep(20);
      return n.b!.rec.messages().map(seqOf);
    }
    const first = await run(42);
    assert.deepEqual(await run(42), first);
    assert.notDeepEqual(await run(43), first);
    assert.ok(first.length > 140 && first.length < 260, `${first.length} of 400 delivered`);
    // What survives keeps its order.
    assert.deepEqual(
      first,
      [...first].sort((x, y) => x - y),
    );
  });

  test("delay holds batches back by the given time, in order; a partition meanwhile loses them", async () => {
    const n = await cluster(["a", "b"]);
    n.a!.t.delay("a", "b", 100);
    const t0 = Date.now();
    for (let i = 0; i < 5; i++) n.a!.t.send("b", [heartbeat("a", "b", i)]);
    await sleep(50);
    assert.equal(n.b!.rec.batches.length, 0);
    await eventually(() => n.b!.rec.batches.length === 5, "the delayed batches");
    assert.ok(Date.now() - t0 >= 95);
    assert.deepEqual(n.b!.rec.messages().map(seqOf), [0, 1, 2, 3, 4]);
    assert.equal(n.a!.t.faultStats().delayed, 5);

    n.a!.t.send("b", [heartbeat("a", "b", 5)]);
    n.a!.t.partition(["a"], ["b"]);
    await sleep(150);
    assert.equal(n.b!.rec.batches.length, 5, "cut while on the wire: lost");
  });

  test("delay applies to a call's request and answer, within its timeout", async () => {
    const n = await cluster(["a", "b"]);
    n.a!.t.delay("a", "b", 100);
    n.a!.t.delay("b", "a", 100);
    const t0 = Date.now();
    const r = await n.a!.t.call("b", "echo", text("x"), 1_000);
    const tookMs = Date.now() - t0;
    assert.ok(r.ok);
    assert.ok(tookMs >= 190 && tookMs < 600, `took ${tookMs} ms`);
    // A round trip longer than the timeout is a TIMEOUT, at the timeout.
    const t1 = Date.now();
    const late = await n.a!.t.call("b", "echo", text("x"), 150);
    const lateMs = Date.now() - t1;
    assert.equal(!late.ok && late.code, "TIMEOUT");
    assert.ok(lateMs >= 140 && lateMs < 500, `took ${lateMs} ms`);
  });

  test("stop() is prompt with delayed batches and calls pending, which are lost", async () => {
    const n = await cluster(["a", "b"]);
    n.a!.t.delay("a", "b", 5_000);
    n.a!.t.send("b", [heartbeat("a", "b", 1)]);
    const pending = n.a!.t.call("b", "echo", text("x"), 10_000);
    const t0 = Date.now();
    await n.a!.t.stop();
    const r = await pending;
    assert.equal(!r.ok && r.code, "UNREACHABLE");
    assert.ok(Date.now() - t0 < 200);
    await sleep(50);
    assert.equal(n.b!.rec.batches.length, 0);
  });
});
