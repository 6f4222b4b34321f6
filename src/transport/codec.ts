/**
 * Raft `Message` ↔ protobuf object (the shape @grpc/proto-loader serializes, see protos.ts).
 *
 * Lossless for every variant: `decode(encode(m))` deep-equals `m`, with exactly the fields of its
 * variant and `Uint8Array` payloads (property test: test/transport/codec.test.ts).
 *
 * Encoding trusts its input up to assertions (it comes from our own Raft core: a negative or
 * fractional index is a bug there). Decoding trusts nothing (it comes from the network, maybe
 * from another version): it returns a typed error instead of throwing, and the transport drops
 * and counts what does not decode.
 */
import { assert } from "../base/index.js";
import type {
  ConfState,
  Entry,
  Message,
  MsgSnap,
  NodeId,
  PropRefusal,
  ReadMode,
  Snapshot,
} from "../raft/index.js";
import type { EntryTrace, GroupMessage } from "./transport.js";

// ---- wire shapes (camelCase, longs as numbers, enums as names; see LOADER_OPTIONS) ----

export type PbEntryType = "ENTRY_TYPE_NORMAL" | "ENTRY_TYPE_CONF";

export type PbReadMode = "READ_MODE_QUORUM" | "READ_MODE_LEASE";

export type PbMessageType =
  | "MESSAGE_TYPE_APP"
  | "MESSAGE_TYPE_APP_RESP"
  | "MESSAGE_TYPE_VOTE"
  | "MESSAGE_TYPE_PRE_VOTE"
  | "MESSAGE_TYPE_VOTE_RESP"
  | "MESSAGE_TYPE_PRE_VOTE_RESP"
  | "MESSAGE_TYPE_HEARTBEAT"
  | "MESSAGE_TYPE_HEARTBEAT_RESP"
  | "MESSAGE_TYPE_SNAP"
  | "MESSAGE_TYPE_TIMEOUT_NOW"
  | "MESSAGE_TYPE_READ_INDEX"
  | "MESSAGE_TYPE_READ_INDEX_RESP"
  | "MESSAGE_TYPE_PROP"
  | "MESSAGE_TYPE_PROP_RESP";

export interface PbEntry {
  readonly term?: number;
  readonly index?: number;
  /** A number when the peer sent a value this build does not know. */
  readonly type?: PbEntryType | string | number;
  readonly data?: Uint8Array;
}

export interface PbConfState {
  readonly voters?: readonly string[];
  readonly learners?: readonly string[];
  readonly votersOutgoing?: readonly string[];
  readonly learnersNext?: readonly string[];
  readonly autoLeave?: boolean;
}

export interface PbSnapshotMeta {
  readonly index?: number;
  readonly term?: number;
  readonly confState?: PbConfState | null;
}

export interface PbSnapshot {
  readonly meta?: PbSnapshotMeta | null;
  readonly data?: Uint8Array;
}

/** Every field optional: encoding sets only the fields of the variant (zero = absent anyway). */
export interface PbRaftMessage {
  readonly type?: PbMessageType | string | number;
  readonly from?: string;
  readonly to?: string;
  readonly term?: number;
  readonly index?: number;
  readonly logTerm?: number;
  readonly entries?: readonly PbEntry[];
  readonly commit?: number;
  readonly reject?: boolean;
  readonly rejectHint?: number;
  readonly force?: boolean;
  readonly seq?: number;
  readonly sentTick?: number;
  readonly snapshot?: PbSnapshot | null;
  readonly context?: string;
  readonly readMode?: PbReadMode | string | number;
  /** Explicit presence (proto3 `optional`): undefined when the sender left it out. */
  readonly quiesce?: boolean | null;
}

export interface PbEntryTrace {
  readonly entry?: number;
  readonly traceparent?: string;
  readonly tracestate?: string;
}

export interface PbGroupMessage {
  readonly group?: string;
  readonly msg?: PbRaftMessage | null;
  /** Present (non-empty) only when the sender traces an entry of `msg`. */
  readonly traces?: readonly PbEntryTrace[];
}

export interface PbRaftBatch {
  readonly from?: string;
  readonly messages?: readonly PbGroupMessage[];
}

export interface PbCallRequest {
  readonly from?: string;
  readonly method?: string;
  readonly body?: Uint8Array;
}

export interface PbCallResponse {
  readonly body?: Uint8Array;
  readonly errorCode?: string;
  readonly errorMessage?: string;
}

export interface PbSnapshotChunk {
  readonly from?: string;
  readonly group?: string;
  readonly msg?: PbRaftMessage | null;
  readonly totalBytes?: number;
  readonly offset?: number;
  readonly data?: Uint8Array;
  readonly last?: boolean;
}

export type Decoded<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly reason: string };

// ---- tables ----

const MESSAGE_TYPES: Readonly<Record<Message["type"], PbMessageType>> = {
  app: "MESSAGE_TYPE_APP",
  appResp: "MESSAGE_TYPE_APP_RESP",
  vote: "MESSAGE_TYPE_VOTE",
  preVote: "MESSAGE_TYPE_PRE_VOTE",
  voteResp: "MESSAGE_TYPE_VOTE_RESP",
  preVoteResp: "MESSAGE_TYPE_PRE_VOTE_RESP",
  heartbeat: "MESSAGE_TYPE_HEARTBEAT",
  heartbeatResp: "MESSAGE_TYPE_HEARTBEAT_RESP",
  snap: "MESSAGE_TYPE_SNAP",
  timeoutNow: "MESSAGE_TYPE_TIMEOUT_NOW",
  readIndex: "MESSAGE_TYPE_READ_INDEX",
  readIndexResp: "MESSAGE_TYPE_READ_INDEX_RESP",
  prop: "MESSAGE_TYPE_PROP",
  propResp: "MESSAGE_TYPE_PROP_RESP",
};

const PROP_REFUSALS: ReadonlySet<string> = new Set<PropRefusal>([
  "NOT_LEADER",
  "OVERLOADED",
  "TRANSFERRING",
  "UNKNOWN",
]);

const MESSAGE_TYPES_BY_WIRE: ReadonlyMap<unknown, Message["type"]> = new Map(
  Object.entries(MESSAGE_TYPES).map(([k, v]) => [v, k as Message["type"]]),
);

const EMPTY = new Uint8Array(0);

// ---- encoding ----

/** uint64 on the wire: a negative or unsafe number would not come back the same. */
function u64(n: number, what: string): number {
  // Checked before calling assert so that the hot path allocates no message closure.
  if (!(Number.isSafeInteger(n) && n >= 0)) {
    assert(false, `${what} must be a safe non-negative integer, got ${n}`);
  }
  return n;
}

function encodeEntry(e: Entry): PbEntry {
  return {
    term: u64(e.term, "entry.term"),
    index: u64(e.index, "entry.index"),
    type: e.type === "conf" ? "ENTRY_TYPE_CONF" : "ENTRY_TYPE_NORMAL",
    data: e.data,
  };
}

function encodeConfState(c: ConfState): PbConfState {
  return {
    voters: c.voters,
    learners: c.learners,
    votersOutgoing: c.votersOutgoing,
    learnersNext: c.learnersNext,
    autoLeave: c.autoLeave,
  };
}

function encodeSnapshot(s: Snapshot, data: Uint8Array): PbSnapshot {
  return {
    meta: {
      index: u64(s.meta.index, "snapshot.meta.index"),
      term: u64(s.meta.term, "snapshot.meta.term"),
      confState: encodeConfState(s.meta.confState),
    },
    data,
  };
}

/**
 * Only the fields of the variant are set. The payloads (entry data, snapshot data) are shared,
 * not copied: the caller hands the message over and must not mutate it afterwards.
 * Object literals are spelled out per variant (no spread of a common base): this runs for every
 * message sent, and spreads showed up in profiles.
 */
export function encodeMessage(m: Message): PbRaftMessage {
  const type = MESSAGE_TYPES[m.type];
  const { from, to } = m;
  const term = u64(m.term, "term");
  switch (m.type) {
    case "app": {
      const entries: PbEntry[] = new Array(m.entries.length);
      for (let i = 0; i < m.entries.length; i++) entries[i] = encodeEntry(m.entries[i] as Entry);
      return {
        type,
        from,
        to,
        term,
        index: u64(m.index, "index"),
        logTerm: u64(m.logTerm, "logTerm"),
        entries,
        commit: u64(m.commit, "commit"),
      };
    }
    case "appResp":
      return {
        type,
        from,
        to,
        term,
        index: u64(m.index, "index"),
        reject: m.reject,
        rejectHint: u64(m.rejectHint, "rejectHint"),
        logTerm: u64(m.logTerm, "logTerm"),
      };
    case "vote":
    case "preVote":
      return {
        type,
        from,
        to,
        term,
        index: u64(m.index, "index"),
        logTerm: u64(m.logTerm, "logTerm"),
        force: m.force,
      };
    case "voteResp":
    case "preVoteResp":
      return { type, from, to, term, reject: m.reject };
    case "heartbeat": {
      const commit = u64(m.commit, "commit");
      const seq = u64(m.seq, "seq");
      const sentTick = u64(m.sentTick, "sentTick");
      return m.quiesce === undefined
        ? { type, from, to, term, commit, seq, sentTick }
        : { type, from, to, term, commit, seq, sentTick, quiesce: m.quiesce };
    }
    case "heartbeatResp":
      return {
        type,
        from,
        to,
        term,
        seq: u64(m.seq, "seq"),
        sentTick: u64(m.sentTick, "sentTick"),
      };
    case "snap":
      return { type, from, to, term, snapshot: encodeSnapshot(m.snapshot, m.snapshot.data) };
    case "timeoutNow":
      return { type, from, to, term };
    case "readIndex":
      return {
        type,
        from,
        to,
        term,
        context: m.context,
        readMode: m.mode === "lease" ? "READ_MODE_LEASE" : "READ_MODE_QUORUM",
      };
    case "readIndexResp":
      return { type, from, to, term, context: m.context, index: u64(m.index, "index") };
    case "prop":
    case "propResp": {
      // Only the payloads travel: forwarded entries have no term or index yet.
      const entries: PbEntry[] = new Array(m.entries.length);
      for (let i = 0; i < m.entries.length; i++)
        entries[i] = { data: (m.entries[i] as Entry).data };
      return m.type === "prop"
        ? {
            type,
            from,
            to,
            term,
            entries,
            context: m.incarnation,
            index: u64(m.seq, "seq"),
          }
        : { type, from, to, term, entries, context: m.reason };
    }
  }
}

/** A snapshot message without its data: the header of a chunked snapshot stream. */
export function encodeSnapshotHeader(m: MsgSnap): PbRaftMessage {
  return {
    type: MESSAGE_TYPES.snap,
    from: m.from,
    to: m.to,
    term: u64(m.term, "term"),
    snapshot: encodeSnapshot(m.snapshot, EMPTY),
  };
}

function encodeEntryTrace(t: EntryTrace): PbEntryTrace {
  return t.tracestate
    ? { entry: t.entry, traceparent: t.traceparent, tracestate: t.tracestate }
    : { entry: t.entry, traceparent: t.traceparent };
}

export function encodeGroupMessage(gm: GroupMessage): PbGroupMessage {
  // Trace contexts travel only when the host attached some (tracing on, a sampled entry).
  return gm.traces && gm.traces.length > 0
    ? { group: gm.group, msg: encodeMessage(gm.msg), traces: gm.traces.map(encodeEntryTrace) }
    : { group: gm.group, msg: encodeMessage(gm.msg) };
}

export function encodeBatch(from: NodeId, batch: readonly GroupMessage[]): PbRaftBatch {
  return { from, messages: batch.map(encodeGroupMessage) };
}

// ---- decoding ----

class Invalid extends Error {}

/** Throws `Invalid` (caught in this module only, so nothing escapes as an exception). */
function num(v: unknown, what: string): number {
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return v;
  if (v === undefined || v === null) return 0;
  throw new Invalid(`${what}: not a safe uint64 (${String(v)})`);
}

function str(v: unknown, what: string): string {
  if (typeof v === "string") return v;
  if (v === undefined || v === null) return "";
  throw new Invalid(`${what}: not a string`);
}

function bool(v: unknown): boolean {
  return v === true;
}

/**
 * A fresh Uint8Array (not a Buffer view): deep equality with the sender's value holds, and a
 * long-lived entry does not pin the whole received frame in memory.
 */
function bytes(v: unknown, what: string): Uint8Array {
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (v === undefined || v === null) return new Uint8Array(0);
  throw new Invalid(`${what}: not bytes`);
}

function strings(v: unknown, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new Invalid(`${what}: not a list`);
  return v.map((s, i) => str(s, `${what}[${i}]`));
}

function readMode(v: unknown): ReadMode {
  if (v === "READ_MODE_QUORUM" || v === undefined || v === null) return "quorum";
  if (v === "READ_MODE_LEASE") return "lease";
  throw new Invalid(`unknown read mode ${String(v)}`);
}

function decodeEntry(e: PbEntry | null | undefined, i: number): Entry {
  if (!e) throw new Invalid(`entries[${i}] missing`);
  let type: Entry["type"];
  if (e.type === "ENTRY_TYPE_NORMAL" || e.type === undefined) type = "normal";
  else if (e.type === "ENTRY_TYPE_CONF") type = "conf";
  else throw new Invalid(`entries[${i}].type: unknown ${String(e.type)}`);
  return {
    term: num(e.term, "entry.term"),
    index: num(e.index, "entry.index"),
    type,
    data: bytes(e.data, "entry.data"),
  };
}

function decodeConfState(c: PbConfState | null | undefined): ConfState {
  if (!c) throw new Invalid("snapshot.meta.confState missing");
  return {
    voters: strings(c.voters, "voters"),
    learners: strings(c.learners, "learners"),
    votersOutgoing: strings(c.votersOutgoing, "votersOutgoing"),
    learnersNext: strings(c.learnersNext, "learnersNext"),
    autoLeave: bool(c.autoLeave),
  };
}

function decodeSnapshot(s: PbSnapshot | null | undefined): Snapshot {
  if (!s) throw new Invalid("snapshot missing");
  if (!s.meta) throw new Invalid("snapshot.meta missing");
  return {
    meta: {
      index: num(s.meta.index, "snapshot.meta.index"),
      term: num(s.meta.term, "snapshot.meta.term"),
      confState: decodeConfState(s.meta.confState),
    },
    data: bytes(s.data, "snapshot.data"),
  };
}

function decodeMessageOrThrow(m: PbRaftMessage | null | undefined): Message {
  if (!m) throw new Invalid("msg missing");
  const type = MESSAGE_TYPES_BY_WIRE.get(m.type);
  if (type === undefined) throw new Invalid(`unknown message type ${String(m.type)}`);
  const from = str(m.from, "from");
  const to = str(m.to, "to");
  const term = num(m.term, "term");
  switch (type) {
    case "app":
      return {
        type,
        from,
        to,
        term,
        index: num(m.index, "index"),
        logTerm: num(m.logTerm, "logTerm"),
        entries: (m.entries ?? []).map(decodeEntry),
        commit: num(m.commit, "commit"),
      };
    case "appResp":
      return {
        type,
        from,
        to,
        term,
        index: num(m.index, "index"),
        reject: bool(m.reject),
        rejectHint: num(m.rejectHint, "rejectHint"),
        logTerm: num(m.logTerm, "logTerm"),
      };
    case "vote":
    case "preVote":
      return {
        type,
        from,
        to,
        term,
        index: num(m.index, "index"),
        logTerm: num(m.logTerm, "logTerm"),
        force: bool(m.force),
      };
    case "voteResp":
    case "preVoteResp":
      return { type, from, to, term, reject: bool(m.reject) };
    case "heartbeat": {
      const hb = {
        type,
        from,
        to,
        term,
        commit: num(m.commit, "commit"),
        seq: num(m.seq, "seq"),
        sentTick: num(m.sentTick, "sentTick"),
      };
      // Absent stays absent: `{ quiesce: false }` and `{}` are different objects to deepEqual.
      return typeof m.quiesce === "boolean" ? { ...hb, quiesce: m.quiesce } : hb;
    }
    case "heartbeatResp":
      return {
        type,
        from,
        to,
        term,
        seq: num(m.seq, "seq"),
        sentTick: num(m.sentTick, "sentTick"),
      };
    case "snap":
      return { type, from, to, term, snapshot: decodeSnapshot(m.snapshot) };
    case "timeoutNow":
      return { type, from, to, term };
    case "readIndex":
      return {
        type,
        from,
        to,
        term,
        context: str(m.context, "context"),
        mode: readMode(m.readMode),
      };
    case "readIndexResp":
      return {
        type,
        from,
        to,
        term,
        context: str(m.context, "context"),
        index: num(m.index, "index"),
      };
    case "prop":
    case "propResp": {
      const entries = (m.entries ?? []).map((e, i) => {
        const d = decodeEntry(e, i);
        if (d.type !== "normal" || d.term !== 0 || d.index !== 0)
          throw new Invalid(`${type}: forwarded entries carry only data`);
        return d;
      });
      if (type === "prop") {
        const incarnation = str(m.context, "incarnation");
        return { type, from, to, term, entries, incarnation, seq: num(m.index, "seq") };
      }
      const reason = str(m.context, "reason");
      if (!PROP_REFUSALS.has(reason)) throw new Invalid(`propResp: unknown reason ${reason}`);
      return { type, from, to, term, entries, reason: reason as PropRefusal };
    }
  }
}

function decoded<T>(f: () => T): Decoded<T> {
  try {
    return { ok: true, value: f() };
  } catch (e) {
    if (e instanceof Invalid) return { ok: false, reason: e.message };
    throw e;
  }
}

export function decodeMessage(m: PbRaftMessage | null | undefined): Decoded<Message> {
  return decoded(() => decodeMessageOrThrow(m));
}

/** A whole batch decodes or none of it does: a peer that sends garbage gets no partial credit. */
export function decodeBatch(
  b: PbRaftBatch | null | undefined,
): Decoded<{ readonly from: NodeId; readonly batch: GroupMessage[] }> {
  return decoded(() => {
    if (!b) throw new Invalid("batch missing");
    const from = str(b.from, "from");
    if (from === "") throw new Invalid("batch without sender");
    const batch = (b.messages ?? []).map((gm, i): GroupMessage => {
      if (!gm) throw new Invalid(`messages[${i}] missing`);
      const group = str(gm.group, "group");
      const msg = decodeMessageOrThrow(gm.msg);
      const traces = gm.traces && gm.traces.length > 0 ? decodeTraces(gm.traces, msg) : undefined;
      return traces ? { group, msg, traces } : { group, msg };
    });
    return { from, batch };
  });
}

/** W3C `traceparent`: version, trace id, parent id, flags (lower-case hex). */
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;
/** Bounds what a peer can make us keep per traced entry (W3C allows 512 bytes of tracestate). */
const TRACESTATE_BYTES_MAX = 512;

/**
 * The trace contexts of a message's entries. Tracing is best effort: a malformed one (a bad
 * header, an entry that is not in the message) is skipped, never a reason to drop Raft traffic.
 */
function decodeTraces(traces: readonly PbEntryTrace[], msg: Message): EntryTrace[] | undefined {
  const entries = msg.type === "app" || msg.type === "prop" ? msg.entries.length : 0;
  const out: EntryTrace[] = [];
  for (const t of traces) {
    const entry = t?.entry;
    const traceparent = t?.traceparent;
    if (typeof entry !== "number" || !Number.isInteger(entry) || entry < 0 || entry >= entries)
      continue;
    if (typeof traceparent !== "string" || !TRACEPARENT.test(traceparent)) continue;
    const tracestate = t.tracestate;
    out.push(
      typeof tracestate === "string" &&
        tracestate !== "" &&
        tracestate.length <= TRACESTATE_BYTES_MAX
        ? { entry, traceparent, tracestate }
        : { entry, traceparent },
    );
  }
  return out.length > 0 ? out : undefined;
}

/**
 * The header of a chunked snapshot, completed with the reassembled data. The header must be a
 * snapshot message with empty data (the data travels only in the chunks).
 */
export function decodeSnapshotHeader(
  m: PbRaftMessage | null | undefined,
  data: Uint8Array,
): Decoded<MsgSnap> {
  return decoded(() => {
    const msg = decodeMessageOrThrow(m);
    if (msg.type !== "snap") throw new Invalid(`snapshot header of type ${msg.type}`);
    if (msg.snapshot.data.length !== 0) throw new Invalid("snapshot header carries data");
    return { ...msg, snapshot: { meta: msg.snapshot.meta, data } };
  });
}

// ---- sizes ----

/** Worst case of one scalar field on the wire: a tag byte and a 10-byte varint. */
const FIELD_BYTES_MAX = 11;

/** UTF-8 takes at most 3 bytes per UTF-16 code unit; plus tag and length. */
function stringBytesMax(s: string): number {
  return s.length * 3 + 6;
}

function stringsBytesMax(list: readonly string[]): number {
  let n = 0;
  for (const s of list) n += stringBytesMax(s);
  return n;
}

/**
 * An upper bound of the encoded size of one message, computed without encoding it. Used to keep
 * each wire batch under the gRPC message size limit and to bound queues in bytes.
 */
export function messageBytesUpperBound(m: Message): number {
  let n = 16 * FIELD_BYTES_MAX + stringBytesMax(m.from) + stringBytesMax(m.to);
  switch (m.type) {
    case "app":
      for (const e of m.entries) n += 4 * FIELD_BYTES_MAX + e.data.length + 6;
      break;
    case "snap": {
      const c = m.snapshot.meta.confState;
      n += 8 * FIELD_BYTES_MAX + m.snapshot.data.length;
      n += stringsBytesMax(c.voters) + stringsBytesMax(c.learners);
      n += stringsBytesMax(c.votersOutgoing) + stringsBytesMax(c.learnersNext);
      break;
    }
    case "readIndex":
    case "readIndexResp":
      n += stringBytesMax(m.context);
      break;
    default:
      break;
  }
  return n;
}

export function groupMessageBytesUpperBound(gm: GroupMessage): number {
  let n = stringBytesMax(gm.group) + 2 * FIELD_BYTES_MAX + messageBytesUpperBound(gm.msg);
  if (gm.traces) {
    for (const t of gm.traces) {
      n += 3 * FIELD_BYTES_MAX + stringBytesMax(t.traceparent);
      if (t.tracestate) n += stringBytesMax(t.tracestate);
    }
  }
  return n;
}

export function batchBytesUpperBound(batch: readonly GroupMessage[]): number {
  let n = 2 * FIELD_BYTES_MAX;
  for (const gm of batch) n += groupMessageBytesUpperBound(gm);
  return n;
}
