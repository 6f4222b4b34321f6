/**
 * Checksums of S3 bodies: the MD5 behind every ETag and Content-MD5, and the "flexible"
 * checksums of the newer S3 API (`x-amz-checksum-crc32|crc32c|crc64nvme|sha1|sha256`), which
 * current SDKs send on every upload (AWS SDK v3 sends CRC32 by default, usually in the trailer
 * of an aws-chunked body).
 *
 * - Streaming hashers (`createHasher`, `BodyDigests`) so a body is hashed once, chunk by chunk,
 *   as it streams to storage: MD5/SHA from node:crypto, CRC32 from `zlib.crc32` (Node ≥ 20.15)
 *   with a table fallback, and CRC32C (Castagnoli) and CRC64/NVME written here, table-driven
 *   (slicing-by-8 for CRC32C, which is what S3 clients pick when they care about speed).
 * - The header side: which checksum the client declared, in a header or announced in
 *   `x-amz-trailer`, validated the way S3 does (InvalidRequest for a malformed value, BadDigest
 *   for a mismatch), and Content-MD5 (InvalidDigest / BadDigest).
 * - Multipart: the ETag `hex(md5(md5(part1) ‖ … ‖ md5(partN)))-N`, the COMPOSITE checksum
 *   `base64(H(H(part1) ‖ … ‖ H(partN)))-N`, and the FULL_OBJECT CRC of the whole object, combined
 *   from the parts' CRCs and sizes without reading the data again (zlib's crc32_combine, done for
 *   any reflected CRC width with BigInt; it is called once per part, so speed does not matter).
 *
 * All checksum values on the wire are base64 of the big-endian checksum bytes.
 */
import { createHash, type Hash } from "node:crypto";
import * as zlib from "node:zlib";
import { S3Error } from "./errors.js";

export type ChecksumAlgorithm = "CRC32" | "CRC32C" | "CRC64NVME" | "SHA1" | "SHA256";
export type ChecksumType = "COMPOSITE" | "FULL_OBJECT";

export const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = [
  "CRC32",
  "CRC32C",
  "CRC64NVME",
  "SHA1",
  "SHA256",
];

const DIGEST_BYTES: Readonly<Record<ChecksumAlgorithm, number>> = {
  CRC32: 4,
  CRC32C: 4,
  CRC64NVME: 8,
  SHA1: 20,
  SHA256: 32,
};

/** `x-amz-checksum-crc32` etc. (lower case, as node presents header names). */
export function checksumHeaderName(algo: ChecksumAlgorithm): string {
  return `x-amz-checksum-${algo.toLowerCase()}`;
}

/** `ChecksumCRC32` etc.: the element (and SDK field) name. */
export function checksumXmlName(algo: ChecksumAlgorithm): `Checksum${ChecksumAlgorithm}` {
  return `Checksum${algo}`;
}

/** The algorithm named by `s` (any case), if S3 knows it. */
export function parseChecksumAlgorithm(s: string): ChecksumAlgorithm | undefined {
  const up = s.trim().toUpperCase();
  return (CHECKSUM_ALGORITHMS as readonly string[]).includes(up)
    ? (up as ChecksumAlgorithm)
    : undefined;
}

// ---------------------------------------------------------------------------------------------
// CRCs

/**
 * Slicing-by-8 tables for a reflected 32-bit CRC: table k at [k*256, (k+1)*256). Int32Array, not
 * Uint32Array: V8 keeps int32 values as small integers, while uint32 values ≥ 2³¹ become doubles.
 */
function tables32(poly: number): Int32Array {
  const t = new Int32Array(8 * 256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ poly : c >>> 1;
    t[i] = c;
  }
  for (let i = 0; i < 256; i++) {
    let c = t[i]!;
    for (let s = 1; s < 8; s++) {
      c = t[c & 0xff]! ^ (c >>> 8);
      t[s * 256 + i] = c;
    }
  }
  return t;
}

/** Runs the raw CRC register `crc` over `d` (no pre/post inversion). */
function update32(t: Int32Array, crc: number, d: Uint8Array): number {
  let c = crc;
  let i = 0;
  const n = d.length;
  for (; i + 8 <= n; i += 8) {
    const a = c ^ (d[i]! | (d[i + 1]! << 8) | (d[i + 2]! << 16) | (d[i + 3]! << 24));
    c =
      t[1792 + (a & 0xff)]! ^
      t[1536 + ((a >>> 8) & 0xff)]! ^
      t[1280 + ((a >>> 16) & 0xff)]! ^
      t[1024 + (a >>> 24)]! ^
      t[768 + d[i + 4]!]! ^
      t[512 + d[i + 5]!]! ^
      t[256 + d[i + 6]!]! ^
      t[d[i + 7]!]!;
  }
  for (; i < n; i++) c = t[(c ^ d[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

const CRC32_POLY = 0xedb88320; // reflected 0x04C11DB7
const CRC32C_POLY = 0x82f63b78; // reflected 0x1EDC6F41 (Castagnoli)
let crc32Tables: Int32Array | undefined;
const CRC32C_TABLES = tables32(CRC32C_POLY);

const zlibCrc32: ((data: Uint8Array, value?: number) => number) | undefined =
  typeof (zlib as { crc32?: unknown }).crc32 === "function"
    ? (zlib as unknown as { crc32: (data: Uint8Array, value?: number) => number }).crc32
    : undefined;

/**
 * CRC-32 (ISO-HDLC, as zlib and S3's CRC32). `previous` is the CRC of the data before `data`,
 * so `crc32(b, crc32(a)) === crc32(a ‖ b)`.
 */
export function crc32(data: Uint8Array, previous = 0): number {
  if (zlibCrc32) return zlibCrc32(data, previous) >>> 0;
  crc32Tables ??= tables32(CRC32_POLY);
  return ~update32(crc32Tables, ~previous >>> 0, data) >>> 0;
}

/** CRC-32C (Castagnoli, S3's CRC32C); chains like `crc32`. */
export function crc32c(data: Uint8Array, previous = 0): number {
  return ~update32(CRC32C_TABLES, ~previous >>> 0, data) >>> 0;
}

// CRC-64/NVME: reflected polynomial 0x9A6C9329AC4BC9B5, init and xorout all ones. Registers are
// kept as two 32-bit halves so the byte loop stays in small-integer arithmetic.
const CRC64_POLY_HI = 0x9a6c9329;
const CRC64_POLY_LO = 0xac4bc9b5;
const CRC64_HI = new Int32Array(256);
const CRC64_LO = new Int32Array(256);
for (let i = 0; i < 256; i++) {
  let hi = 0;
  let lo = i;
  for (let k = 0; k < 8; k++) {
    const bit = lo & 1;
    lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
    hi >>>= 1;
    if (bit) {
      hi = (hi ^ CRC64_POLY_HI) >>> 0;
      lo = (lo ^ CRC64_POLY_LO) >>> 0;
    }
  }
  CRC64_HI[i] = hi;
  CRC64_LO[i] = lo;
}

function update64(state: [number, number], d: Uint8Array): void {
  let hi = state[0];
  let lo = state[1];
  for (let i = 0; i < d.length; i++) {
    const idx = (lo ^ d[i]!) & 0xff;
    lo = ((lo >>> 8) | (hi << 24)) ^ CRC64_LO[idx]!;
    hi = (hi >>> 8) ^ CRC64_HI[idx]!;
  }
  state[0] = hi >>> 0;
  state[1] = lo >>> 0;
}

/** CRC-64/NVME (S3's CRC64NVME) as a bigint; chains like `crc32`. */
export function crc64nvme(data: Uint8Array, previous = 0n): bigint {
  const p = BigInt.asUintN(64, ~previous);
  const state: [number, number] = [Number(p >> 32n), Number(p & 0xffffffffn)];
  update64(state, data);
  return BigInt.asUintN(64, ~((BigInt(state[0]) << 32n) | BigInt(state[1])));
}

// ---------------------------------------------------------------------------------------------
// Streaming hashers

export interface Hasher {
  update(chunk: Uint8Array): void;
  /** The checksum bytes (big-endian for CRCs). Call once. */
  digest(): Buffer;
}

class NodeHasher implements Hasher {
  private readonly h: Hash;
  constructor(name: string) {
    this.h = createHash(name);
  }
  update(chunk: Uint8Array): void {
    this.h.update(chunk);
  }
  digest(): Buffer {
    return this.h.digest();
  }
}

class Crc32Hasher implements Hasher {
  private crc = 0;
  constructor(private readonly fn: (d: Uint8Array, prev: number) => number) {}
  update(chunk: Uint8Array): void {
    this.crc = this.fn(chunk, this.crc);
  }
  digest(): Buffer {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(this.crc >>> 0);
    return b;
  }
}

class Crc64Hasher implements Hasher {
  // Raw register (pre-inverted): all ones.
  private readonly state: [number, number] = [0xffffffff, 0xffffffff];
  update(chunk: Uint8Array): void {
    update64(this.state, chunk);
  }
  digest(): Buffer {
    const b = Buffer.alloc(8);
    b.writeUInt32BE(~this.state[0] >>> 0, 0);
    b.writeUInt32BE(~this.state[1] >>> 0, 4);
    return b;
  }
}

/** A streaming hasher for one of S3's checksum algorithms, or MD5. */
export function createHasher(algo: ChecksumAlgorithm | "MD5"): Hasher {
  switch (algo) {
    case "MD5":
      return new NodeHasher("md5");
    case "SHA1":
      return new NodeHasher("sha1");
    case "SHA256":
      return new NodeHasher("sha256");
    case "CRC32":
      return new Crc32Hasher(crc32);
    case "CRC32C":
      return new Crc32Hasher(crc32c);
    case "CRC64NVME":
      return new Crc64Hasher();
  }
}

/** The checksum of `data` in one go, base64 (the wire form). */
export function checksumOf(algo: ChecksumAlgorithm | "MD5", data: Uint8Array): string {
  const h = createHasher(algo);
  h.update(data);
  return h.digest().toString("base64");
}

interface FinishedDigests {
  readonly md5: Buffer | undefined;
  readonly sums: Partial<Record<ChecksumAlgorithm, string>>;
}

/**
 * Hashes one body for everything the door needs: the MD5 (for the ETag; on by default) and any
 * of the flexible checksums. Feed it every chunk with `update`, then read the results (which
 * finalize it: no `update` after that).
 */
export class BodyDigests {
  readonly algorithms: readonly ChecksumAlgorithm[];
  /** Bytes seen so far. */
  bytes = 0;
  private readonly md5Hash: Hash | undefined;
  private readonly hashers: Map<ChecksumAlgorithm, Hasher>;
  private result: FinishedDigests | undefined;

  constructor(algos: Iterable<ChecksumAlgorithm>, opts: { md5?: boolean } = {}) {
    this.algorithms = [...new Set(algos)];
    this.md5Hash = opts.md5 === false ? undefined : createHash("md5");
    this.hashers = new Map(this.algorithms.map((a) => [a, createHasher(a)]));
  }

  update(chunk: Uint8Array): void {
    if (this.result) throw new Error("BodyDigests.update after the digests were read");
    this.bytes += chunk.length;
    this.md5Hash?.update(chunk);
    for (const h of this.hashers.values()) h.update(chunk);
  }

  private finish(): FinishedDigests {
    if (!this.result) {
      const sums: Partial<Record<ChecksumAlgorithm, string>> = {};
      for (const [a, h] of this.hashers) sums[a] = h.digest().toString("base64");
      this.result = { md5: this.md5Hash?.digest(), sums };
    }
    return this.result;
  }

  /** Base64 checksums of the algorithms asked for. */
  digest(): Partial<Record<ChecksumAlgorithm, string>> {
    return { ...this.finish().sums };
  }

  /** The MD5 bytes (throws if constructed with `md5: false`). */
  get md5(): Buffer {
    const m = this.finish().md5;
    if (!m) throw new Error("BodyDigests was created without MD5");
    return m;
  }

  /** The MD5 in hex: a single-part object's ETag, unquoted. */
  get md5Hex(): string {
    return this.md5.toString("hex");
  }

  get md5Base64(): string {
    return this.md5.toString("base64");
  }

  /**
   * Once the body is read: checks what the client announced against what was computed —
   * Content-MD5 (against `md5`, hex or bytes, or this object's own MD5), the checksum header,
   * or the checksum in the trailer (`trailers`: the aws-chunked trailer fields, any name case).
   * BadDigest on a mismatch; InvalidRequest for a trailer announced but missing or malformed.
   * On success, the checksums to store, keyed by lower-case name (`crc32`, as in the header).
   */
  verify(
    asked: ChecksumRequest,
    trailers?: ReadonlyMap<string, string> | Readonly<Record<string, string>>,
    md5?: string | Uint8Array,
  ): Record<string, string> | S3Error {
    if (asked.contentMd5) {
      const actual =
        md5 === undefined ? this.md5 : typeof md5 === "string" ? Buffer.from(md5, "hex") : md5;
      const bad = verifyContentMd5(asked.contentMd5, actual);
      if (bad) return bad;
    }
    const sums = this.finish().sums;
    if (asked.algorithm !== undefined) {
      const algo = asked.algorithm;
      let expected = asked.expected;
      if (asked.trailer !== undefined) {
        const name = checksumHeaderName(asked.trailer);
        const v = trailerValue(trailers, name);
        if (v === undefined) {
          return new S3Error("InvalidRequest", `The ${name} trailer was announced but not sent.`);
        }
        if (!isValidChecksumValue(asked.trailer, v.trim())) {
          return new S3Error("InvalidRequest", `Value for ${name} trailing header is invalid.`);
        }
        expected = v.trim();
      }
      const computed = sums[algo];
      if (expected !== undefined && computed !== undefined) {
        const bad = verifyChecksum(algo, expected, computed);
        if (bad) return bad;
      }
    }
    const out: Record<string, string> = {};
    for (const [a, v] of Object.entries(sums)) out[a.toLowerCase()] = v;
    return out;
  }
}

function trailerValue(
  trailers: ReadonlyMap<string, string> | Readonly<Record<string, string>> | undefined,
  name: string,
): string | undefined {
  if (trailers === undefined) return undefined;
  const entries: Iterable<[string, string]> =
    trailers instanceof Map ? trailers.entries() : Object.entries(trailers);
  for (const [k, v] of entries) if (k.toLowerCase() === name) return v;
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Headers

type HeaderBag = Readonly<Record<string, string | readonly string[] | undefined>>;

function header(h: HeaderBag, name: string): string | undefined {
  const v = h[name];
  return typeof v === "string" ? v : v?.join(",");
}

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64 decode (padding required, no whitespace); undefined when not base64. */
export function decodeBase64Strict(s: string): Buffer | undefined {
  return BASE64_RE.test(s) ? Buffer.from(s, "base64") : undefined;
}

/** Whether `value` is the base64 of a checksum of `algo` (right length). */
export function isValidChecksumValue(algo: ChecksumAlgorithm, value: string): boolean {
  return decodeBase64Strict(value)?.length === DIGEST_BYTES[algo];
}

/** What a request said about checksums (and Content-MD5). */
export interface ChecksumRequest {
  /** The algorithms to compute while the body streams: [algorithm] or []. */
  readonly algorithms: readonly ChecksumAlgorithm[];
  /**
   * The algorithm in use: from the one `x-amz-checksum-<algo>` header, the trailer, or
   * `x-amz-sdk-checksum-algorithm` / `x-amz-checksum-algorithm` (CreateMultipartUpload).
   */
  readonly algorithm?: ChecksumAlgorithm;
  /** The checksum sent as a header (base64, validated in form), to compare with the body's. */
  readonly expected?: string;
  /** The checksum will arrive in the trailer of the aws-chunked body (`x-amz-trailer`). */
  readonly trailer?: ChecksumAlgorithm;
  /** `x-amz-checksum-type` (CreateMultipartUpload). */
  readonly type?: ChecksumType;
  /** The Content-MD5 header's 16 bytes. */
  readonly contentMd5?: Buffer;
}

/**
 * Reads the checksum headers of a request (names lower case, as node gives them), and
 * Content-MD5 (InvalidDigest unless base64 of 16 bytes). S3's rules for the checksums:
 * at most one `x-amz-checksum-<algo>` value; a value must be base64 of the right length
 * ("Value for x-amz-checksum-crc32 header is invalid."); an unknown algorithm is refused; the
 * declared algorithm must agree with the header or trailer sent. All InvalidRequest.
 */
export function parseChecksumHeaders(h: HeaderBag): ChecksumRequest | S3Error {
  let algorithm: ChecksumAlgorithm | undefined;
  let expected: string | undefined;
  for (const a of CHECKSUM_ALGORITHMS) {
    const v = header(h, checksumHeaderName(a));
    if (v === undefined) continue;
    if (algorithm !== undefined) {
      return new S3Error(
        "InvalidRequest",
        "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
      );
    }
    const value = v.trim();
    if (!isValidChecksumValue(a, value)) {
      return new S3Error("InvalidRequest", `Value for ${checksumHeaderName(a)} header is invalid.`);
    }
    algorithm = a;
    expected = value;
  }

  let trailer: ChecksumAlgorithm | undefined;
  const t = header(h, "x-amz-trailer");
  if (t !== undefined && t.trim() !== "") {
    const names = t
      .split(",")
      .map((s) => s.trim().toLowerCase())
      .filter((s) => s !== "");
    for (const name of names) {
      const a = name.startsWith("x-amz-checksum-")
        ? parseChecksumAlgorithm(name.slice("x-amz-checksum-".length))
        : undefined;
      if (a === undefined) {
        return new S3Error(
          "InvalidRequest",
          "The value specified in the x-amz-trailer header is not supported",
        );
      }
      if (trailer !== undefined || algorithm !== undefined) {
        return new S3Error(
          "InvalidRequest",
          "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        );
      }
      trailer = a;
      algorithm = a;
    }
  }

  for (const name of ["x-amz-sdk-checksum-algorithm", "x-amz-checksum-algorithm"]) {
    const v = header(h, name);
    if (v === undefined || v.trim() === "") continue;
    const a = parseChecksumAlgorithm(v);
    if (a === undefined) {
      return new S3Error(
        "InvalidRequest",
        `Checksum algorithm provided is unsupported. Please try again with any of the valid types: [${CHECKSUM_ALGORITHMS.join(", ")}]`,
      );
    }
    if (algorithm !== undefined && algorithm !== a) {
      return new S3Error("InvalidRequest", `Value for ${name} header is invalid.`);
    }
    algorithm = a;
  }

  let type: ChecksumType | undefined;
  const ty = header(h, "x-amz-checksum-type");
  if (ty !== undefined && ty.trim() !== "") {
    const up = ty.trim().toUpperCase();
    if (up !== "COMPOSITE" && up !== "FULL_OBJECT") {
      return new S3Error("InvalidRequest", "Value for x-amz-checksum-type header is invalid.");
    }
    if (algorithm === undefined) {
      return new S3Error(
        "InvalidRequest",
        "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.",
      );
    }
    type = up;
  }

  const md5 = parseContentMd5(header(h, "content-md5"));
  if (md5 instanceof S3Error) return md5;

  const out: {
    algorithms: readonly ChecksumAlgorithm[];
    algorithm?: ChecksumAlgorithm;
    expected?: string;
    trailer?: ChecksumAlgorithm;
    type?: ChecksumType;
    contentMd5?: Buffer;
  } = { algorithms: algorithm === undefined ? [] : [algorithm] };
  if (md5 !== undefined) out.contentMd5 = md5;
  if (algorithm !== undefined) out.algorithm = algorithm;
  if (expected !== undefined) out.expected = expected;
  if (trailer !== undefined) out.trailer = trailer;
  if (type !== undefined) out.type = type;
  return out;
}

/** BadDigest unless `computed` equals `expected` (both base64). */
export function verifyChecksum(
  algo: ChecksumAlgorithm,
  expected: string,
  computed: string,
): S3Error | undefined {
  if (expected === computed) return undefined;
  return new S3Error(
    "BadDigest",
    `The ${algo} you specified did not match the calculated checksum.`,
  );
}

/**
 * The Content-MD5 header's 16 bytes; undefined when absent; InvalidDigest when it is not the
 * base64 of 16 bytes.
 */
export function parseContentMd5(value: string | undefined): Buffer | undefined | S3Error {
  if (value === undefined) return undefined;
  const b = decodeBase64Strict(value.trim());
  if (b?.length !== 16) return new S3Error("InvalidDigest");
  return b;
}

/** BadDigest unless the body's MD5 is the one Content-MD5 announced. */
export function verifyContentMd5(expected: Uint8Array, actual: Uint8Array): S3Error | undefined {
  return Buffer.compare(expected, actual) === 0 ? undefined : new S3Error("BadDigest");
}

// ---------------------------------------------------------------------------------------------
// Multipart

function etagBytes(e: string | Uint8Array): Buffer {
  if (typeof e !== "string") return Buffer.from(e);
  const hex = e.replace(/^W\//, "").replace(/^"|"$/g, "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new Error(`not an MD5 ETag: ${e}`);
  return Buffer.from(hex, "hex");
}

/**
 * The ETag of a completed multipart upload, unquoted: `hex(md5(md5₁ ‖ … ‖ md5ₙ))-N`. Parts are
 * given as their MD5 bytes or their (single-part, optionally quoted) ETags, in part order.
 */
export function multipartEtag(parts: readonly (string | Uint8Array)[]): string {
  const h = createHash("md5");
  for (const p of parts) h.update(etagBytes(p));
  return `${h.digest("hex")}-${parts.length}`;
}

/**
 * S3's COMPOSITE checksum of a multipart object: the checksum of the concatenated (decoded)
 * part checksums, base64, then `-N`. For CRCs that is the CRC of the CRCs' bytes.
 */
export function compositeChecksum(
  algo: ChecksumAlgorithm,
  partChecksums: readonly string[],
): string {
  const h = createHasher(algo);
  for (const c of partChecksums) {
    const b = decodeBase64Strict(c);
    if (b?.length !== DIGEST_BYTES[algo]) throw new Error(`not a ${algo} checksum: ${c}`);
    h.update(b);
  }
  return `${h.digest().toString("base64")}-${partChecksums.length}`;
}

interface CrcSpec {
  readonly width: bigint;
  readonly poly: bigint; // reflected
}
const CRC_SPECS: Readonly<Record<"CRC32" | "CRC32C" | "CRC64NVME", CrcSpec>> = {
  CRC32: { width: 32n, poly: BigInt(CRC32_POLY) },
  CRC32C: { width: 32n, poly: BigInt(CRC32C_POLY) },
  CRC64NVME: { width: 64n, poly: 0x9a6c9329ac4bc9b5n },
};

/** a·b mod P in the reflected representation (x⁰ is the top bit); zlib's multmodp. */
function gf2MulMod(a: bigint, b: bigint, spec: CrcSpec): bigint {
  if (a === 0n) return 0n;
  let m = 1n << (spec.width - 1n);
  let p = 0n;
  let bb = b;
  for (;;) {
    if (a & m) {
      p ^= bb;
      if ((a & (m - 1n)) === 0n) break;
    }
    m >>= 1n;
    bb = bb & 1n ? (bb >> 1n) ^ spec.poly : bb >> 1n;
  }
  return p;
}

/** x^(8·n) mod P: the operator that appends n zero bytes to a CRC register. */
function xPow8n(n: number, spec: CrcSpec): bigint {
  let result = 1n << (spec.width - 1n); // x⁰
  let sq = 1n << (spec.width - 2n); // x¹
  for (let k = 0; k < 3; k++) sq = gf2MulMod(sq, sq, spec); // x⁸
  let rest = BigInt(n);
  while (rest > 0n) {
    if (rest & 1n) result = gf2MulMod(sq, result, spec);
    rest >>= 1n;
    if (rest > 0n) sq = gf2MulMod(sq, sq, spec);
  }
  return result;
}

/**
 * The CRC of `A ‖ B` from `crc(A)`, `crc(B)` and `|B|` (zlib's crc32_combine, any width; valid
 * for CRCs with all-ones init and xorout, as all of S3's are).
 */
export function combineCrc(
  algo: "CRC32" | "CRC32C" | "CRC64NVME",
  crcA: bigint,
  crcB: bigint,
  lengthB: number,
): bigint {
  const spec = CRC_SPECS[algo];
  return gf2MulMod(xPow8n(lengthB, spec), crcA, spec) ^ crcB;
}

/**
 * The FULL_OBJECT checksum of a multipart object, from its parts' CRCs (base64) and sizes, in
 * part order: the CRC the whole object would have, base64, without the `-N` suffix.
 */
export function fullObjectChecksum(
  algo: "CRC32" | "CRC32C" | "CRC64NVME",
  parts: readonly { readonly checksum: string; readonly size: number }[],
): string {
  const bytes = DIGEST_BYTES[algo];
  let crc = 0n; // the CRC of the empty string is 0 for all three
  for (const p of parts) {
    const b = decodeBase64Strict(p.checksum);
    if (b?.length !== bytes) throw new Error(`not a ${algo} checksum: ${p.checksum}`);
    crc = combineCrc(algo, crc, BigInt(`0x${b.toString("hex")}`), p.size);
  }
  const out = Buffer.from(crc.toString(16).padStart(bytes * 2, "0"), "hex");
  return out.toString("base64");
}
