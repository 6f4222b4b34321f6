/**
 * The chunk service's wire format: the bodies of the `blob.*` transport calls. Binary, with a
 * one-byte status in front of every answer, so a 1 MiB chunk travels as itself (no JSON or
 * base64 around binary). All integers are big-endian.
 *
 * | method           | request                                              | answer (after the status byte)          |
 * | ---------------- | ---------------------------------------------------- | ---------------------------------------- |
 * | `blob.put`       | hash(32) · data                                      | message (utf-8) when not OK              |
 * | `blob.push`      | hash(32) · mtimeMs(f64) · data  (repair transfer)    | same as put                              |
 * | `blob.get`       | hash(32)                                             | OK: mtimeMs(f64) · data; else message    |
 * | `blob.has`       | hash(32) × n, 1 ≤ n ≤ HAS_HASHES_MAX                 | bitmap: bit i (byte i>>3, bit i&7) = has |
 * | `blob.inventory` | 0 · partitions(u32) · n(u32) · partition(u32) × n    | n × (digest(32) · count(u32))            |
 * |                  | 1 · partitions(u32) · partition(u32) · limit(u32) · hasAfter(u8) · after(32) | more(u8) · n(u32) · hash(32) × n |
 *
 * A partition's digest is SHA-256 over its sorted 32-byte hashes (empty partition: SHA-256 of
 * nothing): two replicas with equal digests hold the same set, so anti-entropy exchanges lists
 * (paged, in hash order) only for partitions whose digests differ.
 *
 * Decoders never throw on malformed input: they return undefined (the server answers
 * BAD_REQUEST), because the input comes from another process.
 */
import { HASH_BYTES } from "./chunks.js";

export const BLOB_METHOD_PREFIX = "blob.";

/** The `blob.*` method names of one service: the default class's, or a replication class's. */
export interface BlobMethods {
  readonly prefix: string;
  readonly put: string;
  readonly push: string;
  readonly get: string;
  readonly has: string;
  readonly inventory: string;
}

/**
 * The method names under `prefix`: "blob." for the chunks of the default class (the ring's
 * replica count), "blob.r<N>." for replication class N (src/blob/classes.ts).
 */
export function blobMethods(prefix: string = BLOB_METHOD_PREFIX): BlobMethods {
  return {
    prefix,
    put: `${prefix}put`,
    push: `${prefix}push`,
    get: `${prefix}get`,
    has: `${prefix}has`,
    inventory: `${prefix}inventory`,
  };
}

/** The default class's methods ("blob.put", ...). */
const DEFAULT_METHODS = blobMethods();
export const BLOB_PUT = DEFAULT_METHODS.put;
export const BLOB_PUSH = DEFAULT_METHODS.push;
export const BLOB_GET = DEFAULT_METHODS.get;
export const BLOB_HAS = DEFAULT_METHODS.has;
export const BLOB_INVENTORY = DEFAULT_METHODS.inventory;

/** Hashes per `blob.has` call. */
export const HAS_HASHES_MAX = 4096;
/** Hashes per inventory list page (256 KiB of hashes). */
export const INVENTORY_PAGE_MAX = 8192;
/** Partitions per inventory digest call. */
export const INVENTORY_DIGESTS_MAX = 4096;

export const Status = {
  OK: 0,
  NOT_FOUND: 1,
  CORRUPT: 2,
  HASH_MISMATCH: 3,
  TOO_LARGE: 4,
  IO_ERROR: 5,
  /** The server is at its bound of concurrent requests: nothing ran, retry later. */
  BUSY: 6,
  BAD_REQUEST: 7,
} as const;
export type StatusCode = (typeof Status)[keyof typeof Status];
export type StatusName = keyof typeof Status;

const NAMES = Object.fromEntries(Object.entries(Status).map(([k, v]) => [v, k])) as Record<
  number,
  StatusName
>;

export function statusName(code: number): StatusName | undefined {
  return NAMES[code];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

// ---- answers ----

export function encodeStatus(status: StatusCode, message = ""): Uint8Array {
  const m = encoder.encode(message);
  const out = new Uint8Array(1 + m.byteLength);
  out[0] = status;
  out.set(m, 1);
  return out;
}

/** An OK answer carrying `payload`. */
export function encodeOk(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + payload.byteLength);
  out[0] = Status.OK;
  out.set(payload, 1);
  return out;
}

export interface Answer {
  readonly status: StatusName;
  /** OK: the payload; otherwise the message bytes. */
  readonly payload: Uint8Array;
}

export function decodeAnswer(body: Uint8Array): Answer | undefined {
  if (body.byteLength < 1) return undefined;
  const status = statusName(body[0] as number);
  if (status === undefined) return undefined;
  return { status, payload: body.subarray(1) };
}

export function answerMessage(a: Answer): string {
  return decoder.decode(a.payload);
}

// ---- put / push ----

export function encodePut(hash: Uint8Array, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(HASH_BYTES + data.byteLength);
  out.set(hash, 0);
  out.set(data, HASH_BYTES);
  return out;
}

export function decodePut(body: Uint8Array): { hash: Uint8Array; data: Uint8Array } | undefined {
  if (body.byteLength < HASH_BYTES) return undefined;
  return { hash: body.subarray(0, HASH_BYTES), data: body.subarray(HASH_BYTES) };
}

export function encodePush(hash: Uint8Array, mtimeMs: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(HASH_BYTES + 8 + data.byteLength);
  out.set(hash, 0);
  view(out).setFloat64(HASH_BYTES, mtimeMs);
  out.set(data, HASH_BYTES + 8);
  return out;
}

export function decodePush(
  body: Uint8Array,
): { hash: Uint8Array; mtimeMs: number; data: Uint8Array } | undefined {
  if (body.byteLength < HASH_BYTES + 8) return undefined;
  const mtimeMs = view(body).getFloat64(HASH_BYTES);
  if (!Number.isFinite(mtimeMs) || mtimeMs < 0) return undefined;
  return {
    hash: body.subarray(0, HASH_BYTES),
    mtimeMs,
    data: body.subarray(HASH_BYTES + 8),
  };
}

// ---- get ----

export function decodeGet(body: Uint8Array): Uint8Array | undefined {
  return body.byteLength === HASH_BYTES ? body : undefined;
}

/** The OK answer to `blob.get`: the replica's mtime (repairs preserve it) and the data. */
export function encodeGetOk(mtimeMs: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + 8 + data.byteLength);
  out[0] = Status.OK;
  view(out).setFloat64(1, mtimeMs);
  out.set(data, 9);
  return out;
}

export function decodeGetOk(
  payload: Uint8Array,
): { mtimeMs: number; data: Uint8Array } | undefined {
  if (payload.byteLength < 8) return undefined;
  const mtimeMs = view(payload).getFloat64(0);
  if (!Number.isFinite(mtimeMs) || mtimeMs < 0) return undefined;
  return { mtimeMs, data: payload.subarray(8) };
}

// ---- has ----

export function encodeHas(hashes: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(hashes.length * HASH_BYTES);
  hashes.forEach((h, i) => {
    out.set(h, i * HASH_BYTES);
  });
  return out;
}

export function decodeHas(body: Uint8Array): Uint8Array[] | undefined {
  const n = body.byteLength / HASH_BYTES;
  if (!Number.isInteger(n) || n < 1 || n > HAS_HASHES_MAX) return undefined;
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) out.push(body.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES));
  return out;
}

export function encodeBitmap(bits: readonly boolean[]): Uint8Array {
  const out = new Uint8Array(Math.ceil(bits.length / 8));
  bits.forEach((b, i) => {
    if (b) out[i >> 3] = (out[i >> 3] as number) | (1 << (i & 7));
  });
  return out;
}

export function decodeBitmap(payload: Uint8Array, n: number): boolean[] | undefined {
  if (payload.byteLength !== Math.ceil(n / 8)) return undefined;
  const out: boolean[] = [];
  for (let i = 0; i < n; i++) out.push((((payload[i >> 3] as number) >> (i & 7)) & 1) === 1);
  return out;
}

// ---- inventory ----

export type InventoryRequest =
  | { readonly kind: "digest"; readonly partitions: number; readonly list: readonly number[] }
  | {
      readonly kind: "list";
      readonly partitions: number;
      readonly partition: number;
      readonly limit: number;
      /** Hashes strictly after this one (a 32-byte hash), for paging. */
      readonly after?: Uint8Array;
    };

export interface PartitionDigest {
  readonly digest: Uint8Array;
  readonly count: number;
}

export function encodeInventory(r: InventoryRequest): Uint8Array {
  if (r.kind === "digest") {
    const out = new Uint8Array(9 + 4 * r.list.length);
    const v = view(out);
    out[0] = 0;
    v.setUint32(1, r.partitions);
    v.setUint32(5, r.list.length);
    r.list.forEach((p, i) => {
      v.setUint32(9 + 4 * i, p);
    });
    return out;
  }
  const out = new Uint8Array(14 + HASH_BYTES);
  const v = view(out);
  out[0] = 1;
  v.setUint32(1, r.partitions);
  v.setUint32(5, r.partition);
  v.setUint32(9, r.limit);
  out[13] = r.after === undefined ? 0 : 1;
  if (r.after !== undefined) out.set(r.after, 14);
  return out;
}

function validPartitions(partitions: number, p: number): boolean {
  return partitions >= 1 && (partitions & (partitions - 1)) === 0 && p < partitions;
}

export function decodeInventory(body: Uint8Array): InventoryRequest | undefined {
  if (body.byteLength < 9) return undefined;
  const v = view(body);
  const partitions = v.getUint32(1);
  if (body[0] === 0) {
    const n = v.getUint32(5);
    if (n > INVENTORY_DIGESTS_MAX || body.byteLength !== 9 + 4 * n) return undefined;
    const list: number[] = [];
    for (let i = 0; i < n; i++) {
      const p = v.getUint32(9 + 4 * i);
      if (!validPartitions(partitions, p)) return undefined;
      list.push(p);
    }
    return { kind: "digest", partitions, list };
  }
  if (body[0] === 1 && body.byteLength === 14 + HASH_BYTES) {
    const partition = v.getUint32(5);
    const limit = v.getUint32(9);
    if (!validPartitions(partitions, partition) || limit < 1) return undefined;
    const hasAfter = body[13] === 1;
    return {
      kind: "list",
      partitions,
      partition,
      limit: Math.min(limit, INVENTORY_PAGE_MAX),
      ...(hasAfter ? { after: body.subarray(14, 14 + HASH_BYTES) } : {}),
    };
  }
  return undefined;
}

export function encodeDigests(digests: readonly PartitionDigest[]): Uint8Array {
  const out = new Uint8Array(digests.length * (HASH_BYTES + 4));
  const v = view(out);
  digests.forEach((d, i) => {
    out.set(d.digest, i * (HASH_BYTES + 4));
    v.setUint32(i * (HASH_BYTES + 4) + HASH_BYTES, d.count);
  });
  return out;
}

export function decodeDigests(payload: Uint8Array, n: number): PartitionDigest[] | undefined {
  if (payload.byteLength !== n * (HASH_BYTES + 4)) return undefined;
  const v = view(payload);
  const out: PartitionDigest[] = [];
  for (let i = 0; i < n; i++) {
    const at = i * (HASH_BYTES + 4);
    out.push({
      digest: payload.subarray(at, at + HASH_BYTES),
      count: v.getUint32(at + HASH_BYTES),
    });
  }
  return out;
}

export function encodeListPage(hashes: readonly Uint8Array[], more: boolean): Uint8Array {
  const out = new Uint8Array(5 + hashes.length * HASH_BYTES);
  out[0] = more ? 1 : 0;
  view(out).setUint32(1, hashes.length);
  hashes.forEach((h, i) => {
    out.set(h, 5 + i * HASH_BYTES);
  });
  return out;
}

export function decodeListPage(
  payload: Uint8Array,
): { hashes: Uint8Array[]; more: boolean } | undefined {
  if (payload.byteLength < 5) return undefined;
  const n = view(payload).getUint32(1);
  if (n > INVENTORY_PAGE_MAX || payload.byteLength !== 5 + n * HASH_BYTES) return undefined;
  const hashes: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    hashes.push(payload.subarray(5 + i * HASH_BYTES, 5 + (i + 1) * HASH_BYTES));
  }
  return { hashes, more: payload[0] === 1 };
}
