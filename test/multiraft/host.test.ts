/**
 * The multi-Raft host, in one process (memory engine and transport, real timers): group commit,
 * batching per destination node, quiescence, restart recovery and snapshot catch-up.
 */
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { MultiRaftHost } from "../../src/multiraft/index.js";
import { type ApplyResult, encodeCommand, ShardMachine } from "../../src/shard/index.js";
import { MemoryEngine } from "../../src/storage/index.js";
import {
  FaultyTransport,
  MemoryNetwork,
  NetworkFaults,
  type Transport,
} from "../../src/transport/index.js";

const enc = new TextEncoder();
type Host = MultiRaftHost<ApplyResult, ShardMachine>;

interface Node {
  id: string;
  engine: MemoryEngine;
  transport: Transport;
  host: Host;
  /** Requests (Transport.call) this node served. */
  calls: number;
}

const running: Node[] = [];
after(async () => {
  for (const n of running) await n.host.stop();
});

async function startNode(
  net: MemoryNetwork,
  id: string,
  peers: readonly string[],
  engine = new MemoryEngine(),
  opts = {},
  faults?: NetworkFaults,
): Promise<Node> {
  const transport: Transport = faults
    ? new FaultyTransport(net.transport(id), { faults })
    : net.transport(id);
  const host: Host = new MultiRaftHost<ApplyResult, ShardMachine>({
    nodeId: id,
    engine,
    transport,
    seed: id.charCodeAt(1),
    tickMs: 10,
    electionTimeoutTicks: 10,
    machine: (g) => new ShardMachine(engine, g),
    ...opts,
  });
  const n: Node = { id, engine, transport, host, calls: 0 };
  await transport.start({
    onRaft: (from, b) => host.receive(from, b),
    onCall: async () => {
      n.calls++;
      return new Uint8Array();
    },
  });
  for (const p of peers) if (p !== id) transport.setPeer(p, p);
  host.start();
  running.push(n);
  return n;
}

function put(key: string, value: string): Uint8Array {
  return encodeCommand({
    op: "put",
    key: enc.encode(key),
    value: enc.encode(value),
    cond: { kind: "none" },
  });
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function cluster(groups: number, opts = {}, faults?: NetworkFaults): Promise<Node[]> {
  const net = new MemoryNetwork();
  const ids = ["n1", "n2", "n3"];
  const nodes = await Promise.all(
    ids.map((id) => startNode(net, id, ids, new MemoryEngine(), opts, faults)),
  );
  for (let g = 0; g < groups; g++) for (const n of nodes) await n.host.createGroup(`g${g}`, ids);
  for (let g = 0; g < groups; g++) (nodes[g % 3] as Node).host.campaign(`g${g}`);
  // Every node, not just the campaigner, must know each group's leader: a follower that has
  // not yet heard the first append would answer a write with NOT_LEADER (no hint).
  await waitFor(
    () =>
      Array.from({ length: groups }, (_, g) => `g${g}`).every((g) => {
        const l = (nodes[0] as Node).host.leaderOf(g);
        return Boolean(l) && nodes.every((n) => n.host.leaderOf(g) === l);
      }),
    5000,
    "leaders",
  );
  return nodes;
}

function leaderNode(nodes: Node[], group: string): Node {
  const id = (nodes[0] as Node).host.leaderOf(group);
  const n = nodes.find((x) => x.id === id);
  assert.ok(n, `leader of ${group}`);
  return n;
}

describe("multi-raft host", () => {
  test("group commit: writes to many groups share fsyncs", async () => {
    const nodes = await cluster(8);
    const before = nodes.map((n) => n.engine.stats().syncs);
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 400; i++) {
      const g = `g${i % 8}`;
      writes.push(leaderNode(nodes, g).host.propose(g, put(`k${i}`, `v${i}`), 5000));
    }
    const results = await Promise.all(writes);
    for (const r of results) assert.deepEqual((r as { ok: boolean }).ok, true);
    const syncs = nodes.reduce((s, n, i) => s + n.engine.stats().syncs - (before[i] as number), 0);
    // Each write is durable on 3 nodes: without batching that is >= 1,200 fsyncs.
    assert.ok(syncs < 400, `${syncs} fsyncs for 400 writes on 3 replicas`);
  });

  test("messages to one node travel in one batch per cycle, across groups", async () => {
    const nodes = await cluster(8);
    const n = nodes[0] as Node;
    const before = n.host.stats.batchesSent;
    const beforeMsgs = n.host.stats.messagesSent;
    await new Promise((r) => setTimeout(r, 200)); // heartbeats of every group n1 leads
    const batches = n.host.stats.batchesSent - before;
    const msgs = n.host.stats.messagesSent - beforeMsgs;
    assert.ok(msgs > batches, `${msgs} messages in ${batches} batches`);
  });

  test("idle groups quiesce: no ticks, no messages", async () => {
    const nodes = await cluster(20, { quiesceAfterTicks: 5 });
    await waitFor(
      () => nodes.every((n) => n.host.quiescedGroups() === 20),
      5000,
      "all groups quiesced",
    );
    // A follower answers the quiescing heartbeat once its cycle's write is durable, which can
    // be a moment after the group counts as quiesced here: let those answers go out first.
    const sentNow = () => nodes.map((n) => n.transport.stats().messagesSent).join();
    for (let i = 0, last = ""; i < 100 && sentNow() !== last; i++) {
      last = sentNow();
      await new Promise((r) => setTimeout(r, 50));
    }
    const ticks = nodes.map((n) => n.host.stats.ticksDelivered);
    const msgs = nodes.map((n) => n.transport.stats().messagesSent);
    await new Promise((r) => setTimeout(r, 300)); // 30 ticks of wall time
    nodes.forEach((n, i) => {
      assert.equal(n.host.stats.ticksDelivered, ticks[i], `${n.id} ticked quiesced groups`);
      assert.equal(n.transport.stats().messagesSent, msgs[i], `${n.id} sent messages while idle`);
    });
    // A write wakes its group and commits as usual.
    const l = leaderNode(nodes, "g3");
    const r = await l.host.propose("g3", put("wake", "up"), 5000);
    assert.equal(r.ok, true);
  });

  test("linearizable reads on followers see the latest write", async () => {
    const nodes = await cluster(2);
    const l = leaderNode(nodes, "g0");
    const f = nodes.find((n) => n !== l) as Node;
    assert.equal((await l.host.propose("g0", put("x", "1"), 5000)).ok, true);
    const r = await f.host.linearizableRead("g0", 5000);
    assert.ok(r.ok);
    assert.equal(new TextDecoder().decode(r.machine.get(enc.encode("x"))?.value), "1");
  });

  test("a follower's write is forwarded inside Raft and answered from its own apply", async () => {
    const nodes = await cluster(1);
    const l = leaderNode(nodes, "g0");
    const f = nodes.find((n) => n !== l) as Node;
    const r1 = await f.host.propose("g0", put("x", "1"), 5000);
    const r2 = await l.host.propose("g0", put("x", "2"), 5000);
    const r3 = await f.host.propose("g0", put("x", "3"), 5000);
    assert.ok(r1.ok && r2.ok && r3.ok, JSON.stringify([r1, r2, r3]));
    const revs = [r1, r2, r3].map((r) => (r.ok && r.result?.ok ? r.result.revision : -1));
    const [a, b, c] = revs as [number, number, number];
    assert.ok(a < b && b < c, `revisions ${revs}`);
    // Every replica applied the same three writes; no request between nodes was needed.
    for (const n of nodes) {
      await waitFor(
        () => n.host.localMachine("g0")?.get(enc.encode("x"))?.revision === revs[2],
        5000,
        "apply",
      );
    }
    assert.deepEqual(
      nodes.map((n) => n.calls),
      [0, 0, 0],
    );
  });

  test("a forwarded write lost in a leader change fails as DROPPED (certainly not applied)", async () => {
    const faults = new NetworkFaults();
    // Long election timeouts: the forwarded write reaches the old leader well before anyone
    // campaigns (which would make it refuse the write instead: NOT_LEADER, also certain).
    const nodes = await cluster(1, { electionTimeoutTicks: 40, quiesceAfterTicks: 1000 }, faults);
    const l = leaderNode(nodes, "g0");
    const f = nodes.find((n) => n !== l) as Node;
    const other = nodes.find((n) => n !== l && n !== f) as Node;
    assert.ok((await f.host.propose("g0", put("warm", "1"), 5000)).ok);
    // The old leader still hears the follower, but nobody hears it: it appends the forwarded
    // write and can never commit it; the others elect a new leader in a newer term.
    faults.cutOneWay(l.id, f.id);
    faults.cutOneWay(l.id, other.id);
    const r = await f.host.propose("g0", put("lost", "1"), 10_000);
    assert.deepEqual(r.ok ? "ok" : r.code, "DROPPED");
    faults.heal();
    await waitFor(() => l.host.leaderOf("g0") !== l.id, 5000, "old leader steps down");
    // The write never shows up anywhere, even after the old leader rejoins.
    const w = await f.host.propose("g0", put("after", "1"), 5000);
    assert.ok(w.ok);
    for (const n of nodes) {
      await waitFor(
        () => n.host.localMachine("g0")?.get(enc.encode("after")) !== undefined,
        5000,
        "catch up",
      );
      assert.equal(n.host.localMachine("g0")?.get(enc.encode("lost")), undefined, n.id);
    }
  });

  test("a restarted node recovers its groups from storage and catches up by snapshot", async () => {
    const net = new MemoryNetwork();
    const ids = ["n1", "n2", "n3"];
    const opts = { compactEveryEntries: 20, compactKeepEntries: 5 };
    const engines = ids.map(() => new MemoryEngine());
    const nodes = await Promise.all(ids.map((id, i) => startNode(net, id, ids, engines[i], opts)));
    for (const n of nodes) await n.host.createGroup("g", ids);
    (nodes[0] as Node).host.campaign("g");
    await waitFor(() => Boolean((nodes[0] as Node).host.leaderOf("g")), 5000, "leader");
    // n3 goes away; the others write enough to compact their logs.
    const n3 = nodes[2] as Node;
    await n3.host.stop();
    await n3.transport.stop();
    const live = nodes.slice(0, 2);
    for (let i = 0; i < 100; i++) {
      const l = leaderNode(live, "g");
      const r = await l.host.propose("g", put(`k${i % 10}`, `v${i}`), 5000);
      assert.equal(r.ok, true);
    }
    // n3 restarts from its (old) storage and must be sent a snapshot.
    const back = await startNode(net, "n3", ids, engines[2], opts);
    await waitFor(
      () =>
        (back.host.status("g")?.applied ?? 0) >= ((nodes[0] as Node).host.status("g")?.commit ?? 1),
      10_000,
      "n3 caught up",
    );
    const m = back.host.localMachine("g");
    assert.ok(m);
    for (let k = 0; k < 10; k++)
      assert.equal(new TextDecoder().decode(m.get(enc.encode(`k${k}`))?.value), `v${90 + k}`);
  });
});
