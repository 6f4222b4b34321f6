/**
 * `kumo dev --tls`: a throwaway CA and node certificates in DIR/tls, mutual TLS between the
 * nodes, HTTPS on the API and S3 ports; the banner says how to trust the CA, and the `kumo` CLI
 * uses it from cluster.json or --ca.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { Agent as HttpsAgent } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { fetchTrusting } from "../../src/node/tls.js";
import {
  freePortRange,
  http,
  killProcess,
  MAIN,
  runCli,
  spawnTracked,
  waitFor,
} from "./_cluster.js";
import { bytesOf, s3Client } from "./_s3.js";

interface ClusterFile {
  nodes: { id: string; pid: number; api: string; s3: string; peer: string }[];
  token: string;
  s3: { accessKeyId: string; secretAccessKey: string };
  ca?: string;
}

const dir = mkdtempSync(join(tmpdir(), "kumo-dev-tls-it-"));
const file = join(dir, "cluster.json");
let dev: ChildProcess | undefined;
let nodePids: number[] = [];

after(async () => {
  if (dev) await killProcess(dev, "SIGTERM", 20_000);
  for (const pid of nodePids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone, as it should be
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

describe("kumo dev --tls", () => {
  test("serves HTTPS with a throwaway CA that the banner, curl-style clients and the CLI use", async () => {
    const base = await freePortRange(30);
    const proc = spawnTracked([
      MAIN,
      "dev",
      "--tls",
      "--nodes",
      "3",
      "--data",
      dir,
      "--base-port",
      String(base),
      "--quiet",
    ]);
    dev = proc;
    let out = "";
    proc.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    proc.stderr?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`kumo dev exited (${proc.exitCode}):\n${out}`);
        return out.includes("Kumo is running") && existsSync(file);
      },
      90_000,
      "kumo dev --tls running",
      100,
    );
    const c = JSON.parse(readFileSync(file, "utf8")) as ClusterFile;
    nodePids = c.nodes.map((n) => n.pid);

    // The CA and one certificate per node (CN = node id) in DIR/tls.
    assert.equal(c.ca, join(dir, "tls", "ca.crt"));
    const caPem = readFileSync(c.ca);
    const caCert = new X509Certificate(caPem);
    for (const n of c.nodes) {
      const cert = new X509Certificate(readFileSync(join(dir, "tls", `${n.id}.crt`)));
      assert.match(cert.subject, new RegExp(`CN=${n.id}`));
      assert.ok(cert.verify(caCert.publicKey));
      assert.ok(cert.checkIP("127.0.0.1") && cert.checkHost("localhost"));
    }

    // The banner: https endpoints and how to trust the CA.
    const first = c.nodes[0];
    assert.ok(first);
    for (const want of [
      `https://${first.api}`,
      `https://${first.s3}`,
      `curl --cacert ${c.ca}`,
      `--ca-bundle ${c.ca}`,
      `kumo --ca ${c.ca}`,
    ])
      assert.ok(out.includes(want), `banner lacks ${want}:\n${out}`);

    // HTTPS only, verified against the CA.
    const trusting = fetchTrusting(() => caPem);
    for (const n of c.nodes) {
      const h = await http(`https://${n.api}/healthz`, {}, 10_000, trusting);
      assert.equal(h.status, 200, h.error);
      assert.equal((JSON.parse(h.text) as { node: string }).node, n.id);
    }
    assert.equal((await http(`https://${first.api}/healthz`)).status, 0, "untrusted: refused");
    const plain = await http(`http://${first.api}/healthz`);
    assert.notEqual(plain.status, 200);

    // The CLI: from cluster.json (its CA), and with --endpoint + --ca.
    const put = await runCli(["kv", "put", "tls-greeting", "hello tls", "--cluster", file]);
    assert.equal(put.code, 0, put.stderr);
    const viaCa = await runCli([
      "kv",
      "get",
      "tls-greeting",
      "--endpoint",
      `https://${c.nodes[2]?.api}`,
      "--token",
      c.token,
      "--ca",
      c.ca,
      "--cluster",
      join(dir, "none.json"),
    ]);
    assert.equal(viaCa.code, 0, viaCa.stderr);
    assert.match(viaCa.stdout, /hello tls/);
    const noCa = await runCli([
      "kv",
      "get",
      "tls-greeting",
      "--endpoint",
      `https://${first.api}`,
      "--token",
      c.token,
      "--cluster",
      join(dir, "none.json"),
    ]);
    assert.notEqual(noCa.code, 0, "without the CA the CLI refuses the certificate");

    // S3 over HTTPS, between nodes (chunks and index travel over mutual TLS).
    const s3 = s3Client(first.s3, c.s3, {
      endpoint: `https://${first.s3}`,
      requestHandler: { httpsAgent: new HttpsAgent({ ca: caPem }) },
    });
    const s3b = s3Client(c.nodes[1]?.s3 ?? "", c.s3, {
      endpoint: `https://${c.nodes[1]?.s3}`,
      requestHandler: { httpsAgent: new HttpsAgent({ ca: caPem }) },
    });
    try {
      await waitFor(
        async () => {
          await s3.send(new CreateBucketCommand({ Bucket: "dev-tls" }));
          return true;
        },
        20_000,
        "bucket created",
        200,
      );
      await s3.send(new PutObjectCommand({ Bucket: "dev-tls", Key: "k", Body: "secret data" }));
      const got = await s3b.send(new GetObjectCommand({ Bucket: "dev-tls", Key: "k" }));
      assert.equal((await bytesOf(got.Body)).toString(), "secret data");
    } finally {
      s3.destroy();
      s3b.destroy();
    }

    await killProcess(proc, "SIGTERM", 20_000);
    assert.equal(proc.exitCode, 0);
  });
});
