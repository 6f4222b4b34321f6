/**
 * The S3 door end to end: the AWS SDK (v3) against a real 3-node cluster. Buckets, objects
 * small (inline) and large (chunked, read through other nodes), metadata, ranges, conditional
 * reads and writes (one winner of a create-only race), listings with delimiters and
 * pagination, multipart uploads with @aws-sdk/lib-storage, copy, batch delete, presigned URLs,
 * versioning, checksums, access keys and their grants, and the errors of each.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import {
  AbortMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketLocationCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListMultipartUploadsCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  ListPartsCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  type S3Client,
  type S3ServiceException,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { TestCluster } from "./_cluster.js";
import { bytesOf, s3Client, s3Error, sha256Hex } from "./_s3.js";

const ARGS = ["--tick-ms", "20", "--election-ticks", "10"];
const ROOT = { accessKeyId: "GKROOTTESTKEY0000001", secretAccessKey: "root-secret-for-tests-0001" };

let c: TestCluster;
const clients: S3Client[] = [];

function client(node: string, creds = ROOT): S3Client {
  const s = s3Client(c.node(node).s3, creds, { maxAttempts: 3 });
  clients.push(s);
  return s;
}

const sha = sha256Hex;
const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");

let a: S3Client;
let b2: S3Client;
let b3: S3Client;
const bucket = `it-${randomBytes(3).toString("hex")}`;

before(async () => {
  c = await TestCluster.start({
    nodes: 3,
    args: ARGS,
    env: { KUMO_S3_ROOT_KEY: `${ROOT.accessKeyId}:${ROOT.secretAccessKey}` },
  });
  a = client("n1");
  b2 = client("n2");
  b3 = client("n3");
  // The root key is stored by the metadata leader's first round.
  const until = Date.now() + 20_000;
  for (;;) {
    try {
      await a.send(new ListBucketsCommand({}));
      break;
    } catch (e) {
      if (Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  await a.send(new CreateBucketCommand({ Bucket: bucket }));
});

after(async () => {
  for (const s of clients) s.destroy();
  await c?.stop();
});

describe("buckets", () => {
  test("create, head, list, location; creating again says it is yours", async () => {
    await b2.send(new HeadBucketCommand({ Bucket: bucket }));
    const l = await b3.send(new ListBucketsCommand({}));
    assert.ok(l.Buckets?.some((x) => x.Name === bucket));
    const loc = await a.send(new GetBucketLocationCommand({ Bucket: bucket }));
    assert.ok(loc.LocationConstraint === undefined || typeof loc.LocationConstraint === "string");
    const again = await s3Error(b2.send(new CreateBucketCommand({ Bucket: bucket })));
    assert.deepEqual(again, { name: "BucketAlreadyOwnedByYou", status: 409 });
  });

  test("bad names, missing buckets, deleting a non-empty bucket", async () => {
    assert.equal(
      (await s3Error(a.send(new CreateBucketCommand({ Bucket: "Bad_Name" })))).name,
      "InvalidBucketName",
    );
    const missing = await s3Error(
      a.send(new GetObjectCommand({ Bucket: "no-such-bucket-x", Key: "k" })),
    );
    assert.deepEqual(missing, { name: "NoSuchBucket", status: 404 });
    const tmp = `${bucket}-del`;
    await a.send(new CreateBucketCommand({ Bucket: tmp }));
    await a.send(new PutObjectCommand({ Bucket: tmp, Key: "x", Body: "1" }));
    assert.equal(
      (await s3Error(b2.send(new DeleteBucketCommand({ Bucket: tmp })))).name,
      "BucketNotEmpty",
    );
    await a.send(new DeleteObjectCommand({ Bucket: tmp, Key: "x" }));
    await b2.send(new DeleteBucketCommand({ Bucket: tmp }));
    const gone = await s3Error(b3.send(new HeadBucketCommand({ Bucket: tmp })));
    assert.equal(gone.status, 404);
  });
});

describe("objects", () => {
  test("small and large bodies round-trip byte-exact through every node, with metadata", async () => {
    for (const size of [0, 1, 4096, 4097, 3 * 1024 * 1024 + 17]) {
      const body = randomBytes(size);
      const key = `blob/${size}`;
      const put = await a.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: body,
          ContentType: "application/x-test",
          Metadata: { color: "blue" },
          CacheControl: "max-age=60",
        }),
      );
      assert.equal(put.ETag, `"${md5(body)}"`);
      for (const s of [a, b2, b3]) {
        const g = await s.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        const got = await bytesOf(g.Body);
        assert.equal(got.byteLength, size);
        assert.equal(sha(got), sha(body), `size ${size}`);
        assert.equal(g.ContentType, "application/x-test");
        assert.equal(g.Metadata?.color, "blue");
        assert.equal(g.CacheControl, "max-age=60");
        assert.equal(g.ETag, `"${md5(body)}"`);
      }
      const h = await b3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      assert.equal(h.ContentLength, size);
    }
  });

  test("keys with unicode, spaces, plus signs and dot segments are stored as given", async () => {
    for (const key of ["a b/c+d", "ünï/cödé ☃", "../x/./y", "%41", "a//b", "tab\there"]) {
      await a.send(new PutObjectCommand({ Bucket: bucket, Key: `odd/${key}`, Body: key }));
      const g = await b2.send(new GetObjectCommand({ Bucket: bucket, Key: `odd/${key}` }));
      assert.equal((await bytesOf(g.Body)).toString(), key);
    }
    const l = await b3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "odd/" }));
    assert.equal(l.KeyCount, 6);
  });

  test("ranged GETs: 206 with Content-Range, suffix and open ranges, 416 beyond the end", async () => {
    const body = randomBytes(2 * 1024 * 1024 + 5);
    await a.send(new PutObjectCommand({ Bucket: bucket, Key: "ranged", Body: body }));
    const cases: [string, number, number][] = [
      ["bytes=0-9", 0, 10],
      ["bytes=1048570-1048590", 1048570, 1048591],
      ["bytes=-7", body.length - 7, body.length],
      ["bytes=2097150-", 2097150, body.length],
    ];
    for (const [range, s, e] of cases) {
      const g = await b2.send(
        new GetObjectCommand({ Bucket: bucket, Key: "ranged", Range: range }),
      );
      assert.equal(g.$metadata.httpStatusCode, 206, range);
      assert.equal(g.ContentRange, `bytes ${s}-${e - 1}/${body.length}`);
      assert.ok((await bytesOf(g.Body)).equals(body.subarray(s, e)), range);
    }
    const bad = await s3Error(
      a.send(new GetObjectCommand({ Bucket: bucket, Key: "ranged", Range: "bytes=99999999-" })),
    );
    assert.deepEqual(bad, { name: "InvalidRange", status: 416 });
  });

  test("conditional GET and HEAD: 304 and 412", async () => {
    const p = await a.send(new PutObjectCommand({ Bucket: bucket, Key: "cond", Body: "v1" }));
    const nm = await s3Error(
      b2.send(new GetObjectCommand({ Bucket: bucket, Key: "cond", IfNoneMatch: p.ETag })),
    );
    assert.equal(nm.status, 304);
    const pf = await s3Error(
      b2.send(new GetObjectCommand({ Bucket: bucket, Key: "cond", IfMatch: '"nope"' })),
    );
    assert.deepEqual(pf, { name: "PreconditionFailed", status: 412 });
    const ok = await b3.send(
      new GetObjectCommand({ Bucket: bucket, Key: "cond", IfMatch: p.ETag }),
    );
    assert.equal((await bytesOf(ok.Body)).toString(), "v1");
  });

  test("conditional PUT: of 12 racing create-only writes exactly one wins; If-Match replaces only that version", async () => {
    const writers = [a, b2, b3];
    const results = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) =>
        (writers[i % 3] as S3Client).send(
          new PutObjectCommand({ Bucket: bucket, Key: "race", Body: `w${i}`, IfNoneMatch: "*" }),
        ),
      ),
    );
    const won = results.filter((r) => r.status === "fulfilled");
    assert.equal(won.length, 1, JSON.stringify(results.map((r) => r.status)));
    for (const r of results)
      if (r.status === "rejected") {
        const e = r.reason as S3ServiceException;
        assert.ok(e.$metadata.httpStatusCode === 412 || e.$metadata.httpStatusCode === 409, e.name);
      }
    const cur = await a.send(new HeadObjectCommand({ Bucket: bucket, Key: "race" }));
    await b2.send(
      new PutObjectCommand({ Bucket: bucket, Key: "race", Body: "next", IfMatch: cur.ETag }),
    );
    const stale = await s3Error(
      b3.send(new PutObjectCommand({ Bucket: bucket, Key: "race", Body: "x", IfMatch: cur.ETag })),
    );
    assert.equal(stale.status, 412);
    const missing = await s3Error(
      a.send(
        new PutObjectCommand({ Bucket: bucket, Key: "race-none", Body: "x", IfMatch: '"abc"' }),
      ),
    );
    assert.equal(missing.status, 404);
  });

  test("copy: metadata copied or replaced, the body shared", async () => {
    const body = randomBytes(1_500_000);
    await a.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: "src",
        Body: body,
        Metadata: { m: "1" },
        ContentType: "text/x-src",
      }),
    );
    await b2.send(
      new CopyObjectCommand({ Bucket: bucket, Key: "dst1", CopySource: `${bucket}/src` }),
    );
    await b3.send(
      new CopyObjectCommand({
        Bucket: bucket,
        Key: "dst 2",
        CopySource: `${bucket}/src`,
        MetadataDirective: "REPLACE",
        Metadata: { m: "2" },
        ContentType: "text/x-dst",
      }),
    );
    const d1 = await a.send(new GetObjectCommand({ Bucket: bucket, Key: "dst1" }));
    assert.equal(d1.Metadata?.m, "1");
    assert.equal(d1.ContentType, "text/x-src");
    assert.equal(sha(await bytesOf(d1.Body)), sha(body));
    const d2 = await a.send(new GetObjectCommand({ Bucket: bucket, Key: "dst 2" }));
    assert.equal(d2.Metadata?.m, "2");
    assert.equal(d2.ContentType, "text/x-dst");
    assert.equal(sha(await bytesOf(d2.Body)), sha(body));
    // Deleting the source leaves the copies readable (each has its own references).
    await a.send(new DeleteObjectCommand({ Bucket: bucket, Key: "src" }));
    const again = await b2.send(new GetObjectCommand({ Bucket: bucket, Key: "dst1" }));
    assert.equal(sha(await bytesOf(again.Body)), sha(body));
    const self = await s3Error(
      a.send(new CopyObjectCommand({ Bucket: bucket, Key: "dst1", CopySource: `${bucket}/dst1` })),
    );
    assert.equal(self.name, "InvalidRequest");
  });

  test("delete and batch delete (quiet and verbose); NoSuchKey afterwards", async () => {
    for (const k of ["d1", "d2", "d3", "d4"])
      await a.send(new PutObjectCommand({ Bucket: bucket, Key: `del/${k}`, Body: k }));
    const verbose = await b2.send(
      new DeleteObjectsCommand({
        Bucket: bucket,
        Delete: { Objects: [{ Key: "del/d1" }, { Key: "del/d2" }, { Key: "del/none" }] },
      }),
    );
    assert.deepEqual(verbose.Deleted?.map((d) => d.Key).sort(), ["del/d1", "del/d2", "del/none"]);
    const quiet = await b3.send(
      new DeleteObjectsCommand({
        Bucket: bucket,
        Delete: { Objects: [{ Key: "del/d3" }], Quiet: true },
      }),
    );
    assert.equal(quiet.Deleted?.length ?? 0, 0);
    await a.send(new DeleteObjectCommand({ Bucket: bucket, Key: "del/d4" }));
    const gone = await s3Error(b2.send(new GetObjectCommand({ Bucket: bucket, Key: "del/d1" })));
    assert.deepEqual(gone, { name: "NoSuchKey", status: 404 });
    const l = await a.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "del/" }));
    assert.equal(l.KeyCount, 0);
  });

  test("checksums: SHA-256 and CRC32C verified on upload, returned when asked; a wrong one stores nothing", async () => {
    await a.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: "sum",
        Body: "checksummed",
        ChecksumAlgorithm: "SHA256",
      }),
    );
    const g = await b2.send(
      new GetObjectCommand({ Bucket: bucket, Key: "sum", ChecksumMode: "ENABLED" }),
    );
    assert.equal(g.ChecksumSHA256, createHash("sha256").update("checksummed").digest("base64"));
    await a.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: "sum32c",
        Body: randomBytes(100_000),
        ChecksumAlgorithm: "CRC32C",
      }),
    );
    const bad = await s3Error(
      a.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: "sum-bad",
          Body: "x",
          ChecksumSHA256: createHash("sha256").update("y").digest("base64"),
        }),
      ),
    );
    assert.equal(bad.status, 400);
    assert.equal(
      (await s3Error(a.send(new HeadObjectCommand({ Bucket: bucket, Key: "sum-bad" })))).status,
      404,
    );
  });
});

describe("listing", () => {
  const keys = ["l/a", "l/b/1", "l/b/2", "l/c", "l/d/x/y", "l/e", "l/f"];
  before(async () => {
    for (const k of keys) await a.send(new PutObjectCommand({ Bucket: bucket, Key: k, Body: k }));
  });

  test("v2: prefix and delimiter roll keys into common prefixes, in order", async () => {
    const l = await b2.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: "l/", Delimiter: "/" }),
    );
    assert.deepEqual(
      l.Contents?.map((x) => x.Key),
      ["l/a", "l/c", "l/e", "l/f"],
    );
    assert.deepEqual(
      l.CommonPrefixes?.map((x) => x.Prefix),
      ["l/b/", "l/d/"],
    );
    assert.equal(l.KeyCount, 6);
  });

  test("v2: pages of 2 with continuation tokens visit everything once", async () => {
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const l = await b3.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: "l/",
          Delimiter: "/",
          MaxKeys: 2,
          ContinuationToken: token,
        }),
      );
      pages++;
      seen.push(
        ...(l.Contents ?? []).map((x) => x.Key as string),
        ...(l.CommonPrefixes ?? []).map((x) => x.Prefix as string),
      );
      token = l.IsTruncated ? l.NextContinuationToken : undefined;
    } while (token);
    assert.deepEqual(seen, ["l/a", "l/b/", "l/c", "l/d/", "l/e", "l/f"]);
    assert.equal(pages, 3);
    const sa = await a.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: "l/", StartAfter: "l/c" }),
    );
    assert.deepEqual(
      sa.Contents?.map((x) => x.Key),
      ["l/d/x/y", "l/e", "l/f"],
    );
  });

  test("v1 with marker, and encoding-type=url", async () => {
    const l = await a.send(
      new ListObjectsCommand({ Bucket: bucket, Prefix: "l/", Marker: "l/b/2", MaxKeys: 2 }),
    );
    assert.deepEqual(
      l.Contents?.map((x) => x.Key),
      ["l/c", "l/d/x/y"],
    );
    assert.equal(l.IsTruncated, true);
    const u = await a.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: "odd/ü", EncodingType: "url" }),
    );
    // The SDK leaves the decoding to its caller.
    assert.deepEqual(u.EncodingType, "url");
    assert.deepEqual(
      u.Contents?.map((x) => decodeURIComponent(x.Key as string)),
      ["odd/ünï/cödé ☃"],
    );
  });
});

describe("multipart", () => {
  test("lib-storage upload of 12 MiB in 5 MiB parts: multipart ETag, byte-exact read, parts count", async () => {
    const body = randomBytes(12 * 1024 * 1024 + 3);
    const up = new Upload({
      client: a,
      params: { Bucket: bucket, Key: "mp/big", Body: body },
      partSize: 5 * 1024 * 1024,
      queueSize: 3,
    });
    const r = await up.done();
    const parts = [
      body.subarray(0, 5 << 20),
      body.subarray(5 << 20, 10 << 20),
      body.subarray(10 << 20),
    ];
    const want = createHash("md5")
      .update(Buffer.concat(parts.map((p) => createHash("md5").update(p).digest())))
      .digest("hex");
    assert.equal(r.ETag, `"${want}-3"`);
    const g = await b3.send(new GetObjectCommand({ Bucket: bucket, Key: "mp/big" }));
    assert.equal(sha(await bytesOf(g.Body)), sha(body));
    const rg = await b2.send(
      new GetObjectCommand({
        Bucket: bucket,
        Key: "mp/big",
        Range: `bytes=${(5 << 20) - 3}-${(5 << 20) + 3}`,
      }),
    );
    assert.ok((await bytesOf(rg.Body)).equals(body.subarray((5 << 20) - 3, (5 << 20) + 4)));
  });

  test("list uploads and parts, abort; a small non-last part is refused; wrong ETag is InvalidPart", async () => {
    const { UploadId } = await a.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: "mp/small" }),
    );
    assert.ok(UploadId);
    const p1 = await b2.send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: "mp/small",
        UploadId,
        PartNumber: 1,
        Body: "tiny",
      }),
    );
    const p2 = await b3.send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: "mp/small",
        UploadId,
        PartNumber: 2,
        Body: "end",
      }),
    );
    const lp = await a.send(new ListPartsCommand({ Bucket: bucket, Key: "mp/small", UploadId }));
    assert.deepEqual(
      lp.Parts?.map((p) => [p.PartNumber, p.Size, p.ETag]),
      [
        [1, 4, p1.ETag],
        [2, 3, p2.ETag],
      ],
    );
    const lu = await b2.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: "mp/" }));
    assert.ok(lu.Uploads?.some((u) => u.UploadId === UploadId));
    const { CompleteMultipartUploadCommand } = await import("@aws-sdk/client-s3");
    const small = await s3Error(
      a.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: "mp/small",
          UploadId,
          MultipartUpload: {
            Parts: [
              { PartNumber: 1, ETag: p1.ETag },
              { PartNumber: 2, ETag: p2.ETag },
            ],
          },
        }),
      ),
    );
    assert.equal(small.name, "EntityTooSmall");
    const wrong = await s3Error(
      a.send(
        new CompleteMultipartUploadCommand({
          Bucket: bucket,
          Key: "mp/small",
          UploadId,
          MultipartUpload: {
            Parts: [{ PartNumber: 1, ETag: '"0123456789abcdef0123456789abcdef"' }],
          },
        }),
      ),
    );
    assert.equal(wrong.name, "InvalidPart");
    // A single (last) part may be small.
    const one = await a.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: "mp/small",
        UploadId,
        MultipartUpload: { Parts: [{ PartNumber: 2, ETag: p2.ETag }] },
      }),
    );
    assert.match(one.ETag ?? "", /-1"$/);
    const g = await b2.send(new GetObjectCommand({ Bucket: bucket, Key: "mp/small" }));
    assert.equal((await bytesOf(g.Body)).toString(), "end");
    const { UploadId: u2 } = await a.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: "mp/aborted" }),
    );
    await a.send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: "mp/aborted",
        UploadId: u2,
        PartNumber: 1,
        Body: "x",
      }),
    );
    await b3.send(
      new AbortMultipartUploadCommand({ Bucket: bucket, Key: "mp/aborted", UploadId: u2 }),
    );
    const gone = await s3Error(
      a.send(new ListPartsCommand({ Bucket: bucket, Key: "mp/aborted", UploadId: u2 })),
    );
    assert.deepEqual(gone, { name: "NoSuchUpload", status: 404 });
  });
});

describe("multipart listings", () => {
  test("ListMultipartUploads pages with key and upload-id markers, several uploads of one key", async () => {
    const made: string[] = [];
    for (const key of ["up/a", "up/a", "up/a", "up/b"]) {
      const u = await a.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
      made.push(`${key}|${u.UploadId}`);
    }
    const seen: string[] = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (let page = 0; page < 10; page++) {
      const l = await b2.send(
        new ListMultipartUploadsCommand({
          Bucket: bucket,
          Prefix: "up/",
          MaxUploads: 2,
          KeyMarker: keyMarker,
          UploadIdMarker: uploadIdMarker,
        }),
      );
      seen.push(...(l.Uploads ?? []).map((u) => `${u.Key}|${u.UploadId}`));
      if (!l.IsTruncated) break;
      keyMarker = l.NextKeyMarker;
      uploadIdMarker = l.NextUploadIdMarker;
    }
    assert.deepEqual([...seen].sort(), [...made].sort());
    assert.equal(new Set(seen).size, 4, "each upload exactly once");
    for (const m of made) {
      const [Key, UploadId] = m.split("|") as [string, string];
      await a.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId }));
    }
  });
});

describe("versioning", () => {
  test("versions kept, listed newest first, readable by id; delete markers; deleting a version", async () => {
    const vb = `${bucket}-ver`;
    await a.send(new CreateBucketCommand({ Bucket: vb }));
    await a.send(new PutObjectCommand({ Bucket: vb, Key: "k", Body: "null-version" }));
    await b2.send(
      new PutBucketVersioningCommand({
        Bucket: vb,
        VersioningConfiguration: { Status: "Enabled" },
      }),
    );
    const st = await b3.send(new GetBucketVersioningCommand({ Bucket: vb }));
    assert.equal(st.Status, "Enabled");
    // Bucket settings reach every node's cache within a second (docs/s3.md, "Consistency").
    await new Promise((res) => setTimeout(res, 1200));
    const v1 = await a.send(new PutObjectCommand({ Bucket: vb, Key: "k", Body: "one" }));
    const v2 = await b2.send(new PutObjectCommand({ Bucket: vb, Key: "k", Body: "two" }));
    assert.ok(v1.VersionId && v2.VersionId && v1.VersionId !== v2.VersionId);
    const cur = await b3.send(new GetObjectCommand({ Bucket: vb, Key: "k" }));
    assert.equal((await bytesOf(cur.Body)).toString(), "two");
    const old = await b3.send(
      new GetObjectCommand({ Bucket: vb, Key: "k", VersionId: v1.VersionId }),
    );
    assert.equal((await bytesOf(old.Body)).toString(), "one");
    const nul = await b3.send(new GetObjectCommand({ Bucket: vb, Key: "k", VersionId: "null" }));
    assert.equal((await bytesOf(nul.Body)).toString(), "null-version");
    const del = await a.send(new DeleteObjectCommand({ Bucket: vb, Key: "k" }));
    assert.equal(del.DeleteMarker, true);
    assert.equal(
      (await s3Error(b2.send(new GetObjectCommand({ Bucket: vb, Key: "k" })))).status,
      404,
    );
    const lv = await b2.send(new ListObjectVersionsCommand({ Bucket: vb }));
    assert.deepEqual(
      lv.DeleteMarkers?.map((m) => [m.Key, m.IsLatest]),
      [["k", true]],
    );
    assert.deepEqual(
      lv.Versions?.map((v) => v.VersionId),
      [v2.VersionId, v1.VersionId, "null"],
    );
    // Pages of one version each walk the same list with key and version-id markers.
    const paged: string[] = [];
    let keyMarker: string | undefined;
    let versionIdMarker: string | undefined;
    for (let i = 0; i < 10; i++) {
      const p = await b3.send(
        new ListObjectVersionsCommand({
          Bucket: vb,
          MaxKeys: 1,
          KeyMarker: keyMarker,
          VersionIdMarker: versionIdMarker,
        }),
      );
      const got = [...(p.DeleteMarkers ?? []), ...(p.Versions ?? [])];
      assert.ok(got.length <= 1, `page ${i}: ${got.length} entries`);
      paged.push(...got.map((v) => v.VersionId as string));
      if (!p.IsTruncated) break;
      keyMarker = p.NextKeyMarker;
      versionIdMarker = p.NextVersionIdMarker;
    }
    assert.deepEqual(paged, [del.VersionId, v2.VersionId, v1.VersionId, "null"]);
    // Removing the delete marker brings "two" back.
    await a.send(new DeleteObjectCommand({ Bucket: vb, Key: "k", VersionId: del.VersionId }));
    const back = await b3.send(new GetObjectCommand({ Bucket: vb, Key: "k" }));
    assert.equal((await bytesOf(back.Body)).toString(), "two");
  });
});

describe("authentication and access", () => {
  test("presigned GET works until it expires", async () => {
    await a.send(new PutObjectCommand({ Bucket: bucket, Key: "pre", Body: "presigned body" }));
    const url = await getSignedUrl(b2, new GetObjectCommand({ Bucket: bucket, Key: "pre" }), {
      expiresIn: 60,
    });
    const r = await fetch(url);
    assert.equal(r.status, 200);
    assert.equal(await r.text(), "presigned body");
    const short = await getSignedUrl(b2, new GetObjectCommand({ Bucket: bucket, Key: "pre" }), {
      expiresIn: 1,
    });
    await new Promise((res) => setTimeout(res, 2100));
    const late = await fetch(short);
    assert.equal(late.status, 403);
    assert.match(await late.text(), /<Code>AccessDenied<\/Code>[\s\S]*expired/);
  });

  test("bucket settings through the admin API: a chunk write quorum within 1..replicas", async () => {
    const path = `/v1/admin/buckets/${bucket}`;
    const set = await c.req("n2", "PUT", path, { body: JSON.stringify({ chunkWriteQuorum: 3 }) });
    assert.equal(set.status, 200, set.text);
    assert.equal((JSON.parse(set.text) as { chunkWriteQuorum?: number }).chunkWriteQuorum, 3);
    for (const bad of [{ chunkWriteQuorum: 4 }, { chunkWriteQuorum: 0 }, { replicas: 2 }]) {
      const r = await c.req("n1", "PUT", path, { body: JSON.stringify(bad) });
      assert.equal(r.status, 400, `${JSON.stringify(bad)}: ${r.text}`);
    }
    assert.equal(
      (await c.req("n1", "PUT", "/v1/admin/buckets/no-such-bucket-q", { body: "{}" })).status,
      404,
    );
    const got = await c.req("n3", "GET", path);
    assert.equal((JSON.parse(got.text) as { chunkWriteQuorum?: number }).chunkWriteQuorum, 3);
    // Uploads still work with every node up (all three copies durable before the answer).
    await new Promise((res) => setTimeout(res, 1200)); // every node's bucket cache refreshes
    const body = randomBytes(1_200_000);
    await a.send(new PutObjectCommand({ Bucket: bucket, Key: "w3", Body: body }));
    const g = await b3.send(new GetObjectCommand({ Bucket: bucket, Key: "w3" }));
    assert.equal(sha(await bytesOf(g.Body)), sha(body));
    const reset = await c.req("n1", "PUT", path, {
      body: JSON.stringify({ chunkWriteQuorum: null }),
    });
    assert.equal(reset.status, 200, reset.text);
    assert.equal(
      (JSON.parse(reset.text) as { chunkWriteQuorum?: number }).chunkWriteQuorum,
      undefined,
    );
    const list = await c.req("n1", "GET", "/v1/admin/buckets");
    assert.ok(
      (JSON.parse(list.text) as { buckets: { name: string }[] }).buckets.some(
        (x) => x.name === bucket,
      ),
    );
  });

  test("wrong secret, unknown key and anonymous requests are refused", async () => {
    const wrong = client("n1", {
      accessKeyId: ROOT.accessKeyId,
      secretAccessKey: "wrong-secret-000000",
    });
    assert.deepEqual(await s3Error(wrong.send(new ListBucketsCommand({}))), {
      name: "SignatureDoesNotMatch",
      status: 403,
    });
    const unknown = client("n2", {
      accessKeyId: "GKUNKNOWN00000000000",
      secretAccessKey: "whatever-secret",
    });
    assert.equal(
      (await s3Error(unknown.send(new ListBucketsCommand({})))).name,
      "InvalidAccessKeyId",
    );
    const anon = await fetch(`http://${c.node("n3").s3}/${bucket}/pre`);
    assert.equal(anon.status, 403);
    assert.match(await anon.text(), /<Code>AccessDenied<\/Code>[\s\S]*<RequestId>/);
  });

  test("keys from the admin API: a read grant reads but cannot write; revoked keys stop working", async () => {
    const mk = await c.req("n1", "POST", "/v1/admin/keys", {
      body: JSON.stringify({ name: "reader", buckets: { [bucket]: "read" } }),
    });
    assert.equal(mk.status, 201, mk.text);
    const key = JSON.parse(mk.text) as { accessKeyId: string; secretAccessKey: string };
    const reader = client("n2", key);
    const g = await reader.send(new GetObjectCommand({ Bucket: bucket, Key: "pre" }));
    assert.equal((await bytesOf(g.Body)).toString(), "presigned body");
    assert.equal(
      (await s3Error(reader.send(new PutObjectCommand({ Bucket: bucket, Key: "nope", Body: "x" }))))
        .name,
      "AccessDenied",
    );
    assert.equal(
      (await s3Error(reader.send(new CreateBucketCommand({ Bucket: `${bucket}-r` })))).name,
      "AccessDenied",
    );
    const ls = await c.req("n3", "GET", "/v1/admin/keys");
    assert.ok(!ls.text.includes(key.secretAccessKey), "listing never shows secrets");
    const rm = await c.req("n3", "DELETE", `/v1/admin/keys/${key.accessKeyId}`);
    assert.equal(rm.status, 200);
    await new Promise((res) => setTimeout(res, 1500)); // every node's cache refreshes
    assert.equal(
      (await s3Error(reader.send(new GetObjectCommand({ Bucket: bucket, Key: "pre" })))).name,
      "InvalidAccessKeyId",
    );
  });
});
