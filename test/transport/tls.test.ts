/**
 * Mutual TLS between GrpcTransports, with throwaway certificates made by the `openssl` CLI (the
 * same commands docs/transport.md gives operators). Skipped, saying why, without openssl.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { NodeId } from "../../src/raft/index.js";
import { type GrpcTlsOptions, GrpcTransport } from "../../src/transport/index.js";
import { eventually, everyMessageType, heartbeat, Recorder, text, untext } from "./_util.js";

const openssl = spawnSync("openssl", ["version"], { encoding: "utf8" });
const skip =
  openssl.error || openssl.status !== 0
    ? "openssl is not on PATH (CI installs it): mTLS tests skipped"
    : false;

function run(dir: string, args: string[]): void {
  const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
  assert.equal(r.status, 0, `openssl ${args.join(" ")}\n${r.stderr}`);
}

/** A self-signed CA: `${name}.crt`, `${name}.key`. */
function makeCa(dir: string, name: string): void {
  run(dir, [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
}

/**
 * A node certificate signed by `ca`: CN = node id (checked against the id the node claims), SAN =
 * the addresses peers dial (checked by clients as for any TLS server), usable as server and client.
 */
function makeNodeCert(dir: string, ca: string, id: NodeId, file = id): GrpcTlsOptions {
  writeFileSync(
    join(dir, `${file}.ext`),
    [
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "extendedKeyUsage=serverAuth,clientAuth",
      "keyUsage=critical,digitalSignature,keyEncipherment",
    ].join("\n"),
  );
  run(dir, [
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${file}.key`,
    "-out",
    `${file}.csr`,
    "-subj",
    `/CN=${id}`,
  ]);
  run(dir, [
    "x509",
    "-req",
    "-in",
    `${file}.csr`,
    "-CA",
    `${ca}.crt`,
    "-CAkey",
    `${ca}.key`,
    "-CAcreateserial",
    "-out",
    `${file}.crt`,
    "-days",
    "2",
    "-extfile",
    `${file}.ext`,
  ]);
  return {
    caFile: join(dir, `${ca}.crt`),
    certFile: join(dir, `${file}.crt`),
    keyFile: join(dir, `${file}.key`),
  };
}

describe("mutual TLS", { skip }, () => {
  let dir = "";
  const tls: Record<string, GrpcTlsOptions> = {};
  const live: GrpcTransport[] = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "kumo-tls-"));
    makeCa(dir, "ca");
    makeCa(dir, "rogue-ca");
    tls.n1 = makeNodeCert(dir, "ca", "n1");
    tls.n2 = makeNodeCert(dir, "ca", "n2");
    // Claims to be n2 with a certificate from another CA, while trusting the real CA.
    tls.rogue = { ...makeNodeCert(dir, "rogue-ca", "n2", "rogue"), caFile: join(dir, "ca.crt") };
  });

  after(async () => {
    await Promise.all(live.map((t) => t.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function node(
    id: NodeId,
    t: GrpcTlsOptions | undefined,
  ): Promise<{ t: GrpcTransport; rec: Recorder }> {
    const transport = new GrpcTransport({
      self: id,
      listen: "127.0.0.1:0",
      tls: t,
      stopGraceMs: 200,
      reconnectDelayMsMin: 20,
      reconnectDelayMsMax: 200,
    });
    live.push(transport);
    const rec = new Recorder();
    await transport.start(rec);
    return { t: transport, rec };
  }

  test("two nodes with certificates from the cluster CA exchange batches and calls", async () => {
    const a = await node("n1", tls.n1);
    const b = await node("n2", tls.n2);
    a.t.setPeer("n2", b.t.address());
    b.t.setPeer("n1", a.t.address());
    a.t.send("n2", everyMessageType("n1", "n2"));
    await eventually(() => b.rec.batches.length === 1, "the batch at n2");
    assert.deepStrictEqual(b.rec.batches[0], { from: "n1", batch: everyMessageType("n1", "n2") });
    const r = await b.t.call("n1", "echo", text("over tls"), 2_000);
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(untext(r.body), "n2:over tls");
    assert.ok(a.t.reachable("n2") && b.t.reachable("n1"));
    assert.equal(a.t.stats().identityRejected + b.t.stats().identityRejected, 0);
  });

  test("a client whose certificate comes from another CA is rejected", async () => {
    const server = await node("n1", tls.n1);
    const rogue = await node("n2", tls.rogue);
    rogue.t.setPeer("n1", server.t.address());
    const r = await rogue.t.call("n1", "echo", text("let me in"), 2_000);
    assert.equal(!r.ok && r.code, "UNREACHABLE", JSON.stringify(r));
    rogue.t.send("n1", [heartbeat("n2", "n1", 1)]);
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(rogue.t.reachable("n1"), false);
    assert.deepEqual(server.rec.batches, []);
    assert.deepEqual(server.rec.calls, []);
  });

  test("a plaintext client is rejected", async () => {
    const server = await node("n1", tls.n1);
    const plain = await node("n2", undefined);
    plain.t.setPeer("n1", server.t.address());
    const r = await plain.t.call("n1", "echo", text("hi"), 2_000);
    assert.equal(!r.ok && r.code, "UNREACHABLE", JSON.stringify(r));
    assert.deepEqual(server.rec.calls, []);
  });

  test("a cluster certificate cannot speak for another node id", async () => {
    const server = await node("n1", tls.n1);
    // A genuine cluster certificate for n2, used by a node claiming to be n3.
    const impostor = await node("n3", tls.n2);
    impostor.t.setPeer("n1", server.t.address());
    const r = await impostor.t.call("n1", "echo", text("hi"), 2_000);
    assert.equal(!r.ok && r.code, "REMOTE_ERROR", JSON.stringify(r));
    assert.match(!r.ok ? r.message : "", /PERMISSION_DENIED/);
    impostor.t.send("n1", [heartbeat("n3", "n1", 1)]);
    await eventually(() => server.t.stats().identityRejected >= 2, "the stream refused too");
    assert.deepEqual(server.rec.batches, []);
    assert.deepEqual(server.rec.calls, []);
  });
});
