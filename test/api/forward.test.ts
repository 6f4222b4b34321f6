/** Batched forwarding of writes: the wire codec, and one call per destination per turn. */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import {
  decodeBatch,
  encodeBatch,
  ForwardBatcher,
  PROPOSE_BATCH,
} from "../../src/api/kv/forward.js";
import { MemoryNetwork } from "../../src/transport/index.js";

test("the batch codec round-trips", () => {
  const item = fc.record({
    shard: fc.string({ maxLength: 40 }),
    command: fc.uint8Array({ maxLength: 500 }),
    timeoutMs: fc.nat({ max: 600_000 }),
  });
  fc.assert(
    fc.property(fc.array(item, { maxLength: 20 }), (items) => {
      const back = decodeBatch(encodeBatch(items));
      assert.deepEqual(
        back.map((b) => ({ ...b, command: [...b.command] })),
        items.map((b) => ({ ...b, command: [...b.command] })),
      );
    }),
  );
});

test("proposals to one node and shard in one turn travel in one call and get their own answers", async () => {
  const net = new MemoryNetwork();
  const a = net.transport("a");
  const b = net.transport("b");
  let calls = 0;
  await a.start({ onRaft: () => {}, onCall: async () => new Uint8Array() });
  await b.start({
    onRaft: () => {},
    onCall: async (_from, method, body) => {
      assert.equal(method, PROPOSE_BATCH);
      calls++;
      const items = decodeBatch(body);
      return new TextEncoder().encode(
        JSON.stringify(
          items.map((it) => ({ ok: true, result: { ok: true, revision: it.command[0] } })),
        ),
      );
    },
  });
  a.setPeer("b", "b");
  const f = new ForwardBatcher(a);
  const answers = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      f.propose("b", { shard: `s${i % 3}`, command: new Uint8Array([i]), timeoutMs: 1000 }),
    ),
  );
  assert.equal(calls, 3, "one call per shard");
  for (const [i, r] of answers.entries())
    assert.deepEqual(r, { ok: true, result: { ok: true, revision: i } });
  // An unknown peer: certainly not delivered, so UNREACHABLE (safe to retry).
  assert.deepEqual(
    await f.propose("nobody", { shard: "s", command: new Uint8Array([1]), timeoutMs: 100 }),
    {
      ok: false,
      code: "UNREACHABLE",
    },
  );
  await a.stop();
  await b.stop();
});

test("a stalled shard does not hold up another shard's writes to the same node", async () => {
  const net = new MemoryNetwork();
  const a = net.transport("a");
  const b = net.transport("b");
  await a.start({ onRaft: () => {}, onCall: async () => new Uint8Array() });
  let release: () => void = () => {};
  const stalled = new Promise<void>((r) => {
    release = r;
  });
  await b.start({
    onRaft: () => {},
    onCall: async (_from, _method, body) => {
      const items = decodeBatch(body);
      if (items.some((it) => it.shard === "stuck")) await stalled; // a shard without quorum
      return new TextEncoder().encode(
        JSON.stringify(items.map(() => ({ ok: true, result: { ok: true, revision: 1 } }))),
      );
    },
  });
  a.setPeer("b", "b");
  const f = new ForwardBatcher(a);
  const stuck = f.propose("b", { shard: "stuck", command: new Uint8Array([1]), timeoutMs: 5000 });
  const healthy = await Promise.race([
    f.propose("b", { shard: "fine", command: new Uint8Array([2]), timeoutMs: 5000 }),
    new Promise<{ ok: false }>((r) => setTimeout(() => r({ ok: false }), 2000)),
  ]);
  assert.equal(healthy.ok, true, "answered while the other shard is still stalled");
  release();
  assert.equal((await stuck).ok, true);
  await a.stop();
  await b.stop();
});

test("a large burst is split into calls of at most 512 proposals", async () => {
  const net = new MemoryNetwork();
  const a = net.transport("a");
  const b = net.transport("b");
  const sizes: number[] = [];
  await a.start({ onRaft: () => {}, onCall: async () => new Uint8Array() });
  await b.start({
    onRaft: () => {},
    onCall: async (_from, _method, body) => {
      const items = decodeBatch(body);
      sizes.push(items.length);
      return new TextEncoder().encode(
        JSON.stringify(items.map(() => ({ ok: true, result: { ok: true, revision: 1 } }))),
      );
    },
  });
  a.setPeer("b", "b");
  const f = new ForwardBatcher(a);
  const all = await Promise.all(
    Array.from({ length: 600 }, () =>
      f.propose("b", { shard: "s", command: new Uint8Array([1]), timeoutMs: 1000 }),
    ),
  );
  assert.deepEqual(sizes, [512, 88]);
  assert.ok(all.every((r) => r.ok));
  await a.stop();
  await b.stop();
});
