/**
 * The aws-chunked decoder: the published AWS streaming example, bodies signed here by a helper
 * written from the AWS documentation (not by the code under test), the unsigned-trailer format
 * the JS SDK sends, malformed framing, and streaming behaviour (nothing unauthenticated is
 * emitted; unsigned data passes through without copies).
 */
import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { Readable } from "node:stream";
import { test } from "node:test";
import fc from "fast-check";
import { AwsChunkedDecoder, ChunkedBodyError } from "../../src/api/s3/chunked.js";
import { type PayloadMode, type SigV4Request, verifyRequest } from "../../src/api/s3/sigv4.js";

const SECRET = "chunk/Secret+Key=";
const AMZ_DATE = "20240501T120000Z";
const SCOPE = "20240501/kumo/s3/aws4_request";
const SEED = sha256hex("the request's own signature");

function sha256hex(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

function hmacHex(key: Buffer, data: string): string {
  return createHmac("sha256", key).update(data).digest("hex");
}

/** The SigV4 signing key, derived here independently of the code under test. */
function deriveKey(secret: string, date: string, region: string): Buffer {
  let key = createHmac("sha256", `AWS4${secret}`).update(date).digest();
  for (const part of [region, "s3", "aws4_request"])
    key = createHmac("sha256", key).update(part).digest();
  return key;
}

const KEY = deriveKey(SECRET, "20240501", "kumo");

function signedMode(trailer = false, seedSignature = SEED): PayloadMode {
  return {
    kind: "streaming-signed",
    trailer,
    seed: { signingKey: KEY, amzDate: AMZ_DATE, scope: SCOPE, seedSignature },
  };
}

const UNSIGNED: PayloadMode = { kind: "streaming-unsigned-trailer" };

/**
 * A STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] body, following the AWS documentation: each
 * chunk's signature chains from the previous one, the final empty chunk is signed too, and the
 * trailer is signed over "name:value\n" lines chained from the final chunk's signature.
 */
function signedBody(
  chunks: readonly Buffer[],
  opts: {
    trailers?: readonly [string, string][];
    seed?: string;
    key?: Buffer;
    amzDate?: string;
    scope?: string;
  } = {},
): Buffer {
  const key = opts.key ?? KEY;
  const amzDate = opts.amzDate ?? AMZ_DATE;
  const scope = opts.scope ?? SCOPE;
  let previous = opts.seed ?? SEED;
  const out: Buffer[] = [];
  for (const data of [...chunks, Buffer.alloc(0)]) {
    const stringToSign = [
      "AWS4-HMAC-SHA256-PAYLOAD",
      amzDate,
      scope,
      previous,
      sha256hex(""),
      sha256hex(data),
    ].join("\n");
    previous = hmacHex(key, stringToSign);
    out.push(Buffer.from(`${data.length.toString(16)};chunk-signature=${previous}\r\n`));
    if (data.length > 0) out.push(data, Buffer.from("\r\n"));
  }
  if (opts.trailers) {
    let canonical = "";
    for (const [name, value] of opts.trailers) {
      out.push(Buffer.from(`${name}:${value}\r\n`));
      canonical += `${name}:${value}\n`;
    }
    const stringToSign = [
      "AWS4-HMAC-SHA256-TRAILER",
      amzDate,
      scope,
      previous,
      sha256hex(canonical),
    ].join("\n");
    out.push(Buffer.from(`x-amz-trailer-signature:${hmacHex(key, stringToSign)}\r\n`));
  }
  out.push(Buffer.from("\r\n"));
  return Buffer.concat(out);
}

/** A STREAMING-UNSIGNED-PAYLOAD-TRAILER body as the JS SDK writes it. */
function unsignedBody(
  chunks: readonly Buffer[],
  trailers: readonly [string, string][] = [],
  finalCrlf = true,
): Buffer {
  const out: Buffer[] = [];
  for (const data of chunks)
    out.push(Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from("\r\n"));
  out.push(Buffer.from("0\r\n"));
  for (const [name, value] of trailers) out.push(Buffer.from(`${name}:${value}\r\n`));
  if (finalCrlf) out.push(Buffer.from("\r\n"));
  return Buffer.concat(out);
}

type Decoded =
  | { ok: true; data: Buffer; trailers: Map<string, string> }
  | { ok: false; error: ChunkedBodyError };

/** Feeds `pieces` through a decoder and collects what comes out (or the error). */
async function decode(
  pieces: readonly Buffer[],
  opts: Omit<ConstructorParameters<typeof AwsChunkedDecoder>[0], "mode"> & { mode: PayloadMode },
): Promise<Decoded> {
  const decoder = new AwsChunkedDecoder(opts);
  Readable.from(pieces).pipe(decoder);
  const out: Buffer[] = [];
  try {
    for await (const c of decoder) out.push(c as Buffer);
  } catch (err) {
    assert.ok(err instanceof ChunkedBodyError, `unexpected error ${String(err)}`);
    return { ok: false, error: err };
  }
  return { ok: true, data: Buffer.concat(out), trailers: decoder.trailers };
}

function assertDecoded(r: Decoded, expected: Buffer): asserts r is Decoded & { ok: true } {
  assert.ok(r.ok, r.ok ? "" : `decode failed: ${r.error.code}: ${r.error.message}`);
  assert.ok(r.data.equals(expected), `decoded ${r.data.length} bytes, expected ${expected.length}`);
}

function assertError(r: Decoded, code: string, status?: number): void {
  assert.equal(r.ok, false, `expected ${code}`);
  if (r.ok) return;
  assert.equal(r.error.code, code, r.error.message);
  if (status !== undefined) assert.equal(r.error.status, status);
}

/** Splits a buffer at the given cut points (zero-copy views). */
function split(body: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => Math.min(c, body.length)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    if (p > at) pieces.push(body.subarray(at, p));
    at = Math.max(at, p);
  }
  if (at < body.length) pieces.push(body.subarray(at));
  return pieces;
}

function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 17) & 0xff;
  return b;
}

// ---------------------------------------------------------------- the published AWS example

test("the AWS documentation's chunked PUT: seed from verifyRequest, chunks decode", async () => {
  const req: SigV4Request = {
    method: "PUT",
    path: "/examplebucket/chunkObject.txt",
    query: "",
    headers: {
      host: "s3.amazonaws.com",
      "x-amz-date": "20130524T000000Z",
      "x-amz-storage-class": "REDUCED_REDUNDANCY",
      "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
      "content-encoding": "aws-chunked",
      "x-amz-decoded-content-length": "66560",
      "content-length": "66824",
      authorization:
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    },
  };
  const auth = verifyRequest(
    req,
    (id) =>
      id === "AKIAIOSFODNN7EXAMPLE" ? "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" : undefined,
    Date.UTC(2013, 4, 24, 0, 5),
  );
  assert.ok(auth.ok, auth.ok ? "" : auth.message);
  assert.equal(auth.payload.kind, "streaming-signed");
  const published = (a: Buffer, b: Buffer, sigs: readonly string[]) =>
    Buffer.concat([
      Buffer.from(`10000;chunk-signature=${sigs[0]}\r\n`),
      a,
      Buffer.from(`\r\n400;chunk-signature=${sigs[1]}\r\n`),
      b,
      Buffer.from(`\r\n0;chunk-signature=${sigs[2]}\r\n\r\n`),
    ]);
  const sigs = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
  ];
  const a = Buffer.alloc(65536, "a");
  const b = Buffer.alloc(1024, "a");
  const body = published(a, b, sigs);
  assert.equal(body.length, 66824);
  const r = await decode(split(body, [100, 5000, 65600, 66000]), {
    mode: auth.payload,
    decodedLength: 66560,
  });
  assertDecoded(r, Buffer.alloc(66560, "a"));
  // This file's signing helper reproduces the published body byte for byte.
  const ours = signedBody([a, b], {
    seed: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
    key: deriveKey("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1"),
    amzDate: "20130524T000000Z",
    scope: "20130524/us-east-1/s3/aws4_request",
  });
  assert.ok(ours.equals(body), "the test's signer matches the AWS example");
  // One byte changed in the second chunk.
  const bad = Buffer.from(b);
  bad[10] = 0x62;
  assertError(
    await decode([published(a, bad, sigs)], { mode: auth.payload }),
    "SignatureDoesNotMatch",
    403,
  );
  // Chunks in another order (each with its own valid signature) break the chain.
  const swapped = Buffer.concat([
    Buffer.from(`400;chunk-signature=${sigs[1]}\r\n`),
    b,
    Buffer.from(`\r\n10000;chunk-signature=${sigs[0]}\r\n`),
    a,
    Buffer.from(`\r\n0;chunk-signature=${sigs[2]}\r\n\r\n`),
  ]);
  assertError(await decode([swapped], { mode: auth.payload }), "SignatureDoesNotMatch");
});

// ---------------------------------------------------------------- signed bodies

test("signed: decodes whole, byte by byte, and at arbitrary cuts", async () => {
  const chunks = [bytes(8192, 1), bytes(8192, 2), bytes(1000, 3)];
  const payload = Buffer.concat(chunks);
  const body = signedBody(chunks);
  assertDecoded(
    await decode([body], { mode: signedMode(), decodedLength: payload.length }),
    payload,
  );
  const single = Array.from({ length: body.length }, (_, i) => body.subarray(i, i + 1));
  const r = await decode(single, { mode: signedMode() });
  assertDecoded(r, payload);
  assert.equal(r.trailers.size, 0);
  // Upper-case hex sizes and signatures are accepted too.
  const upper = Buffer.from(
    body
      .toString("latin1")
      .replace(
        /^2000;chunk-signature=([0-9a-f]+)/,
        (_, s: string) => `2000;chunk-signature=${s.toUpperCase()}`,
      ),
    "latin1",
  );
  assertDecoded(await decode([upper], { mode: signedMode() }), payload);
  // An empty object is just the signed final chunk.
  assertDecoded(
    await decode([signedBody([])], { mode: signedMode(), decodedLength: 0 }),
    Buffer.alloc(0),
  );
});

test("signed: tampering, wrong seed, missing signatures, truncation", async () => {
  const chunks = [bytes(300, 4), bytes(200, 5)];
  const body = signedBody(chunks);
  // A flipped data byte.
  const flipped = Buffer.from(body);
  const dataAt = body.indexOf("\r\n") + 2 + 17;
  flipped[dataAt]! ^= 0x01;
  assertError(await decode([flipped], { mode: signedMode() }), "SignatureDoesNotMatch", 403);
  // A flipped signature digit.
  const text = body.toString("latin1");
  const sigAt = text.indexOf("chunk-signature=") + 16;
  const badSig = text.slice(0, sigAt) + (text[sigAt] === "0" ? "1" : "0") + text.slice(sigAt + 1);
  assertError(
    await decode([Buffer.from(badSig, "latin1")], { mode: signedMode() }),
    "SignatureDoesNotMatch",
  );
  // The right chunks for another request (another seed).
  assertError(
    await decode([body], { mode: signedMode(false, sha256hex("other")) }),
    "SignatureDoesNotMatch",
  );
  // No signature at all on a chunk.
  const bare = Buffer.concat([Buffer.from("3\r\nabc\r\n"), signedBody([])]);
  assertError(await decode([bare], { mode: signedMode() }), "SignatureDoesNotMatch");
  // The final chunk's signature is checked too.
  const finalAt = text.lastIndexOf("chunk-signature=") + 16;
  const badFinal =
    text.slice(0, finalAt) + (text[finalAt] === "0" ? "1" : "0") + text.slice(finalAt + 1);
  assertError(
    await decode([Buffer.from(badFinal, "latin1")], { mode: signedMode() }),
    "SignatureDoesNotMatch",
  );
  // Truncated anywhere before the closing CRLF: IncompleteBody. Without only the closing CRLF:
  // tolerated (the final chunk is signed; nothing is missing).
  for (let n = 0; n < body.length - 2; n++) {
    assertError(await decode([body.subarray(0, n)], { mode: signedMode() }), "IncompleteBody", 400);
  }
  assertDecoded(
    await decode([body.subarray(0, body.length - 2)], { mode: signedMode() }),
    Buffer.concat(chunks),
  );
  // A lone CR of the closing CRLF is not.
  assertError(
    await decode([body.subarray(0, body.length - 1)], { mode: signedMode() }),
    "IncompleteBody",
  );
  // Dropping the final chunk (a prefix that ends on a chunk boundary) is truncation too.
  const withoutFinal = body.subarray(0, body.indexOf("0;chunk-signature="));
  assertError(await decode([withoutFinal], { mode: signedMode() }), "IncompleteBody");
});

test("signed with trailer: checksum trailer signed; tampered or unsigned trailers refused", async () => {
  const chunks = [bytes(5000, 6)];
  const trailers: [string, string][] = [["x-amz-checksum-crc32", "sOO8/Q=="]];
  const body = signedBody(chunks, { trailers });
  const r = await decode(split(body, [1, 5010, 5100, body.length - 3]), { mode: signedMode(true) });
  assertDecoded(r, chunks[0]!);
  assert.deepEqual([...r.trailers], trailers);
  // Changing the trailer value breaks the trailer signature.
  const tampered = Buffer.from(body.toString("latin1").replace("sOO8/Q==", "AAAAAA=="), "latin1");
  assertError(await decode([tampered], { mode: signedMode(true) }), "SignatureDoesNotMatch");
  // Removing the trailer signature line.
  const unsignedTrailer = Buffer.from(
    body.toString("latin1").replace(/x-amz-trailer-signature:[0-9a-f]+\r\n/, ""),
    "latin1",
  );
  assertError(await decode([unsignedTrailer], { mode: signedMode(true) }), "SignatureDoesNotMatch");
  // Trailers where none were announced.
  assertError(await decode([body], { mode: signedMode(false) }), "InvalidRequest");
  // Several trailers, in order.
  const two: [string, string][] = [
    ["x-amz-checksum-sha256", "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="],
    ["x-amz-meta-late", "yes"],
  ];
  const r2 = await decode([signedBody(chunks, { trailers: two })], { mode: signedMode(true) });
  assertDecoded(r2, chunks[0]!);
  assert.deepEqual([...r2.trailers], two);
  // Truncated inside the trailer.
  assertError(
    await decode([body.subarray(0, body.length - 40)], { mode: signedMode(true) }),
    "IncompleteBody",
  );
});

// ---------------------------------------------------------------- unsigned trailer (the SDK's format)

test("unsigned trailer: the JS SDK's framing, with or without the final CRLF", async () => {
  const chunks = [Buffer.from("hello "), Buffer.from("stream")];
  const payload = Buffer.concat(chunks);
  const trailer: [string, string][] = [["x-amz-checksum-crc32", "gtnkmQ=="]];
  for (const finalCrlf of [true, false]) {
    const r = await decode([unsignedBody(chunks, trailer, finalCrlf)], {
      mode: UNSIGNED,
      decodedLength: 12,
    });
    assertDecoded(r, payload);
    assert.equal(r.trailers.get("x-amz-checksum-crc32"), "gtnkmQ==");
  }
  // No checksum: the SDK ends with "0\r\n" alone.
  assertDecoded(await decode([unsignedBody(chunks, [], false)], { mode: UNSIGNED }), payload);
  assertDecoded(await decode([unsignedBody(chunks, [], true)], { mode: UNSIGNED }), payload);
  // Byte by byte.
  const body = unsignedBody(chunks, trailer);
  const single = Array.from({ length: body.length }, (_, i) => body.subarray(i, i + 1));
  assertDecoded(await decode(single, { mode: UNSIGNED }), payload);
  // Trailer names are case-insensitive; values trimmed.
  const r = await decode([unsignedBody(chunks, [["X-Amz-Checksum-CRC32", " gtnkmQ== "]])], {
    mode: UNSIGNED,
  });
  assertDecoded(r, payload);
  assert.equal(r.trailers.get("x-amz-checksum-crc32"), "gtnkmQ==");
  // Half a trailer line at EOF is truncation.
  const half = Buffer.from("6\r\nhello \r\n0\r\nx-amz-checksum-crc32:gtn");
  assertError(await decode([half], { mode: UNSIGNED }), "IncompleteBody");
});

test("malformed framing is refused", async () => {
  const cases: [string, string | Buffer, string][] = [
    ["bad hex", "zz\r\nabc\r\n0\r\n\r\n", "InvalidRequest"],
    ["empty size", "\r\n", "InvalidRequest"],
    ["negative size", "-3\r\nabc\r\n0\r\n\r\n", "InvalidRequest"],
    ["huge size", "11111111111111111\r\n", "InvalidRequest"],
    ["no CRLF after data", "3\r\nabcd\r\n0\r\n\r\n", "InvalidRequest"],
    ["bare LF", "3\nabc\r\n0\r\n\r\n", "InvalidRequest"],
    ["CR without LF", "3\rabc\r\n0\r\n\r\n", "InvalidRequest"],
    ["data after the end", "3\r\nabc\r\n0\r\n\r\nmore", "InvalidRequest"],
    ["bad trailer line", "3\r\nabc\r\n0\r\nno colon here\r\n\r\n", "InvalidRequest"],
    ["repeated trailer", "0\r\na:1\r\na:2\r\n\r\n", "InvalidRequest"],
    [
      "trailer signature in an unsigned body",
      `0\r\nx-amz-trailer-signature:${SEED}\r\n\r\n`,
      "InvalidRequest",
    ],
    ["long header line", `3;${"x".repeat(5000)}\r\nabc\r\n0\r\n\r\n`, "InvalidRequest"],
    [
      "trailer too large",
      `0\r\n${Array.from({ length: 3000 }, (_, i) => `n${i}:v\r\n`).join("")}\r\n`,
      "InvalidRequest",
    ],
    ["empty body", "", "IncompleteBody"],
    ["cut in data", "5\r\nab", "IncompleteBody"],
  ];
  for (const [what, body, code] of cases) {
    const r = await decode([Buffer.from(body)], { mode: UNSIGNED });
    assert.equal(r.ok, false, what);
    if (!r.ok) assert.equal(r.error.code, code, `${what}: ${r.error.message}`);
  }
  // Chunk size limit: refused from the header alone (InvalidRequest, not IncompleteBody at EOF).
  assertError(
    await decode([Buffer.from("401\r\n")], { mode: UNSIGNED, chunkBytesMax: 1024 }),
    "InvalidRequest",
  );
  assertDecoded(
    await decode([unsignedBody([bytes(1024)])], { mode: UNSIGNED, chunkBytesMax: 1024 }),
    bytes(1024),
  );
  // x-amz-decoded-content-length must match.
  const body = unsignedBody([bytes(100)]);
  assertError(await decode([body], { mode: UNSIGNED, decodedLength: 99 }), "InvalidRequest");
  assertError(await decode([body], { mode: UNSIGNED, decodedLength: 101 }), "IncompleteBody");
  for (const junk of [Number.NaN, -1, 1.5])
    assertError(await decode([body], { mode: UNSIGNED, decodedLength: junk }), "InvalidRequest");
  assertError(await decode([], { mode: UNSIGNED, decodedLength: Number.NaN }), "InvalidRequest");
  // Only streaming modes can be decoded.
  assert.throws(
    () => new AwsChunkedDecoder({ mode: { kind: "unsigned" } }),
    /streaming payload mode/,
  );
});

// ---------------------------------------------------------------- streaming behaviour

/** Lets queued stream callbacks run. */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

test("unsigned data streams through as views of the input (no copies, no waiting for the end)", async () => {
  const decoder = new AwsChunkedDecoder({ mode: UNSIGNED });
  const seen: Buffer[] = [];
  decoder.on("data", (c: Buffer) => seen.push(c));
  const input = Buffer.from("a\r\n0123456789\r\n");
  decoder.write(input.subarray(0, 8)); // header and the first 5 data bytes
  await tick();
  assert.equal(Buffer.concat(seen).toString(), "01234");
  assert.equal(seen[0]!.buffer, input.buffer, "the emitted bytes are a view of the input");
  decoder.write(input.subarray(8));
  decoder.end(Buffer.from("0\r\n\r\n"));
  await new Promise((resolve) => decoder.on("end", resolve));
  assert.equal(Buffer.concat(seen).toString(), "0123456789");
});

test("signed data is emitted only once its chunk signature has been checked", async () => {
  const chunk = bytes(4000, 9);
  const body = signedBody([chunk, bytes(10, 10)]);
  const decoder = new AwsChunkedDecoder({ mode: signedMode() });
  const seen: Buffer[] = [];
  decoder.on("data", (c: Buffer) => seen.push(c));
  const headerEnd = body.indexOf("\r\n") + 2;
  decoder.write(body.subarray(0, headerEnd + chunk.length - 1)); // all but the chunk's last byte
  await tick();
  assert.equal(seen.length, 0, "nothing before the signature is checked");
  decoder.write(body.subarray(headerEnd + chunk.length - 1, headerEnd + chunk.length));
  await tick();
  assert.ok(Buffer.concat(seen).equals(chunk), "the first chunk is out once complete");
  decoder.end(body.subarray(headerEnd + chunk.length));
  await new Promise((resolve) => decoder.on("end", resolve));
  assert.ok(Buffer.concat(seen).equals(Buffer.concat([chunk, bytes(10, 10)])));
});

// ---------------------------------------------------------------- properties

const chunkList = fc.array(fc.uint8Array({ minLength: 1, maxLength: 600 }), { maxLength: 5 });
const cuts = fc.array(fc.nat(4000), { maxLength: 8 });

test("property: any chunking, cut anywhere, decodes to the payload (both modes)", async () => {
  await fc.assert(
    fc.asyncProperty(chunkList, cuts, fc.boolean(), async (arrays, at, trailer) => {
      const chunks = arrays.map((a) => Buffer.from(a));
      const payload = Buffer.concat(chunks);
      const trailers: [string, string][] = trailer ? [["x-amz-checksum-crc32", "AAAAAA=="]] : [];
      const signed = signedBody(chunks, trailer ? { trailers } : {});
      const r1 = await decode(split(signed, at), {
        mode: signedMode(trailer),
        decodedLength: payload.length,
      });
      assertDecoded(r1, payload);
      const r2 = await decode(split(unsignedBody(chunks, trailers), at), {
        mode: UNSIGNED,
        decodedLength: payload.length,
      });
      assertDecoded(r2, payload);
      assert.deepEqual([...r2.trailers], trailers);
    }),
    { numRuns: 200 },
  );
});

test("property: a signed body with any byte changed is refused or decodes to the same payload", async () => {
  await fc.assert(
    fc.asyncProperty(
      chunkList.filter((a) => a.length > 0),
      fc.boolean(),
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      async (arrays, trailer, where, xor) => {
        const chunks = arrays.map((a) => Buffer.from(a));
        const payload = Buffer.concat(chunks);
        const body = signedBody(
          chunks,
          trailer ? { trailers: [["x-amz-checksum-crc32", "AAAAAA=="]] } : {},
        );
        const at = where % body.length;
        const changed = Buffer.from(body);
        changed[at]! ^= xor;
        const r = await decode([changed], { mode: signedMode(trailer) });
        // Some edits do not change the meaning (e.g. the case of a hex digit): those may pass,
        // but nothing else than the signed payload may ever come out.
        if (r.ok)
          assert.ok(r.data.equals(payload), `byte ${at} changed yet accepted different data`);
        // An edit inside chunk data always fails.
        const first = body.indexOf("\r\n") + 2;
        if (at >= first && at < first + chunks[0]!.length) assert.equal(r.ok, false);
      },
    ),
    { numRuns: 300 },
  );
});
