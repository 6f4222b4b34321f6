/**
 * Server-side AWS Signature Version 4 verification for the S3 door (only node:crypto).
 *
 * `verifyRequest` authenticates one request from its method, raw path, raw query and headers:
 * - header auth (`Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`,
 *   with the time in `x-amz-date` or else `Date`);
 * - query auth (presigned URLs: `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
 *   `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Signature`);
 * - anonymous: neither of the above (the caller decides what anonymous may do).
 * It also says how the body must be checked (`PayloadMode`): a signed SHA-256 (checked as the
 * bytes pass with `PayloadHashVerifier`), unsigned, or one of the aws-chunked streaming modes
 * (decoded and checked by `AwsChunkedDecoder` in chunked.ts, seeded from this signature).
 *
 * S3 quirks handled here (they differ from the generic SigV4 of other AWS services):
 * - The canonical URI is the path as sent, *not* normalised (no "." / ".." / "//" removal: those
 *   are legal in object keys) and encoded once, not twice. Each segment is percent-decoded and
 *   re-encoded with the SigV4 rules (A-Z a-z 0-9 - _ . ~ kept, everything else %XX upper-case)
 *   so a client that sends `+` raw but signs `%2B`, or sends lower-case hex, still verifies. A
 *   `+` in the path is a literal plus (as `decodeURIComponent` reads it), and `%2F` inside a
 *   segment stays `%2F`.
 * - In the query, `+` means a space (as `URLSearchParams` reads it, and as S3 and MinIO do), so
 *   the canonical form matches what the HTTP layer will act on: a signature made for one
 *   meaning cannot be replayed with another spelling that means something else.
 * - `x-amz-content-sha256` is mandatory with header auth and is the payload line of the
 *   canonical request; presigned URLs are `UNSIGNED-PAYLOAD` unless `X-Amz-Content-Sha256` says
 *   otherwise.
 * - Every `x-amz-*` header present must be signed (S3 answers "There were headers present in the
 *   request which were not signed"), so no one on the path can add e.g. `x-amz-copy-source` or
 *   `x-amz-meta-*` to a signed request. `x-amz-content-sha256` is exempt with header auth: it is
 *   bound anyway as the canonical request's last line.
 * - Any region in the credential scope is accepted (the server is region-agnostic and clients
 *   default to us-east-1 or whatever they were configured with); the service must be `s3`.
 * - Node hands header values over as latin1 strings (one char per byte), so the canonical
 *   request is hashed as those bytes; a value with chars above U+00FF (a direct caller) is
 *   taken as UTF-8.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { assert } from "../../base/index.js";

export interface SigV4Request {
  readonly method: string;
  /** The raw request target path as received (still percent-encoded), without the query. */
  readonly path: string;
  /** The raw query string without "?" ("" when none). */
  readonly query: string;
  /** Node's IncomingHttpHeaders (lower-case names; values string | string[] | undefined). */
  readonly headers: Record<string, string | string[] | undefined>;
}

export interface ChunkSigningContext {
  signingKey: Buffer;
  amzDate: string;
  scope: string;
  seedSignature: string;
}

export type PayloadMode =
  | { readonly kind: "unsigned" } // UNSIGNED-PAYLOAD (header or presigned query)
  | { readonly kind: "sha256"; readonly hex: string } // body must hash to this (PayloadHashVerifier)
  | {
      readonly kind: "streaming-signed";
      readonly trailer: boolean;
      readonly seed: ChunkSigningContext;
    } // STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]
  | { readonly kind: "streaming-unsigned-trailer" }; // STREAMING-UNSIGNED-PAYLOAD-TRAILER

export type S3AuthErrorCode =
  | "AccessDenied"
  | "SignatureDoesNotMatch"
  | "InvalidAccessKeyId"
  | "RequestTimeTooSkewed"
  | "AuthorizationHeaderMalformed"
  | "AuthorizationQueryParametersError"
  | "MissingSecurityHeader"
  | "InvalidArgument"
  | "InvalidRequest"
  | "XAmzContentSHA256Mismatch"
  | "IncompleteBody"
  | "InvalidDigest"
  | "BadDigest";

export interface AuthError {
  readonly ok: false;
  readonly code: S3AuthErrorCode;
  readonly message: string;
  readonly status: number;
  /** For SignatureDoesNotMatch: what the server signed (S3 returns these to help debugging). */
  readonly canonicalRequest?: string;
  readonly stringToSign?: string;
}

export type AuthResult =
  | { readonly ok: true; readonly accessKeyId: string; readonly payload: PayloadMode }
  | { readonly ok: true; readonly accessKeyId: undefined; readonly payload: PayloadMode } // anonymous
  | AuthError;

export interface VerifyOptions {
  /** Largest accepted difference between the request time and now (default 15 minutes). */
  maxSkewMs?: number;
  /** Largest accepted X-Amz-Expires (default 7 days, as S3). */
  presignMaxSeconds?: number;
}

export const ALGORITHM = "AWS4-HMAC-SHA256";
export const UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD";
export const STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
export const STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
export const STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
/** SHA-256 of the empty string, hex. */
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const DEFAULT_MAX_SKEW_MS = 15 * 60 * 1000;
const DEFAULT_PRESIGN_MAX_SECONDS = 7 * 24 * 3600;
const AUTHORIZATION_BYTES_MAX = 8 * 1024;
const SIGNED_HEADERS_MAX = 64;
const SERVICE = "s3";
const TERMINATOR = "aws4_request";

const STATUS: Readonly<Record<S3AuthErrorCode, number>> = {
  AccessDenied: 403,
  SignatureDoesNotMatch: 403,
  InvalidAccessKeyId: 403,
  RequestTimeTooSkewed: 403,
  AuthorizationHeaderMalformed: 400,
  AuthorizationQueryParametersError: 400,
  MissingSecurityHeader: 400,
  InvalidArgument: 400,
  InvalidRequest: 400,
  XAmzContentSHA256Mismatch: 400,
  IncompleteBody: 400,
  InvalidDigest: 400,
  BadDigest: 400,
};

/** The HTTP status S3 answers with for an authentication error code. */
export function authErrorStatus(code: S3AuthErrorCode): number {
  return STATUS[code];
}

function fail(code: S3AuthErrorCode, message: string): AuthError {
  return { ok: false, code, message, status: STATUS[code] };
}

const MSG_SIGNATURE =
  "The request signature we calculated does not match the signature you provided. Check your key and signing method.";
const MSG_UNKNOWN_KEY = "The AWS Access Key Id you provided does not exist in our records.";
const MSG_SKEW = "The difference between the request time and the current time is too large.";
const MSG_V2 =
  "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.";

// ---------------------------------------------------------------- crypto helpers

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac("sha256", key).update(data, "utf8").digest();
}

/** The SigV4 signing key: HMAC chain over date, region, service and "aws4_request". */
export function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  const kDate = hmac("AWS4" + secret, date);
  const kRegion = hmac(kDate, region);
  const kService = hmac(kRegion, service);
  return hmac(kService, TERMINATOR);
}

const HEX64 = /^[0-9a-fA-F]{64}$/;

/** Constant-time comparison of two 64-hex-digit signatures (the caller validated `given`). */
export function signaturesEqual(expected: Buffer, givenHex: string): boolean {
  if (!HEX64.test(givenHex)) return false;
  const given = Buffer.from(givenHex, "hex");
  return given.length === expected.length && timingSafeEqual(given, expected);
}

// ---------------------------------------------------------------- URI encoding

const UPPER_HEX = "0123456789ABCDEF";

function isUnreserved(b: number): boolean {
  return (
    (b >= 0x41 && b <= 0x5a) || // A-Z
    (b >= 0x61 && b <= 0x7a) || // a-z
    (b >= 0x30 && b <= 0x39) || // 0-9
    b === 0x2d || // -
    b === 0x5f || // _
    b === 0x2e || // .
    b === 0x7e // ~
  );
}

function hexValue(b: number | undefined): number {
  if (b === undefined) return -1;
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  if (b >= 0x41 && b <= 0x46) return b - 0x41 + 10;
  if (b >= 0x61 && b <= 0x66) return b - 0x61 + 10;
  return -1;
}

/**
 * Percent-decodes a URI component to its bytes; `plusIsSpace` for query components (form
 * encoding). Undefined when a `%` is not followed by two hex digits. Characters outside ASCII
 * (never produced by Node's parser, which rejects them in the target) are taken as UTF-8.
 */
export function percentDecode(s: string, plusIsSpace = false): Buffer | undefined {
  const raw = Buffer.from(s, "utf8");
  if (!raw.includes(0x25) && !(plusIsSpace && raw.includes(0x2b))) return raw;
  const out = Buffer.allocUnsafe(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i]!;
    if (b === 0x25) {
      const hi = hexValue(raw[i + 1]);
      const lo = hexValue(raw[i + 2]);
      if (hi < 0 || lo < 0) return undefined;
      out[n++] = hi * 16 + lo;
      i += 2;
    } else if (b === 0x2b && plusIsSpace) {
      out[n++] = 0x20;
    } else {
      out[n++] = b;
    }
  }
  return out.subarray(0, n);
}

/** SigV4 URI encoding of bytes: unreserved kept, everything else %XX (upper-case hex). */
export function uriEncode(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) {
    out += isUnreserved(b) ? String.fromCharCode(b) : "%" + UPPER_HEX[b >> 4] + UPPER_HEX[b & 15];
  }
  return out;
}

/**
 * The S3 canonical URI of a raw path: segments decoded and re-encoded, never normalised.
 * Undefined on a malformed percent-escape.
 */
export function canonicalUri(rawPath: string): string | undefined {
  if (rawPath === "") return "/";
  const segments = rawPath.split("/");
  const out: string[] = [];
  for (const segment of segments) {
    const bytes = percentDecode(segment);
    if (bytes === undefined) return undefined;
    out.push(uriEncode(bytes));
  }
  return out.join("/");
}

interface QueryParam {
  /** Canonically encoded name and value. */
  readonly name: string;
  readonly value: string;
}

/**
 * Parses a raw query string into canonically encoded pairs (in order of appearance). A
 * parameter without "=" has an empty value; empty pieces ("a&&b") are skipped. Undefined on a
 * malformed percent-escape.
 */
function parseQuery(rawQuery: string): QueryParam[] | undefined {
  const params: QueryParam[] = [];
  if (rawQuery === "") return params;
  for (const piece of rawQuery.split("&")) {
    if (piece === "") continue;
    const eq = piece.indexOf("=");
    const name = percentDecode(eq < 0 ? piece : piece.slice(0, eq), true);
    const value = percentDecode(eq < 0 ? "" : piece.slice(eq + 1), true);
    if (name === undefined || value === undefined) return undefined;
    params.push({ name: uriEncode(name), value: uriEncode(value) });
  }
  return params;
}

/** The canonical query string: sorted by encoded name, then encoded value (byte order). */
function canonicalQueryOf(params: readonly QueryParam[], without?: string): string {
  const kept = without === undefined ? [...params] : params.filter((p) => p.name !== without);
  kept.sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : a.value < b.value ? -1 : a.value > b.value ? 1 : 0,
  );
  return kept.map((p) => `${p.name}=${p.value}`).join("&");
}

/** The S3 canonical query string of a raw query (for tools and tests). */
export function canonicalQuery(rawQuery: string): string | undefined {
  const params = parseQuery(rawQuery);
  return params === undefined ? undefined : canonicalQueryOf(params);
}

/** Decodes a canonically encoded (hence ASCII) query component back to its text. */
function decodedText(encoded: string): string {
  return percentDecode(encoded)!.toString("utf8");
}

// ---------------------------------------------------------------- headers and dates

type Headers = SigV4Request["headers"];

function headerList(headers: Headers, name: string): readonly string[] | undefined {
  if (!Object.hasOwn(headers, name)) return undefined;
  const v = headers[name];
  if (v === undefined) return undefined;
  return typeof v === "string" ? [v] : v;
}

/** A header that must appear at most once; "multiple" when it appears more often. */
function singleHeader(headers: Headers, name: string): string | undefined | "multiple" {
  const list = headerList(headers, name);
  if (list === undefined || list.length === 0) return undefined;
  if (list.length > 1) return "multiple";
  return list[0]!;
}

/** Header value bytes as a latin1 string (one char per byte), see the file comment. */
function headerBytes(value: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the range test is intended
  return /[^\u0000-\u00ff]/.test(value) ? Buffer.from(value, "utf8").toString("latin1") : value;
}

function trimAll(value: string): string {
  return value.replace(/[ \t]+/g, " ").trim();
}

const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
const IMF_DATE =
  /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/** ISO 8601 basic (20130524T000000Z) to epoch ms; undefined when invalid. */
export function parseAmzDate(s: string): number | undefined {
  const m = AMZ_DATE.exec(s);
  if (!m) return undefined;
  const ms = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
  return formatAmzDate(ms) === s ? ms : undefined; // rejects 20130231 and the like
}

export function formatAmzDate(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}Z$/, "Z");
}

/** The request time (header auth): x-amz-date, else Date (IMF-fixdate or ISO basic). */
function requestTime(headers: Headers): { ms: number; amzDate: string } | AuthError {
  const amz = singleHeader(headers, "x-amz-date");
  const date = singleHeader(headers, "date");
  if (amz === "multiple" || (amz === undefined && date === "multiple"))
    return fail("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header");
  let ms: number | undefined;
  if (amz !== undefined) ms = parseAmzDate(amz.trim());
  else if (date !== undefined) {
    const d = date.trim();
    ms = IMF_DATE.test(d) ? Date.parse(d) : parseAmzDate(d);
    if (Number.isNaN(ms)) ms = undefined;
  }
  if (ms === undefined)
    return fail("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header");
  return { ms, amzDate: formatAmzDate(ms) };
}

// ---------------------------------------------------------------- credential and signed headers

interface Credential {
  readonly accessKeyId: string;
  readonly date: string;
  readonly region: string;
  /** date/region/s3/aws4_request */
  readonly scope: string;
}

function parseCredential(
  value: string,
  amzDate: string | undefined,
  code: "AuthorizationHeaderMalformed" | "AuthorizationQueryParametersError",
): Credential | AuthError {
  const parts = value.split("/");
  // The access key is everything before the four scope parts (tolerates a "/" in an id).
  if (parts.length < 5)
    return fail(
      code,
      `Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".`,
    );
  const terminator = parts.pop()!;
  const service = parts.pop()!;
  const region = parts.pop()!;
  const date = parts.pop()!;
  const accessKeyId = parts.join("/");
  if (accessKeyId === "") return fail(code, "The Credential has an empty access key id.");
  if (!/^\d{8}$/.test(date))
    return fail(
      code,
      `Invalid credential date ${quoted(date)}. This date is not in yyyyMMdd format.`,
    );
  if (region === "") return fail(code, "The Credential has an empty region.");
  if (service !== SERVICE)
    return fail(
      code,
      `The Credential has an incorrect service ${quoted(service)}. This endpoint belongs to "s3".`,
    );
  if (terminator !== TERMINATOR)
    return fail(
      code,
      `The Credential has an incorrect terminal ${quoted(terminator)}. This endpoint uses "aws4_request".`,
    );
  if (amzDate !== undefined && amzDate.slice(0, 8) !== date)
    return fail(
      code,
      `Invalid credential date ${quoted(date)}. Date is not the same as X-Amz-Date: "${amzDate.slice(0, 8)}".`,
    );
  return { accessKeyId, date, region, scope: `${date}/${region}/${SERVICE}/${TERMINATOR}` };
}

/** Client text echoed in an error message: bounded, quoted. */
function quoted(text: string): string {
  return JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}…` : text);
}

const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;

function parseSignedHeaders(
  value: string,
  code: "AuthorizationHeaderMalformed" | "AuthorizationQueryParametersError",
): string[] | AuthError {
  const names = value.split(";");
  if (names.length > SIGNED_HEADERS_MAX)
    return fail(code, `SignedHeaders lists more than ${SIGNED_HEADERS_MAX} headers.`);
  const seen = new Set<string>();
  for (const name of names) {
    if (!HEADER_NAME.test(name))
      return fail(code, `SignedHeaders has an invalid header name ${quoted(name)}.`);
    if (seen.has(name)) return fail(code, `SignedHeaders lists ${quoted(name)} twice.`);
    seen.add(name);
  }
  if (!seen.has("host")) return fail(code, "SignedHeaders must include host.");
  return names;
}

/** Rejects x-amz-* headers that were not signed (see the file comment). */
function unsignedAmzHeader(
  headers: Headers,
  signed: ReadonlySet<string>,
  exempt?: string,
): AuthError | undefined {
  for (const name of Object.keys(headers)) {
    if (headers[name] === undefined) continue;
    const lower = name.toLowerCase();
    if (lower.startsWith("x-amz-") && !signed.has(lower) && lower !== exempt)
      return fail(
        "AccessDenied",
        `There were headers present in the request which were not signed: ${lower}`,
      );
  }
  return undefined;
}

/** The canonical header block ("name:value\n" per signed header), as latin1 bytes. */
function canonicalHeaders(headers: Headers, signed: readonly string[]): string | AuthError {
  let out = "";
  for (const name of signed) {
    const values = headerList(headers, name);
    if (values === undefined)
      return fail(
        "AccessDenied",
        `The signed header ${quoted(name)} is not present in the request.`,
      );
    out += `${name}:${values.map((v) => headerBytes(trimAll(v))).join(",")}\n`;
  }
  return out;
}

// ---------------------------------------------------------------- payload modes

/** A value x-amz-content-sha256 may take: a SHA-256 or one of the named modes. */
function isPayloadHash(value: string): boolean {
  return (
    HEX64.test(value) ||
    value === UNSIGNED_PAYLOAD ||
    value === STREAMING_SIGNED ||
    value === STREAMING_SIGNED_TRAILER ||
    value === STREAMING_UNSIGNED_TRAILER
  );
}

function payloadModeOf(value: string, seed: () => ChunkSigningContext): PayloadMode | undefined {
  if (value === UNSIGNED_PAYLOAD) return { kind: "unsigned" };
  if (HEX64.test(value)) return { kind: "sha256", hex: value.toLowerCase() };
  if (value === STREAMING_SIGNED) return { kind: "streaming-signed", trailer: false, seed: seed() };
  if (value === STREAMING_SIGNED_TRAILER)
    return { kind: "streaming-signed", trailer: true, seed: seed() };
  if (value === STREAMING_UNSIGNED_TRAILER) return { kind: "streaming-unsigned-trailer" };
  return undefined;
}

// ---------------------------------------------------------------- verification

interface Parsed {
  readonly credential: Credential;
  readonly amzDate: string;
  readonly signedHeaders: readonly string[];
  readonly signature: string;
  readonly canonicalQuery: string;
  readonly payloadHash: string;
}

function checkSignature(
  req: SigV4Request,
  p: Parsed,
  secret: string,
): { ok: true; key: Buffer } | AuthError {
  const uri = canonicalUri(req.path);
  if (uri === undefined)
    return fail("InvalidArgument", "The request path has an invalid percent-encoding.");
  const block = canonicalHeaders(req.headers, p.signedHeaders);
  if (typeof block !== "string") return block;
  const canonical = [
    req.method,
    uri,
    p.canonicalQuery,
    block,
    p.signedHeaders.join(";"),
    p.payloadHash,
  ].join("\n");
  const stringToSign = [
    ALGORITHM,
    p.amzDate,
    p.credential.scope,
    createHash("sha256").update(canonical, "latin1").digest("hex"),
  ].join("\n");
  const key = signingKey(secret, p.credential.date, p.credential.region, SERVICE);
  if (!signaturesEqual(hmac(key, stringToSign), p.signature)) {
    return {
      ...fail("SignatureDoesNotMatch", MSG_SIGNATURE),
      canonicalRequest: Buffer.from(canonical, "latin1").toString("utf8"),
      stringToSign,
    };
  }
  return { ok: true, key };
}

/** Authenticates a request; see the file comment. Never throws on bad input. */
export function verifyRequest(
  req: SigV4Request,
  secretOf: (accessKeyId: string) => string | undefined,
  nowMs: number,
  opts: VerifyOptions = {},
): AuthResult {
  const maxSkewMs = opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
  const presignMaxSeconds = opts.presignMaxSeconds ?? DEFAULT_PRESIGN_MAX_SECONDS;
  const params = parseQuery(req.query);
  if (params === undefined)
    return fail("InvalidArgument", "The query string has an invalid percent-encoding.");
  const authorization = singleHeader(req.headers, "authorization");
  const presigned = params.some(
    (p) =>
      p.name === "X-Amz-Signature" || p.name === "X-Amz-Algorithm" || p.name === "X-Amz-Credential",
  );
  if (authorization !== undefined && presigned)
    return fail(
      "InvalidArgument",
      "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
    );
  if (authorization !== undefined)
    return verifyHeaderAuth(req, authorization, params, secretOf, nowMs, maxSkewMs);
  if (presigned) return verifyPresigned(req, params, secretOf, nowMs, maxSkewMs, presignMaxSeconds);
  // Signature V2 query auth: refuse rather than silently treating the request as anonymous.
  if (params.some((p) => p.name === "AWSAccessKeyId") && params.some((p) => p.name === "Signature"))
    return fail("InvalidRequest", MSG_V2);
  return { ok: true, accessKeyId: undefined, payload: { kind: "unsigned" } };
}

function verifyHeaderAuth(
  req: SigV4Request,
  authorization: string,
  params: readonly QueryParam[],
  secretOf: (accessKeyId: string) => string | undefined,
  nowMs: number,
  maxSkewMs: number,
): AuthResult {
  const M = "AuthorizationHeaderMalformed";
  if (authorization === "multiple")
    return fail(M, "The request has more than one Authorization header.");
  if (authorization.length > AUTHORIZATION_BYTES_MAX)
    return fail(M, "The authorization header is too long.");
  const auth = authorization.trim();
  if (auth.startsWith("AWS ")) return fail("InvalidRequest", MSG_V2);
  if (!auth.startsWith(ALGORITHM + " "))
    return fail("InvalidArgument", "Unsupported Authorization Type");
  // "Credential=…, SignedHeaders=…, Signature=…": clients differ in the spaces after commas.
  const fields = new Map<string, string>();
  for (const part of auth.slice(ALGORITHM.length + 1).split(",")) {
    const item = part.trim();
    const eq = item.indexOf("=");
    if (eq <= 0)
      return fail(M, `The authorization header is malformed; ${quoted(item)} is not name=value.`);
    const name = item.slice(0, eq);
    if (fields.has(name))
      return fail(M, `The authorization header is malformed; ${quoted(name)} appears twice.`);
    fields.set(name, item.slice(eq + 1));
  }
  const credentialText = fields.get("Credential");
  const signedText = fields.get("SignedHeaders");
  const signature = fields.get("Signature");
  if (
    credentialText === undefined ||
    signedText === undefined ||
    signature === undefined ||
    fields.size !== 3
  )
    return fail(
      M,
      "The authorization header is malformed; it needs Credential, SignedHeaders and Signature.",
    );
  if (!HEX64.test(signature))
    return fail(M, "The authorization header is malformed; the Signature is not 64 hex digits.");

  const time = requestTime(req.headers);
  if ("ok" in time) return time;
  const credential = parseCredential(credentialText, time.amzDate, M);
  if ("ok" in credential) return credential;
  const signedHeaders = parseSignedHeaders(signedText, M);
  if ("ok" in signedHeaders) return signedHeaders;

  const contentSha = singleHeader(req.headers, "x-amz-content-sha256");
  if (contentSha === undefined)
    return fail("InvalidRequest", "Missing required header for this request: x-amz-content-sha256");
  if (contentSha === "multiple")
    return fail("InvalidArgument", "x-amz-content-sha256 must appear once.");
  const payloadHash = contentSha.trim();
  if (!isPayloadHash(payloadHash))
    return fail("InvalidArgument", `Invalid x-amz-content-sha256 value ${quoted(payloadHash)}.`);
  const notSigned = unsignedAmzHeader(req.headers, new Set(signedHeaders), "x-amz-content-sha256");
  if (notSigned) return notSigned;

  const secret = secretOf(credential.accessKeyId);
  if (secret === undefined) return fail("InvalidAccessKeyId", MSG_UNKNOWN_KEY);
  if (Math.abs(nowMs - time.ms) > maxSkewMs) return fail("RequestTimeTooSkewed", MSG_SKEW);

  const checked = checkSignature(
    req,
    {
      credential,
      amzDate: time.amzDate,
      signedHeaders,
      signature: signature.toLowerCase(),
      canonicalQuery: canonicalQueryOf(params),
      payloadHash,
    },
    secret,
  );
  if (!checked.ok) return checked;
  const payload = payloadModeOf(payloadHash, () => ({
    signingKey: checked.key,
    amzDate: time.amzDate,
    scope: credential.scope,
    seedSignature: signature.toLowerCase(),
  }));
  assert(payload !== undefined, "payload mode was validated above");
  return { ok: true, accessKeyId: credential.accessKeyId, payload };
}

const PRESIGN_PARAMS = [
  "X-Amz-Algorithm",
  "X-Amz-Credential",
  "X-Amz-Date",
  "X-Amz-Expires",
  "X-Amz-SignedHeaders",
  "X-Amz-Signature",
] as const;

function verifyPresigned(
  req: SigV4Request,
  params: readonly QueryParam[],
  secretOf: (accessKeyId: string) => string | undefined,
  nowMs: number,
  maxSkewMs: number,
  presignMaxSeconds: number,
): AuthResult {
  const Q = "AuthorizationQueryParametersError";
  const values = new Map<string, string>();
  for (const p of params) {
    // The SDK hoists the header under the name it was given, so the hash parameter may come in
    // any case; it is in the canonical query (signed) whatever its case.
    const name = p.name.toLowerCase() === "x-amz-content-sha256" ? "X-Amz-Content-Sha256" : p.name;
    if (!(PRESIGN_PARAMS as readonly string[]).includes(name) && name !== "X-Amz-Content-Sha256")
      continue;
    if (values.has(name)) return fail(Q, `The query parameter ${name} appears more than once.`);
    values.set(name, decodedText(p.value));
  }
  const get = (name: (typeof PRESIGN_PARAMS)[number]) => values.get(name);
  const algorithm = get("X-Amz-Algorithm");
  const credentialText = get("X-Amz-Credential");
  const amzDate = get("X-Amz-Date");
  const expiresText = get("X-Amz-Expires");
  const signedText = get("X-Amz-SignedHeaders");
  const signature = get("X-Amz-Signature");
  if (
    algorithm === undefined ||
    credentialText === undefined ||
    amzDate === undefined ||
    expiresText === undefined ||
    signedText === undefined ||
    signature === undefined
  )
    return fail(
      Q,
      "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
    );
  if (algorithm !== ALGORITHM) return fail(Q, `X-Amz-Algorithm only supports "${ALGORITHM}".`);
  const dateMs = parseAmzDate(amzDate);
  if (dateMs === undefined)
    return fail(Q, `X-Amz-Date must be in the ISO8601 Long Format "yyyyMMdd'T'HHmmss'Z'".`);
  const credential = parseCredential(credentialText, amzDate, Q);
  if ("ok" in credential) return credential;
  if (!/^\d{1,10}$/.test(expiresText)) return fail(Q, "X-Amz-Expires should be a number.");
  const expires = Number(expiresText);
  if (expires < 1) return fail(Q, "X-Amz-Expires must be at least 1 second.");
  if (expires > presignMaxSeconds)
    return fail(
      Q,
      `X-Amz-Expires must be less than a week (in seconds) that is ${presignMaxSeconds}.`,
    );
  const signedHeaders = parseSignedHeaders(signedText, Q);
  if ("ok" in signedHeaders) return signedHeaders;
  if (!HEX64.test(signature)) return fail(Q, "X-Amz-Signature is not 64 hex digits.");

  // Presigned URLs carry no body hash unless the signer put one in the query (or signed the
  // header); streaming modes need a seed from header auth and are refused.
  const signedSet = new Set(signedHeaders);
  let payloadHash = values.get("X-Amz-Content-Sha256");
  if (payloadHash === undefined && signedSet.has("x-amz-content-sha256")) {
    const h = singleHeader(req.headers, "x-amz-content-sha256");
    if (h === "multiple") return fail("InvalidArgument", "x-amz-content-sha256 must appear once.");
    payloadHash = h?.trim();
  }
  payloadHash ??= UNSIGNED_PAYLOAD;
  if (payloadHash !== UNSIGNED_PAYLOAD && !HEX64.test(payloadHash))
    return fail(
      "InvalidArgument",
      `Invalid X-Amz-Content-Sha256 value ${quoted(payloadHash)} for a presigned request.`,
    );
  const notSigned = unsignedAmzHeader(req.headers, signedSet);
  if (notSigned) return notSigned;

  const secret = secretOf(credential.accessKeyId);
  if (secret === undefined) return fail("InvalidAccessKeyId", MSG_UNKNOWN_KEY);
  if (dateMs - nowMs > maxSkewMs) return fail("AccessDenied", "Request is not valid yet");
  if (nowMs > dateMs + expires * 1000) return fail("AccessDenied", "Request has expired");

  const checked = checkSignature(
    req,
    {
      credential,
      amzDate,
      signedHeaders,
      signature: signature.toLowerCase(),
      canonicalQuery: canonicalQueryOf(params, "X-Amz-Signature"),
      payloadHash,
    },
    secret,
  );
  if (!checked.ok) return checked;
  const payload: PayloadMode =
    payloadHash === UNSIGNED_PAYLOAD
      ? { kind: "unsigned" }
      : { kind: "sha256", hex: payloadHash.toLowerCase() };
  return { ok: true, accessKeyId: credential.accessKeyId, payload };
}

// ---------------------------------------------------------------- payload hash

/** Incremental check of a body against the signed x-amz-content-sha256. */
export class PayloadHashVerifier {
  private readonly hash = createHash("sha256");
  private readonly expected: Buffer;

  constructor(expectedHex: string) {
    assert(HEX64.test(expectedHex), "PayloadHashVerifier needs a 64-hex-digit SHA-256");
    this.expected = Buffer.from(expectedHex, "hex");
  }

  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
  }

  /** ok or XAmzContentSHA256Mismatch */
  finish(): { ok: true } | AuthError {
    const actual = this.hash.digest();
    if (timingSafeEqual(actual, this.expected)) return { ok: true };
    return fail(
      "XAmzContentSHA256Mismatch",
      "The provided 'x-amz-content-sha256' header does not match what was computed.",
    );
  }
}
