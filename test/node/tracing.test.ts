/**
 * Tracing in one process: when the OTEL_* variables turn it on, and the spans of a write through
 * three multi-Raft hosts (memory engine and network), with the SDK's in-memory exporter. A write
 * proposed on a follower inside a traced request gets a proposal span on the leader, child of
 * the request's span (its context travels with the forwarded MsgProp), an append span on each
 * follower, child of the proposal (its context travels with the MsgApp), and storage-write spans
 * under those. With tracing off, no trace context is put on the wire.
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, beforeEach, describe, test } from "node:test";
import { context, type Span, trace } from "@opentelemetry/api";
import {
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { setTracing, tracing } from "../../src/base/index.js";
import { MultiRaftHost } from "../../src/multiraft/index.js";
import { createLogger } from "../../src/node/log.js";
import { startTracing, type Tracing, tracingDecision } from "../../src/node/tracing.js";
import { type ApplyResult, encodeCommand, ShardMachine } from "../../src/shard/index.js";
import type { StorageEngine, WriteOp } from "../../src/storage/engine.js";
import { MemoryEngine } from "../../src/storage/index.js";
import {
  decodeBatch,
  encodeBatch,
  type GroupMessage,
  MemoryNetwork,
  type Transport,
} from "../../src/transport/index.js";

const enc = new TextEncoder();
type Host = MultiRaftHost<ApplyResult, ShardMachine>;

interface Node {
  readonly id: string;
  readonly host: Host;
  /** Every batch this node sent, as the transport got it. */
  readonly sent: GroupMessage[][];
}

/** A transport that records what the host hands it. */
function recording(inner: Transport, sent: GroupMessage[][]): Transport {
  return {
    self: inner.self,
    start: (h) => inner.start(h),
    setPeer: (id, address) => inner.setPeer(id, address),
    send: (to, batch) => {
      sent.push([...batch]);
      inner.send(to, batch);
    },
    call: (to, method, body, timeoutMs) => inner.call(to, method, body, timeoutMs),
    reachable: (to) => inner.reachable(to),
    setServing: (s) => inner.setServing(s),
    stats: () => inner.stats(),
    stop: () => inner.stop(),
  };
}

/** Milliseconds every durable write takes (0: at once), to have writes in flight. */
let writeDelayMs = 0;

/** A memory engine whose writes take `writeDelayMs`. */
function slowable(inner: MemoryEngine): StorageEngine {
  return {
    get: (key) => inner.get(key),
    scan: (start, end, opts) => inner.scan(start, end, opts),
    write: async (ops: readonly WriteOp[], opts) => {
      if (writeDelayMs > 0) await new Promise((r) => setTimeout(r, writeDelayMs));
      await inner.write(ops, opts);
    },
    stats: () => inner.stats(),
    close: () => inner.close(),
  };
}

const exporter = new InMemorySpanExporter();
let tracingHandle: Tracing;
const nodes: Node[] = [];
const silent = { warn: () => {}, info: () => {} };

before(async () => {
  tracingHandle = startTracing({
    nodeId: "test",
    log: silent,
    spanProcessor: new SimpleSpanProcessor(exporter),
  });
  assert.equal(tracing.on, true);
  const net = new MemoryNetwork();
  const ids = ["n1", "n2", "n3"];
  for (const id of ids) {
    const sent: GroupMessage[][] = [];
    const transport = recording(net.transport(id), sent);
    const engine = slowable(new MemoryEngine());
    const host: Host = new MultiRaftHost<ApplyResult, ShardMachine>({
      nodeId: id,
      engine,
      transport,
      seed: id.charCodeAt(1),
      tickMs: 10,
      electionTimeoutTicks: 10,
      machine: (g) => new ShardMachine(engine, g),
    });
    await transport.start({
      onRaft: (from, b) => host.receive(from, b),
      onCall: async () => new Uint8Array(),
    });
    for (const p of ids) if (p !== id) transport.setPeer(p, p);
    host.start();
    nodes.push({ id, host, sent });
  }
  for (const n of nodes) await n.host.createGroup("g", ids);
  (nodes[0] as Node).host.campaign("g");
  await waitFor(
    () => nodes.every((n) => n.host.leaderOf("g") === "n1"),
    5000,
    "every node knows the leader",
  );
});

after(async () => {
  for (const n of nodes) await n.host.stop();
  await tracingHandle.shutdown();
});

beforeEach(() => {
  setTracing(true);
  writeDelayMs = 0;
  exporter.reset();
  for (const n of nodes) n.sent.length = 0;
});

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function put(key: string, value: string): Uint8Array {
  return encodeCommand({
    op: "put",
    key: enc.encode(key),
    value: enc.encode(value),
    cond: { kind: "none" },
  });
}

function node(id: string): Node {
  return nodes.find((n) => n.id === id) as Node;
}

/** Proposes through `via` inside a span standing for the request (the gateway's, in a node). */
async function tracedPropose(via: Node, key: string): Promise<{ request: Span; ok: boolean }> {
  const request = trace.getTracer("test").startSpan("request");
  const r = await context.with(trace.setSpan(context.active(), request), () =>
    via.host.propose("g", put(key, "v"), 5000),
  );
  request.end();
  return { request, ok: r.ok };
}

const spans = (name: string) => exporter.getFinishedSpans().filter((s) => s.name === name);
const nodeOf = (s: ReadableSpan) => s.attributes["kumo.node"];
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

describe("tracing", () => {
  test("OTEL_* variables decide; off by default, OTEL_SDK_DISABLED wins", () => {
    assert.equal(tracingDecision({}).enabled, false);
    assert.equal(tracingDecision({ OTEL_SERVICE_NAME: "x" }).enabled, false);
    assert.equal(tracingDecision({ OTEL_TRACES_EXPORTER: "otlp" }).enabled, true);
    assert.equal(tracingDecision({ OTEL_TRACES_EXPORTER: "none" }).enabled, false);
    assert.equal(
      tracingDecision({
        OTEL_TRACES_EXPORTER: "none",
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318",
      }).enabled,
      false,
    );
    assert.equal(tracingDecision({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318" }).enabled, true);
    assert.equal(
      tracingDecision({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c:4318/v1/traces" }).enabled,
      true,
    );
    assert.equal(
      tracingDecision({ OTEL_SDK_DISABLED: "true", OTEL_TRACES_EXPORTER: "otlp" }).enabled,
      false,
    );
    const zipkin = tracingDecision({ OTEL_TRACES_EXPORTER: "zipkin" });
    assert.equal(zipkin.enabled, false);
    assert.match(zipkin.warning ?? "", /only otlp/);
    const grpc = tracingDecision({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4317",
      OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
    });
    assert.equal(grpc.enabled, true);
    assert.match(grpc.warning ?? "", /http\/json/);
  });

  test("a follower's write: proposal span on the leader, append spans on the followers", async () => {
    const { request, ok } = await tracedPropose(node("n2"), "a");
    assert.ok(ok);
    await waitFor(
      () => spans("raft.propose").length === 1 && spans("raft.append").length === 2,
      5000,
      "proposal and append spans",
    );
    const traceId = request.spanContext().traceId;
    const [propose] = spans("raft.propose") as [ReadableSpan];
    assert.equal(nodeOf(propose), "n1", "the leader proposes");
    assert.equal(propose.spanContext().traceId, traceId);
    assert.equal(parentOf(propose), request.spanContext().spanId, "child of the request's span");
    assert.equal(propose.attributes["kumo.raft.forwarded_by"], "n2");
    assert.equal(propose.attributes["kumo.shard"], "g");
    assert.equal(typeof propose.attributes["kumo.raft.index"], "number");

    const appends = spans("raft.append");
    assert.deepEqual(appends.map(nodeOf).sort(), ["n2", "n3"], "each follower appends");
    for (const a of appends) {
      assert.equal(a.spanContext().traceId, traceId);
      assert.equal(parentOf(a), propose.spanContext().spanId, "child of the proposal");
      assert.equal(a.attributes["kumo.raft.index"], propose.attributes["kumo.raft.index"]);
      assert.equal(a.attributes["kumo.raft.leader"], "n1");
    }

    // Each node's durable write of the entry, under its proposal or append span.
    await waitFor(() => spans("storage.write").length >= 3, 5000, "storage spans");
    const writes = spans("storage.write").filter((s) => s.spanContext().traceId === traceId);
    const writeOn = (id: string) => writes.find((w) => nodeOf(w) === id);
    assert.equal(parentOf(writeOn("n1") as ReadableSpan), propose.spanContext().spanId);
    for (const a of appends)
      assert.equal(parentOf(writeOn(String(nodeOf(a))) as ReadableSpan), a.spanContext().spanId);

    // On the wire: the forward carried the request's context, the appends the proposal's.
    const traced = (n: Node, type: string) =>
      n.sent.flat().filter((gm) => gm.msg.type === type && gm.traces !== undefined);
    const fwd = traced(node("n2"), "prop");
    assert.equal(fwd.length, 1);
    assert.match(
      fwd[0]?.traces?.[0]?.traceparent ?? "",
      new RegExp(`-${traceId}-${request.spanContext().spanId}-01$`),
    );
    const apps = traced(node("n1"), "app");
    assert.ok(apps.length >= 2, "an append to each follower");
    for (const gm of apps)
      assert.match(
        gm.traces?.[0]?.traceparent ?? "",
        new RegExp(`-${propose.spanContext().spanId}-01$`),
      );
    // And through protobuf: what a gRPC peer decodes.
    const back = decodeBatch(encodeBatch("n1", apps));
    assert.ok(back.ok);
    assert.deepEqual(
      back.value.batch.map((gm) => gm.traces),
      apps.map((gm) => gm.traces),
    );
  });

  test("a write on the leader itself: proposal span child of the request, ended when applied", async () => {
    const { request, ok } = await tracedPropose(node("n1"), "b");
    assert.ok(ok);
    await waitFor(() => spans("raft.append").length === 2, 5000, "append spans");
    const [propose] = spans("raft.propose") as [ReadableSpan];
    assert.equal(nodeOf(propose), "n1");
    assert.equal(parentOf(propose), request.spanContext().spanId);
    assert.equal(propose.attributes["kumo.raft.forwarded_by"], undefined);
    for (const a of spans("raft.append")) assert.equal(parentOf(a), propose.spanContext().spanId);
  });

  test("writes forwarded while the leader's write is in flight trace their appends too", async () => {
    // The leader appends a forwarded entry as the MsgProp arrives and, while its cycle waits
    // for the disk, sends the append at once (before its next cycle sees the entry).
    writeDelayMs = 5;
    const results: Promise<{ request: Span; ok: boolean }>[] = [];
    for (let i = 0; i < 12; i++) {
      results.push(tracedPropose(node(i % 2 === 0 ? "n2" : "n3"), `e${i}`));
      await new Promise((r) => setTimeout(r, 2));
    }
    const requests = await Promise.all(results);
    assert.ok(requests.every((r) => r.ok));
    await waitFor(
      () => spans("raft.propose").length === 12 && spans("raft.append").length === 24,
      5000,
      "a proposal and two appends per write",
    );
    for (const { request } of requests) {
      const propose = spans("raft.propose").filter(
        (s) => parentOf(s) === request.spanContext().spanId,
      );
      assert.equal(propose.length, 1);
      const id = (propose[0] as ReadableSpan).spanContext().spanId;
      assert.equal(spans("raft.append").filter((s) => parentOf(s) === id).length, 2);
    }
  });

  test("untraced writes (no sampled span active) make no spans and send no trace context", async () => {
    const r = await node("n2").host.propose("g", put("c", "v"), 5000);
    assert.ok(r.ok);
    await new Promise((res) => setTimeout(res, 50));
    assert.deepEqual(exporter.getFinishedSpans(), []);
    for (const n of nodes)
      for (const b of n.sent) for (const gm of b) assert.equal(gm.traces, undefined);
  });

  test("with tracing off, no trace context is put on the wire, even inside a span", async () => {
    setTracing(false);
    const { ok } = await tracedPropose(node("n2"), "d");
    assert.ok(ok);
    // Let every follower append and acknowledge.
    await waitFor(
      () => nodes.every((n) => n.host.status("g")?.applied === node("n1").host.status("g")?.commit),
      5000,
      "every replica applied",
    );
    const all = nodes.flatMap((n) => n.sent.flat());
    assert.ok(
      all.some((gm) => gm.msg.type === "prop"),
      "the write was forwarded",
    );
    for (const gm of all) assert.equal(gm.traces, undefined);
    for (const gm of encodeBatch("x", all).messages ?? []) assert.equal(gm.traces, undefined);
    assert.deepEqual(
      exporter.getFinishedSpans().map((s) => s.name),
      ["request"],
      "only the test's own span",
    );
  });

  test("log lines inside a traced request carry its trace and span ids", () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(...chunk.toString().split("\n").filter(Boolean));
        cb();
      },
    });
    const log = createLogger({ level: "info", node: "n1", destination: stream });
    const span = trace.getTracer("test").startSpan("request");
    context.with(trace.setSpan(context.active(), span), () => log.info({ reqId: "r1" }, "inside"));
    log.info({ reqId: "r2" }, "outside");
    setTracing(false);
    context.with(trace.setSpan(context.active(), span), () => log.info("off"));
    span.end();
    const [inside, outside, off] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(inside?.traceId, span.spanContext().traceId);
    assert.equal(inside?.spanId, span.spanContext().spanId);
    assert.equal(inside?.reqId, "r1");
    assert.equal(outside?.traceId, undefined);
    assert.equal(off?.traceId, undefined);
  });
});
