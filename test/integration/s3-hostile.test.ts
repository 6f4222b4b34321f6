/**
 * The S3 door against hostile or broken clients, over raw HTTP (node:http, node:net), signing
 * with the AWS SDK's own signer (@smithy/signature-v4) where a valid signature is needed:
 * malformed XML bodies, DTDs and entity bombs, wrong signatures, expired presigned URLs,
 * skewed clocks, bad ranges, oversized headers, keys with NUL, over-long keys, `../` keys,
 * unsupported sub-resources, truncated bodies. Every refusal must be an S3 `<Error>` document
 * (Code, Message, RequestId, and the x-amz-request-id header), nothing may be stored by a
 * refused write, nothing may escape the data directory, and the node must keep serving.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { Agent, request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";
import { Sha256 } from "@aws-crypto/sha256-js";
import {
  GetObjectCommand,
  ListBucketsCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
import { TestCluster, waitFor } from "./_cluster.js";
import { s3Client, sha256Hex } from "./_s3.js";

const ARGS = ["--tick-ms", "20", "--election-ticks", "10"];
const ROOT = { accessKeyId: "GKROOTHOSTILE0000001", secretAccessKey: "root-secret-hostile-0001" };

let c: TestCluster;
let sdk: S3Client;
let host: string;
let port: number;
const bucket = `hostile-${randomBytes(3).toString("hex")}`;

const sha = sha256Hex;

/** RFC 3986 encoding of one component, as the S3 SDK does it. */
function rfc3986(s: string): string {
  return encodeURIComponent(s).replace(
    /[!'()*]/g,
    (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** The path of an object, each key segment encoded (what the SDK sends and signs). */
function objectPath(key: string, b = bucket): string {
  return `/${b}/${key.split("/").map(rfc3986).join("/")}`;
}

type Query = Record<string, string | null>;

function wireQuery(query: Query): string {
  return Object.keys(query)
    .sort()
    .map((k) => {
      const v = query[k];
      return v === null || v === undefined ? rfc3986(k) : `${rfc3986(k)}=${rfc3986(v)}`;
    })
    .join("&");
}

/**
 * The query as the signer must see it: a bare sub-resource (`?delete`) is an empty value (the
 * signer leaves null values out of the canonical query; S3 canonicalises `delete` as `delete=`).
 */
function signingQuery(query: Query | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(query ?? {})) out[k] = v ?? "";
  return out;
}

function signer(secretAccessKey = ROOT.secretAccessKey): SignatureV4 {
  return new SignatureV4({
    credentials: { accessKeyId: ROOT.accessKeyId, secretAccessKey },
    region: "us-east-1",
    service: "s3",
    sha256: Sha256,
    uriEscapePath: false,
    applyChecksum: false,
  });
}

interface Spec {
  readonly method?: string;
  /** The raw request path, sent and signed as is. */
  readonly path: string;
  readonly query?: Query;
  readonly headers?: Record<string, string>;
  readonly body?: Buffer | string;
  /** Sign at this time (ms) instead of now. */
  readonly at?: number;
  readonly secret?: string;
  /** false: send without any signature. */
  readonly sign?: boolean;
  /** Change the request after signing (tampering). */
  readonly tamper?: (h: Record<string, string>) => void;
  readonly timeoutMs?: number;
  /** The HTTP agent (the default: node's global agent). */
  readonly agent?: Agent;
}

interface Answer {
  /** 0: no HTTP answer (see `error`). */
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  readonly text: string;
  readonly ms: number;
  readonly error?: string;
}

async function signedHeaders(spec: Spec): Promise<Record<string, string>> {
  const body = spec.body ?? "";
  const headers: Record<string, string> = {
    host: `${host}:${port}`,
    "x-amz-content-sha256": sha(body),
    ...spec.headers,
  };
  if (spec.sign === false) return headers;
  const req = new HttpRequest({
    method: spec.method ?? "GET",
    protocol: "http:",
    hostname: host,
    port,
    path: spec.path,
    query: signingQuery(spec.query),
    headers,
  });
  const out = await signer(spec.secret).sign(req, {
    signingDate: new Date(spec.at ?? Date.now()),
  });
  return { ...(out.headers as Record<string, string>) };
}

/** One raw HTTP request (node:http: the path goes out exactly as given, `..` included). */
function raw(
  method: string,
  pathAndQuery: string,
  headers: Record<string, string>,
  body: Buffer | string | undefined,
  timeoutMs = 10_000,
  agent?: Agent,
): Promise<Answer> {
  const t0 = Date.now();
  return new Promise((done) => {
    const finish = (a: Omit<Answer, "ms">) => done({ ...a, ms: Date.now() - t0 });
    const req = httpRequest(
      { host, port, method, path: pathAndQuery, headers, ...(agent ? { agent } : {}) },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (d: Buffer) => parts.push(d));
        res.on("end", () => {
          const b = Buffer.concat(parts);
          finish({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: b,
            text: b.toString(),
          });
        });
        res.on("error", (e) =>
          finish({ status: 0, headers: {}, body: Buffer.alloc(0), text: "", error: e.message }),
        );
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", (e) =>
      finish({ status: 0, headers: {}, body: Buffer.alloc(0), text: "", error: e.message }),
    );
    req.end(body);
  });
}

async function s3(spec: Spec): Promise<Answer> {
  const headers = await signedHeaders(spec);
  spec.tamper?.(headers);
  if (spec.body !== undefined) headers["content-length"] = String(Buffer.byteLength(spec.body));
  const qs = wireQuery(spec.query ?? {});
  return raw(
    spec.method ?? "GET",
    qs === "" ? spec.path : `${spec.path}?${qs}`,
    headers,
    spec.body,
    spec.timeoutMs,
    spec.agent,
  );
}

/** A presigned URL for `spec` (query-string auth), signed at `at`. */
async function presignedUrl(spec: Spec, expiresIn: number): Promise<string> {
  const req = new HttpRequest({
    method: spec.method ?? "GET",
    protocol: "http:",
    hostname: host,
    port,
    path: spec.path,
    query: signingQuery(spec.query),
    // As the S3 presigner does: the payload is not signed.
    headers: { host: `${host}:${port}`, "x-amz-content-sha256": "UNSIGNED-PAYLOAD" },
  });
  const out = (await signer(spec.secret).presign(req, {
    expiresIn,
    signingDate: new Date(spec.at ?? Date.now()),
  })) as HttpRequest;
  return `http://${host}:${port}${out.path}?${wireQuery(out.query as Query)}`;
}

/**
 * Asserts an S3 error answer: the status, the code, and the document every S3 client parses:
 * `<Error>` with Code, Message and RequestId, the RequestId also in x-amz-request-id.
 */
function assertS3Error(a: Answer, status: number, code: string | readonly string[]): string {
  const codes = typeof code === "string" ? [code] : code;
  assert.equal(a.status, status, `status (${a.error ?? a.text.slice(0, 400)})`);
  const requestId = a.headers["x-amz-request-id"];
  assert.ok(typeof requestId === "string" && requestId !== "", "x-amz-request-id header");
  assert.match(String(a.headers["content-type"]), /xml/, "content-type");
  const m = /^\s*(?:<\?xml[^>]*\?>)?\s*<Error>([\s\S]*)<\/Error>\s*$/.exec(a.text);
  assert.ok(m, `an <Error> document: ${a.text.slice(0, 400)}`);
  const inner = m[1] as string;
  const got = /<Code>([^<]+)<\/Code>/.exec(inner)?.[1];
  assert.ok(got !== undefined && codes.includes(got), `code ${got}, want ${codes.join("|")}`);
  assert.match(inner, /<Message>[^<]*<\/Message>/, "Message");
  assert.equal(/<RequestId>([^<]+)<\/RequestId>/.exec(inner)?.[1], requestId, "RequestId");
  return got;
}

async function putObject(key: string, body: string | Buffer): Promise<Answer> {
  return s3({ method: "PUT", path: objectPath(key), body });
}

/** The keys listed under `prefix` (ListObjectsV2, one page). */
async function listKeys(prefix: string): Promise<string[]> {
  const a = await s3({ path: `/${bucket}`, query: { "list-type": "2", prefix } });
  assert.equal(a.status, 200, a.text);
  return [...a.text.matchAll(/<Key>([^<]*)<\/Key>/g)].map((x) =>
    (x[1] as string)
      .replace(/&lt;/g, "<")
      .replace(/&gt;/g, ">")
      .replace(/&quot;/g, '"')
      .replace(/&apos;/g, "'")
      .replace(/&amp;/g, "&"),
  );
}

/** The node answers a signed request at once. */
async function assertServing(): Promise<void> {
  const a = await s3({ path: "/" });
  assert.equal(a.status, 200, `ListBuckets: ${a.error ?? a.text.slice(0, 300)}`);
  assert.ok(c.node("n1").proc, "the node process is alive");
}

before(async () => {
  c = await TestCluster.start({
    nodes: 1,
    args: ARGS,
    env: { KUMO_S3_ROOT_KEY: `${ROOT.accessKeyId}:${ROOT.secretAccessKey}` },
  });
  const addr = c.node("n1").s3;
  host = addr.slice(0, addr.lastIndexOf(":"));
  port = Number(addr.slice(addr.lastIndexOf(":") + 1));
  sdk = s3Client(addr, ROOT, { maxAttempts: 1 });
  await waitFor(
    async () => {
      await sdk.send(new ListBucketsCommand({}));
      return true;
    },
    20_000,
    "the root S3 key",
    200,
  );
  const mk = await s3({ method: "PUT", path: `/${bucket}` });
  assert.equal(mk.status, 200, mk.text);
});

after(async () => {
  sdk?.destroy();
  await c?.stop();
});

describe("malformed request bodies", () => {
  test("malformed XML in DeleteObjects, CompleteMultipartUpload and PutBucketVersioning → 400 MalformedXML", async () => {
    const bad = [
      "<Delete><Object><Key>a</Key></Object>", // truncated
      "<Delete><Object><Key>a</Key></Objekt></Delete>", // mismatched tags
      "this is not xml <<<",
      "<Wrong><Object><Key>a</Key></Object></Wrong>", // wrong root element
      "<Delete><Object><Key>a</Key></Object></Delete><Delete/>", // two roots
      "\u0000\u0001\u0002binary",
    ];
    for (const body of bad) {
      const a = await s3({ method: "POST", path: `/${bucket}`, query: { delete: null }, body });
      assertS3Error(a, 400, "MalformedXML");
    }

    // Deeply nested elements (a recursive parser's stack).
    const deep = `<Delete>${"<a>".repeat(50_000)}${"</a>".repeat(50_000)}</Delete>`;
    const nested = await s3({
      method: "POST",
      path: `/${bucket}`,
      query: { delete: null },
      body: deep,
      timeoutMs: 5_000,
    });
    assertS3Error(nested, 400, "MalformedXML");

    const key = "mp/malformed";
    const init = await s3({ method: "POST", path: objectPath(key), query: { uploads: null } });
    assert.equal(init.status, 200, init.text);
    const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(init.text)?.[1];
    assert.ok(uploadId, init.text);
    for (const body of [
      "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>",
      "<CompleteMultipartUpload><Part></CompleteMultipartUpload></Part>",
      '{"parts": [1, 2]}',
      "<Other><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Other>",
    ]) {
      const a = await s3({ method: "POST", path: objectPath(key), query: { uploadId }, body });
      assertS3Error(a, 400, "MalformedXML");
    }
    const ls = await s3({ method: "GET", path: objectPath(key), query: { uploadId } });
    assert.equal(ls.status, 200, "the upload is still there after the refused completions");
    const abort = await s3({ method: "DELETE", path: objectPath(key), query: { uploadId } });
    assert.equal(abort.status, 204, abort.text);

    for (const body of [
      "<VersioningConfiguration><Status>Enabled</Status>",
      "<VersioningConfiguration><Status>Enabled</Status></Versioning>",
      "<<<>>>",
      "<Nope><Status>Enabled</Status></Nope>",
    ]) {
      const a = await s3({ method: "PUT", path: `/${bucket}`, query: { versioning: null }, body });
      assertS3Error(a, 400, "MalformedXML");
    }
    const v = await s3({ path: `/${bucket}`, query: { versioning: null } });
    assert.equal(v.status, 200);
    assert.doesNotMatch(v.text, /<Status>/, "versioning was never turned on");
  });

  test("an XML body over the 1 MiB bound → MalformedXML, and a keep-alive client's next request on that connection is answered", async () => {
    // One socket, reused (as the AWS SDKs' keep-alive agents do).
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const huge = `<Delete>${"<Object><Key>k</Key></Object>".repeat(80_000)}</Delete>`;
      const big = await s3({
        method: "POST",
        path: `/${bucket}`,
        query: { delete: null },
        body: huge,
        timeoutMs: 10_000,
        agent,
      });
      assertS3Error(big, 400, "MalformedXML");
      // The server may close the connection (the agent then opens another) or drain the rest
      // of the body and keep it; it must not leave it open and deaf.
      const next = await s3({
        path: `/${bucket}`,
        query: { "list-type": "2" },
        timeoutMs: 5_000,
        agent,
      });
      assert.equal(
        next.status,
        200,
        `the next request on the connection: ${next.error ?? next.text.slice(0, 200)}`,
      );
    } finally {
      agent.destroy();
    }
  });

  test("DOCTYPE and entities (billion laughs, external entity) → MalformedXML at once, no hang", async () => {
    const laughs =
      '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' +
      Array.from(
        { length: 9 },
        (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i === 0 ? "" : i};`.repeat(10)}">`,
      ).join("") +
      "]><Delete><Object><Key>&lol9;</Key></Object></Delete>";
    const xxe =
      '<?xml version="1.0"?><!DOCTYPE v [<!ENTITY x SYSTEM "file:///etc/passwd">]>' +
      "<VersioningConfiguration><Status>&x;</Status></VersioningConfiguration>";
    const a = await s3({
      method: "POST",
      path: `/${bucket}`,
      query: { delete: null },
      body: laughs,
      timeoutMs: 5_000,
    });
    assertS3Error(a, 400, "MalformedXML");
    assert.ok(a.ms < 3_000, `answered in ${a.ms} ms`);
    const b = await s3({
      method: "PUT",
      path: `/${bucket}`,
      query: { versioning: null },
      body: xxe,
      timeoutMs: 5_000,
    });
    assertS3Error(b, 400, "MalformedXML");
    assert.doesNotMatch(b.text, /root:/, "no file content in the answer");
    await assertServing();
  });

  test("a body cut short (Content-Length larger than what was sent) stores nothing", async () => {
    const key = "truncated-body";
    const headers = await signedHeaders({
      method: "PUT",
      path: objectPath(key),
      headers: { "x-amz-content-sha256": "UNSIGNED-PAYLOAD" },
    });
    headers["content-length"] = "100000";
    await new Promise<void>((done) => {
      const req = httpRequest({ host, port, method: "PUT", path: objectPath(key), headers });
      req.on("error", () => done());
      req.on("response", (res) => {
        res.resume();
        done();
      });
      req.write(Buffer.alloc(10, 1), () => setTimeout(() => req.destroy(), 200));
      setTimeout(done, 3_000);
    });
    // The server may still be reading: give it a moment, then nothing may be there.
    await new Promise((r) => setTimeout(r, 300));
    const h = await s3({ method: "HEAD", path: objectPath(key) });
    assert.equal(h.status, 404);
    assert.deepEqual(await listKeys(key), []);
  });
});

describe("authentication", () => {
  test("a wrong secret, or a signed request changed after signing → 403 SignatureDoesNotMatch; nothing stored", async () => {
    const wrong = await s3({
      method: "PUT",
      path: objectPath("sig/wrong"),
      body: "x",
      secret: "not-the-secret-000000",
    });
    assertS3Error(wrong, 403, "SignatureDoesNotMatch");
    const tampered = await s3({
      method: "PUT",
      path: objectPath("sig/tampered"),
      body: "x",
      headers: { "x-amz-meta-who": "alice" },
      tamper: (h) => {
        h["x-amz-meta-who"] = "mallory";
      },
    });
    assertS3Error(tampered, 403, "SignatureDoesNotMatch");
    const otherKey = await s3({
      method: "PUT",
      path: objectPath("sig/other"),
      body: "x",
      tamper: (h) => {
        h.authorization = (h.authorization as string).replace(
          /Signature=[0-9a-f]{64}/,
          `Signature=${"0".repeat(64)}`,
        );
      },
    });
    assertS3Error(otherKey, 403, "SignatureDoesNotMatch");
    assert.deepEqual(await listKeys("sig/"), []);
  });

  test("an expired presigned URL → 403; a fresh one works", async () => {
    assert.equal((await putObject("pre/obj", "presigned")).status, 200);
    const fresh = await presignedUrl({ path: objectPath("pre/obj") }, 60);
    const ok = await fetch(fresh);
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), "presigned");
    const old = await presignedUrl(
      { path: objectPath("pre/obj"), at: Date.now() - 2 * 3600_000 },
      60,
    );
    const u = new URL(old);
    const a = await raw("GET", `${u.pathname}${u.search}`, { host: `${host}:${port}` }, undefined);
    assertS3Error(a, 403, "AccessDenied");
    assert.match(a.text, /expired/i);
  });

  test("x-amz-date more than 15 minutes off → 403 RequestTimeTooSkewed; 5 minutes is fine", async () => {
    for (const off of [20 * 60_000, -20 * 60_000]) {
      const a = await s3({ path: `/${bucket}`, at: Date.now() + off });
      assertS3Error(a, 403, "RequestTimeTooSkewed");
    }
    const near = await s3({ path: `/${bucket}`, at: Date.now() + 5 * 60_000 });
    assert.equal(near.status, 200, near.text);
  });
});

describe("ranges", () => {
  test("bytes=abc is ignored (200, whole body); bytes=100-200 of 10 bytes → 416 InvalidRange", async () => {
    assert.equal((await putObject("ten", "0123456789")).status, 200);
    const junk = await s3({ path: objectPath("ten"), headers: { range: "bytes=abc" } });
    assert.equal(junk.status, 200);
    assert.equal(junk.text, "0123456789");
    const backwards = await s3({ path: objectPath("ten"), headers: { range: "bytes=5-2" } });
    assert.equal(backwards.status, 200);
    assert.equal(backwards.text, "0123456789");
    const ok = await s3({ path: objectPath("ten"), headers: { range: "bytes=2-4" } });
    assert.equal(ok.status, 206);
    assert.equal(ok.text, "234");
    const beyond = await s3({ path: objectPath("ten"), headers: { range: "bytes=100-200" } });
    assertS3Error(beyond, 416, "InvalidRange");
    assert.equal(beyond.headers["content-range"], "bytes */10");
  });
});

describe("oversized and odd requests", () => {
  test("a 64 KiB header is refused (431 or connection closed) and the node stays healthy", async () => {
    const answer = await new Promise<string>((done) => {
      const sock = connect({ host, port });
      const parts: Buffer[] = [];
      const timer = setTimeout(() => sock.destroy(), 5_000);
      sock.on("data", (d: Buffer) => parts.push(d));
      sock.on("close", () => {
        clearTimeout(timer);
        done(Buffer.concat(parts).toString("latin1"));
      });
      sock.on("error", () => {});
      sock.write(
        `GET /${bucket}/x HTTP/1.1\r\nHost: ${host}:${port}\r\nX-Junk: ${"a".repeat(64 * 1024)}\r\n\r\n`,
      );
    });
    assert.ok(
      answer === "" || /^HTTP\/1\.[01] 431 /.test(answer),
      `refused: ${JSON.stringify(answer.slice(0, 200))}`,
    );
    // Many headers adding up to 64 KiB too.
    const many: Record<string, string> = {};
    for (let i = 0; i < 256; i++) many[`x-junk-${i}`] = "b".repeat(256);
    const a = await raw("GET", `/${bucket}`, { host: `${host}:${port}`, ...many }, undefined);
    assert.ok(a.status === 0 || a.status === 431, `refused: ${a.status} ${a.error ?? ""}`);
    await assertServing();
  });

  test("a key with NUL → 400, nothing stored", async () => {
    const a = await s3({ method: "PUT", path: `/${bucket}/nul%00key`, body: "nul" });
    assertS3Error(a, 400, ["InvalidArgument", "InvalidURI"]);
    assert.deepEqual(await listKeys("nul"), []);
    const h = await s3({ method: "HEAD", path: `/${bucket}/nul` });
    assert.equal(h.status, 404);
  });

  test("keys longer than 1024 bytes → 400 KeyTooLongError; 1024 bytes is fine", async () => {
    const long = await putObject("k".repeat(1025), "long");
    assertS3Error(long, 400, "KeyTooLongError");
    // 513 two-byte characters: 1026 bytes, though only 513 characters.
    const wide = await putObject("é".repeat(513), "wide");
    assertS3Error(wide, 400, "KeyTooLongError");
    const get = await s3({ path: objectPath("k".repeat(1025)) });
    assertS3Error(get, 400, "KeyTooLongError");
    const max = "m".repeat(1024);
    assert.equal((await putObject(max, "max")).status, 200);
    const back = await s3({ path: objectPath(max) });
    assert.equal(back.status, 200);
    assert.equal(back.text, "max");
    assert.deepEqual(await listKeys("k"), []);
    assert.deepEqual(await listKeys("é"), []);
  });

  test("`../` keys are opaque keys: stored and read back as such, nothing outside the data directory", async () => {
    const tag = randomBytes(4).toString("hex");
    const names = [`escape-${tag}-a`, `escape-${tag}-b`, `escape-${tag}-c`];
    const cases = [
      // Literal dot segments on the wire (node:http does not normalise them).
      { path: `/${bucket}/../../${names[0]}`, key: `../../${names[0]}` },
      // Encoded slashes: one segment on the wire, `../../../x` once decoded.
      { path: `/${bucket}/..%2F..%2F..%2F${names[1]}`, key: `../../../${names[1]}` },
      { path: `/${bucket}/./a/../../${names[2]}`, key: `./a/../../${names[2]}` },
    ];
    for (const [i, k] of cases.entries()) {
      const body = `opaque ${i} ${tag}`;
      const put = await s3({ method: "PUT", path: k.path, body });
      assert.equal(put.status, 200, `${k.path}: ${put.text}`);
      const get = await s3({ path: k.path });
      assert.equal(get.status, 200, get.text);
      assert.equal(get.text, body);
      // The same key, addressed with every segment encoded, is the same object.
      const again = await s3({ path: objectPath(k.key) });
      assert.equal(again.status, 200, again.text);
      assert.equal(again.text, body);
    }
    const listed = await listKeys("");
    for (const k of cases) assert.ok(listed.includes(k.key), `${k.key} listed as is`);
    // No file of those names anywhere near the data directory.
    const data = c.node("n1").data;
    for (const name of names) {
      for (const base of [data, join(data, "chunks"), process.cwd()])
        for (const up of ["", "..", "../..", "../../.."])
          assert.ok(!existsSync(resolve(base, up, name)), `no ${resolve(base, up, name)}`);
      assert.ok(!existsSync(join(tmpdir(), name)));
    }
    const found: string[] = [];
    let seen = 0;
    const walk = async (dir: string): Promise<void> => {
      for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
        if (++seen > 100_000) return;
        if (names.some((n) => e.name.includes(n))) found.push(join(dir, e.name));
        if (e.isDirectory()) await walk(join(dir, e.name));
      }
    };
    await walk(dirname(data));
    assert.deepEqual(found, [], "no file named after a key in the cluster's directory");
  });

  test("unsupported sub-resources (?tagging, ?lifecycle, ?policy) → 501 NotImplemented", async () => {
    assert.equal((await putObject("tagged", "t")).status, 200);
    const tagging = "<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>";
    const lifecycle =
      "<LifecycleConfiguration><Rule><ID>x</ID><Status>Enabled</Status></Rule></LifecycleConfiguration>";
    const cases: Spec[] = [
      { method: "GET", path: `/${bucket}`, query: { tagging: null } },
      { method: "PUT", path: `/${bucket}`, query: { tagging: null }, body: tagging },
      { method: "GET", path: objectPath("tagged"), query: { tagging: null } },
      { method: "PUT", path: objectPath("tagged"), query: { tagging: null }, body: tagging },
      { method: "GET", path: `/${bucket}`, query: { lifecycle: null } },
      { method: "PUT", path: `/${bucket}`, query: { lifecycle: null }, body: lifecycle },
      { method: "DELETE", path: `/${bucket}`, query: { lifecycle: null } },
      { method: "GET", path: `/${bucket}`, query: { policy: null } },
    ];
    for (const spec of cases) {
      const a = await s3(spec);
      assertS3Error(a, 501, "NotImplemented");
    }
    // The object is untouched by the PUT ?tagging.
    const g = await s3({ path: objectPath("tagged") });
    assert.equal(g.status, 200);
    assert.equal(g.text, "t");
  });

  test("bad percent-encoding in the path, and unsigned requests, are S3 errors too", async () => {
    const bad = await s3({ path: `/${bucket}/%ZZ`, sign: false });
    assertS3Error(bad, 400, ["InvalidURI", "InvalidArgument"]);
    const anon = await s3({ method: "PUT", path: objectPath("anon"), body: "x", sign: false });
    assertS3Error(anon, 403, "AccessDenied");
    const garbage = await s3({
      path: `/${bucket}`,
      sign: false,
      headers: { authorization: "AWS4-HMAC-SHA256 garbage", "x-amz-date": "yesterday" },
    });
    assert.ok(garbage.status === 400 || garbage.status === 403, garbage.text);
    assertS3Error(garbage, garbage.status, [
      "AuthorizationHeaderMalformed",
      "AccessDenied",
      "InvalidArgument",
      "InvalidRequest",
    ]);
    assert.deepEqual(await listKeys("anon"), []);
  });
});

describe("afterwards", () => {
  test("the node still serves normally (SDK put, get, list)", async () => {
    const body = randomBytes(300_000);
    await sdk.send(new PutObjectCommand({ Bucket: bucket, Key: "after/normal", Body: body }));
    const g = await sdk.send(new GetObjectCommand({ Bucket: bucket, Key: "after/normal" }));
    const got = Buffer.from(
      await (g.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
    assert.equal(sha(got), sha(body));
    await assertServing();
    const ready = await fetch(`http://${c.node("n1").api}/readyz`);
    assert.equal(ready.status, 200);
  });
});
