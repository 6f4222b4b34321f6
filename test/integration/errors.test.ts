/**
 * Bad input gets the documented status, error code and JSON body (docs/kv-api.md, "Errors"),
 * never a stack trace, and writes nothing.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { after, before, describe, test } from "node:test";
import {
  chunkedRequest,
  errorBody,
  type HttpAnswer,
  http,
  sleep,
  TestCluster,
} from "./_cluster.js";

const KEY_MAX = 64;
const VALUE_MAX = 4096;
const ARGS = [
  "--tick-ms",
  "20",
  "--election-ticks",
  "10",
  "--key-bytes-max",
  String(KEY_MAX),
  "--value-bytes-max",
  String(VALUE_MAX),
  "--list-limit-max",
  "50",
];
const KV = "/v1/kv/default/";

let c: TestCluster;
const tag = randomBytes(4).toString("hex");
/** Keys that a rejected request named: none of them may exist afterwards. */
const mustNotExist: string[] = [];

before(async () => {
  c = await TestCluster.start({ nodes: 3, args: ARGS });
});

after(async () => {
  await c?.stop();
});

/** A line of a JavaScript stack trace ("    at fn (file.js:1:2)"). */
const STACK_LINE = /(^|\n|\\n)\s*at\s+\S.*(:\d+:\d+|\(native\)|<anonymous>)/;

/** Asserts the documented error answer and returns its body. */
function expectError(
  r: HttpAnswer,
  status: number,
  code: string,
  what: string,
): { code: string; message: string; revision?: number } {
  assert.equal(r.status, status, `${what}: ${r.status} ${r.text} ${r.error ?? ""}`);
  assert.match(r.headers.get("content-type") ?? "", /^application\/json/, `${what}: content-type`);
  const err = errorBody(r.text);
  assert.ok(err, `${what}: not an error body: ${r.text}`);
  assert.equal(err.code, code, `${what}: ${r.text}`);
  assert.ok(err.message.length > 0, `${what}: empty message`);
  assert.doesNotMatch(r.text, STACK_LINE, `${what}: stack trace in ${r.text}`);
  assert.doesNotMatch(r.text, /node:internal|\/dist\/src\//, `${what}: internals in ${r.text}`);
  return err;
}

function node(i: number): string {
  return c.ids()[i % 3] as string;
}

describe("errors", () => {
  test("no token or a wrong token → 401 UNAUTHORIZED with WWW-Authenticate, and nothing written", async () => {
    const key = `auth-${tag}/k`;
    mustNotExist.push(key);
    const variants: Record<string, string>[] = [
      {},
      { authorization: "Bearer wrong-token" },
      { authorization: `Bearer ${c.token}x` },
      { authorization: `Basic ${Buffer.from(`user:${c.token}`).toString("base64")}` },
      { authorization: "Bearer " },
      { authorization: c.token },
    ];
    for (const [i, headers] of variants.entries()) {
      const what = `auth variant ${i}`;
      for (const [method, path] of [
        ["PUT", KV + key],
        ["GET", KV + key],
        ["HEAD", KV + key],
        ["DELETE", KV + key],
        ["GET", "/v1/kv/default?prefix=a"],
        ["GET", `/v1/kv/nosuchspace-${tag}/k`],
      ] as const) {
        const r = await http(c.url(node(i), path), {
          method,
          headers,
          ...(method === "PUT" ? { body: "x" } : {}),
        });
        assert.equal(r.status, 401, `${what} ${method} ${path}: ${r.status} ${r.text}`);
        assert.match(
          r.headers.get("www-authenticate") ?? "",
          /^Bearer\b/,
          `${what} ${method} ${path}: WWW-Authenticate`,
        );
        if (method !== "HEAD") expectError(r, 401, "UNAUTHORIZED", `${what} ${method} ${path}`);
      }
    }
  });

  test("GET /v1/cluster without a valid token → 401 with WWW-Authenticate", async () => {
    for (const headers of [{}, { authorization: "Bearer wrong" }] as Record<string, string>[]) {
      const r = await http(c.url("n1", "/v1/cluster"), { headers });
      expectError(r, 401, "UNAUTHORIZED", "/v1/cluster");
      assert.match(r.headers.get("www-authenticate") ?? "", /^Bearer\b/);
    }
  });

  test("unknown keyspace → 404 KEYSPACE_NOT_FOUND for reads, writes, deletes and listings", async () => {
    for (const [i, [method, path]] of [
      ["GET", `/v1/kv/nosuch-${tag}/k`],
      ["PUT", `/v1/kv/nosuch-${tag}/k`],
      ["DELETE", `/v1/kv/nosuch-${tag}/k`],
      ["GET", `/v1/kv/nosuch-${tag}`],
      ["GET", `/v1/kv/nosuch-${tag}?prefix=x`],
      ["GET", "/v1/kv/Default/k"],
    ].entries()) {
      const r = await c.req(
        node(i),
        method as string,
        path as string,
        method === "PUT" ? { body: "x" } : {},
      );
      expectError(r, 404, "KEYSPACE_NOT_FOUND", `${method} ${path}`);
    }
  });

  test("malformed paths: empty key, empty keyspace, bad percent-encoding → 400 BAD_REQUEST", async () => {
    const cases: [string, string][] = [
      ["PUT", KV],
      ["GET", KV],
      ["DELETE", KV],
      ["GET", "/v1/kv/"],
      ["GET", "/v1/kv"],
      ["PUT", `${KV}bad-${tag}%`],
      ["PUT", `${KV}bad-${tag}%ZZ`],
      ["PUT", `${KV}bad-${tag}%E0%A4%A`],
      ["PUT", `${KV}bad-${tag}%C3%28`], // invalid UTF-8
      ["PUT", `${KV}bad-${tag}%FF`],
      ["GET", `${KV}bad-${tag}%C3`],
      ["DELETE", `${KV}bad-${tag}%C3`],
      ["GET", "/v1/kv/%ZZ/k"],
    ];
    for (const [i, [method, path]] of cases.entries()) {
      const r = await c.req(node(i), method, path, method === "PUT" ? { body: "x" } : {});
      expectError(r, 400, "BAD_REQUEST", `${method} ${path}`);
    }
    mustNotExist.push(`bad-${tag}`);
  });

  test("bad conditional headers → 400 BAD_REQUEST, and nothing written", async () => {
    const key = `cond-${tag}/k`;
    mustNotExist.push(key);
    const cases: [string, Record<string, string>][] = [
      ["PUT", { "if-match": "abc" }],
      ["PUT", { "if-match": '"12x"' }],
      ["PUT", { "if-match": '"-1"' }],
      ["PUT", { "if-match": '"1.5"' }],
      ["PUT", { "if-match": "" }],
      ["PUT", { "if-match": '"99999999999999999999999"' }],
      ["DELETE", { "if-match": "nope" }],
      ["PUT", { "if-match": '"0"', "if-none-match": "*" }],
      ["DELETE", { "if-match": '"0"', "if-none-match": "*" }],
      ["PUT", { "if-none-match": '"3"' }],
      ["PUT", { "if-none-match": "**" }],
      ["PUT", { "if-none-match": "" }],
    ];
    for (const [i, [method, headers]] of cases.entries()) {
      const r = await c.req(node(i), method, KV + key, {
        headers,
        ...(method === "PUT" ? { body: "x" } : {}),
      });
      expectError(r, 400, "BAD_REQUEST", `${method} ${JSON.stringify(headers)}`);
    }
  });

  test("a key over --key-bytes-max → 413 KEY_TOO_LARGE (bytes, not characters); at the limit it is accepted", async () => {
    const base = `big-${tag}-`;
    const atLimit = base + "k".repeat(KEY_MAX - base.length);
    const over = `${atLimit}k`;
    // 33 two-byte characters: 33 characters, 66 bytes.
    const wide = "é".repeat(KEY_MAX / 2 + 1);
    const wideAtLimit = "é".repeat(KEY_MAX / 2);
    for (const [i, method] of ["PUT", "GET", "DELETE", "HEAD"].entries()) {
      for (const k of [over, wide]) {
        const r = await c.req(
          node(i),
          method,
          KV + encodeURIComponent(k),
          method === "PUT" ? { body: "x" } : {},
        );
        if (method === "HEAD") assert.equal(r.status, 413, `HEAD ${k}`);
        else expectError(r, 413, "KEY_TOO_LARGE", `${method} key of ${Buffer.byteLength(k)} bytes`);
      }
    }
    for (const k of [atLimit, wideAtLimit]) {
      const r = await c.req("n2", "PUT", KV + encodeURIComponent(k), { body: "fits" });
      assert.equal(r.status, 200, `key of ${Buffer.byteLength(k)} bytes: ${r.text}`);
      const g = await c.req("n3", "GET", KV + encodeURIComponent(k));
      assert.equal(g.status, 200);
      assert.equal(g.text, "fits");
    }
    // The rejected keys cannot be read (413), so look for them in listings: only the accepted ones.
    for (const [prefix, want] of [
      [base, [atLimit]],
      ["é", [wideAtLimit]],
    ] as const) {
      const r = await c.req(
        "n1",
        "GET",
        `/v1/kv/default?${new URLSearchParams({ prefix, keys_only: "true" })}`,
      );
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(
        (JSON.parse(r.text) as { items: { key: string }[] }).items.map((i) => i.key),
        want,
      );
    }
  });

  test("a value over --value-bytes-max → 413 VALUE_TOO_LARGE, with Content-Length and chunked; at the limit it is accepted", async () => {
    const key = `val-${tag}/k`;
    mustNotExist.push(key);
    // Declared length.
    for (const [i, size] of [VALUE_MAX + 1, VALUE_MAX * 4, 1 << 20].entries()) {
      const r = await c.req(node(i), "PUT", KV + key, { body: new Uint8Array(size).fill(120) });
      expectError(r, 413, "VALUE_TOO_LARGE", `value of ${size} bytes`);
    }
    // Chunked: no Content-Length, the limit is crossed while streaming.
    for (const [i, chunks] of [
      Array.from({ length: 5 }, () => new Uint8Array(1000).fill(97)), // 5000 bytes
      [new Uint8Array(VALUE_MAX).fill(98), new Uint8Array(1).fill(98)], // one byte over
      Array.from({ length: 256 }, () => new Uint8Array(4096).fill(99)), // 1 MiB
    ].entries()) {
      const r = await chunkedRequest(
        c.url(node(i), KV + key),
        "PUT",
        { ...c.auth(), "transfer-encoding": "chunked" },
        chunks,
      );
      const total = chunks.reduce((n, ch) => n + ch.byteLength, 0);
      assert.equal(r.status, 413, `chunked value of ${total} bytes: ${r.status} ${r.text}`);
      // Refused while streaming: the node did not wait for (or buffer) the whole 1 MiB.
      if (total > 100_000)
        assert.ok(r.sent < total, `the node read all ${total} bytes before answering`);
      assert.equal(errorBody(r.text)?.code, "VALUE_TOO_LARGE");
      assert.doesNotMatch(r.text, STACK_LINE);
    }
    const g = await c.req("n1", "GET", KV + key);
    expectError(g, 404, "NOT_FOUND", "after rejected values");

    // Exactly at the limit: accepted, with Content-Length and chunked.
    const okKey = `val-${tag}/fits`;
    const full = new Uint8Array(VALUE_MAX).fill(100);
    const r1 = await c.req("n2", "PUT", KV + okKey, { body: full });
    assert.equal(r1.status, 200, r1.text);
    const r2 = await chunkedRequest(
      c.url("n3", `${KV}${okKey}2`),
      "PUT",
      { ...c.auth(), "transfer-encoding": "chunked" },
      [full.subarray(0, 1000), full.subarray(1000)],
    );
    assert.equal(r2.status, 200, r2.text);
    for (const k of [okKey, `${okKey}2`]) {
      const got = await c.req("n1", "GET", KV + k);
      assert.equal(got.status, 200);
      assert.equal(got.body.byteLength, VALUE_MAX);
    }
  });

  test("bad query parameters → 400 BAD_REQUEST", async () => {
    const cases = [
      "/v1/kv/default?limit=0",
      "/v1/kv/default?limit=-1",
      "/v1/kv/default?limit=abc",
      "/v1/kv/default?limit=1.5",
      "/v1/kv/default?limit=",
      "/v1/kv/default?limit=51", // over --list-limit-max
      "/v1/kv/default?consistency=strong",
      "/v1/kv/default?consistency=",
      "/v1/kv/default?keys_only=maybe",
      "/v1/kv/default?keys_only=yes",
      `${KV}q-${tag}?consistency=eventual`,
      `${KV}q-${tag}?consistency=STALE`,
    ];
    for (const [i, path] of cases.entries()) {
      const r = await c.req(node(i), "GET", path);
      expectError(r, 400, "BAD_REQUEST", `GET ${path}`);
    }
    // The limits themselves are fine.
    for (const path of [
      "/v1/kv/default?limit=1",
      "/v1/kv/default?limit=50&keys_only=false",
      "/v1/kv/default?keys_only=",
    ]) {
      const r = await c.req("n1", "GET", path);
      assert.equal(r.status, 200, `${path}: ${r.text}`);
    }
  });

  test("wrong methods → 405 METHOD_NOT_ALLOWED with Allow; unknown routes → 404 NOT_FOUND", async () => {
    const key = `meth-${tag}/k`;
    mustNotExist.push(key);
    for (const [i, method] of ["POST", "PATCH", "OPTIONS"].entries()) {
      const r = await c.req(node(i), method, KV + key, {
        body: method === "OPTIONS" ? undefined : "x",
      });
      expectError(r, 405, "METHOD_NOT_ALLOWED", `${method} on a key`);
      const allow = (r.headers.get("allow") ?? "").split(",").map((s) => s.trim());
      for (const m of ["GET", "HEAD", "PUT", "DELETE"])
        assert.ok(allow.includes(m), `Allow: ${allow} lacks ${m}`);
      assert.ok(!allow.includes(method));
    }
    for (const [i, method] of ["PUT", "POST", "DELETE"].entries()) {
      const r = await c.req(
        node(i),
        method,
        "/v1/kv/default",
        method === "DELETE" ? {} : { body: "x" },
      );
      expectError(r, 405, "METHOD_NOT_ALLOWED", `${method} on a keyspace`);
      assert.equal(r.headers.get("allow"), "GET");
    }
    const post = await c.req("n1", "POST", "/v1/cluster", { body: "{}" });
    expectError(post, 405, "METHOD_NOT_ALLOWED", "POST /v1/cluster");
    assert.equal(post.headers.get("allow"), "GET");

    for (const [i, path] of [
      "/",
      "/v1",
      "/v1/nope",
      "/v2/kv/default/k",
      "/v1/kvx/default/k",
      "/healthz/x",
      "/favicon.ico",
    ].entries()) {
      const r = await c.req(node(i), "GET", path);
      expectError(r, 404, "NOT_FOUND", `GET ${path}`);
    }
  });

  test("a client that disconnects in the middle of a body writes nothing; the node keeps serving", async () => {
    const key = `abort-${tag}/k`;
    mustNotExist.push(key);
    for (const n of c.ids()) {
      const [host, port] = c.node(n).api.split(":") as [string, string];
      await new Promise<void>((resolve, reject) => {
        const s = connect(Number(port), host, () => {
          s.write(
            `PUT ${KV}${key} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${c.token}\r\n` +
              "Content-Length: 1000\r\n\r\n0123456789",
          );
          setTimeout(() => {
            s.destroy();
            resolve();
          }, 100);
        });
        s.on("error", reject);
      });
    }
    await sleep(200);
    for (const n of c.ids()) {
      assert.equal((await http(c.url(n, "/healthz"))).status, 200);
      expectError(await c.req(n, "GET", KV + key), 404, "NOT_FOUND", `GET ${key} via ${n}`);
    }
  });

  test("/healthz and /readyz answer 200 JSON without a token", async () => {
    for (const n of c.ids()) {
      for (const path of ["/healthz", "/readyz"]) {
        const r = await http(c.url(n, path));
        assert.equal(r.status, 200, `${n} ${path}: ${r.text}`);
        assert.match(r.headers.get("content-type") ?? "", /^application\/json/);
        const j = JSON.parse(r.text) as { status: string; node: string };
        assert.equal(j.status, path === "/healthz" ? "ok" : "ready");
      }
    }
  });

  test("nothing was written by any rejected request", async () => {
    assert.equal(mustNotExist.length, 6);
    for (const [i, key] of mustNotExist.entries()) {
      for (const q of ["", "?consistency=stale"]) {
        const r = await c.req(node(i), "GET", KV + encodeURIComponent(key) + q);
        expectError(r, 404, "NOT_FOUND", `GET ${key}${q}`);
      }
    }
    // And no listing shows them either.
    const r = await c.req("n1", "GET", "/v1/kv/default?keys_only=true&limit=50");
    assert.equal(r.status, 200);
    const keys = (JSON.parse(r.text) as { items: { key: string }[] }).items.map((i) => i.key);
    for (const k of mustNotExist) assert.ok(!keys.includes(k), `listed: ${k}`);
    // Every node is still healthy after all of that.
    for (const n of c.ids()) assert.equal((await http(c.url(n, "/healthz"))).status, 200);
    assert.equal(c.alive().length, 3, c.logs());
  });
});
