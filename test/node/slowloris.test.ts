/**
 * The client ports' defences against slow and oversized clients (src/node/doors.ts), over plain
 * HTTP and HTTPS, with small timeouts so that each case takes about a second: a header dribbled
 * byte by byte is cut after headersTimeout, a body stalled midway after the idle timeout, a TLS
 * handshake never started after headersTimeout, an oversized header gets 431 — and an upload
 * that is slow but keeps moving is never cut.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { connect as netConnect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import pino from "pino";
import { makeCa, makeLeaf, writeCertFiles } from "../../src/node/certs.js";
import { createDoorServer, type DoorLimits } from "../../src/node/doors.js";
import { TlsFiles } from "../../src/node/tls.js";

const LIMITS: DoorLimits = {
  headersTimeoutMs: 500,
  idleTimeoutMs: 800,
  headerBytesMax: 8 * 1024,
  requestTimeoutMs: 0,
  keepAliveTimeoutMs: 5_000,
};

/** Reads the whole body, answers with its size. */
function handler(req: IncomingMessage, res: ServerResponse): void {
  let n = 0;
  req.on("data", (d: Buffer) => {
    n += d.length;
  });
  req.on("end", () => {
    const body = String(n);
    res.writeHead(200, { "content-type": "text/plain", "content-length": body.length });
    res.end(body);
  });
  req.on("error", () => {});
}

interface Ended {
  readonly ms: number;
  readonly data: string;
}

/** Resolves when the server closes `s` (or after `capMs`, as ms = Infinity). */
function whenClosed(s: Socket, capMs: number): Promise<Ended> {
  const t0 = performance.now();
  let data = "";
  s.on("data", (d: Buffer) => {
    data += d.toString("latin1");
  });
  s.on("error", () => {});
  return new Promise((resolve) => {
    const cap = setTimeout(() => {
      s.destroy();
      resolve({ ms: Number.POSITIVE_INFINITY, data });
    }, capMs);
    s.once("close", () => {
      clearTimeout(cap);
      resolve({ ms: performance.now() - t0, data });
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function listen(server: Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)),
  );
}

for (const scheme of ["http", "https"] as const) {
  describe(`client port limits (${scheme})`, () => {
    let server: Server;
    let port = 0;
    let dir = "";
    let caPem = "";

    before(async () => {
      let tls: TlsFiles | undefined;
      if (scheme === "https") {
        dir = mkdtempSync(join(tmpdir(), "kumo-slowloris-"));
        const ca = makeCa({ validDays: 1 });
        caPem = ca.certPem;
        const files = writeCertFiles(dir, "n1", makeLeaf(ca, { commonName: "n1", validDays: 1 }));
        tls = await TlsFiles.open(files, {
          name: "client",
          reloadIntervalMs: 60_000,
          log: pino({ level: "silent" }),
        });
      }
      server = createDoorServer(handler, LIMITS, tls);
      port = await listen(server);
    });

    after(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    /** A connected socket (TLS handshake done for https). */
    function open(): Promise<Socket> {
      return new Promise((resolve, reject) => {
        const s =
          scheme === "https"
            ? tlsConnect({ host: "127.0.0.1", port, ca: caPem, servername: "localhost" }, () =>
                resolve(s),
              )
            : netConnect({ host: "127.0.0.1", port }, () => resolve(s));
        s.once("error", reject);
      });
    }

    test("a header dribbled one byte at a time is cut after headersTimeout", async () => {
      const s = await open();
      const closed = whenClosed(s, 10_000);
      s.write("PUT /x HTTP/1.1\r\nHost: kumo\r\nX-Slow: ");
      let stop = false;
      void closed.then(() => {
        stop = true;
      });
      // Busy enough that the idle timeout never fires: only headersTimeout can end this.
      while (!stop) {
        s.write("a");
        await sleep(100);
      }
      const r = await closed;
      assert.ok(r.ms >= LIMITS.headersTimeoutMs - 50, `closed too early: ${r.ms} ms`);
      assert.ok(r.ms < 3_000, `still open after ${r.ms} ms`);
      assert.match(r.data, /^HTTP\/1\.1 408 /);
    });

    test("a body stalled midway is cut after the idle timeout", async () => {
      const s = await open();
      const closed = whenClosed(s, 10_000);
      s.write("PUT /x HTTP/1.1\r\nHost: kumo\r\nContent-Length: 1000\r\n\r\n0123456789");
      const r = await closed;
      assert.ok(r.ms >= LIMITS.idleTimeoutMs - 50, `closed too early: ${r.ms} ms`);
      assert.ok(r.ms < 3_000, `still open after ${r.ms} ms`);
      assert.equal(r.data, "", "no answer: the request never completed");
    });

    test("an upload that is slow but keeps moving is never cut", async () => {
      const s = await open();
      const closed = whenClosed(s, 15_000);
      const chunks = 25;
      s.write(`PUT /x HTTP/1.1\r\nHost: kumo\r\nContent-Length: ${chunks * 10}\r\n\r\n`);
      const t0 = performance.now();
      // 25 × 120 ms = 3 s: longer than headersTimeout and idle timeout together, with a gap
      // between bytes well under the idle timeout.
      for (let i = 0; i < chunks; i++) {
        s.write("0123456789");
        await sleep(120);
      }
      const took = performance.now() - t0;
      await sleep(100);
      s.end();
      const r = await closed;
      assert.ok(took > LIMITS.idleTimeoutMs * 3, `upload took only ${took} ms`);
      assert.match(r.data, /^HTTP\/1\.1 200 /);
      assert.ok(r.data.endsWith(`\r\n\r\n${chunks * 10}`), r.data);
    });

    test("a header larger than headerBytesMax gets 431 (10 KiB and 100 KiB)", async () => {
      for (const bytes of [10 * 1024, 100 * 1024]) {
        const s = await open();
        const closed = whenClosed(s, 10_000);
        s.write(`GET /x HTTP/1.1\r\nHost: kumo\r\nX-Big: ${"b".repeat(bytes)}\r\n\r\n`);
        const r = await closed;
        assert.match(r.data, /^HTTP\/1\.1 431 /, `${bytes} bytes: ${r.data.slice(0, 80)}`);
      }
      // Under the limit: served.
      const s = await open();
      const closed = whenClosed(s, 10_000);
      s.write(
        `GET /x HTTP/1.1\r\nHost: kumo\r\nConnection: close\r\nX-Ok: ${"o".repeat(4096)}\r\n\r\n`,
      );
      assert.match((await closed).data, /^HTTP\/1\.1 200 /);
    });

    if (scheme === "https") {
      test("a TLS handshake never begun is cut after headersTimeout", async () => {
        const s = await new Promise<Socket>((resolve, reject) => {
          const c = netConnect({ host: "127.0.0.1", port }, () => resolve(c));
          c.once("error", reject);
        });
        const r = await whenClosed(s, 10_000);
        assert.ok(r.ms >= LIMITS.headersTimeoutMs - 50, `closed too early: ${r.ms} ms`);
        assert.ok(r.ms < 3_000, `still open after ${r.ms} ms`);
      });
    }
  });
}
