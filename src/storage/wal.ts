/**
 * The write-ahead log in front of LMDB (see lmdb.ts and docs/storage.md, "The write-ahead log").
 *
 * Why: a durable LMDB commit costs p50 about 2 ms on this class of machine (it writes scattered
 * B-tree pages, then the meta page, and hops to lmdb-js's writer thread), against about 0.2 ms for
 * an append plus `fdatasync`. Every acknowledged Raft write waits for at least one durable write
 * on the leader and one on a follower, so the durable write decides single-client latency.
 *
 * Layout: one segment file per write-buffer generation, `wal/<gen, 16 digits>.log`, holding that
 * generation's batches in write order. A record is
 *
 *     u32 payloadBytes | u32 crc32(payload) | payload
 *     payload = u32 opCount, then per op: u8 kind (1 put, 2 del, 3 delRange),
 *               u32 len, bytes [, u32 len, bytes]          (all integers big-endian)
 *
 * Invariants (relied on by recovery):
 * - a batch is acknowledged as durable only after its segment and every older segment that is
 *   not yet in LMDB were fdatasynced, and the directory entry of each was fsynced once;
 * - LMDB records the newest generation it holds (the meta key) in the same transaction as the
 *   data, so a segment whose generation is <= that value is redundant and is never replayed;
 * - so the durable records not yet in LMDB form a prefix of the remaining segments in generation
 *   order: replay stops at the first record that is short or fails its checksum (a torn tail of a
 *   write that was never acknowledged), and ignores everything after it.
 */
import { crc32 } from "node:zlib";
import { assert } from "../base/index.js";
import type { WriteOp } from "./engine.js";

export const WAL_HEADER_BYTES = 8;
/** Sanity bound when decoding: a length beyond this is a torn or corrupt header. */
const RECORD_BYTES_MAX = 1 << 30;

const KIND_PUT = 1;
const KIND_DEL = 2;
const KIND_DEL_RANGE = 3;

export function segmentName(gen: number): string {
  assert(Number.isSafeInteger(gen) && gen > 0, "bad WAL generation");
  return `${String(gen).padStart(16, "0")}.log`;
}

/** The generation of a segment file name, or undefined for any other file. */
export function segmentGen(name: string): number | undefined {
  const m = /^(\d{16})\.log$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** One record holding the batch `ops`, header included. */
export function encodeRecord(ops: readonly WriteOp[]): Buffer {
  let size = WAL_HEADER_BYTES + 4;
  for (const o of ops) {
    if (o.op === "put") size += 9 + o.key.length + o.value.length;
    else if (o.op === "del") size += 5 + o.key.length;
    else size += 9 + o.start.length + o.end.length;
  }
  const buf = Buffer.allocUnsafe(size);
  let at = WAL_HEADER_BYTES;
  const bytes = (b: Uint8Array): void => {
    buf.writeUInt32BE(b.length, at);
    buf.set(b, at + 4);
    at += 4 + b.length;
  };
  buf.writeUInt32BE(ops.length, at);
  at += 4;
  for (const o of ops) {
    if (o.op === "put") {
      buf[at++] = KIND_PUT;
      bytes(o.key);
      bytes(o.value);
    } else if (o.op === "del") {
      buf[at++] = KIND_DEL;
      bytes(o.key);
    } else {
      buf[at++] = KIND_DEL_RANGE;
      bytes(o.start);
      bytes(o.end);
    }
  }
  assert(at === size, "WAL record size");
  const payload = buf.subarray(WAL_HEADER_BYTES);
  buf.writeUInt32BE(payload.length, 0);
  buf.writeUInt32BE(crc32(payload), 4);
  return buf;
}

export interface DecodedSegment {
  /** The batches of every intact record, in order. */
  readonly batches: WriteOp[][];
  /** Bytes of intact records; anything after them is a torn or corrupt tail. */
  readonly validBytes: number;
}

/** The intact prefix of a segment's bytes. Never throws on bad input. */
export function decodeSegment(buf: Uint8Array): DecodedSegment {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const batches: WriteOp[][] = [];
  let at = 0;
  while (at + WAL_HEADER_BYTES <= b.length) {
    const len = b.readUInt32BE(at);
    const end = at + WAL_HEADER_BYTES + len;
    if (len < 4 || len > RECORD_BYTES_MAX || end > b.length) break;
    const payload = b.subarray(at + WAL_HEADER_BYTES, end);
    if (crc32(payload) !== b.readUInt32BE(at + 4)) break;
    const ops = decodePayload(payload);
    if (!ops) break;
    batches.push(ops);
    at = end;
  }
  return { batches, validBytes: at };
}

function decodePayload(p: Buffer): WriteOp[] | undefined {
  let at = 0;
  const bytes = (): Uint8Array | undefined => {
    if (at + 4 > p.length) return undefined;
    const n = p.readUInt32BE(at);
    if (at + 4 + n > p.length) return undefined;
    // A copy: the engine keeps these, and the file buffer is dropped after recovery.
    const out = new Uint8Array(p.subarray(at + 4, at + 4 + n));
    at += 4 + n;
    return out;
  };
  const count = p.readUInt32BE(0);
  at = 4;
  const ops: WriteOp[] = [];
  for (let i = 0; i < count; i++) {
    if (at >= p.length) return undefined;
    const kind = p[at++];
    const a = bytes();
    if (!a) return undefined;
    if (kind === KIND_DEL) {
      ops.push({ op: "del", key: a });
      continue;
    }
    const c = bytes();
    if (!c || (kind !== KIND_PUT && kind !== KIND_DEL_RANGE)) return undefined;
    ops.push(
      kind === KIND_PUT ? { op: "put", key: a, value: c } : { op: "delRange", start: a, end: c },
    );
  }
  return at === p.length ? ops : undefined;
}
