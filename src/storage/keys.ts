/**
 * Key helpers for the ordered, byte-keyed engine. Keys compare bytewise (unsigned
 * lexicographic), so numbers that must sort numerically are stored big-endian and fixed-width.
 */
import { assert } from "../base/index.js";

/**
 * Largest key either engine accepts: the limit of the LMDB build that ships inside the `lmdb`
 * package, the only one Kumo uses (measured: 1,978 bytes accepted, 1,979 refused). MemoryEngine
 * enforces the same, so code tested against it keeps working on LMDB.
 */
export const KEY_BYTES_MAX = 1978;

/** Largest value either engine accepts; far above any Raft entry Kumo produces. */
export const VALUE_BYTES_MAX = 64 << 20;

const TWO_32 = 2 ** 32;

/** Bytewise comparison: negative, zero or positive like `Buffer.compare`. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** Writes `n` (a safe non-negative integer) as 8 big-endian bytes at `offset`. */
export function writeU64(out: Uint8Array, offset: number, n: number): void {
  assert(Number.isSafeInteger(n) && n >= 0, () => `not a uint64-safe integer: ${n}`);
  const hi = Math.floor(n / TWO_32);
  const lo = n >>> 0;
  out[offset] = hi >>> 24;
  out[offset + 1] = (hi >>> 16) & 0xff;
  out[offset + 2] = (hi >>> 8) & 0xff;
  out[offset + 3] = hi & 0xff;
  out[offset + 4] = lo >>> 24;
  out[offset + 5] = (lo >>> 16) & 0xff;
  out[offset + 6] = (lo >>> 8) & 0xff;
  out[offset + 7] = lo & 0xff;
}

/**
 * Reads 8 big-endian bytes at `offset`. Values above 2^53 - 1 cannot be represented as a JS
 * number: they are returned as -1 so a caller decoding stored data can report corruption
 * instead of silently rounding.
 */
export function decodeU64(buf: Uint8Array, offset = 0): number {
  assert(offset >= 0 && offset + 8 <= buf.length, "decodeU64 out of bounds");
  const hi =
    (((buf[offset] as number) << 24) |
      ((buf[offset + 1] as number) << 16) |
      ((buf[offset + 2] as number) << 8) |
      (buf[offset + 3] as number)) >>>
    0;
  const lo =
    (((buf[offset + 4] as number) << 24) |
      ((buf[offset + 5] as number) << 16) |
      ((buf[offset + 6] as number) << 8) |
      (buf[offset + 7] as number)) >>>
    0;
  if (hi >= 2 ** 21) return -1;
  return hi * TWO_32 + lo;
}

/** `n` as 8 big-endian bytes: sorts numerically under bytewise comparison. */
export function u64(n: number): Uint8Array {
  const out = new Uint8Array(8);
  writeU64(out, 0, n);
  return out;
}

/** The concatenation of `parts`. */
export function concat(...parts: readonly Uint8Array[]): Uint8Array {
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The smallest key strictly after `key` (`key` and a zero byte): where a scan past it resumes. */
export function keyAfter(key: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(key.byteLength + 1);
  out.set(key, 0);
  return out;
}

/**
 * The smallest key greater than every key that starts with `prefix`, i.e. the exclusive end of
 * the prefix's range: drop trailing 0xff bytes, then increment the last byte. A prefix made only
 * of 0xff bytes (or empty) has no such key, which is a programming error for a key layout.
 */
export function prefixEnd(prefix: Uint8Array): Uint8Array {
  let n = prefix.length;
  while (n > 0 && prefix[n - 1] === 0xff) n--;
  assert(n > 0, "prefixEnd of an empty or all-0xff prefix");
  const out = prefix.slice(0, n);
  out[n - 1] = (out[n - 1] as number) + 1;
  return out;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** UTF-8 bytes of `s`. */
export function strBytes(s: string): Uint8Array {
  return encoder.encode(s);
}

/** The string encoded as UTF-8 in `b` (throws a TypeError on invalid UTF-8). */
export function bytesStr(b: Uint8Array): string {
  return decoder.decode(b);
}

/** Lowercase hex of `b` (keys in records, overlays and logs). */
export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

/** The bytes of a hex string written by `toHex`. */
export function fromHex(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, "hex"));
}

/** True when `key` starts with `prefix`. */
export function hasPrefix(key: Uint8Array, prefix: Uint8Array): boolean {
  if (key.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false;
  return true;
}
