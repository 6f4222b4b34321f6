/**
 * Distributed tracing across real node processes: three `kumo server` processes export their
 * spans (OTLP/HTTP JSON, turned on by OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) to a small collector
 * this test runs on 127.0.0.1. A KV PUT sent to a node that does not lead the key's shard is one
 * trace: the gateway and routing spans on the receiving node, the proposal span on the leader's
 * process (a child of the routing span: its context went with the forwarded MsgProp), an append
 * span on each follower's process (children of the proposal: its context went with the MsgApp),
 * and the storage writes under those. An S3 PUT is one trace too, with the chunk writes on other
 * nodes joined through the trace context in the gRPC metadata.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { CreateBucketCommand, ListBucketsCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { TestCluster, waitFor } from "./_cluster.js";
import { s3Client } from "./_s3.js";

/** One span as the collector received it, with its process's resource attributes. */
interface CollectedSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly name: string;
  readonly kind: number;
  readonly attributes: Record<string, unknown>;
  readonly resource: Record<string, unknown>;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: number | string;
  doubleValue?: number;
  boolValue?: boolean;
}
type OtlpAttributes = { key: string; value: OtlpValue }[] | undefined;

function attrs(list: OtlpAttributes): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { key, value } of list ?? []) {
    out[key] =
      value.stringValue ??
      (value.intValue !== undefined ? Number(value.intValue) : undefined) ??
      value.doubleValue ??
      value.boolValue;
  }
  return out;
}

/** A minimal OTLP/HTTP (JSON) trace collector: POST /v1/traces, spans kept in memory. */
class Collector {
  readonly spans: CollectedSpan[] = [];
  requests = 0;
  private server: Server | undefined;
  port = 0;

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on("data", (d: Buffer) => parts.push(d));
      req.on("end", () => {
        this.requests++;
        let body = Buffer.concat(parts);
        if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
        try {
          this.add(JSON.parse(body.toString("utf8")));
          res.writeHead(200, { "content-type": "application/json" }).end("{}");
        } catch (e) {
          res.writeHead(400).end(String(e));
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    this.server = server;
    const a = server.address();
    this.port = typeof a === "object" && a ? a.port : 0;
  }

  private add(body: {
    resourceSpans?: {
      resource?: { attributes?: OtlpAttributes };
      scopeSpans?: {
        spans?: {
          traceId: string;
          spanId: string;
          parentSpanId?: string;
          name: string;
          kind: number;
          attributes?: OtlpAttributes;
        }[];
      }[];
    }[];
  }): void {
    for (const rs of body.resourceSpans ?? []) {
      const resource = attrs(rs.resource?.attributes);
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          this.spans.push({
            traceId: s.traceId,
            spanId: s.spanId,
            parentSpanId: s.parentSpanId ?? "",
            name: s.name,
            kind: s.kind,
            attributes: attrs(s.attributes),
            resource,
          });
        }
      }
    }
  }

  trace(traceId: string): CollectedSpan[] {
    return this.spans.filter((s) => s.traceId === traceId);
  }

  byRequestId(requestId: string): CollectedSpan | undefined {
    return this.spans.find((s) => s.attributes["kumo.request_id"] === requestId);
  }

  stop(): Promise<void> {
    return new Promise((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

const ROOT = { accessKeyId: "GKTRACETESTKEY000001", secretAccessKey: "trace-secret-for-tests-01" };
/** OTLP span kinds (the JSON encoding uses the protobuf enum numbers). */
const SERVER = 2;
const CLIENT = 3;

const collector = new Collector();
let c: TestCluster;

before(async () => {
  await collector.start();
  c = await TestCluster.start({
    nodes: 3,
    args: ["--tick-ms", "20", "--election-ticks", "10"],
    env: {
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `http://127.0.0.1:${collector.port}/v1/traces`,
      OTEL_BSP_SCHEDULE_DELAY: "100",
      OTEL_TRACES_SAMPLER: "parentbased_always_on",
      KUMO_S3_ROOT_KEY: `${ROOT.accessKeyId}:${ROOT.secretAccessKey}`,
    },
  });
});

after(async () => {
  await c?.stop();
  await collector.stop();
});

const node = (s: CollectedSpan) => s.resource["service.instance.id"];

/** What a wait that timed out had seen, for the failure message. */
async function explained(wait: Promise<void>, spans: () => CollectedSpan[]): Promise<void> {
  try {
    await wait;
  } catch (e) {
    const seen = spans().map((s) => `${s.name}@${String(node(s))}`);
    throw new Error(
      `${(e as Error).message}; spans of the trace: ${seen.join(", ") || "none"} ` +
        `(${collector.spans.length} spans in ${collector.requests} exports in all)`,
    );
  }
}

describe("tracing across processes", () => {
  test("a KV PUT to a non-leader: gateway → leader's proposal → followers' appends", async () => {
    // A shard led by its preferred replica (the leader balancer keeps it there), and a node
    // that is not its leader.
    const shard = (await c.status("n1", "default")).shards[0];
    assert.ok(shard);
    await waitFor(
      async () => (await c.status("n1", "default")).shards[0]?.leader === shard.replicas[0],
      20_000,
      "the shard led by its preferred replica",
    );
    const leader = shard.replicas[0] as string;
    const receiver = shard.replicas.find((r) => r !== leader) as string;
    const third = shard.replicas.find((r) => r !== leader && r !== receiver) as string;
    const key = c.keysOfShard(shard.id, 1, "traced-")[0] as string;

    // Leadership may still move between the check and the write: then try once more.
    let spans: CollectedSpan[] = [];
    let gateway: CollectedSpan | undefined;
    for (let attempt = 1; ; attempt++) {
      const requestId = `trace-kv-${attempt}`;
      const r = await c.put(receiver, key, "value", { "x-request-id": requestId });
      assert.equal(r.status, 200, await r.text());
      await explained(
        waitFor(
          async () => {
            gateway = collector.byRequestId(requestId);
            if (!gateway) return false;
            spans = collector.trace(gateway.traceId);
            return (
              spans.some((s) => s.name === "raft.propose") &&
              spans.filter((s) => s.name === "raft.append").length >= 2 &&
              spans.filter((s) => s.name === "storage.write").length >= 3
            );
          },
          15_000,
          `the spans of ${requestId}`,
        ),
        () => spans,
      );
      const propose = spans.find((s) => s.name === "raft.propose");
      if (propose && node(propose) !== receiver) break;
      if (attempt === 3) assert.fail("the receiving node led the shard at every attempt");
    }
    assert.ok(gateway);
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const parent = (s: CollectedSpan) => byId.get(s.parentSpanId);

    // The gateway: the root, on the receiving node's process.
    assert.equal(gateway.name, "PUT /v1/kv/{keyspace}/{key}");
    assert.equal(gateway.kind, SERVER);
    assert.equal(gateway.parentSpanId, "");
    assert.equal(node(gateway), receiver);
    assert.equal(gateway.resource["service.name"], "kumo");
    assert.equal(gateway.attributes["http.response.status_code"], 200);

    // The routing, under it, on the same process.
    const route = spans.find((s) => s.name === "kv.route");
    assert.ok(route);
    assert.equal(parent(route), gateway);
    assert.equal(node(route), receiver);
    assert.equal(route.attributes["kumo.shard"], shard.id);

    // The proposal on the leader's process, a child of the routing span on the receiver's.
    const propose = spans.find((s) => s.name === "raft.propose");
    assert.ok(propose);
    assert.equal(node(propose), leader);
    assert.equal(parent(propose), route);
    assert.equal(propose.attributes["kumo.raft.forwarded_by"], receiver);
    assert.equal(propose.attributes["kumo.shard"], shard.id);

    // An append on each follower's process, children of the proposal.
    const appends = spans.filter((s) => s.name === "raft.append");
    assert.deepEqual(appends.map(node).sort(), [receiver, third].sort());
    for (const a of appends) {
      assert.equal(parent(a), propose);
      assert.equal(a.attributes["kumo.raft.index"], propose.attributes["kumo.raft.index"]);
    }

    // Each process's durable write of the entry, under its own proposal or append span.
    for (const owner of [propose, ...appends]) {
      const w = spans.find((s) => s.name === "storage.write" && parent(s) === owner);
      assert.ok(w, `a storage write under ${owner.name} on ${node(owner)}`);
      assert.equal(node(w), node(owner));
    }

    // Three processes, three service instances, one trace.
    assert.equal(new Set(spans.map(node)).size, 3);
    assert.ok(spans.every((s) => s.traceId === gateway?.traceId));
  });

  test("an S3 PUT: one trace, chunk writes on other nodes joined through gRPC metadata", async () => {
    const s3 = s3Client(c.node("n1").s3, ROOT, { maxAttempts: 3 });
    try {
      // The root key is stored by the metadata leader's first round.
      await waitFor(
        async () => {
          await s3.send(new ListBucketsCommand({}));
          return true;
        },
        20_000,
        "the S3 root key",
        200,
      );
      await s3.send(new CreateBucketCommand({ Bucket: "traced" }));
      // Large enough to be stored in a chunk (smaller objects live in the index entry).
      const put = await s3.send(
        new PutObjectCommand({ Bucket: "traced", Key: "obj", Body: new Uint8Array(100_000) }),
      );
      const requestId = put.$metadata.requestId;
      assert.ok(requestId);
      let spans: CollectedSpan[] = [];
      let door: CollectedSpan | undefined;
      await explained(
        waitFor(
          async () => {
            door = collector.byRequestId(requestId);
            if (!door) return false;
            spans = collector.trace(door.traceId);
            return (
              spans.some((s) => s.name === "raft.propose") &&
              spans.some((s) => s.name === "peer blob.put" && s.kind === SERVER)
            );
          },
          15_000,
          "the spans of the S3 PUT",
        ),
        () => spans,
      );
      assert.ok(door);
      assert.equal(door.name, "S3 put_object");
      assert.equal(node(door), "n1");
      assert.equal(door.attributes["http.response.status_code"], 200);
      const byId = new Map(spans.map((s) => [s.spanId, s]));
      // A chunk written on another node: its server span is a child of n1's client span.
      const served = spans.filter((s) => s.name === "peer blob.put" && s.kind === SERVER);
      assert.ok(served.length >= 1);
      for (const s of served) {
        const client = byId.get(s.parentSpanId);
        assert.equal(client?.kind, CLIENT);
        assert.equal(node(client as CollectedSpan), "n1");
        assert.notEqual(node(s), "n1");
      }
      // The object's index entry went through Raft within the same trace.
      assert.ok(spans.filter((s) => s.name === "kv.route").every((s) => node(s) === "n1"));
    } finally {
      s3.destroy();
    }
  });
});
