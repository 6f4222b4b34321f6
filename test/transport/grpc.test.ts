/**
 * GrpcTransport behaviour beyond the shared contract: dead-peer detection by keepalive, batch
 * splitting under the message size limit, a receiver that does not trust what peers send, and
 * start/setPeer edge cases.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { afterEach, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Client, credentials, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import type { Message } from "../../src/raft/index.js";
import {
  encodeSnapshotHeader,
  type PbRaftBatch,
  type PbSnapshotChunk,
} from "../../src/transport/codec.js";
import {
  type GroupMessage,
  GrpcTransport,
  type GrpcTransportOptions,
} from "../../src/transport/index.js";
import { method, peerService } from "../../src/transport/protos.js";
import { serializeRaftBatch } from "../../src/transport/wire.js";
import {
  bytes,
  eventually,
  heartbeat,
  Recorder,
  seqOf,
  sleep,
  snapMessage,
  text,
} from "./_util.js";

const live: GrpcTransport[] = [];
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const c of children) {
    c.kill("SIGCONT");
    c.kill("SIGKILL");
  }
  children.length = 0;
  await Promise.all(live.map((t) => t.stop()));
  live.length = 0;
});

async function node(
  self: string,
  options: Partial<GrpcTransportOptions> = {},
): Promise<{ t: GrpcTransport; rec: Recorder }> {
  const t = new GrpcTransport({
    self,
    listen: "127.0.0.1:0",
    stopGraceMs: 200,
    reconnectDelayMsMin: 20,
    reconnectDelayMsMax: 200,
    ...options,
  });
  live.push(t);
  const rec = new Recorder();
  await t.start(rec);
  return { t, rec };
}

/** A small message limit, so that a few 60 KiB appends exceed it. */
const SMALL_LIMITS = {
  messageBytesMax: 256 * 1024,
  snapshotInlineBytesMax: 64 * 1024,
  snapshotChunkBytes: 64 * 1024,
};

/** An append from a to b carrying one entry of `size` bytes. */
function app(i: number, size: number): Message {
  return {
    type: "app",
    from: "a",
    to: "b",
    term: 1,
    index: i,
    logTerm: 1,
    commit: 0,
    entries: [{ term: 1, index: i + 1, type: "normal", data: bytes(size, i) }],
  };
}

/**
 * A raw kumo.v1.Peer client, to send what a correct transport never would; `serialize` replaces
 * the schema's serializer (to send raw bytes, say).
 */
function rawClientStream<Req>(
  address: string,
  name: "Raft" | "Snapshot",
  serialize?: (r: Req) => Buffer,
) {
  const m = method<Req, unknown>(peerService(), name);
  const client = new Client(address, credentials.createInsecure());
  let result: { err: ServiceError | null } | undefined;
  const call = client.makeClientStreamRequest<Req, unknown>(
    m.path,
    serialize ?? m.requestSerialize,
    m.responseDeserialize,
    new Metadata(),
    {},
    (err) => {
      result = { err };
      client.close();
    },
  );
  call.on("error", () => {});
  return { call, result: () => result };
}

describe("GrpcTransport", () => {
  test("keepalive notices a frozen peer (SIGSTOP) within seconds, and its calls time out", async () => {
    const script = fileURLToPath(new URL("./_peer-process.js", import.meta.url));
    const child = spawn(process.execPath, [script, "frozen"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(child);
    const [line] = (await once(child.stdout!, "data")) as [Buffer];
    const address = line.toString().trim();
    const a = await node("a", { keepaliveIntervalMs: 300, keepaliveTimeoutMs: 300 });
    a.t.setPeer("frozen", address);
    await eventually(() => a.t.reachable("frozen"), "the stream to the child up");
    child.kill("SIGSTOP");
    const t0 = Date.now();
    const r = await a.t.call("frozen", "echo", text("x"), 400);
    assert.equal(!r.ok && r.code, "TIMEOUT", JSON.stringify(r));
    await eventually(() => !a.t.reachable("frozen"), "the frozen peer detected", 5_000);
    const detectedMs = Date.now() - t0;
    assert.ok(detectedMs < 3_000, `detected after ${detectedMs} ms`);
  });

  test("a peer killed mid-call: that call is TIMEOUT (it may have run), the next one UNREACHABLE", async () => {
    const script = fileURLToPath(new URL("./_peer-process.js", import.meta.url));
    const child = spawn(process.execPath, [script, "doomed"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(child);
    const [line] = (await once(child.stdout!, "data")) as [Buffer];
    const a = await node("a");
    a.t.setPeer("doomed", line.toString().trim());
    const inFlight = a.t.call("doomed", "hang", text(""), 10_000);
    await sleep(200);
    const t0 = Date.now();
    child.kill("SIGKILL");
    const r = await inFlight;
    assert.equal(!r.ok && r.code, "TIMEOUT", JSON.stringify(r));
    assert.ok(Date.now() - t0 < 2_000, "the broken connection ends the call, not its deadline");
    await eventually(() => !a.t.reachable("doomed"), "the peer seen down");
    const next = await a.t.call("doomed", "echo", text(""), 2_000);
    assert.equal(!next.ok && next.code, "UNREACHABLE", JSON.stringify(next));
  });

  test("a batch larger than the message limit is split, in order; an impossible message is dropped", async () => {
    const a = await node("a", SMALL_LIMITS);
    const b = await node("b", SMALL_LIMITS);
    a.t.setPeer("b", b.t.address());
    const batch = Array.from({ length: 10 }, (_, i) => ({ group: "g", msg: app(i, 60 * 1024) }));
    a.t.send("b", batch);
    await eventually(() => b.rec.messages().length === 10, "all ten messages");
    assert.ok(b.rec.batches.length >= 3, `${b.rec.batches.length} wire batches`);
    assert.deepStrictEqual(b.rec.messages(), batch);

    const dropped0 = a.t.stats().messagesDropped;
    a.t.send("b", [{ group: "g", msg: app(100, 300 * 1024) }, heartbeat("a", "b", 7)]);
    await eventually(() => b.rec.messages().length === 11, "the heartbeat");
    assert.equal(seqOf(b.rec.messages()[10]!), 7);
    assert.equal(a.t.stats().messagesDropped, dropped0 + 1);
  });

  test("a snapshot just above the inline limit is streamed; one at the limit travels inline", async () => {
    const options = { snapshotInlineBytesMax: 64 * 1024, snapshotChunkBytes: 16 * 1024 };
    const a = await node("a", options);
    const b = await node("b", options);
    a.t.setPeer("b", b.t.address());
    const inline = snapMessage("a", "b", bytes(64 * 1024, 1));
    const streamed = snapMessage("a", "b", bytes(64 * 1024 + 1, 2));
    a.t.send("b", [{ group: "g1", msg: inline }]);
    a.t.send("b", [{ group: "g2", msg: streamed }]);
    await eventually(() => b.rec.batches.length === 2, "both snapshots");
    assert.deepStrictEqual(
      b.rec.messages().sort((x, y) => x.group.localeCompare(y.group)),
      [
        { group: "g1", msg: inline },
        { group: "g2", msg: streamed },
      ],
    );
    // Counted when the receiver's acknowledgement arrives, just after it delivered.
    await eventually(() => a.t.stats().snapshotsStreamed === 1, "the snapshot acknowledged");
    assert.equal(a.t.stats().snapshotChunksSent, 5);
    assert.equal(b.t.stats().snapshotsReceived, 1);
  });

  test("the receiver rejects a malformed snapshot stream and delivers nothing", async () => {
    const b = await node("b");
    const snap = snapMessage("x", "b", new Uint8Array(0));
    const header = encodeSnapshotHeader(snap);
    const cases: PbSnapshotChunk[][] = [
      // A gap between chunks.
      [
        { from: "x", group: "g", msg: header, totalBytes: 10, offset: 0, data: new Uint8Array(4) },
        { offset: 5, data: new Uint8Array(5), last: true },
      ],
      // More data than announced.
      [
        {
          from: "x",
          group: "g",
          msg: header,
          totalBytes: 2,
          offset: 0,
          data: new Uint8Array(4),
          last: true,
        },
      ],
      // No last chunk.
      [{ from: "x", group: "g", msg: header, totalBytes: 4, offset: 0, data: new Uint8Array(4) }],
      // Larger than the receiver accepts.
      [
        {
          from: "x",
          group: "g",
          msg: header,
          totalBytes: 2 ** 40,
          offset: 0,
          data: new Uint8Array(1),
        },
      ],
      // A header that is not a snapshot message.
      [
        {
          from: "x",
          group: "g",
          msg: { type: "MESSAGE_TYPE_TIMEOUT_NOW", from: "x", to: "b", term: 1 },
          totalBytes: 1,
          offset: 0,
          data: new Uint8Array(1),
          last: true,
        },
      ],
    ];
    for (const chunks of cases) {
      const { call, result } = rawClientStream<PbSnapshotChunk>(b.t.address(), "Snapshot");
      for (const c of chunks) call.write(c);
      call.end();
      await eventually(() => result() !== undefined, "the stream's end");
      assert.equal(
        result()?.err?.code,
        status.INVALID_ARGUMENT,
        JSON.stringify(chunks.map((c) => c.offset)),
      );
    }
    assert.equal(b.t.stats().invalidReceived, cases.length);
    assert.deepEqual(b.rec.batches, []);
  });

  test("a batch that does not decode is dropped without closing the stream", async () => {
    const b = await node("b");
    const { call } = rawClientStream<PbRaftBatch>(b.t.address(), "Raft");
    call.write({
      from: "x",
      messages: [{ group: "g", msg: { type: "MESSAGE_TYPE_UNSPECIFIED" } }],
    });
    call.write({ from: "", messages: [] });
    call.write({
      from: "x",
      messages: [
        { group: "g", msg: { type: "MESSAGE_TYPE_TIMEOUT_NOW", from: "x", to: "b", term: 3 } },
      ],
    });
    await eventually(() => b.rec.batches.length === 1, "the valid batch");
    assert.deepStrictEqual(b.rec.batches[0], {
      from: "x",
      batch: [{ group: "g", msg: { type: "timeoutNow", from: "x", to: "b", term: 3 } }],
    });
    assert.equal(b.t.stats().invalidReceived, 2);
    call.end();
  });

  test("bytes that do not parse as a batch are dropped without closing the stream", async () => {
    const b = await node("b");
    const { call, result } = rawClientStream<Buffer>(b.t.address(), "Raft", (buf) => buf);
    const valid = (term: number): Buffer =>
      serializeRaftBatch({
        from: "x",
        messages: [
          { group: "g", msg: { type: "MESSAGE_TYPE_TIMEOUT_NOW", from: "x", to: "b", term } },
        ],
      });
    call.write(valid(3));
    // A group (wire type 3), a length past the end, a truncated batch.
    for (const bad of [
      Buffer.from([0x0b]),
      Buffer.from([0x12, 0x05, 0x0a]),
      valid(4).subarray(0, 9),
    ])
      call.write(bad);
    call.write(valid(5));
    await eventually(() => b.rec.batches.length === 2, "the valid batches");
    assert.deepEqual(
      b.rec.batches.map((r) => r.batch[0]?.msg.term),
      [3, 5],
    );
    assert.equal(b.t.stats().invalidReceived, 3);
    assert.equal(result(), undefined, "the stream is still open");
    call.end();
  });

  test("start() on a port in use fails with a clear error", async () => {
    const a = await node("a");
    const clash = new GrpcTransport({ self: "b", listen: a.t.address() });
    await assert.rejects(clash.start(new Recorder()), /cannot listen on 127\.0\.0\.1:\d+/);
    await clash.stop();
  });

  test("setPeer with a new address moves the peer's traffic there", async () => {
    const a = await node("a");
    const b1 = await node("b");
    const b2 = await node("b");
    a.t.setPeer("b", b1.t.address());
    a.t.send("b", [heartbeat("a", "b", 1)]);
    await eventually(() => b1.rec.batches.length === 1, "batch at the first address");
    a.t.setPeer("b", b2.t.address());
    a.t.send("b", [heartbeat("a", "b", 2)]);
    await eventually(() => b2.rec.batches.length === 1, "batch at the second address");
    assert.equal(b1.rec.batches.length, 1);
    assert.equal(seqOf(b2.rec.messages()[0]!), 2);
  });

  test("stop() during start() shuts the new server down", async () => {
    const a = new GrpcTransport({ self: "a", listen: "127.0.0.1:0", stopGraceMs: 200 });
    const starting = a.start(new Recorder());
    const stopping = a.stop();
    await starting;
    await stopping;
    const address = a.address();
    // The port is free again: nothing is left listening on it.
    const again = await node("a2", { listen: address });
    assert.equal(again.t.address(), address);
  });

  test("calls beyond callsInflightMax fail at once with UNREACHABLE", async () => {
    const a = await node("a", { callsInflightMax: 2 });
    const b = await node("b");
    a.t.setPeer("b", b.t.address());
    const hanging = [a.t.call("b", "hang", text(""), 500), a.t.call("b", "hang", text(""), 500)];
    const t0 = Date.now();
    const r = await a.t.call("b", "echo", text(""), 500);
    assert.equal(!r.ok && r.code, "UNREACHABLE");
    assert.ok(Date.now() - t0 < 100);
    for (const h of await Promise.all(hanging)) assert.equal(!h.ok && h.code, "TIMEOUT");
    const after = await a.t.call("b", "echo", text("x"), 1_000);
    assert.ok(after.ok);
  });

  test("messages sent before start() wait in the queue and flow once started", async () => {
    const b = await node("b");
    const a = new GrpcTransport({ self: "a", listen: "127.0.0.1:0", stopGraceMs: 200 });
    live.push(a);
    a.setPeer("b", b.t.address());
    a.send("b", [heartbeat("a", "b", 1)]);
    await sleep(50);
    assert.equal(b.rec.batches.length, 0);
    await a.start(new Recorder());
    await eventually(() => b.rec.batches.length === 1, "the early batch");
  });

  test("batches queued together go out merged into few wire messages, in order, within the limit", async () => {
    const b = await node("b", SMALL_LIMITS);
    const a = new GrpcTransport({
      self: "a",
      listen: "127.0.0.1:0",
      stopGraceMs: 200,
      ...SMALL_LIMITS,
    });
    live.push(a);
    a.setPeer("b", b.t.address());
    // 30 small sends and 6 of 60 KiB queue up while the stream is not open yet.
    const sent: GroupMessage[] = [];
    for (let i = 0; i < 30; i++) sent.push(heartbeat("a", "b", i));
    for (let i = 0; i < 6; i++) sent.push({ group: "g", msg: app(i, 60 * 1024) });
    for (const m of sent) a.send("b", [m]);
    await a.start(new Recorder());
    await eventually(() => b.rec.messages().length === sent.length, "every message");
    assert.deepStrictEqual(b.rec.messages(), sent);
    // 36 sends: the heartbeats share one message, the appends need at least two (the limit).
    assert.ok(
      b.rec.batches.length >= 2 && b.rec.batches.length <= 4,
      `${b.rec.batches.length} wire batches`,
    );
    assert.equal(a.stats().batchesSent, b.rec.batches.length);
  });
});
