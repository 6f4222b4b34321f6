/**
 * TlsFiles (src/node/tls.ts): certificate files re-read without a restart, a bad replacement
 * refused with the old material kept; the expiry metric; certificates from src/node/certs.ts.
 */
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import pino from "pino";
import { Registry } from "prom-client";
import { type CertKeyPem, makeCa, makeLeaf, writeCertFiles } from "../../src/node/certs.js";
import { registerTlsMetrics, TlsFiles } from "../../src/node/tls.js";

describe("TlsFiles", () => {
  let dir = "";
  let ca: CertKeyPem;
  const lines: Record<string, unknown>[] = [];
  const log = pino(
    { level: "info" },
    { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) },
  );

  before(() => {
    dir = mkdtempSync(join(tmpdir(), "kumo-tlsfiles-"));
    ca = makeCa({ validDays: 2 });
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("certs: a node certificate chains to the CA, names the node and its addresses", () => {
    const leaf = makeLeaf(ca, { commonName: "n7", hosts: ["localhost", "127.0.0.1", "::1"] });
    const x = new X509Certificate(leaf.certPem);
    assert.ok(x.verify(new X509Certificate(ca.certPem).publicKey));
    assert.match(x.subject, /CN=n7/);
    assert.equal(
      x.subjectAltName,
      "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1",
    );
    assert.ok(x.checkIP("127.0.0.1"));
    assert.equal(x.ca, false);
    assert.equal(new X509Certificate(ca.certPem).ca, true);
  });

  test("a replaced pair is taken on check(); a broken one is refused, logged once, old kept", async () => {
    const first = writeCertFiles(dir, "a", makeLeaf(ca, { commonName: "a", validDays: 1 }));
    const files = await TlsFiles.open(first, { name: "client", reloadIntervalMs: 60_000, log });
    const seen: string[] = [];
    files.onChange((m) => seen.push(m.serialNumber));
    const serial1 = files.current().serialNumber;
    assert.equal(await files.check(), false, "unchanged files: nothing to do");

    const second = makeLeaf(ca, { commonName: "a", validDays: 3 });
    writeCertFiles(dir, "a", second);
    assert.equal(await files.check(), true);
    const serial2 = new X509Certificate(second.certPem).serialNumber;
    assert.equal(files.current().serialNumber, serial2);
    assert.notEqual(serial2, serial1);
    assert.deepEqual(seen, [serial2]);
    assert.ok(files.current().notAfter.getTime() > Date.now() + 2.5 * 86_400_000);

    // A certificate whose key is not the one on disk (the operator copied only one file).
    writeFileSync(first.certFile, makeLeaf(ca, { commonName: "a" }).certPem);
    assert.equal(await files.check(), false);
    // Garbage, and a missing file: refused too.
    writeFileSync(first.certFile, "not a certificate");
    assert.equal(await files.check(), false);
    assert.equal(await files.check(), false);
    rmSync(first.keyFile);
    assert.equal(await files.check(), false);
    assert.equal(files.current().serialNumber, serial2, "the last good pair keeps serving");
    assert.deepEqual(seen, [serial2]);
    const refusedLines = lines.filter((l) => String(l.msg).includes("not reloaded"));
    assert.equal(refusedLines.length, 3, "each distinct problem logged once");
    assert.equal(refusedLines[0]?.keptSerialNumber, serial2);

    // Fixed: taken again.
    const third = makeLeaf(ca, { commonName: "a" });
    writeCertFiles(dir, "a", third);
    assert.equal(await files.check(), true);
    assert.equal(files.current().serialNumber, new X509Certificate(third.certPem).serialNumber);
    files.stop();
  });

  test("polling picks a change up within the interval", async () => {
    const paths = writeCertFiles(dir, "b", makeLeaf(ca, { commonName: "b" }));
    const files = await TlsFiles.open(paths, { name: "peer", reloadIntervalMs: 100, log });
    files.start();
    const next = makeLeaf(ca, { commonName: "b" });
    writeCertFiles(dir, "b", next);
    const want = new X509Certificate(next.certPem).serialNumber;
    const until = Date.now() + 5_000;
    while (files.current().serialNumber !== want && Date.now() < until)
      await new Promise((r) => setTimeout(r, 50));
    files.stop();
    assert.equal(files.current().serialNumber, want);
  });

  test("open refuses unusable files (a node must not start without a certificate)", async () => {
    const paths = writeCertFiles(dir, "c", makeLeaf(ca, { commonName: "c" }));
    writeFileSync(paths.keyFile, makeCa().keyPem);
    await assert.rejects(
      TlsFiles.open(paths, { name: "client", reloadIntervalMs: 1_000, log }),
      /client TLS files/,
    );
  });

  test("kumo_tls_certificate_not_after_seconds shows each listener's expiry", async () => {
    const paths = writeCertFiles(dir, "d", makeLeaf(ca, { commonName: "d", validDays: 10 }));
    const files = await TlsFiles.open(paths, { name: "client", reloadIntervalMs: 1_000, log });
    const registry = new Registry();
    registerTlsMetrics(registry, () => [files]);
    const text = await registry.metrics();
    const m = /kumo_tls_certificate_not_after_seconds\{listener="client"\} (\d+)/.exec(text);
    assert.ok(m, text);
    assert.equal(Number(m[1]), files.current().notAfter.getTime() / 1000);
  });
});
