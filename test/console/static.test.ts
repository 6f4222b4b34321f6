/**
 * The console's HTTP side without a cluster: static files (content types, caching, client-route
 * fallback, traversal refused, a clear 404 when not built) and the admin token on every data
 * endpoint.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { describeBound, printable, ringPerNode } from "../../src/api/console/cluster.js";
import {
  ConsoleApi,
  type ConsoleOptions,
  contentTypeOf,
  safeRelativePath,
} from "../../src/api/console/index.js";
import { encodeKey } from "../../src/shard/index.js";

const TOKEN = "admin-secret";
const INDEX = "<!doctype html><title>Kumo console</title><div id=app></div>";

function options(distDir: string): ConsoleOptions {
  return {
    adminTokens: [TOKEN],
    distDir,
    cluster: {
      nodeId: "n1",
      addresses: { api: "127.0.0.1:1", s3: "127.0.0.1:2", peer: "127.0.0.1:3" },
      labels: { zone: "z1" },
      dataDir: tmpdir(),
      status: () => ({
        node: "n1",
        ready: true,
        nodes: [{ id: "n1", state: "alive", replicas: 1, leaders: 1 }],
        shards: [
          {
            id: "s1",
            keyspace: "default",
            replicas: ["n1"],
            voters: ["n1"],
            learners: [],
            leader: "n1",
            term: 2,
            localRole: "leader",
            commit: 7,
            applied: 7,
          },
        ],
      }),
      member: () => undefined,
      shardMap: () => ({
        keyspaces: () => ["default"],
        sharding: () => "range",
        shards: () => [
          {
            id: "s1",
            keyspace: "default",
            start: new Uint8Array(0),
            end: new Uint8Array(0),
            replicas: ["n1"],
          },
        ],
      }),
      ring: () => ({ version: 3, partitions: 2, replicas: 1, ring: [["n1"], ["n1"]] }),
    },
  };
}

/** A server that answers with the console first, then 404 (as the node does). */
function serve(api: ConsoleApi): Promise<Server> {
  const server = createServer((req, res) => {
    void api.handle(req, res, new URL(req.url ?? "/", "http://kumo")).then((handled) => {
      if (!handled) {
        res.writeHead(404);
        res.end("not the console");
      }
    });
  });
  return new Promise((r) => server.listen(0, "127.0.0.1", () => r(server)));
}

/** A raw request (fetch would normalise "..", which is what the handler must refuse itself). */
function get(
  server: Server,
  path: string,
  headers: Record<string, string> = {},
  method = "GET",
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const { port } = server.address() as AddressInfo;
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on("data", (d: Buffer) => parts.push(d));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(parts).toString("utf8"),
        }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

describe("console static files", () => {
  const dir = mkdtempSync(join(tmpdir(), "kumo-console-static-"));
  const dist = join(dir, "dist");
  let server: Server;
  let unbuilt: Server;

  before(async () => {
    mkdirSync(join(dist, "assets"), { recursive: true });
    writeFileSync(join(dist, "index.html"), INDEX);
    writeFileSync(join(dist, "assets", "index-abc123.js"), "console.log('kumo')");
    writeFileSync(join(dist, "assets", "index-abc123.css"), "body{}");
    writeFileSync(join(dist, "favicon.svg"), "<svg xmlns='http://www.w3.org/2000/svg'/>");
    writeFileSync(join(dist, ".secret"), "hidden");
    writeFileSync(join(dir, "outside.txt"), "outside the root");
    server = await serve(new ConsoleApi(options(dist)));
    unbuilt = await serve(new ConsoleApi(options(join(dir, "missing"))));
  });

  after(() => {
    server?.close();
    unbuilt?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("index, assets and icons with their content types and caching", async () => {
    const index = await get(server, "/console/");
    assert.equal(index.status, 200);
    assert.equal(index.headers["content-type"], "text/html; charset=utf-8");
    assert.equal(index.headers["cache-control"], "no-cache");
    assert.equal(index.headers["x-content-type-options"], "nosniff");
    assert.equal(index.body, INDEX);
    assert.match(String(index.headers["content-security-policy"]), /script-src 'self'/);

    const js = await get(server, "/console/assets/index-abc123.js");
    assert.equal(js.status, 200);
    assert.equal(js.headers["content-type"], "text/javascript; charset=utf-8");
    assert.match(String(js.headers["cache-control"]), /immutable/);
    const css = await get(server, "/console/assets/index-abc123.css");
    assert.equal(css.headers["content-type"], "text/css; charset=utf-8");
    const svg = await get(server, "/console/favicon.svg");
    assert.equal(svg.headers["content-type"], "image/svg+xml");
    assert.equal(svg.headers["cache-control"], "no-cache");

    // Revalidation: the ETag comes back as 304.
    const again = await get(server, "/console/assets/index-abc123.js", {
      "if-none-match": String(js.headers.etag),
    });
    assert.equal(again.status, 304);
    const head = await get(server, "/console/", {}, "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.body, "");
    assert.equal((await get(server, "/console/", {}, "POST")).status, 405);

    assert.equal(contentTypeOf("a.woff2"), "font/woff2");
    assert.equal(contentTypeOf("a.unknown"), "application/octet-stream");
  });

  test("client routes get the page; missing files and other paths do not", async () => {
    for (const p of ["/console/buckets/photos", "/console/kv/default?prefix=a", "/console/ring"]) {
      const r = await get(server, p);
      assert.equal(r.status, 200, p);
      assert.equal(r.body, INDEX, p);
    }
    const bare = await get(server, "/console?x=1");
    assert.equal(bare.status, 308);
    assert.equal(bare.headers.location, "/console/?x=1");
    assert.equal((await get(server, "/console/assets/missing.js")).status, 404);
    assert.equal((await get(server, "/consoles")).body, "not the console");
  });

  test("nothing outside the folder can be named", async () => {
    for (const p of [
      "/console/../outside.txt",
      "/console/%2e%2e/outside.txt",
      "/console/..%2Foutside.txt",
      "/console/assets/..%2F..%2Foutside.txt",
      "/console/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
      "/console/..%5C..%5Coutside.txt",
      "/console/.secret",
      "/console/assets%2F..%2F.secret",
      "/console/index.html%00.js",
      "/console//etc/passwd",
      "/console/%E0%A4%A",
    ]) {
      const r = await get(server, p);
      // Refused, or (an extension-less path inside the folder) the page itself.
      assert.ok(
        r.status === 400 || r.status === 404 || (r.status === 200 && r.body === INDEX),
        `${p}: ${r.status}`,
      );
      assert.ok(!r.body.includes("outside the root") && !r.body.includes("hidden"), p);
      assert.ok(!r.body.includes("root:"), p);
    }
    assert.equal(safeRelativePath("assets/a.js"), "assets/a.js");
    assert.equal(safeRelativePath(""), "");
    assert.equal(safeRelativePath("a/../b"), undefined);
    assert.equal(safeRelativePath("%2e%2e"), undefined);
    assert.equal(safeRelativePath("a\\b"), undefined);
    assert.equal(safeRelativePath("a//b"), undefined);
  });

  test("not built: a 404 saying how to build it", async () => {
    for (const p of ["/console/", "/console/overview"]) {
      const r = await get(unbuilt, p);
      assert.equal(r.status, 404);
      assert.match(r.body, /not built/);
      assert.match(r.body, /npm run build/);
    }
  });

  test("every data endpoint needs the admin token", async () => {
    const paths = [
      "/v1/admin/console/node",
      "/v1/admin/console/cluster",
      "/v1/admin/console/ring",
      "/v1/admin/console/buckets",
      "/v1/admin/console/buckets/photos",
      "/v1/admin/console/objects/photos",
      "/v1/admin/console/objects/photos/a/b.txt",
      "/v1/admin/console/kv/default",
      "/v1/admin/console/kv/default/k",
      "/v1/admin/console/anything",
    ];
    for (const p of paths) {
      for (const headers of [
        {} as Record<string, string>,
        { authorization: "Bearer wrong" },
        { authorization: `Basic ${TOKEN}` },
      ]) {
        for (const method of ["GET", "PUT", "DELETE"]) {
          const r = await get(server, p, headers, method);
          assert.equal(r.status, 401, `${method} ${p} ${JSON.stringify(headers)}`);
          assert.equal(JSON.parse(r.body).error.code, "UNAUTHORIZED");
          assert.match(String(r.headers["www-authenticate"]), /Bearer/);
        }
      }
    }
  });

  test("with the token: this node, the cluster and the ring", async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    const node = JSON.parse((await get(server, "/v1/admin/console/node", auth)).body);
    assert.equal(node.id, "n1");
    assert.deepEqual(node.labels, { zone: "z1" });
    assert.equal(node.shards.length, 1);
    assert.deepEqual(Object.keys(node.requests).sort(), ["admin", "kv", "s3"]);
    const c = JSON.parse((await get(server, "/v1/admin/console/cluster", auth)).body);
    assert.equal(c.nodes.length, 1);
    assert.equal(c.nodes[0].leaders, 1);
    assert.equal(c.nodes[0].zone, "z1");
    assert.equal(c.keyspaces[0].shards[0].leader, "n1");
    assert.equal(c.keyspaces[0].shards[0].start.label, "−∞");
    assert.equal(c.summary.leaderless, 0);
    assert.equal(c.ring.version, 3);
    const ring = JSON.parse((await get(server, "/v1/admin/console/ring", auth)).body);
    assert.deepEqual(ring.perNode, { n1: { primary: 2, total: 2 } });
    // No browser configured here: its endpoints say so rather than pretend.
    assert.equal((await get(server, "/v1/admin/console/buckets", auth)).status, 503);
    assert.equal((await get(server, "/v1/admin/console/nope", auth)).status, 404);
    assert.equal((await get(server, "/v1/admin/console/node", auth, "PUT")).status, 405);
  });
});

test("shard bounds for people", () => {
  const enc = new TextEncoder();
  const hashStart = encodeKey("default", new Uint8Array(0), "range");
  assert.equal(describeBound(hashStart, "default", "hash", false).label, "−∞");
  const mid = new Uint8Array([...hashStart, 0x80, 0, 0, 0]);
  const b = describeBound(mid, "default", "hash", false);
  assert.equal(b.label, "#80000000");
  assert.equal(b.pos, 0.5);
  const r = describeBound(encodeKey("logs", enc.encode("2026/01"), "range"), "logs", "range", true);
  assert.equal(r.label, "2026/01");
  assert.equal(describeBound(new Uint8Array(0), "logs", "range", true).label, "+∞");
  // The next keyspace's prefix ends this one.
  assert.equal(describeBound(enc.encode("logt"), "logs", "range", true).label, "+∞");
  assert.equal(printable(new Uint8Array([0x61, 0x00, 0xff])), "a\\x00\\xff");
  assert.equal(printable(enc.encode("é\n")), "é\\x0a");
  assert.deepEqual(
    ringPerNode({
      ring: [
        ["a", "b"],
        ["b", "a"],
        ["a", "c"],
      ],
    }),
    {
      a: { primary: 2, total: 3 },
      b: { primary: 1, total: 2 },
      c: { primary: 0, total: 1 },
    },
  );
});
