/**
 * The Transport contract, run against every implementation (test/transport/transport.test.ts):
 * what the Raft host and the request layers may rely on, whichever transport carries them.
 */
import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";
import type { NodeId } from "../../src/raft/index.js";
import type { Transport } from "../../src/transport/index.js";
import {
  bytes,
  eventually,
  everyMessageType,
  heartbeat,
  type Started,
  seqOf,
  snapMessage,
  started,
  text,
  untext,
} from "./_util.js";

export interface CreateOptions {
  readonly queueBatchesMax: number;
  /** The address of a stopped node, to restart it there (same "host:port" for gRPC). */
  readonly address?: string;
}

export interface ClusterFactory<T extends Transport> {
  /** A new transport for `id`, not started. */
  create(id: NodeId, options: CreateOptions): T;
  /** Where peers reach `t` once it is started. */
  addressOf(t: T): string;
  /**
   * Snapshot messages `t` sent through a dedicated chunked stream, for transports that have one;
   * the contract then checks that a multi-MiB snapshot took that path.
   */
  snapshotsStreamed?(t: T): number;
}

const QUEUE_DEFAULT = 1024;

export function transportContract<T extends Transport>(
  name: string,
  makeFactory: () => ClusterFactory<T>,
): void {
  describe(`Transport contract: ${name}`, () => {
    const f = makeFactory();
    const live: T[] = [];

    async function node(id: NodeId, options: Partial<CreateOptions> = {}): Promise<Started<T>> {
      const t = f.create(id, { queueBatchesMax: QUEUE_DEFAULT, ...options });
      live.push(t);
      return started(t);
    }

    /** Nodes that know each other's addresses. */
    async function cluster(
      ids: NodeId[],
      options: Partial<CreateOptions> = {},
    ): Promise<Started<T>[]> {
      const nodes = await Promise.all(ids.map((id) => node(id, options)));
      for (const a of nodes) {
        for (const b of nodes) if (a !== b) a.t.setPeer(b.t.self, f.addressOf(b.t));
      }
      return nodes;
    }

    afterEach(async () => {
      await Promise.all(live.map((t) => t.stop()));
      live.length = 0;
    });

    test("delivers a batch with the sender id and every field of every message type intact", async () => {
      const [a, b] = await cluster(["a", "b"]);
      const batch = everyMessageType("a", "b");
      a!.t.send("b", batch);
      await eventually(() => b!.rec.batches.length === 1, "the batch at b");
      assert.deepStrictEqual(b!.rec.batches[0], { from: "a", batch });
      // And the other way round, on the same pair.
      b!.t.send("a", everyMessageType("b", "a"));
      await eventually(() => a!.rec.batches.length === 1, "the batch at a");
      assert.deepStrictEqual(a!.rec.batches[0], { from: "b", batch: everyMessageType("b", "a") });
      assert.equal(a!.t.stats().messagesSent, batch.length);
      assert.equal(a!.t.stats().batchesSent, 1);
      assert.ok(a!.t.stats().bytesSent > 1000);
      assert.equal(a!.t.stats().messagesDropped, 0);
    });

    test("carries a multi-MiB snapshot intact (chunked where the transport streams snapshots)", async () => {
      const [a, b] = await cluster(["a", "b"]);
      const snap = snapMessage("a", "b", bytes(5 * 1024 * 1024 + 123, 3));
      const before = heartbeat("a", "b", 1);
      const after = heartbeat("a", "b", 2);
      a!.t.send("b", [before, { group: "shard-9", msg: snap }, after]);
      await eventually(() => b!.rec.messages().length === 3, "three messages at b", 10_000);
      // A streamed snapshot arrives as a batch of its own: compare by content, not position.
      const got = b!.rec.messages();
      assert.deepStrictEqual(
        got.find((gm) => gm.msg.type === "snap"),
        { group: "shard-9", msg: snap },
      );
      assert.deepStrictEqual(
        got.filter((gm) => gm.msg.type !== "snap"),
        [before, after],
      );
      assert.ok(b!.rec.batches.every((x) => x.from === "a"));
      if (f.snapshotsStreamed) {
        const streamed = f.snapshotsStreamed;
        await eventually(() => streamed(a!.t) === 1, "the snapshot acknowledged on its stream");
      }
      await eventually(() => a!.t.stats().messagesSent === 3, "3 messages counted as sent");
    });

    test("preserves per-peer order in steady state (batches may arrive merged)", async () => {
      const [a, b, c] = await cluster(["a", "b", "c"]);
      const n = 500;
      for (let i = 0; i < n; i++) {
        a!.t.send("b", [heartbeat("a", "b", i)]);
        const two = [heartbeat("c", "b", i), heartbeat("c", "b", i)];
        c!.t.send("b", i % 2 === 0 ? [heartbeat("c", "b", i)] : two);
      }
      const expectC = Array.from({ length: n }, (_, i) => (i % 2 === 0 ? [i] : [i, i])).flat();
      await eventually(
        () => b!.rec.messages().length === n + expectC.length,
        () => `${n + expectC.length} messages at b, got ${b!.rec.messages().length}`,
      );
      const from = (id: NodeId) =>
        b!.rec.batches.filter((x) => x.from === id).flatMap((x) => x.batch.map(seqOf));
      assert.deepStrictEqual(
        from("a"),
        Array.from({ length: n }, (_, i) => i),
      );
      assert.deepStrictEqual(from("c"), expectC);
    });

    test("call: a round trip, with the caller's id", async () => {
      const [a, b] = await cluster(["a", "b"]);
      const r = await a!.t.call("b", "echo", text("hello"), 2_000);
      assert.ok(r.ok, JSON.stringify(r));
      assert.equal(untext(r.body), "a:hello");
      assert.equal(Object.getPrototypeOf(r.body), Uint8Array.prototype);
      assert.deepEqual(b!.rec.calls, [{ from: "a", method: "echo" }]);
      const large = "x".repeat(3 * 1024 * 1024);
      const big = await a!.t.call("b", "echo", text(large), 5_000);
      assert.ok(big.ok, JSON.stringify(!big.ok && big));
      assert.equal(untext(big.body), `a:${large}`);
    });

    test("call: NO_HANDLER when the peer does not serve the method", async () => {
      const [a] = await cluster(["a", "b"]);
      const r = await a!.t.call("b", "no.such.method", text(""), 2_000);
      assert.equal(r.ok, false);
      assert.equal(!r.ok && r.code, "NO_HANDLER");
      assert.match(!r.ok ? r.message : "", /no\.such\.method/);
    });

    test("call: REMOTE_ERROR carries the handler's error message", async () => {
      const [a] = await cluster(["a", "b"]);
      const r = await a!.t.call("b", "fail", text("disk full"), 2_000);
      assert.equal(!r.ok && r.code, "REMOTE_ERROR");
      assert.match(!r.ok ? r.message : "", /boom: disk full/);
    });

    test("call: TIMEOUT when the handler never answers", async () => {
      const [a] = await cluster(["a", "b"]);
      const startMs = Date.now();
      const r = await a!.t.call("b", "hang", text(""), 200);
      const tookMs = Date.now() - startMs;
      assert.equal(!r.ok && r.code, "TIMEOUT");
      assert.ok(tookMs >= 150 && tookMs < 2_000, `took ${tookMs} ms`);
    });

    test("call: UNREACHABLE for an unknown peer and for a stopped one", async () => {
      const [a, b] = await cluster(["a", "b"]);
      const unknown = await a!.t.call("nobody", "echo", text(""), 1_000);
      assert.equal(!unknown.ok && unknown.code, "UNREACHABLE");
      await b!.t.stop();
      const stopped = await a!.t.call("b", "echo", text(""), 2_000);
      assert.equal(!stopped.ok && stopped.code, "UNREACHABLE", JSON.stringify(stopped));
    });

    test("send to an unknown peer never throws and counts every message as dropped", async () => {
      const [a] = await cluster(["a"]);
      a!.t.send("nobody", [heartbeat("a", "nobody", 1), heartbeat("a", "nobody", 2)]);
      a!.t.send("nobody", []);
      assert.equal(a!.t.stats().messagesDropped, 2);
      assert.equal(a!.t.reachable("nobody"), false);
    });

    test("reachable() follows the peer going down and coming back", async () => {
      const [a, b] = await cluster(["a", "b"]);
      await eventually(() => a!.t.reachable("b"), "b reachable");
      const address = f.addressOf(b!.t);
      await b!.t.stop();
      await eventually(() => !a!.t.reachable("b"), "b unreachable after it stopped");
      await node("b", { address });
      await eventually(() => a!.t.reachable("b"), "b reachable after its restart", 10_000);
    });

    test("a down peer's queue stays bounded (oldest dropped); after a restart on the same address the newest flow", async () => {
      const queueBatchesMax = 8;
      const [a, b] = await cluster(["a", "b"], { queueBatchesMax });
      a!.t.send("b", [heartbeat("a", "b", 999)]);
      await eventually(() => b!.rec.batches.length === 1, "first batch at b");
      const address = f.addressOf(b!.t);
      await b!.t.stop();
      await eventually(() => !a!.t.reachable("b"), "b unreachable");
      const dropped0 = a!.t.stats().messagesDropped;
      const n = 50;
      for (let i = 0; i < n; i++) a!.t.send("b", [heartbeat("a", "b", i)]);
      assert.equal(a!.t.stats().messagesDropped - dropped0, n - queueBatchesMax);

      const b2 = await node("b", { address, queueBatchesMax });
      await eventually(
        () => b2.rec.messages().length === queueBatchesMax,
        "the queued batches at the restarted b",
        10_000,
      );
      assert.deepStrictEqual(
        b2.rec.messages().map(seqOf),
        Array.from({ length: queueBatchesMax }, (_, i) => n - queueBatchesMax + i),
      );
      // And traffic keeps flowing on the new connection.
      a!.t.send("b", [heartbeat("a", "b", 1000)]);
      await eventually(
        () => b2.rec.messages().length === queueBatchesMax + 1,
        "a fresh batch at b",
      );
    });

    test("stop() is prompt with streams open and calls in flight both ways, and fails those calls", async () => {
      const [a, b] = await cluster(["a", "b"]);
      a!.t.send("b", [heartbeat("a", "b", 1)]);
      b!.t.send("a", [heartbeat("b", "a", 1)]);
      await eventually(
        () => a!.rec.batches.length === 1 && b!.rec.batches.length === 1,
        "streams up",
      );
      const outgoing = a!.t.call("b", "hang", text(""), 30_000);
      const incoming = b!.t.call("a", "hang", text(""), 30_000);
      await eventually(
        () => a!.rec.calls.length === 1 && b!.rec.calls.length === 1,
        "calls arrived",
      );
      const startMs = Date.now();
      await a!.t.stop();
      const tookMs = Date.now() - startMs;
      assert.ok(tookMs < 3_000, `stop took ${tookMs} ms`);
      // a's own call, and b's call that a was serving, end without waiting for their timeout.
      // Both requests had reached a handler, so their outcome is unknown: TIMEOUT, never
      // UNREACHABLE (which promises the request did not arrive, and invites a retry).
      const [o, i] = await Promise.all([outgoing, incoming]);
      assert.equal(!o.ok && o.code, "TIMEOUT", JSON.stringify(o));
      assert.equal(!i.ok && i.code, "TIMEOUT", JSON.stringify(i));
      assert.ok(Date.now() - startMs < 3_000);
    });

    test("after stop(), send never throws and counts as dropped; call answers UNREACHABLE", async () => {
      const [a] = await cluster(["a", "b"]);
      await a!.t.stop();
      const dropped0 = a!.t.stats().messagesDropped;
      a!.t.send("b", [heartbeat("a", "b", 1)]);
      assert.equal(a!.t.stats().messagesDropped, dropped0 + 1);
      const r = await a!.t.call("b", "echo", text(""), 1_000);
      assert.equal(!r.ok && r.code, "UNREACHABLE");
      assert.equal(a!.t.reachable("b"), false);
    });
  });
}
