/**
 * The HTTP-header side of the S3 door, as pure functions: Range, conditional requests
 * (If-Match & co. for reads, S3's conditional writes), HTTP and ISO dates, bucket-name and
 * object-key validation, user metadata and the stored representation headers, S3's
 * `encoding-type=url` encoding, and opaque list continuation tokens.
 *
 * S3's behaviour is followed where it differs from a plain HTTP server:
 * - Range: one `bytes=` range only. A malformed header or several ranges are ignored (the full
 *   object, 200), as RFC 7233 allows and S3 does; a syntactically valid but unsatisfiable range
 *   is 416 InvalidRange, and every range of an empty object is unsatisfiable.
 * - Conditions: RFC 7232 §6 precedence, which gives exactly the two combinations the S3 docs
 *   spell out (If-Match true + If-Unmodified-Since false → 200; If-None-Match false +
 *   If-Modified-Since true → 304). Dates compare at whole seconds (Last-Modified is sent as an
 *   HTTP-date), and an unparseable date is ignored.
 * - Conditional writes: `If-None-Match: *` (create only if absent) and `If-Match: <etag>`
 *   (replace only that version); If-Match on a missing key is 404 NoSuchKey, any other
 *   If-None-Match value is 501 NotImplemented.
 * - Keys are opaque byte strings to S3: `../`, `//`, a leading `/` are ordinary characters, and
 *   nothing here treats a key as a path (Kumo never maps keys to files), so they are allowed.
 */
import { S3Error } from "./errors.js";

/** Request headers as node gives them: lower-case names, repeated ones as arrays. */
export type HeaderBag = Readonly<Record<string, string | readonly string[] | undefined>>;

/** One header's value; repeated headers joined by "," (as HTTP defines for list headers). */
export function headerValue(h: HeaderBag, name: string): string | undefined {
  const v = h[name];
  return typeof v === "string" ? v : v?.join(",");
}

// ---------------------------------------------------------------------------------------------
// Range

export type RangeResult =
  | { readonly kind: "none" }
  | { readonly kind: "range"; readonly start: number; readonly end: number /* inclusive */ }
  | { readonly kind: "unsatisfiable" }
  | { readonly kind: "ignore" };

const RANGE_SPEC_RE = /^(\d*)-(\d*)$/;

/**
 * Reads a Range header against an object of `size` bytes:
 * - absent → none; `bytes=a-b`, `bytes=a-`, `bytes=-n` → range, with the end clamped to
 *   size-1 and a suffix longer than the object meaning all of it;
 * - start ≥ size, `bytes=-0`, or any range of an empty object → unsatisfiable (416 InvalidRange);
 * - anything malformed (other unit, no digits, b < a, signs, several ranges) → ignore: S3 then
 *   answers 200 with the whole object.
 */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: "none" };
  const eq = header.indexOf("=");
  if (eq < 0 || header.slice(0, eq).trim().toLowerCase() !== "bytes") return { kind: "ignore" };
  const spec = header.slice(eq + 1).trim();
  if (spec.includes(",")) return { kind: "ignore" };
  const m = RANGE_SPEC_RE.exec(spec);
  if (!m) return { kind: "ignore" };
  const first = m[1] ?? "";
  const last = m[2] ?? "";
  if (first === "") {
    if (last === "") return { kind: "ignore" };
    const n = Number(last);
    if (n === 0 || size === 0) return { kind: "unsatisfiable" };
    return { kind: "range", start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(first);
  const end = last === "" ? Number.POSITIVE_INFINITY : Number(last);
  if (end < start) return { kind: "ignore" };
  if (start >= size) return { kind: "unsatisfiable" };
  return { kind: "range", start, end: Math.min(end, size - 1) };
}

/** `Content-Range` of a 206: `bytes start-end/size`. */
export function contentRange(start: number, end: number, size: number): string {
  return `bytes ${start}-${end}/${size}`;
}

/** The 416 answer: InvalidRange with `Content-Range: bytes *\/size`, as S3 sends it. */
export function invalidRangeError(rangeHeader: string, size: number): S3Error {
  return new S3Error("InvalidRange", undefined, {
    extra: { RangeRequested: rangeHeader, ActualObjectSize: String(size) },
    headers: { "content-range": `bytes */${size}` },
  });
}

// ---------------------------------------------------------------------------------------------
// ETags

/** The opaque part of an entity tag: without `W/` and the quotes (S3 accepts both forms). */
export function normalizeETag(etag: string): string {
  let e = etag.trim();
  if (e.startsWith("W/")) e = e.slice(2);
  if (e.length >= 2 && e.startsWith('"') && e.endsWith('"')) e = e.slice(1, -1);
  return e;
}

/** The ETag as S3 sends it: in double quotes. */
export function quoteETag(etag: string): string {
  return `"${normalizeETag(etag)}"`;
}

interface EntityTag {
  readonly weak: boolean;
  readonly tag: string;
}

/** An If-Match / If-None-Match list; `*` as "any". Tolerant: quotes are optional. */
function parseETagList(value: string): "*" | EntityTag[] {
  const v = value.trim();
  if (v === "*") return "*";
  const out: EntityTag[] = [];
  let i = 0;
  while (i < v.length) {
    const c = v[i];
    if (c === "," || c === " " || c === "\t") {
      i++;
      continue;
    }
    let weak = false;
    if (v.startsWith("W/", i)) {
      weak = true;
      i += 2;
    }
    if (v[i] === '"') {
      const close = v.indexOf('"', i + 1);
      const end = close < 0 ? v.length : close;
      out.push({ weak, tag: v.slice(i + 1, end) });
      i = end + 1;
    } else {
      let end = v.indexOf(",", i);
      if (end < 0) end = v.length;
      out.push({ weak, tag: v.slice(i, end).trim() });
      i = end + 1;
    }
  }
  return out;
}

/** RFC 7232 strong comparison (If-Match): neither tag may be weak. */
function strongMatch(list: "*" | EntityTag[], current: string): boolean {
  if (list === "*") return true;
  const weakCurrent = current.trim().startsWith("W/");
  const cur = normalizeETag(current);
  return !weakCurrent && list.some((t) => !t.weak && t.tag === cur);
}

/** RFC 7232 weak comparison (If-None-Match): `W/` is ignored. */
function weakMatch(list: "*" | EntityTag[], current: string): boolean {
  if (list === "*") return true;
  const cur = normalizeETag(current);
  return list.some((t) => t.tag === cur);
}

// ---------------------------------------------------------------------------------------------
// Dates

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

// IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT" (also with a numeric zone, as RFC 1123 allows).
const IMF_RE =
  /^[A-Za-z]{3},\s+(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+(\d{2}):(\d{2}):(\d{2})\s+(GMT|UTC|UT|Z|[+-]\d{4})$/;
// RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT"
const RFC850_RE =
  /^[A-Za-z]+,\s+(\d{1,2})-([A-Za-z]{3})-(\d{2,4})\s+(\d{2}):(\d{2}):(\d{2})\s+GMT$/;
// asctime "Sun Nov  6 08:49:37 1994"
const ASCTIME_RE = /^[A-Za-z]{3}\s+([A-Za-z]{3})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})\s+(\d{4})$/;
// ISO 8601 "2006-02-03T16:45:09Z" / ".000Z" (not an HTTP-date, but some clients send it)
const ISO_RE =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})$/;

function utc(
  year: number,
  month: number,
  day: number,
  h: number,
  m: number,
  s: number,
): number | undefined {
  if (month < 0 || month > 11 || day < 1 || day > 31 || h > 23 || m > 59 || s > 60) {
    return undefined;
  }
  const ms = Date.UTC(year, month, day, h, m, Math.min(s, 59));
  // Reject rollovers such as 31 Feb.
  if (new Date(ms).getUTCDate() !== day) return undefined;
  return ms;
}

function zoneOffsetMs(z: string): number {
  if (z === "GMT" || z === "UTC" || z === "UT" || z === "Z") return 0;
  const sign = z.startsWith("-") ? -1 : 1;
  const digits = z.slice(1).replace(":", "");
  return sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4))) * 60_000;
}

/**
 * An HTTP-date (IMF-fixdate, RFC 850 or asctime, RFC 7231 §7.1.1.1) or an ISO 8601 UTC time as
 * epoch milliseconds; undefined when it is none of these. Stricter than `Date.parse`, which
 * takes "1" for the year 2001.
 */
export function parseHttpDate(value: string): number | undefined {
  const v = value.trim();
  let m = IMF_RE.exec(v);
  if (m) {
    const month = MONTHS.indexOf((m[2] ?? "").toLowerCase());
    const t = utc(Number(m[3]), month, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]));
    return t === undefined ? undefined : t - zoneOffsetMs(m[7] ?? "GMT");
  }
  m = RFC850_RE.exec(v);
  if (m) {
    let year = Number(m[3]);
    if ((m[3] ?? "").length === 2) year += year < 70 ? 2000 : 1900;
    const month = MONTHS.indexOf((m[2] ?? "").toLowerCase());
    return utc(year, month, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]));
  }
  m = ASCTIME_RE.exec(v);
  if (m) {
    const month = MONTHS.indexOf((m[1] ?? "").toLowerCase());
    return utc(Number(m[6]), month, Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]));
  }
  m = ISO_RE.exec(v);
  if (m) {
    const t = utc(
      Number(m[1]),
      Number(m[2]) - 1,
      Number(m[3]),
      Number(m[4]),
      Number(m[5]),
      Number(m[6]),
    );
    if (t === undefined) return undefined;
    const frac = m[7] === undefined ? 0 : Math.floor(Number(`0.${m[7]}`) * 1000);
    return t + frac - zoneOffsetMs(m[8] ?? "Z");
  }
  return undefined;
}

/** RFC 7231 IMF-fixdate, e.g. `Fri, 03 Feb 2006 16:45:09 GMT` (Last-Modified, Date). */
export function httpDate(ms: number): string {
  return new Date(ms).toUTCString();
}

/** ISO 8601 with milliseconds, e.g. `2006-02-03T16:45:09.000Z` (XML LastModified etc.). */
export function isoDate(ms: number): string {
  return new Date(ms).toISOString();
}

// ---------------------------------------------------------------------------------------------
// Conditional requests

export interface ConditionHeaders {
  readonly ifMatch?: string | undefined;
  readonly ifNoneMatch?: string | undefined;
  readonly ifModifiedSince?: string | undefined;
  readonly ifUnmodifiedSince?: string | undefined;
}

/**
 * The four condition headers of a request; with `prefix = "x-amz-copy-source-"` those of
 * CopyObject / UploadPartCopy about the source object.
 */
export function conditionHeaders(h: HeaderBag, prefix = ""): ConditionHeaders {
  return {
    ifMatch: headerValue(h, `${prefix}if-match`),
    ifNoneMatch: headerValue(h, `${prefix}if-none-match`),
    ifModifiedSince: headerValue(h, `${prefix}if-modified-since`),
    ifUnmodifiedSince: headerValue(h, `${prefix}if-unmodified-since`),
  };
}

export type ConditionResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly status: 304 | 412 };

const OK = { ok: true } as const;

function present(v: string | undefined): v is string {
  return v !== undefined && v.trim() !== "";
}

/** Whether the object changed after the date in `value` (seconds); undefined if unparseable. */
function modifiedSince(value: string, lastModifiedMs: number): boolean | undefined {
  const t = parseHttpDate(value);
  if (t === undefined) return undefined;
  return Math.floor(lastModifiedMs / 1000) > Math.floor(t / 1000);
}

/**
 * Evaluates the conditions of a GET or HEAD on an existing object (RFC 7232 §6):
 * 1. If-Match present: false → 412 (and If-Unmodified-Since is not looked at);
 * 2. otherwise If-Unmodified-Since: modified after it → 412;
 * 3. If-None-Match present: the ETag matches (weakly) → 304 (If-Modified-Since ignored);
 * 4. otherwise If-Modified-Since: not modified after it → 304.
 * `obj.etag` may be quoted or not. Empty headers and unparseable dates count as absent.
 */
export function evaluateConditions(
  h: ConditionHeaders,
  obj: { readonly etag: string; readonly lastModifiedMs: number },
  method: "GET" | "HEAD",
): ConditionResult {
  if (present(h.ifMatch)) {
    if (!strongMatch(parseETagList(h.ifMatch), obj.etag)) return { ok: false, status: 412 };
  } else if (present(h.ifUnmodifiedSince)) {
    if (modifiedSince(h.ifUnmodifiedSince, obj.lastModifiedMs) === true) {
      return { ok: false, status: 412 };
    }
  }
  // `method` is here for the reader: both read methods answer a failed If-None-Match or
  // If-Modified-Since with 304 (other methods would get 412, see evaluateWriteConditions).
  void method;
  const notModified = 304;
  if (present(h.ifNoneMatch)) {
    if (weakMatch(parseETagList(h.ifNoneMatch), obj.etag)) {
      return { ok: false, status: notModified };
    }
  } else if (present(h.ifModifiedSince)) {
    if (modifiedSince(h.ifModifiedSince, obj.lastModifiedMs) === false) {
      return { ok: false, status: notModified };
    }
  }
  return OK;
}

/**
 * The `x-amz-copy-source-if-*` conditions of CopyObject / UploadPartCopy: the same precedence,
 * but every failure is 412 PreconditionFailed (S3 never answers a copy with 304).
 */
export function evaluateCopySourceConditions(
  h: ConditionHeaders,
  obj: { readonly etag: string; readonly lastModifiedMs: number },
): { readonly ok: true } | { readonly ok: false; readonly status: 412 } {
  const r = evaluateConditions(h, obj, "GET");
  return r.ok ? OK : { ok: false, status: 412 };
}

/** The error for a failed condition: 304 NotModified (no body) or 412 PreconditionFailed. */
export function conditionError(status: 304 | 412): S3Error {
  return status === 304 ? new S3Error("NotModified") : new S3Error("PreconditionFailed");
}

/**
 * S3's conditional writes (PutObject, CompleteMultipartUpload, CopyObject destination):
 * - `If-None-Match` other than `*` → 501 NotImplemented;
 * - `If-Match` with no current object → 404 NoSuchKey; not matching → 412;
 * - `If-None-Match: *` with a current object → 412.
 * `current` is the latest version (undefined when absent or a delete marker).
 */
export function evaluateWriteConditions(
  h: { readonly ifMatch?: string | undefined; readonly ifNoneMatch?: string | undefined },
  current: { readonly etag: string } | undefined,
): { readonly ok: true } | { readonly ok: false; readonly error: S3Error } {
  if (present(h.ifNoneMatch) && h.ifNoneMatch.trim() !== "*") {
    return {
      ok: false,
      error: new S3Error("NotImplemented", undefined, { extra: { Header: "If-None-Match" } }),
    };
  }
  if (present(h.ifMatch)) {
    if (current === undefined) return { ok: false, error: new S3Error("NoSuchKey") };
    if (!strongMatch(parseETagList(h.ifMatch), current.etag)) {
      return {
        ok: false,
        error: new S3Error("PreconditionFailed", undefined, { extra: { Condition: "If-Match" } }),
      };
    }
  }
  if (present(h.ifNoneMatch) && current !== undefined) {
    return {
      ok: false,
      error: new S3Error("PreconditionFailed", undefined, {
        extra: { Condition: "If-None-Match" },
      }),
    };
  }
  return OK;
}

// ---------------------------------------------------------------------------------------------
// Names

const BUCKET_CHARS_RE = /^[a-z0-9][a-z0-9.-]*[a-z0-9]$/;
const IPV4_LIKE_RE = /^\d+\.\d+\.\d+\.\d+$/;
const RESERVED_PREFIXES = ["xn--", "sthree-", "amzn-s3-demo-"];
const RESERVED_SUFFIXES = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];

/**
 * AWS's general-purpose bucket naming rules: 3–63 characters of lower-case letters, digits, `.`
 * and `-`, starting and ending with a letter or digit; no `..`, and no `-` next to a `.` (AWS
 * refuses `foo-.bar` and `foo.-bar`, as DNS labels cannot start or end with `-`); not shaped like
 * an IPv4 address; none of the reserved prefixes (`xn--`, `sthree-`, `amzn-s3-demo-`) or
 * suffixes (`-s3alias`, `--ol-s3`, `.mrap`, `--x-s3`, `--table-s3`). Check on CreateBucket;
 * other requests simply find no such bucket.
 */
export function validateBucketName(name: string): S3Error | undefined {
  const bad = (why: string) =>
    new S3Error("InvalidBucketName", `The specified bucket is not valid. (${why})`, {
      extra: { BucketName: name },
    });
  if (name.length < 3 || name.length > 63) return bad("it must be 3 to 63 characters long");
  if (!BUCKET_CHARS_RE.test(name)) {
    return bad("only a-z, 0-9, '.' and '-', starting and ending with a letter or digit");
  }
  if (name.includes("..") || name.includes(".-") || name.includes("-.")) {
    return bad("no '..', '.-' or '-.'");
  }
  if (IPV4_LIKE_RE.test(name)) return bad("it must not look like an IP address");
  for (const p of RESERVED_PREFIXES) if (name.startsWith(p)) return bad(`reserved prefix ${p}`);
  for (const s of RESERVED_SUFFIXES) if (name.endsWith(s)) return bad(`reserved suffix ${s}`);
  return undefined;
}

/** S3's limit on a key: 1024 bytes of UTF-8. */
export const MAX_KEY_BYTES = 1024;

const LONE_SURROGATE_RE = /[\ud800-\udfff]/u;

/**
 * Checks an object key: 1..1024 bytes of UTF-8 (KeyTooLongError beyond), no NUL and no lone
 * UTF-16 surrogate (InvalidArgument: neither survives storage and listing as the same string).
 * Anything else is allowed, `../` included: keys are names, never file paths, in Kumo as in S3.
 */
export function validateObjectKey(key: string): S3Error | undefined {
  if (key.length === 0) {
    return new S3Error("InvalidArgument", "Object key must not be empty.", {
      extra: { ArgumentName: "key", ArgumentValue: "" },
    });
  }
  if (Buffer.byteLength(key, "utf8") > MAX_KEY_BYTES) {
    return new S3Error("KeyTooLongError", undefined, {
      extra: {
        Size: String(Buffer.byteLength(key, "utf8")),
        MaxSizeAllowed: String(MAX_KEY_BYTES),
      },
    });
  }
  if (key.includes("\u0000") || LONE_SURROGATE_RE.test(key)) {
    return new S3Error("InvalidArgument", "Object key contains characters that are not allowed.", {
      extra: { ArgumentName: "key" },
    });
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Metadata and stored headers

/** S3's limit on user metadata: names (without `x-amz-meta-`) plus values, in UTF-8 bytes. */
export const MAX_USER_METADATA_BYTES = 2048;
const META_PREFIX = "x-amz-meta-";

/**
 * The `x-amz-meta-*` headers, keyed by their full lower-case header name (`x-amz-meta-color`),
 * repeated headers joined by ",". MetadataTooLarge when names (without the prefix) and values
 * exceed 2 KiB of UTF-8 together.
 */
export function collectUserMetadata(h: HeaderBag): Record<string, string> | S3Error {
  const out: Record<string, string> = {};
  let size = 0;
  for (const rawName of Object.keys(h)) {
    const name = rawName.toLowerCase();
    if (!name.startsWith(META_PREFIX) || name.length === META_PREFIX.length) continue;
    const value = headerValue(h, rawName);
    if (value === undefined) continue;
    const prev = out[name];
    out[name] = prev === undefined ? value : `${prev},${value}`;
  }
  for (const [name, value] of Object.entries(out)) {
    size += Buffer.byteLength(name.slice(META_PREFIX.length)) + Buffer.byteLength(value);
  }
  if (size > MAX_USER_METADATA_BYTES) {
    return new S3Error("MetadataTooLarge", undefined, {
      extra: { Size: String(size), MaxSizeAllowed: String(MAX_USER_METADATA_BYTES) },
    });
  }
  return out;
}

/** The representation headers S3 stores with an object and returns on GET/HEAD. */
export const STORED_HEADERS = [
  "content-type",
  "content-encoding",
  "content-disposition",
  "content-language",
  "cache-control",
  "expires",
] as const;

export type StoredHeaderName = (typeof STORED_HEADERS)[number];

/**
 * The stored representation headers of a PUT / CreateMultipartUpload (lower-case names).
 * `aws-chunked` is removed from Content-Encoding, as S3 does: it only describes the transfer
 * (streaming SigV4 / trailing checksums), not the object; nothing is kept if nothing remains.
 */
export function storedHeaders(h: HeaderBag): Partial<Record<StoredHeaderName, string>> {
  const out: Partial<Record<StoredHeaderName, string>> = {};
  for (const name of STORED_HEADERS) {
    let v = headerValue(h, name);
    if (v === undefined) continue;
    if (name === "content-encoding") {
      v = v
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "" && s.toLowerCase() !== "aws-chunked")
        .join(",");
      if (v === "") continue;
    }
    out[name] = v;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// encoding-type=url and continuation tokens

const HEX = "0123456789ABCDEF";

function isUnreservedOrSlash(b: number): boolean {
  return (
    (b >= 0x41 && b <= 0x5a) || // A-Z
    (b >= 0x61 && b <= 0x7a) || // a-z
    (b >= 0x30 && b <= 0x39) || // 0-9
    b === 0x2d || // -
    b === 0x2e || // .
    b === 0x5f || // _
    b === 0x7e || // ~
    b === 0x2f // /
  );
}

/**
 * S3's `encoding-type=url` form of a key, prefix, delimiter or marker: every UTF-8 byte outside
 * RFC 3986's unreserved set is percent-encoded (upper-case hex), `/` is kept, and a space is
 * `%20` (S3 answers `quux ab/` as `quux%20ab/` and `a+b` as `a%2Bb`; s3-tests check this).
 * Neither the JS SDK v3 nor the Java SDK decodes it for the caller; `decodeURIComponent` and
 * Python's `unquote_plus` (botocore's auto-decoding) both read it back exactly.
 */
export function encodeS3Url(s: string): string {
  const bytes = Buffer.from(s, "utf8");
  let out = "";
  let run = 0; // start of the current run of bytes kept as they are
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (isUnreservedOrSlash(b)) continue;
    out += bytes.toString("latin1", run, i);
    out += `%${HEX[b >> 4]}${HEX[b & 15]}`;
    run = i + 1;
  }
  return out + bytes.toString("latin1", run);
}

const TOKEN_VERSION = 1;
const TOKEN_RE = /^[A-Za-z0-9_-]+$/;
const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * An opaque ListObjectsV2 continuation token for "after `key`": base64url of a version byte and
 * the key's UTF-8. Opaque to clients (S3's are too), so its form can change with the version.
 */
export function encodeToken(key: string): string {
  return Buffer.concat([Buffer.of(TOKEN_VERSION), Buffer.from(key, "utf8")]).toString("base64url");
}

/** The key in a token from `encodeToken`; InvalidArgument for anything else. */
export function decodeToken(token: string): string | S3Error {
  const bad = () =>
    new S3Error("InvalidArgument", "The continuation token provided is incorrect", {
      extra: { ArgumentName: "continuation-token" },
    });
  if (!TOKEN_RE.test(token) || token.length % 4 === 1) return bad();
  const b = Buffer.from(token, "base64url");
  if (b.length < 1 || b[0] !== TOKEN_VERSION) return bad();
  // Canonical encodings only, so one key has one token.
  if (b.toString("base64url") !== token) return bad();
  try {
    return UTF8.decode(b.subarray(1));
  } catch {
    return bad();
  }
}
