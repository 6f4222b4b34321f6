/**
 * Hostile input to the S3 door's parsers, generated (fast-check): whatever the bytes, every
 * parser either returns a value or throws an S3Error (which the door answers as an S3 error
 * document); never another exception (a 500, or a crash in a callback). Inputs are both random
 * text and XML-shaped documents built from the elements the parsers look for, so that the
 * generator reaches past the first "not XML" check.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { S3Error } from "../../src/api/s3/errors.js";
import { parseHttpDate, parseRange } from "../../src/api/s3/http-headers.js";
import {
  parseCompleteMultipartUpload,
  parseCorsConfiguration,
  parseCreateBucketConfiguration,
  parseDelete,
  parseVersioningConfiguration,
} from "../../src/api/s3/xml.js";

const PARSERS: [string, string, (b: string | Uint8Array) => unknown][] = [
  ["CompleteMultipartUpload", "Part", parseCompleteMultipartUpload],
  ["Delete", "Object", parseDelete],
  ["CreateBucketConfiguration", "LocationConstraint", parseCreateBucketConfiguration],
  ["VersioningConfiguration", "Status", parseVersioningConfiguration],
  ["CORSConfiguration", "CORSRule", parseCorsConfiguration],
];

const NAMES = [
  "Part",
  "PartNumber",
  "ETag",
  "ChecksumCRC32",
  "Object",
  "Key",
  "VersionId",
  "Quiet",
  "LocationConstraint",
  "Status",
  "MfaDelete",
  "CORSRule",
  "AllowedOrigin",
  "AllowedMethod",
  "AllowedHeader",
  "ExposeHeader",
  "MaxAgeSeconds",
  "ID",
];

/** Text that may break a parser: numbers out of range, entities, markup, controls, unicode. */
const text = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.constantFrom(
    "",
    "0",
    "-1",
    "10001",
    "1e309",
    "NaN",
    "Enabled",
    "Suspended",
    "true",
    "*",
    "GET",
    "&amp;",
    "&#0;",
    "&#x110000;",
    "&unknown;",
    "<![CDATA[x]]>",
    "\u0000",
    "\uD800",
    "a".repeat(2000),
  ),
);

/** An XML-shaped tree of the parsers' own element names, nested up to 3 deep. */
const element: fc.Arbitrary<string> = fc.letrec((tie) => ({
  node: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    text,
    fc
      .tuple(fc.constantFrom(...NAMES), fc.array(tie("node"), { maxLength: 4 }))
      .map(([name, kids]) => `<${name}>${kids.join("")}</${name}>`),
  ),
})).node;

function document(root: string): fc.Arbitrary<string> {
  return fc.oneof(
    fc
      .tuple(
        fc.constantFrom("", '<?xml version="1.0" encoding="UTF-8"?>', "<!DOCTYPE x>"),
        fc.constantFrom(root, "Other", `${root} xmlns="http://s3.amazonaws.com/doc/2006-03-01/"`),
        fc.array(element, { maxLength: 6 }),
      )
      .map(([head, open, kids]) => `${head}<${open}>${kids.join("")}</${open.split(" ")[0]}>`),
    fc.string({ maxLength: 200 }),
  );
}

function onlyS3Errors(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof S3Error, `not an S3Error: ${(e as Error)?.stack ?? e}`);
    assert.ok(e.code.length > 0 && e.status >= 400 && e.status < 600, `${e.code} ${e.status}`);
  }
}

for (const [root, , parse] of PARSERS) {
  test(`${root}: any body gives a value or an S3 error, never another exception`, () =>
    fc.assert(
      fc.property(document(root), (body) => {
        onlyS3Errors(() => parse(body));
        // As bytes too, including invalid UTF-8 at the end.
        onlyS3Errors(() => parse(Buffer.concat([Buffer.from(body), Buffer.from([0xff, 0xc3])])));
      }),
      { numRuns: 300 },
    ));
}

test("Range and HTTP dates: any header value is classified, never thrown on", () =>
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ maxLength: 40 }),
        fc
          .tuple(fc.constantFrom("bytes=", "bytes = ", "items=", ""), fc.string({ maxLength: 20 }))
          .map(([a, b]) => a + b),
        fc
          .tuple(fc.integer({ min: -5, max: 2 ** 60 }), fc.integer({ min: -5, max: 2 ** 60 }))
          .map(([a, b]) => `bytes=${a}-${b}`),
      ),
      fc.nat({ max: 2 ** 40 }),
      (header, size) => {
        onlyS3Errors(() => parseRange(header, size));
        const d = parseHttpDate(header);
        assert.ok(d === undefined || Number.isFinite(d));
      },
    ),
    { numRuns: 2000 },
  ));

test("a nesting bomb is MalformedXML; an entity flood expands one to one (no DTD, no bomb)", () => {
  const deep = `<Delete>${"<Object>".repeat(5000)}${"</Object>".repeat(5000)}</Delete>`;
  assert.throws(
    () => parseDelete(deep),
    (e: unknown) => e instanceof S3Error && e.code === "MalformedXML",
  );
  const flood = `<Delete><Object><Key>${"&amp;".repeat(100_000)}</Key></Object></Delete>`;
  assert.equal(parseDelete(flood).objects[0]?.key, "&".repeat(100_000));
});
