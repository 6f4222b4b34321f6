/**
 * A real 3-node cluster with TLS everywhere (TestCluster `tls`: mutual TLS between nodes, HTTPS
 * on the API and S3 ports, certificates from src/node/certs.ts): KV and S3 over HTTPS trusting
 * the cluster CA, plain and untrusting clients refused, the console's node-to-node HTTPS calls,
 * and certificates replaced on disk while the cluster runs — taken by new connections on every
 * port within the reload interval, a broken replacement refused with the old one still serving.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { Agent as HttpsAgent } from "node:https";
import { after, before, describe, test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListBucketsCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { makeLeaf, writeCertFiles } from "../../src/node/certs.js";
import { http, TestCluster, waitFor } from "../integration/_cluster.js";
import { bytesOf, s3Client } from "../integration/_s3.js";

const ROOT = { accessKeyId: "GKTLSTESTKEY00000001", secretAccessKey: "tls-root-secret-0001" };
const RELOAD_MS = 250;

/** The serial number of the certificate served at `address` to a client trusting `ca`. */
function servedSerial(
  address: string,
  ca: string,
  client?: { cert: Buffer; key: Buffer; alpn?: string },
): Promise<string> {
  const i = address.lastIndexOf(":");
  return new Promise((resolve, reject) => {
    const s = tlsConnect(
      {
        host: address.slice(0, i),
        port: Number(address.slice(i + 1)),
        ca,
        servername: "localhost",
        ...(client
          ? { cert: client.cert, key: client.key, ALPNProtocols: [client.alpn ?? "h2"] }
          : {}),
      },
      () => {
        const serial = s.getPeerCertificate().serialNumber;
        s.destroy();
        resolve(serial.toUpperCase());
      },
    );
    s.once("error", reject);
    s.setTimeout(5_000, () => s.destroy(new Error("no TLS handshake within 5 s")));
  });
}

describe("TLS on every port of a real cluster", () => {
  let c: TestCluster;
  let ca = "";
  let s3: S3Client;

  before(async () => {
    c = await TestCluster.start({
      nodes: 3,
      tls: true,
      args: ["--tls-reload-interval", `${RELOAD_MS}ms`, "--http-header-bytes-max", "8192"],
      env: { KUMO_S3_ROOT_KEY: `${ROOT.accessKeyId}:${ROOT.secretAccessKey}` },
    });
    ca = c.tls?.ca.certPem ?? "";
    s3 = s3Client(c.node("n1").s3, ROOT, {
      endpoint: `https://${c.node("n1").s3}`,
      requestHandler: { httpsAgent: new HttpsAgent({ ca }) },
    });
  });

  after(async () => {
    s3?.destroy();
    await c?.stop();
  });

  test("KV over HTTPS, trusting the cluster CA, on every node", async () => {
    assert.equal(c.scheme, "https");
    const put = await c.put("n1", "tls-key", "over https");
    assert.equal(put.status, 200, await put.text());
    for (const id of ["n2", "n3"]) {
      const r = await c.get(id, "tls-key");
      assert.equal(r.status, 200);
      assert.equal(await r.text(), "over https");
    }
  });

  test("plain HTTP and clients that do not trust the CA are refused", async () => {
    const api = c.node("n1").api;
    const plain = await http(`http://${api}/v1/kv/default/tls-key`, {
      headers: c.auth(),
    });
    assert.ok(plain.status === 0 || plain.status >= 400, `plain HTTP got ${plain.status}`);
    assert.ok(!plain.text.includes("over https"));
    // The system's roots only: the node's certificate does not verify.
    const untrusting = await http(`https://${api}/v1/kv/default/tls-key`, { headers: c.auth() });
    assert.equal(untrusting.status, 0);
    assert.match(untrusting.error ?? "", /certificate|issuer/i);
    const untrustingS3 = await http(`https://${c.node("n2").s3}/`);
    assert.equal(untrustingS3.status, 0);
  });

  test("S3 over HTTPS with the AWS SDK", async () => {
    // The root key is stored by the metadata leader's first round.
    await waitFor(
      async () => {
        await s3.send(new ListBucketsCommand({}));
        return true;
      },
      20_000,
      "S3 root key",
      200,
    );
    await s3.send(new CreateBucketCommand({ Bucket: "tls-bucket" }));
    await s3.send(
      new PutObjectCommand({ Bucket: "tls-bucket", Key: "hello.txt", Body: "hello over TLS" }),
    );
    const other = s3Client(c.node("n3").s3, ROOT, {
      endpoint: `https://${c.node("n3").s3}`,
      requestHandler: { httpsAgent: new HttpsAgent({ ca }) },
    });
    try {
      const got = await other.send(
        new GetObjectCommand({ Bucket: "tls-bucket", Key: "hello.txt" }),
      );
      assert.equal((await bytesOf(got.Body)).toString(), "hello over TLS");
    } finally {
      other.destroy();
    }
  });

  test("the console's cluster view reaches the other nodes' HTTPS API ports", async () => {
    await waitFor(
      async () => {
        const r = await c.req("n1", "GET", "/v1/admin/console/cluster");
        const nodes = (JSON.parse(r.text) as { nodes: { id: string; responded: boolean }[] }).nodes;
        return nodes.length === 3 && nodes.every((n) => n.responded);
      },
      20_000,
      "every node answering n1's console",
      250,
    );
  });

  test("a header over --http-header-bytes-max gets 431 over TLS", async () => {
    const r = await c.req("n2", "GET", "/healthz", { headers: { "x-big": "b".repeat(10_000) } });
    assert.equal(r.status, 431);
    assert.equal((await c.req("n2", "GET", "/healthz", { headers: { "x-ok": "o" } })).status, 200);
  });

  test("the certificates' expiry is a metric", async () => {
    const r = await c.req("n1", "GET", "/metrics");
    for (const listener of ["client", "peer"])
      assert.match(
        r.text,
        new RegExp(`kumo_tls_certificate_not_after_seconds\\{listener="${listener}"[^}]*\\} \\d+`),
      );
  });

  test("replaced certificate files are served by new connections on every port, without a restart", async () => {
    const tls = c.tls;
    assert.ok(tls);
    const n1 = c.node("n1");
    const asN2 = {
      cert: readFileSync(`${tls.dir}/n2.crt`),
      key: readFileSync(`${tls.dir}/n2.key`),
    };
    const before = await servedSerial(n1.api, ca);
    assert.equal(await servedSerial(n1.peer, ca, asN2), before);

    const next = makeLeaf(tls.ca, { commonName: "n1", validDays: 3 });
    const nextSerial = new X509Certificate(next.certPem).serialNumber.toUpperCase();
    assert.notEqual(nextSerial, before);
    writeCertFiles(tls.dir, "n1", next);
    const t0 = performance.now();
    await waitFor(
      async () =>
        (await servedSerial(n1.api, ca)) === nextSerial &&
        (await servedSerial(n1.s3, ca)) === nextSerial &&
        (await servedSerial(n1.peer, ca, asN2)) === nextSerial,
      10_000,
      "the new certificate on n1's API, S3 and peer ports",
      50,
    );
    const tookMs = performance.now() - t0;
    assert.ok(tookMs < 10 * RELOAD_MS + 2_000, `took ${tookMs} ms`);
    assert.ok(n1.log.join("").includes("TLS certificate reloaded"));

    // New node-to-node connections both ways: n2 restarts, so n1 dials it anew (presenting the
    // new certificate as a client) and n2 dials n1 (which serves the new one). The cluster
    // still replicates through n2.
    await c.restart("n2");
    await c.waitServing(30_000);
    await waitFor(
      async () => (await c.put("n2", "after-reload", "still replicating")).status === 200,
      20_000,
      "a write through n2",
      200,
    );
    for (const id of ["n1", "n3"]) {
      const r = await c.get(id, "after-reload");
      assert.equal(await r.text(), "still replicating");
    }
    const st = await c.status("n1");
    assert.equal(st.stats.transport.identityRejected ?? 0, 0);
  });

  test("a broken replacement is refused and logged; the previous certificate keeps serving", async () => {
    const tls = c.tls;
    assert.ok(tls);
    const n1 = c.node("n1");
    const serving = await servedSerial(n1.api, ca);
    // A certificate without its key (copied alone), then garbage.
    writeFileSync(`${tls.dir}/n1.crt`, makeLeaf(tls.ca, { commonName: "n1" }).certPem);
    await waitFor(
      async () => n1.log.join("").includes("TLS files not reloaded"),
      10_000,
      "the refusal in n1's log",
      50,
    );
    writeFileSync(`${tls.dir}/n1.crt`, "-----BEGIN CERTIFICATE-----\nnope\n");
    await new Promise((r) => setTimeout(r, 4 * RELOAD_MS));
    assert.equal(await servedSerial(n1.api, ca), serving);
    assert.equal(await servedSerial(n1.s3, ca), serving);
    assert.ok(n1.proc, "n1 still runs");
    const put = await c.put("n1", "after-bad-reload", "fine");
    assert.equal(put.status, 200);
    assert.equal(await (await c.get("n3", "after-bad-reload")).text(), "fine");
  });
});

describe("SIGHUP reloads certificates at once", () => {
  let c: TestCluster;

  before(async () => {
    // Polling every hour: only the signal can make the node notice the new files in time.
    c = await TestCluster.start({ nodes: 1, tls: true, args: ["--tls-reload-interval", "1h"] });
  });

  after(async () => {
    await c?.stop();
  });

  test("new files are ignored until SIGHUP, then served", async () => {
    const tls = c.tls;
    assert.ok(tls);
    const n1 = c.node("n1");
    const ca = tls.ca.certPem;
    const old = await servedSerial(n1.api, ca);
    const next = makeLeaf(tls.ca, { commonName: "n1" });
    const nextSerial = new X509Certificate(next.certPem).serialNumber.toUpperCase();
    writeCertFiles(tls.dir, "n1", next);
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(await servedSerial(n1.api, ca), old, "not polled yet");
    n1.proc?.kill("SIGHUP");
    await waitFor(
      async () =>
        (await servedSerial(n1.api, ca)) === nextSerial &&
        (await servedSerial(n1.s3, ca)) === nextSerial,
      5_000,
      "the new certificate after SIGHUP",
      50,
    );
    assert.ok(n1.proc, "SIGHUP does not stop the node");
    assert.equal((await c.req("n1", "GET", "/readyz")).status, 200);
  });
});
