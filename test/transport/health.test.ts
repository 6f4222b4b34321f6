/**
 * grpc.health.v1 as a third-party client (a load balancer, grpc_health_probe) sees it: the client
 * is built from proto/grpc/health/v1/health.proto with proto-loader's default options, not with
 * the transport's own code.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { GrpcTransport, protoDir } from "../../src/transport/index.js";
import { eventually, Recorder } from "./_util.js";

interface HealthClient extends grpc.Client {
  Check(
    req: { service: string },
    options: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res?: { status: string }) => void,
  ): void;
  List(
    req: object,
    options: grpc.CallOptions,
    cb: (
      err: grpc.ServiceError | null,
      res?: { statuses: Record<string, { status: string }> },
    ) => void,
  ): void;
  Watch(req: { service: string }): grpc.ClientReadableStream<{ status: string }>;
}

function healthClient(address: string): HealthClient {
  const def = loadSync("grpc/health/v1/health.proto", { includeDirs: [protoDir()], enums: String });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  const Ctor = pkg.grpc.health.v1.Health;
  return new Ctor(address, grpc.credentials.createInsecure()) as unknown as HealthClient;
}

function check(c: HealthClient, service: string): Promise<string> {
  return new Promise((resolve, reject) =>
    c.Check({ service }, { deadline: Date.now() + 2_000 }, (err, res) =>
      err ? reject(err) : resolve(res?.status ?? "?"),
    ),
  );
}

describe("grpc.health.v1", () => {
  let t: GrpcTransport;
  let client: HealthClient;

  before(async () => {
    t = new GrpcTransport({ self: "n1", listen: "127.0.0.1:0", stopGraceMs: 200 });
    await t.start(new Recorder());
    client = healthClient(t.address());
  });

  after(async () => {
    client.close();
    await t.stop();
  });

  test("Check: NOT_SERVING until setServing(true), then SERVING, for '' and kumo.v1.Peer", async () => {
    assert.equal(await check(client, ""), "NOT_SERVING");
    assert.equal(await check(client, "kumo.v1.Peer"), "NOT_SERVING");
    t.setServing(true);
    assert.equal(await check(client, ""), "SERVING");
    assert.equal(await check(client, "kumo.v1.Peer"), "SERVING");
    t.setServing(false);
    assert.equal(await check(client, ""), "NOT_SERVING");
  });

  test("Check: an unknown service is NOT_FOUND", async () => {
    await assert.rejects(check(client, "no.such.Service"), (e: grpc.ServiceError) => {
      assert.equal(e.code, grpc.status.NOT_FOUND);
      return true;
    });
  });

  test("List: both services", async () => {
    t.setServing(true);
    const statuses = await new Promise<Record<string, { status: string }>>((resolve, reject) =>
      client.List({}, { deadline: Date.now() + 2_000 }, (err, res) =>
        err ? reject(err) : resolve(res?.statuses ?? {}),
      ),
    );
    assert.deepEqual(statuses, {
      "": { status: "SERVING" },
      "kumo.v1.Peer": { status: "SERVING" },
    });
    t.setServing(false);
  });

  test("Watch: the current status at once, then every change; unknown services are SERVICE_UNKNOWN", async () => {
    const seen: string[] = [];
    const watch = client.Watch({ service: "kumo.v1.Peer" });
    watch.on("data", (m: { status: string }) => seen.push(m.status));
    watch.on("error", () => {});
    await eventually(() => seen.length === 1, "the first status");
    assert.deepEqual(seen, ["NOT_SERVING"]);
    t.setServing(true);
    await eventually(() => seen.length === 2, "SERVING");
    t.setServing(true); // no change, no message
    t.setServing(false);
    await eventually(() => seen.length === 3, "NOT_SERVING again");
    assert.deepEqual(seen, ["NOT_SERVING", "SERVING", "NOT_SERVING"]);
    watch.cancel();

    const unknown: string[] = [];
    const w2 = client.Watch({ service: "nope" });
    w2.on("data", (m: { status: string }) => unknown.push(m.status));
    w2.on("error", () => {});
    await eventually(() => unknown.length === 1, "SERVICE_UNKNOWN");
    assert.deepEqual(unknown, ["SERVICE_UNKNOWN"]);
    w2.cancel();
  });

  test("stop(): watchers see NOT_SERVING and their stream ends", async () => {
    const other = new GrpcTransport({ self: "n2", listen: "127.0.0.1:0", stopGraceMs: 200 });
    await other.start(new Recorder());
    other.setServing(true);
    const c = healthClient(other.address());
    const seen: string[] = [];
    let ended = false;
    const watch = c.Watch({ service: "" });
    watch.on("data", (m: { status: string }) => seen.push(m.status));
    watch.on("error", () => {});
    watch.on("status", () => {
      ended = true;
    });
    await eventually(() => seen.length === 1, "SERVING");
    const startMs = Date.now();
    await other.stop();
    assert.ok(Date.now() - startMs < 1_000, "stop() is prompt with a watcher open");
    await eventually(() => ended, "the watch ended");
    assert.deepEqual(seen, ["SERVING", "NOT_SERVING"]);
    c.close();
  });
});
