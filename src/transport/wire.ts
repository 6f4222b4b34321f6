/**
 * Hand-written protobuf wire codec of `RaftBatch` (the `kumo.v1.Peer/Raft` stream), between bytes
 * and the plain `Pb*` objects of codec.ts. The schema remains proto/kumo/v1/peer.proto: this file
 * follows it by hand, field by field.
 *
 * Why: the Raft stream carries almost all of a node's traffic, and a CPU profile showed
 * protobufjs's generic path (`fromObject` + `encode`, `decode` + `toObject` of RaftMessage and
 * GroupMessage) at ~7% of a node's CPU. Here each message type has one size, one write and one
 * read function working on the plain objects directly, with one `Buffer.allocUnsafe` per batch.
 *
 * Equivalence with protobufjs (@grpc/proto-loader with LOADER_OPTIONS, protos.ts) is what the
 * test (test/transport/wire.test.ts) guards:
 * - Encoding gives the same bytes as protobufjs for every object `encodeBatch` produces: fields in
 *   field-number order, and every field that is present (not null or undefined) is written, even
 *   a zero value: that is what protobufjs does with plain objects (`fromObject` keeps whatever is
 *   set), e.g. `reject: false`. Empty lists write nothing. Unknown enum names are left out,
 *   numeric enums are written as int32 (like protobufjs).
 * - Decoding gives the same objects as protobufjs's `toObject` with `defaults: true`: absent
 *   scalars read as zero, absent lists as [], absent sub-messages as null, `quiesce` (proto3
 *   `optional`) stays absent when absent. Enums read as names, or as numbers this build does not
 *   know (codec.ts rejects those). Bytes are views of the input buffer (codec.ts copies them).
 *   uint64 above 2^53 reads lossy, as low + high * 2^32, like protobufjs with `longs: Number`
 *   (codec.ts rejects unsafe numbers). Unknown fields, and known fields with an unexpected wire
 *   type, are skipped. Malformed input throws an Error (truncated varint, length past the end,
 *   field number 0, wire types 3, 4, 6, 7 — groups are not supported); protobufjs is more
 *   lenient about a few of those (a string running past the end is cut short, for one).
 *   Not kept: protobufjs's synthetic `_quiesce` oneof marker, which nothing reads.
 * - Strings are UTF-8. A string with a lone surrogate (not valid Unicode) is written as Node
 *   writes it (U+FFFD), where protobufjs would write invalid UTF-8 for strings under 40 bytes.
 */
import type {
  PbConfState,
  PbEntry,
  PbEntryTrace,
  PbGroupMessage,
  PbRaftBatch,
  PbRaftMessage,
  PbSnapshot,
  PbSnapshotMeta,
} from "./codec.js";

// ---- enums (peer.proto): names by number ----

const MESSAGE_TYPE_NAMES = [
  "MESSAGE_TYPE_UNSPECIFIED",
  "MESSAGE_TYPE_APP",
  "MESSAGE_TYPE_APP_RESP",
  "MESSAGE_TYPE_VOTE",
  "MESSAGE_TYPE_PRE_VOTE",
  "MESSAGE_TYPE_VOTE_RESP",
  "MESSAGE_TYPE_PRE_VOTE_RESP",
  "MESSAGE_TYPE_HEARTBEAT",
  "MESSAGE_TYPE_HEARTBEAT_RESP",
  "MESSAGE_TYPE_SNAP",
  "MESSAGE_TYPE_TIMEOUT_NOW",
  "MESSAGE_TYPE_READ_INDEX",
  "MESSAGE_TYPE_READ_INDEX_RESP",
  "MESSAGE_TYPE_PROP",
  "MESSAGE_TYPE_PROP_RESP",
] as const;
const ENTRY_TYPE_NAMES = ["ENTRY_TYPE_NORMAL", "ENTRY_TYPE_CONF"] as const;
const READ_MODE_NAMES = ["READ_MODE_QUORUM", "READ_MODE_LEASE"] as const;

type EnumValue = string | number | undefined;

function numbers(names: readonly string[]): ReadonlyMap<EnumValue, number> {
  return new Map(names.map((n, i) => [n, i]));
}
const MESSAGE_TYPES = numbers(MESSAGE_TYPE_NAMES);
const ENTRY_TYPES = numbers(ENTRY_TYPE_NAMES);
const READ_MODES = numbers(READ_MODE_NAMES);

/** The number to write, or undefined to leave the field out (absent, or a name we do not know). */
function enumNumber(byName: ReadonlyMap<EnumValue, number>, v: EnumValue): number | undefined {
  return typeof v === "number" ? v | 0 : byName.get(v);
}

function enumName(names: readonly string[], n: number): string | number {
  return n >= 0 && n < names.length ? (names[n] as string) : n;
}

// ---- writing ----

const TWO_32 = 4294967296;

const EMPTY: Buffer = Buffer.alloc(0);

function varintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  if (n < 0x800000000) return 5;
  if (n < 0x40000000000) return 6;
  if (n < 0x2000000000000) return 7;
  return 8; // < 2^56: every safe integer
}

/** uint64 fields hold safe integers (codec.ts asserts it); anything else would not round-trip. */
function u64Size(n: number): number {
  if (!(Number.isSafeInteger(n) && n >= 0)) throw new Error(`not a safe uint64: ${n}`);
  return varintSize(n);
}

/** int32 (enums): a negative value is sign-extended to 64 bits, always 10 bytes. */
function int32Size(n: number): number {
  return n < 0 ? 10 : varintSize(n);
}

/** UTF-8 length; ASCII is counted here, anything else by Node. */
function utf8Length(s: string): number {
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) >= 0x80) return Buffer.byteLength(s, "utf8");
  }
  return s.length;
}

/**
 * Two passes over the message tree: the size pass computes the total and records, in visiting
 * order, the byte length of every string and nested message (`lens`); the write pass visits the
 * tree in the same order and reads them back for the length prefixes.
 */
class Writer {
  readonly lens: number[] = [];
  private next = 0;
  buf: Buffer = EMPTY;
  pos = 0;

  /** Size pass: a string field's length prefix and bytes (tag not included). */
  stringSize(s: string): number {
    const n = utf8Length(s);
    this.lens.push(n);
    return varintSize(n) + n;
  }

  /** Size pass: a nested message's length prefix and bytes (tag not included). */
  messageSize<T>(m: T, size: (w: Writer, m: T) => number): number {
    const slot = this.lens.length;
    this.lens.push(0);
    const n = size(this, m);
    this.lens[slot] = n;
    return varintSize(n) + n;
  }

  /** Non-negative integers below 2^53 (tags, lengths, uint64, uint32, non-negative enums). */
  varint(n: number): void {
    const buf = this.buf;
    let pos = this.pos;
    while (n > 0x7fffffff) {
      buf[pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    while (n > 0x7f) {
      buf[pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    buf[pos++] = n;
    this.pos = pos;
  }

  int32(n: number): void {
    if (n >= 0) {
      this.varint(n);
      return;
    }
    // Sign-extended: the low 32 bits, then 32 one bits (bits 28-34 share the fifth byte).
    let lo = n >>> 0;
    for (let i = 0; i < 4; i++) {
      this.buf[this.pos++] = (lo & 0x7f) | 0x80;
      lo >>>= 7;
    }
    this.buf[this.pos++] = lo | 0xf0;
    for (let i = 0; i < 4; i++) this.buf[this.pos++] = 0xff;
    this.buf[this.pos++] = 0x01;
  }

  /** Field writers: the tag (field number << 3 | wire type), then the value. */
  uint(tag: number, n: number): void {
    this.varint(tag);
    this.varint(n);
  }

  enum(tag: number, n: number): void {
    this.varint(tag);
    this.int32(n);
  }

  bool(tag: number, b: boolean): void {
    this.varint(tag);
    this.buf[this.pos++] = b ? 1 : 0;
  }

  string(tag: number, s: string): void {
    this.varint(tag);
    const n = this.lens[this.next++] as number;
    this.varint(n);
    const buf = this.buf;
    if (n === s.length && n < 64) {
      for (let i = 0; i < n; i++) buf[this.pos + i] = s.charCodeAt(i);
    } else {
      buf.write(s, this.pos, n, "utf8");
    }
    this.pos += n;
  }

  bytes(tag: number, b: Uint8Array): void {
    this.varint(tag);
    this.varint(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  message<T>(tag: number, m: T, write: (w: Writer, m: T) => void): void {
    this.varint(tag);
    this.varint(this.lens[this.next++] as number);
    write(this, m);
  }
}

// Tags: field number << 3 | wire type (0 varint, 2 length-delimited). Fields 16 and 17 of
// RaftMessage have two-byte tags (128 and 136 as varints).

function sizeEntry(_w: Writer, e: PbEntry): number {
  let n = 0;
  if (e.term != null) n += 1 + u64Size(e.term);
  if (e.index != null) n += 1 + u64Size(e.index);
  const type = enumNumber(ENTRY_TYPES, e.type);
  if (type !== undefined) n += 1 + int32Size(type);
  if (e.data != null) n += 1 + varintSize(e.data.length) + e.data.length;
  return n;
}

function writeEntry(w: Writer, e: PbEntry): void {
  if (e.term != null) w.uint(8, e.term);
  if (e.index != null) w.uint(16, e.index);
  const type = enumNumber(ENTRY_TYPES, e.type);
  if (type !== undefined) w.enum(24, type);
  if (e.data != null) w.bytes(34, e.data);
}

function stringsSize(w: Writer, list: readonly string[] | undefined): number {
  let n = 0;
  if (list) for (const s of list) n += 1 + w.stringSize(s);
  return n;
}

function writeStrings(w: Writer, tag: number, list: readonly string[] | undefined): void {
  if (list) for (const s of list) w.string(tag, s);
}

function sizeConfState(w: Writer, c: PbConfState): number {
  let n = stringsSize(w, c.voters) + stringsSize(w, c.learners);
  n += stringsSize(w, c.votersOutgoing) + stringsSize(w, c.learnersNext);
  if (c.autoLeave != null) n += 2;
  return n;
}

function writeConfState(w: Writer, c: PbConfState): void {
  writeStrings(w, 10, c.voters);
  writeStrings(w, 18, c.learners);
  writeStrings(w, 26, c.votersOutgoing);
  writeStrings(w, 34, c.learnersNext);
  if (c.autoLeave != null) w.bool(40, c.autoLeave);
}

function sizeSnapshotMeta(w: Writer, m: PbSnapshotMeta): number {
  let n = 0;
  if (m.index != null) n += 1 + u64Size(m.index);
  if (m.term != null) n += 1 + u64Size(m.term);
  if (m.confState != null) n += 1 + w.messageSize(m.confState, sizeConfState);
  return n;
}

function writeSnapshotMeta(w: Writer, m: PbSnapshotMeta): void {
  if (m.index != null) w.uint(8, m.index);
  if (m.term != null) w.uint(16, m.term);
  if (m.confState != null) w.message(26, m.confState, writeConfState);
}

function sizeSnapshot(w: Writer, s: PbSnapshot): number {
  let n = 0;
  if (s.meta != null) n += 1 + w.messageSize(s.meta, sizeSnapshotMeta);
  if (s.data != null) n += 1 + varintSize(s.data.length) + s.data.length;
  return n;
}

function writeSnapshot(w: Writer, s: PbSnapshot): void {
  if (s.meta != null) w.message(10, s.meta, writeSnapshotMeta);
  if (s.data != null) w.bytes(18, s.data);
}

function sizeRaftMessage(w: Writer, m: PbRaftMessage): number {
  let n = 0;
  const type = enumNumber(MESSAGE_TYPES, m.type);
  if (type !== undefined) n += 1 + int32Size(type);
  if (m.from != null) n += 1 + w.stringSize(m.from);
  if (m.to != null) n += 1 + w.stringSize(m.to);
  if (m.term != null) n += 1 + u64Size(m.term);
  if (m.index != null) n += 1 + u64Size(m.index);
  if (m.logTerm != null) n += 1 + u64Size(m.logTerm);
  if (m.entries) for (const e of m.entries) n += 1 + w.messageSize(e, sizeEntry);
  if (m.commit != null) n += 1 + u64Size(m.commit);
  if (m.reject != null) n += 2;
  if (m.rejectHint != null) n += 1 + u64Size(m.rejectHint);
  if (m.force != null) n += 2;
  if (m.seq != null) n += 1 + u64Size(m.seq);
  if (m.sentTick != null) n += 1 + u64Size(m.sentTick);
  if (m.snapshot != null) n += 1 + w.messageSize(m.snapshot, sizeSnapshot);
  if (m.context != null) n += 1 + w.stringSize(m.context);
  const readMode = enumNumber(READ_MODES, m.readMode);
  if (readMode !== undefined) n += 2 + int32Size(readMode);
  if (m.quiesce != null) n += 3;
  return n;
}

function writeRaftMessage(w: Writer, m: PbRaftMessage): void {
  const type = enumNumber(MESSAGE_TYPES, m.type);
  if (type !== undefined) w.enum(8, type);
  if (m.from != null) w.string(18, m.from);
  if (m.to != null) w.string(26, m.to);
  if (m.term != null) w.uint(32, m.term);
  if (m.index != null) w.uint(40, m.index);
  if (m.logTerm != null) w.uint(48, m.logTerm);
  if (m.entries) for (const e of m.entries) w.message(58, e, writeEntry);
  if (m.commit != null) w.uint(64, m.commit);
  if (m.reject != null) w.bool(72, m.reject);
  if (m.rejectHint != null) w.uint(80, m.rejectHint);
  if (m.force != null) w.bool(88, m.force);
  if (m.seq != null) w.uint(96, m.seq);
  if (m.sentTick != null) w.uint(104, m.sentTick);
  if (m.snapshot != null) w.message(114, m.snapshot, writeSnapshot);
  if (m.context != null) w.string(122, m.context);
  const readMode = enumNumber(READ_MODES, m.readMode);
  if (readMode !== undefined) w.enum(128, readMode);
  if (m.quiesce != null) w.bool(136, m.quiesce);
}

function sizeEntryTrace(w: Writer, t: PbEntryTrace): number {
  let n = 0;
  if (t.entry != null) n += 1 + varintSize(t.entry >>> 0);
  if (t.traceparent != null) n += 1 + w.stringSize(t.traceparent);
  if (t.tracestate != null) n += 1 + w.stringSize(t.tracestate);
  return n;
}

function writeEntryTrace(w: Writer, t: PbEntryTrace): void {
  if (t.entry != null) w.uint(8, t.entry >>> 0);
  if (t.traceparent != null) w.string(18, t.traceparent);
  if (t.tracestate != null) w.string(26, t.tracestate);
}

function sizeGroupMessage(w: Writer, gm: PbGroupMessage): number {
  let n = 0;
  if (gm.group != null) n += 1 + w.stringSize(gm.group);
  if (gm.msg != null) n += 1 + w.messageSize(gm.msg, sizeRaftMessage);
  if (gm.traces) for (const t of gm.traces) n += 1 + w.messageSize(t, sizeEntryTrace);
  return n;
}

function writeGroupMessage(w: Writer, gm: PbGroupMessage): void {
  if (gm.group != null) w.string(10, gm.group);
  if (gm.msg != null) w.message(18, gm.msg, writeRaftMessage);
  if (gm.traces) for (const t of gm.traces) w.message(26, t, writeEntryTrace);
}

function sizeRaftBatch(w: Writer, b: PbRaftBatch): number {
  let n = 0;
  if (b.from != null) n += 1 + w.stringSize(b.from);
  if (b.messages) for (const gm of b.messages) n += 1 + w.messageSize(gm, sizeGroupMessage);
  return n;
}

function writeRaftBatch(w: Writer, b: PbRaftBatch): void {
  if (b.from != null) w.string(10, b.from);
  if (b.messages) for (const gm of b.messages) w.message(18, gm, writeGroupMessage);
}

/** The protobuf encoding of a batch, byte for byte what protobufjs would produce. */
export function serializeRaftBatch(b: PbRaftBatch): Buffer {
  const w = new Writer();
  const size = sizeRaftBatch(w, b);
  w.buf = Buffer.allocUnsafe(size);
  writeRaftBatch(w, b);
  if (w.pos !== size) throw new Error(`RaftBatch: wrote ${w.pos} bytes, sized ${size}`);
  return w.buf;
}

// ---- reading ----

class Reader {
  /** End of the message being read (nested messages narrow it). */
  end: number;
  pos = 0;
  private lo = 0;
  private hi = 0;

  constructor(readonly buf: Buffer) {
    this.end = buf.length;
  }

  more(): boolean {
    return this.pos < this.end;
  }

  /** Low 32 bits of a varint, unsigned (tags, lengths, bools, enums, uint32). */
  u32(): number {
    const pos = this.pos;
    if (pos < this.end) {
      const b = this.buf[pos] as number;
      if (b < 0x80) {
        this.pos = pos + 1;
        return b;
      }
    }
    this.varint();
    return this.lo;
  }

  /** uint64: exact below 2^53, lossy above (low + high * 2^32, as protobufjs). */
  u64(): number {
    const pos = this.pos;
    if (pos < this.end) {
      const b = this.buf[pos] as number;
      if (b < 0x80) {
        this.pos = pos + 1;
        return b;
      }
    }
    this.varint();
    return this.lo + this.hi * TWO_32;
  }

  /** Reads a varint of up to 10 bytes into lo/hi (bits 0-31 and 32-63; bits past 63 dropped). */
  private varint(): void {
    const buf = this.buf;
    const end = this.end;
    let pos = this.pos;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (pos >= end) throw new Error("truncated varint");
      const b = buf[pos++] as number;
      if (i < 4) lo |= (b & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (b & 0x0f) << 28;
        hi = (b & 0x7f) >> 4;
      } else hi |= (b & 0x7f) << (7 * i - 32);
      if (b < 0x80) {
        this.pos = pos;
        this.lo = lo >>> 0;
        this.hi = hi >>> 0;
        return;
      }
    }
    throw new Error("varint longer than 10 bytes");
  }

  tag(): number {
    const tag = this.u32();
    if (tag >>> 3 === 0) throw new Error("field number 0");
    return tag;
  }

  bool(): boolean {
    return this.u32() !== 0;
  }

  int32(): number {
    return this.u32() | 0;
  }

  /** The length of a length-delimited field's payload, which must fit in the message. */
  private span(): number {
    const n = this.u32();
    if (n > this.end - this.pos) throw new Error("length past the end");
    return n;
  }

  bytes(): Buffer {
    const n = this.span();
    const start = this.pos;
    this.pos += n;
    return this.buf.subarray(start, this.pos);
  }

  /** UTF-8 (invalid sequences read as U+FFFD, as Node decodes them). */
  string(): string {
    const n = this.span();
    const buf = this.buf;
    const start = this.pos;
    const end = start + n;
    this.pos = end;
    // Short ASCII strings (node ids, group names) are built here: twice as fast as a call into
    // Node's decoder, which showed up at 40% of the decoding time.
    if (n <= 32) {
      let s = "";
      for (let i = start; i < end; i++) {
        const b = buf[i] as number;
        if (b >= 0x80) return buf.toString("utf8", start, end);
        s += String.fromCharCode(b);
      }
      return s;
    }
    return buf.toString("utf8", start, end);
  }

  message<T>(read: (r: Reader) => T): T {
    const n = this.span();
    const outer = this.end;
    this.end = this.pos + n;
    const m = read(this);
    this.end = outer;
    return m;
  }

  /** Skips an unknown field (groups, wire types 3 and 4, are not supported). */
  skip(tag: number): void {
    const type = tag & 7;
    if (type === 0) this.u32();
    else if (type === 1) this.advance(8);
    else if (type === 2) this.advance(this.span());
    else if (type === 5) this.advance(4);
    else throw new Error(`wire type ${type}`);
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) throw new Error("length past the end");
    this.pos += n;
  }
}

function readEntry(r: Reader): PbEntry {
  let term = 0;
  let index = 0;
  let type: string | number = ENTRY_TYPE_NAMES[0];
  let data = EMPTY;
  while (r.more()) {
    const tag = r.tag();
    switch (tag) {
      case 8:
        term = r.u64();
        break;
      case 16:
        index = r.u64();
        break;
      case 24:
        type = enumName(ENTRY_TYPE_NAMES, r.int32());
        break;
      case 34:
        data = r.bytes();
        break;
      default:
        r.skip(tag);
    }
  }
  return { term, index, type, data };
}

function readConfState(r: Reader): PbConfState {
  const voters: string[] = [];
  const learners: string[] = [];
  const votersOutgoing: string[] = [];
  const learnersNext: string[] = [];
  let autoLeave = false;
  while (r.more()) {
    const tag = r.tag();
    switch (tag) {
      case 10:
        voters.push(r.string());
        break;
      case 18:
        learners.push(r.string());
        break;
      case 26:
        votersOutgoing.push(r.string());
        break;
      case 34:
        learnersNext.push(r.string());
        break;
      case 40:
        autoLeave = r.bool();
        break;
      default:
        r.skip(tag);
    }
  }
  return { voters, learners, votersOutgoing, learnersNext, autoLeave };
}

function readSnapshotMeta(r: Reader): PbSnapshotMeta {
  let index = 0;
  let term = 0;
  let confState: PbConfState | null = null;
  while (r.more()) {
    const tag = r.tag();
    switch (tag) {
      case 8:
        index = r.u64();
        break;
      case 16:
        term = r.u64();
        break;
      case 26:
        confState = r.message(readConfState);
        break;
      default:
        r.skip(tag);
    }
  }
  return { index, term, confState };
}

function readSnapshot(r: Reader): PbSnapshot {
  let meta: PbSnapshotMeta | null = null;
  let data = EMPTY;
  while (r.more()) {
    const tag = r.tag();
    switch (tag) {
      case 10:
        meta = r.message(readSnapshotMeta);
        break;
      case 18:
        data = r.bytes();
        break;
      default:
        r.skip(tag);
    }
  }
  return { meta, data };
}

function readRaftMessage(r: Reader): PbRaftMessage {
  let type: string | number = MESSAGE_TYPE_NAMES[0];
  let from = "";
  let to = "";
  let term = 0;
  let index = 0;
  let logTerm = 0;
  const entries: PbEntry[] = [];
  let commit = 0;
  let reject = false;
  let rejectHint = 0;
  let force = false;
  let seq = 0;
  let sentTick = 0;
  let snapshot: PbSnapshot | null = null;
  let context = "";
  let readMode: string | number = READ_MODE_NAMES[0];
  let quiesce: boolean | undefined;
  while (r.more()) {
    const tag = r.tag();
    switch (tag) {
      case 8:
        type = enumName(MESSAGE_TYPE_NAMES, r.int32());
        break;
      case 18:
        from = r.string();
        break;
      case 26:
        to = r.string();
        break;
      case 32:
        term = r.u64();
        break;
      case 40:
        index = r.u64();
        break;
      case 48:
        logTerm = r.u64();
        break;
      case 58:
        entries.push(r.message(readEntry));
        break;
      case 64:
        commit = r.u64();
        break;
      case 72:
        reject = r.bool();
        break;
      case 80:
        rejectHint = r.u64();
        break;
      case 88:
        force = r.bool();
        break;
      case 96:
        seq = r.u64();
        break;
      case 104:
        sentTick = r.u64();
        break;
      case 114:
        snapshot = r.message(readSnapshot);
        break;
      case 122:
        context = r.string();
        break;
      case 128:
        readMode = enumName(READ_MODE_NAMES, r.int32());
        break;
      case 136:
        quiesce = r.bool();
        break;
      default:
        r.skip(tag);
    }
  }
  const m: { -readonly [K in keyof PbRaftMessage]: PbRaftMessage[K] } = {
    type,
    from,
    to,
    term,
    index,
    logTerm,
    entries,
    commit,
    reject,
    rejectHint,
    force,
    seq,
    sentTick,
    snapshot,
    context,
    readMode,
  };
  // Explicit presence: absent stays absent (protobufjs gives no default to `optional` fields).
  if (quiesce !== undefined) m.quiesce = quiesce;
  return m;
}

function readEntryTrace(r: Reader): PbEntryTrace {
  let entry = 0;
  let traceparent = "";
  let tracestate = "";
  while (r.more()) {
    const tag = r.tag();
    switch (tag) {
      case 8:
        entry = r.u32();
        break;
      case 18:
        traceparent = r.string();
        break;
      case 26:
        tracestate = r.string();
        break;
      default:
        r.skip(tag);
    }
  }
  return { entry, traceparent, tracestate };
}

function readGroupMessage(r: Reader): PbGroupMessage {
  let group = "";
  let msg: PbRaftMessage | null = null;
  const traces: PbEntryTrace[] = [];
  while (r.more()) {
    const tag = r.tag();
    switch (tag) {
      case 10:
        group = r.string();
        break;
      case 18:
        msg = r.message(readRaftMessage);
        break;
      case 26:
        traces.push(r.message(readEntryTrace));
        break;
      default:
        r.skip(tag);
    }
  }
  return { group, msg, traces };
}

function readRaftBatch(r: Reader): PbRaftBatch {
  let from = "";
  const messages: PbGroupMessage[] = [];
  while (r.more()) {
    const tag = r.tag();
    switch (tag) {
      case 10:
        from = r.string();
        break;
      case 18:
        messages.push(r.message(readGroupMessage));
        break;
      default:
        r.skip(tag);
    }
  }
  return { from, messages };
}

/**
 * Parses a batch into the objects protobufjs would give (see the header). Throws an Error on
 * malformed input; what parses may still be invalid for `decodeBatch` (codec.ts).
 */
export function deserializeRaftBatch(buf: Buffer): PbRaftBatch {
  return readRaftBatch(new Reader(buf));
}
