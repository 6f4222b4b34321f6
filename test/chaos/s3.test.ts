/**
 * The S3 chaos workload: its SigV4 signer against the S3 door's verifier, the classification
 * of answers, the checker on planted histories (a lost acknowledged put, a listing that hides
 * an object, a listed key that does not read back), and a bounded end-to-end run with kill -9
 * and SIGSTOP on loopback (about 15 s of workload) that must report no violation.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { verifyRequest } from "../../src/api/s3/sigv4.js";
import { FINAL_CLIENT } from "../../src/chaos/history.js";
import type { RawOutcome } from "../../src/chaos/http.js";
import { type RunOptions, runChaos } from "../../src/chaos/runner.js";
import { checkS3, checkVersions, chunkCopies, strictRecheck } from "../../src/chaos/s3checker.js";
import { sha256Hex, signS3Request } from "../../src/chaos/s3sign.js";
import { classifyS3, parseListing, parseVersions, type S3Op } from "../../src/chaos/s3workload.js";

const CRED = { accessKeyId: "KUMOTESTKEY01", secretAccessKey: "not-a-real-secret-0001" };

test("signS3Request signs what the S3 door verifies", () => {
  const body = Buffer.from("hello, objects");
  const now = Date.UTC(2026, 10, 27, 12, 0, 0);
  const headers = signS3Request(
    {
      method: "PUT",
      path: "/bucket/dir/a%20b+c.txt",
      query: "",
      host: "127.0.0.1:7002",
      payloadHash: sha256Hex(body),
      headers: { "If-None-Match": "*" },
    },
    CRED,
    now,
  );
  const secretOf = (id: string) => (id === CRED.accessKeyId ? CRED.secretAccessKey : undefined);
  const ok = verifyRequest(
    { method: "PUT", path: "/bucket/dir/a%20b+c.txt", query: "", headers },
    secretOf,
    now,
  );
  assert.equal(ok.ok, true, JSON.stringify(ok));
  assert.deepEqual(ok.ok && ok.payload, { kind: "sha256", hex: sha256Hex(body) });
  // A listing's query is signed too; tampering with a signed header is refused.
  const list = signS3Request(
    {
      method: "GET",
      path: "/bucket",
      query: "list-type=2&max-keys=1000",
      host: "h:1",
      payloadHash: sha256Hex(""),
    },
    CRED,
    now,
  );
  const req = { method: "GET", path: "/bucket", query: "list-type=2&max-keys=1000" };
  assert.equal(verifyRequest({ ...req, headers: list }, secretOf, now).ok, true);
  assert.equal(
    verifyRequest({ ...req, query: "list-type=2&max-keys=1", headers: list }, secretOf, now).ok,
    false,
  );
  assert.equal(
    verifyRequest(
      {
        method: "PUT",
        path: "/bucket/dir/a%20b+c.txt",
        query: "",
        headers: { ...headers, "if-none-match": "x" },
      },
      secretOf,
      now,
    ).ok,
    false,
  );
});

const xmlError = (status: number, code: string): RawOutcome => ({
  kind: "answer",
  status,
  headers: {},
  body: Buffer.from(`<?xml version="1.0"?><Error><Code>${code}</Code><Message>m</Message></Error>`),
});
const net = (code: string): RawOutcome => ({ kind: "error", code, message: code });

test("S3 answers are classified ok / fail / info as history.ts does for KV", () => {
  const ok: RawOutcome = { kind: "answer", status: 200, headers: {}, body: Buffer.alloc(0) };
  assert.equal(classifyS3("put", ok).status, "ok");
  assert.equal(classifyS3("delete", { ...ok, status: 204 }).status, "ok");
  assert.deepEqual(classifyS3("get", xmlError(404, "NoSuchKey")), {
    status: "ok",
    code: "NoSuchKey",
  });
  assert.equal(classifyS3("cput", xmlError(412, "PreconditionFailed")).status, "ok");
  // Certainly not done: no connection, a refusal before anything changed.
  assert.equal(classifyS3("put", net("ECONNREFUSED")).status, "fail");
  assert.equal(classifyS3("put", xmlError(403, "SignatureDoesNotMatch")).status, "fail");
  assert.equal(classifyS3("put", xmlError(409, "OperationAborted")).status, "fail");
  assert.equal(classifyS3("get", xmlError(404, "NoSuchBucket")).status, "fail");
  // Unknown: timeouts, resets, cut answers, 5xx of any kind, RequestTimeout.
  for (const o of [
    net("TIMEOUT"),
    net("ECONNRESET"),
    net("ABORTED"),
    xmlError(503, "ServiceUnavailable"),
    xmlError(503, "SlowDown"),
    xmlError(500, "InternalError"),
    xmlError(400, "RequestTimeout"),
  ])
    assert.equal(classifyS3("put", o).status, "info", JSON.stringify(o));
});

test("ListObjectsV2 answers are parsed into key, ETag and size", () => {
  const xml =
    "<ListBucketResult><Contents><Key>o1.0</Key><ETag>&quot;abc&quot;</ETag><Size>12</Size></Contents>" +
    '<Contents><Key>a&amp;b</Key><ETag>"def"</ETag><Size>0</Size></Contents>' +
    "<IsTruncated>false</IsTruncated></ListBucketResult>";
  const p = parseListing(xml);
  assert.deepEqual(p.entries, [
    { key: "o1.0", etag: "abc", size: 12 },
    { key: "a&b", etag: "def", size: 0 },
  ]);
  assert.equal(p.truncated, false);
});

// ---------------------------------------------------------------- planted histories

const NODES = ["n1", "n2", "n3"];
let nextId = 0;
function op(d: Partial<S3Op> & Pick<S3Op, "op" | "call" | "ret">): S3Op {
  return { id: nextId++, client: 0, node: "n1", key: "k", status: "ok", http: 200, ...d };
}
const put = (value: string, call: number, ret: number, key = "k") =>
  op({ op: "put", key, value, call, ret });
const get = (value: string | null, call: number, ret: number, key = "k") =>
  op({ op: "get", key, call, ret, result: { value }, http: value === null ? 404 : 200 });
const finalGets = (value: string | null, key = "k") =>
  NODES.map((node, i) =>
    op({
      op: "get",
      key,
      node,
      client: FINAL_CLIENT,
      call: 1000 + i,
      ret: 1001 + i,
      result: { value },
      final: true,
    }),
  );
const finalList = (listed: { key: string; value: string }[], node = "n1") =>
  op({
    op: "list",
    key: "",
    node,
    client: FINAL_CLIENT,
    call: 990,
    ret: 991,
    result: { listed: listed.map((e) => ({ ...e, size: 1 })) },
    final: true,
  });

test("a correct S3 history passes: the last acknowledged put reads back everywhere", () => {
  const ops = [put("A", 0, 10), get("A", 20, 30), put("B", 40, 50), get("B", 60, 70)];
  const r = checkS3(ops, [finalList([{ key: "k", value: "B" }]), ...finalGets("B")], NODES);
  assert.equal(r.verdict.linearizable.ok, true);
  assert.equal(r.verdict.durability.ok, true);
  assert.equal(r.audit.ok, true, r.audit.violations.join("\n"));
  assert.equal(r.audit.expectedPuts, 1);
  assert.equal(r.audit.durableReads, 3);
  assert.equal(r.audit.durableReadsExpected, 3);
  // An unknown put after it may or may not have happened: either final value is fine.
  const open = [...ops, op({ op: "put", value: "C", call: 80, ret: 90, status: "info", http: 0 })];
  for (const v of ["B", "C"]) {
    const r2 = checkS3(open, finalGets(v), NODES);
    assert.equal(r2.audit.ok && r2.verdict.durability.ok, true, v);
    assert.equal(r2.audit.ambiguous, 1);
  }
});

test("a lost acknowledged put is flagged: never read back, or another hash read back", () => {
  const ops = [put("A", 0, 10), put("B", 40, 50)];
  for (const lostAs of ["A", null, "Z"]) {
    const r = checkS3(ops, finalGets(lostAs), NODES);
    assert.equal(r.audit.ok, false, `final read ${lostAs}`);
    assert.match(r.audit.violations[0] ?? "", /lost acknowledged put: k = B/);
    assert.equal(r.audit.durableReads, 0);
    assert.equal(r.verdict.durability.ok, false, `final read ${lostAs}`);
    assert.equal(r.verdict.durability.lost, 1);
  }
  // Lost through one node only.
  const one = [...finalGets("B")];
  one[2] = { ...one[2]!, result: { value: null } };
  const r = checkS3(ops, one, NODES);
  assert.equal(r.audit.ok, false);
  assert.equal(r.audit.durableReads, 2);
  assert.ok(r.audit.violations.some((v) => /n3 reads absent/.test(v)));
  assert.ok(r.audit.violations.some((v) => /nodes disagree/.test(v)));
});

test("listings are checked: a hidden object, a listed key that does not read back", () => {
  // A listing (during the run) that misses an acknowledged object is a stale read.
  const hidden = [
    put("A", 0, 10),
    op({ op: "list", key: "", call: 20, ret: 30, result: { listed: [] } }),
  ];
  assert.equal(checkS3(hidden, finalGets("A"), NODES).verdict.linearizable.ok, false);
  // After healing: a listed key that answers 404, and one that cannot be read at all.
  const ops = [put("A", 0, 10, "a"), put("B", 0, 10, "b")];
  const finals = [
    finalList([
      { key: "a", value: "A" },
      { key: "b", value: "B" },
    ]),
    ...finalGets("A", "a"),
    ...finalGets(null, "b"),
  ];
  const r = checkS3(ops, finals, NODES);
  assert.equal(r.audit.ok, false);
  assert.ok(r.audit.violations.some((v) => /b, listed by n1, reads 404/.test(v)));
  const unreadable = checkS3(ops, finals.slice(0, 4), NODES, {
    unreadable: NODES.map((n) => `b@${n} (last: 503 ServiceUnavailable)`),
  });
  assert.ok(
    unreadable.audit.violations.some((v) =>
      /b, listed by n1, cannot be read through n1 .*503/.test(v),
    ),
  );
  // An object that reads back but is missing from a post-heal listing.
  const missing = checkS3(ops.slice(0, 1), [finalList([]), ...finalGets("A", "a")], NODES);
  assert.ok(missing.audit.violations.some((v) => /does not show it/.test(v)));
});

test("ListObjectVersions answers are parsed into versions and delete markers", () => {
  const xml =
    '<ListVersionsResult><Version><Key>a&amp;b</Key><VersionId>2</VersionId><ETag>"e2"</ETag></Version>' +
    "<DeleteMarker><Key>a&amp;b</Key><VersionId>3</VersionId></DeleteMarker>" +
    "<Version><Key>a&amp;bc</Key><ETag>&quot;e9&quot;</ETag></Version><IsTruncated>false</IsTruncated></ListVersionsResult>";
  assert.deepEqual(parseVersions(xml), {
    versions: [
      { key: "a&b", etag: "e2", marker: false },
      { key: "a&b", etag: "", marker: true },
      { key: "a&bc", etag: "e9", marker: false },
    ],
    truncated: false,
  });
});

test("versions: an acknowledged put missing from its key's versions is found", () => {
  const op = (id: number, o: Partial<S3Op>): S3Op => ({
    id,
    client: 0,
    node: "n1",
    op: "put",
    key: "k",
    call: id,
    ret: id + 1,
    status: "ok",
    http: 200,
    ...o,
  });
  const ops = [
    op(1, { value: "s1" }),
    op(2, { value: "s2" }),
    op(3, { op: "cput", value: "s3", result: { ok: false } }), // 412: no version expected
    op(4, { value: "s4", status: "info", http: 0 }), // unknown: no version required
  ];
  const md5Of = new Map([
    ["s1", "m1"],
    ["s2", "m2"],
    ["s3", "m3"],
    ["s4", "m4"],
  ]);
  assert.deepEqual(checkVersions(ops, new Map([["k", new Set(["m1", "m2"])]]), md5Of), {
    puts: 2,
    lost: 0,
    lostPuts: [],
  });
  const lost = checkVersions(ops, new Map([["k", new Set(["m2"])]]), md5Of);
  assert.equal(lost.lost, 1);
  assert.match(lost.lostPuts[0] as string, /k: acknowledged put #1 .* not among its 1 versions/);
  // Through checkS3, a lost version is a violation of the audit like any lost write.
  const audited = checkS3(ops, [], ["n1"], {
    versions: { etags: new Map([["k", new Set(["m2"])]]), md5Of },
  }).audit;
  assert.equal(audited.ok, false);
  assert.deepEqual(audited.versions, { puts: 2, lost: 1 });
  assert.ok(audited.violations.some((v) => /acknowledged put #1/.test(v)));
});

test("chunk copies: a chunk on fewer nodes than expected is counted, with its holders", () => {
  const inv = new Map([
    ["n1", new Set(["a".repeat(64), "b".repeat(64)])],
    ["n2", new Set(["a".repeat(64), "b".repeat(64)])],
    ["n3", new Set(["a".repeat(64)])],
  ]);
  const c = chunkCopies(inv, 3, 1200);
  assert.deepEqual(
    { chunks: c.chunks, under: c.underReplicated, restoredMs: c.restoredMs },
    { chunks: 2, under: 1, restoredMs: null },
  );
  assert.deepEqual(c.examples, [`${"b".repeat(12)}… on n1,n2`]);
  assert.equal(chunkCopies(inv, 2, 1200).restoredMs, 1200);
});

test("503 'not executed' writes are unknown, and the strict re-check believes their message", () => {
  const noLeader = (value: string, call: number, ret: number) =>
    op({
      op: "put",
      value,
      call,
      ret,
      status: "info",
      http: 503,
      code: "ServiceUnavailable",
      message: "shard _s3.x.0 has no leader (a majority of its replicas may be down)",
    });
  // The put answered "no leader" shows up later: allowed (503 is ambiguous by the door's
  // contract), but the strict re-check says the message was wrong.
  const ops = [put("A", 0, 10), noLeader("B", 20, 30)];
  const r = checkS3(ops, finalGets("B"), NODES);
  assert.equal(r.audit.ok && r.verdict.durability.ok, true);
  const strict = strictRecheck(ops, finalGets("B"), NODES);
  assert.equal(strict.reclassified, 1);
  assert.equal(strict.auditOk && strict.lost === 0, false);
  // And when it did not take effect, both agree; "may or may not have been applied" stays open.
  assert.equal(strictRecheck(ops, finalGets("A"), NODES).auditOk, true);
  const unknown = [
    put("A", 0, 10),
    {
      ...noLeader("B", 20, 30),
      message: "shard s did not confirm the write in time; it may or may not have been applied",
    },
  ];
  assert.equal(strictRecheck(unknown, finalGets("B"), NODES).reclassified, 0);
});

// ---------------------------------------------------------------- end to end

test("S3 workload under kill -9 and SIGSTOP on loopback: no violation", async () => {
  const o: RunOptions = {
    workload: "s3",
    nemeses: ["kill", "pause"],
    durationMs: 15_000,
    seed: 3,
    nodes: 3,
    shards: 2,
    replicas: 3,
    readMode: "quorum",
    clients: 6,
    keys: 4,
    opsPerKeyMax: 60,
    rateMax: 50,
    requestTimeoutMs: 8000,
    staleReads: false,
    net: "loopback",
    keepData: false,
    serverArgs: [],
    log: () => {},
    s3BytesMax: 48 * 1024 * 1024,
  };
  const r = await runChaos(o);
  assert.equal(r.exitCode, 0, r.text);
  assert.equal(r.report.valid, true, r.text);
  assert.equal(r.report.workload, "s3");
  assert.ok(r.report.s3?.ok, r.text);
  // Seed 3 is odd: a versioned bucket, and every acknowledged put is still a version.
  assert.ok(
    r.report.notes.some((n) => /versioning on/.test(n)),
    r.text,
  );
  assert.ok(r.report.s3?.versions && r.report.s3.versions.puts > 0, r.text);
  assert.equal(r.report.s3.versions.lost, 0, r.text);
  // Chunk copies came back on every node (3 nodes, 3 replicas) after the kills.
  const chunks = r.report.s3?.chunks;
  assert.ok(chunks && chunks.chunks > 0 && chunks.underReplicated === 0, r.text);
  assert.equal(chunks.copiesExpected, 3);
  assert.ok(r.report.availability.ok > 50, `only ${r.report.availability.ok} ok ops:\n${r.text}`);
  assert.ok(r.report.events.length >= 2, r.text);
  assert.match(
    r.text,
    /chaos: s3 ops=\d+ ok=\d+ fail=\d+ info=\d+ linearizable=true lost=0 durable=\d+\/\d+ audit=ok valid=true/,
  );
  const lines = readFileSync(join(r.report.dir, "history.jsonl"), "utf8").trim().split("\n");
  assert.ok(lines.length >= r.report.availability.ops);
  const ops = lines.map((l) => JSON.parse(l) as S3Op);
  for (const field of ["id", "client", "node", "op", "key", "call", "ret", "status", "http"])
    assert.ok(field in (ops[0] ?? {}), `history lines carry ${field}`);
  // Puts carry their body's SHA-256, and some bodies were big enough to be chunked.
  const puts = ops.filter((x) => x.op === "put" && x.status === "ok");
  assert.ok(puts.length > 0 && puts.every((x) => /^[0-9a-f]{64}$/.test(x.value ?? "")));
  assert.ok(
    ops.some((x) => (x.size ?? 0) > 1024 * 1024),
    "some bodies span several chunks",
  );
  assert.ok(existsSync(join(r.report.dir, "report.html")));
  rmSync(r.report.dir, { recursive: true, force: true });
});
