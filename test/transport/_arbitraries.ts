/**
 * fast-check arbitraries of Raft messages and batches, shared by the codec and wire tests: every
 * variant of the `Message` union, with the edges of uint64 and UTF-8 ids.
 */
import fc from "fast-check";
import type {
  ConfState,
  Entry,
  Message,
  MsgApp,
  MsgAppResp,
  MsgHeartbeat,
  MsgHeartbeatResp,
  MsgProp,
  MsgPropResp,
  MsgReadIndex,
  MsgReadIndexResp,
  MsgSnap,
  MsgTimeoutNow,
  MsgVote,
  MsgVoteResp,
  Snapshot,
} from "../../src/raft/index.js";
import type { EntryTrace, GroupMessage } from "../../src/transport/transport.js";

/** The variant of `Message` whose `type` can be `T` (vote/preVote share one interface). */
export type Variant<T extends Message["type"]> = Message extends infer M
  ? M extends Message
    ? T extends M["type"]
      ? M
      : never
    : never
  : never;

/** fast-check may generate null-prototype records; the decoder builds plain objects. */
export const PLAIN = { noNullPrototype: true } as const;

/** Node ids and contexts: any valid Unicode (UTF-8 on the wire), including "" (NONE). */
export const idArb = fc.oneof(
  fc.constantFrom("", "n1", "n2", "node-with-a-longer-name"),
  fc.string({ unit: "grapheme", maxLength: 12 }),
);
/** uint64 as the codec sees it: safe non-negative integers, with the edges of varint sizes. */
export const u64Arb = fc.oneof(
  fc.nat(),
  fc.constantFrom(0, 1, 127, 128, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1),
  fc.maxSafeNat(),
);
export const bytesArb = fc.uint8Array({ maxLength: 64 });
export const idsArb = fc.array(idArb, { maxLength: 5 });

export const entryArb: fc.Arbitrary<Entry> = fc.record(
  {
    term: u64Arb,
    index: u64Arb,
    type: fc.constantFrom("normal" as const, "conf" as const),
    data: bytesArb,
  },
  PLAIN,
);

/** Forwarded proposals have no term or index yet: only their data travels. */
export const forwardedEntryArb: fc.Arbitrary<Entry> = fc.record(
  {
    term: fc.constant(0),
    index: fc.constant(0),
    type: fc.constant("normal" as const),
    data: bytesArb,
  },
  PLAIN,
);

export const confStateArb: fc.Arbitrary<ConfState> = fc.record(
  {
    voters: idsArb,
    learners: idsArb,
    votersOutgoing: idsArb,
    learnersNext: idsArb,
    autoLeave: fc.boolean(),
  },
  PLAIN,
);

export const snapshotArb: fc.Arbitrary<Snapshot> = fc.record(
  {
    meta: fc.record({ index: u64Arb, term: u64Arb, confState: confStateArb }, PLAIN),
    data: fc.uint8Array({ maxLength: 4096 }),
  },
  PLAIN,
);

const base = { from: idArb, to: idArb, term: u64Arb };

export const ARBS: { [T in Message["type"]]: fc.Arbitrary<Variant<T>> } = {
  app: fc.record<MsgApp>(
    {
      type: fc.constant("app"),
      ...base,
      index: u64Arb,
      logTerm: u64Arb,
      entries: fc.array(entryArb, { maxLength: 5 }),
      commit: u64Arb,
    },
    PLAIN,
  ),
  appResp: fc.record<MsgAppResp>(
    {
      type: fc.constant("appResp"),
      ...base,
      index: u64Arb,
      reject: fc.boolean(),
      rejectHint: u64Arb,
      logTerm: u64Arb,
    },
    PLAIN,
  ),
  vote: fc.record<MsgVote>(
    {
      type: fc.constant("vote"),
      ...base,
      index: u64Arb,
      logTerm: u64Arb,
      force: fc.boolean(),
    },
    PLAIN,
  ),
  preVote: fc.record<MsgVote>(
    {
      type: fc.constant("preVote"),
      ...base,
      index: u64Arb,
      logTerm: u64Arb,
      force: fc.boolean(),
    },
    PLAIN,
  ),
  voteResp: fc.record<MsgVoteResp>(
    { type: fc.constant("voteResp"), ...base, reject: fc.boolean() },
    PLAIN,
  ),
  preVoteResp: fc.record<MsgVoteResp>(
    {
      type: fc.constant("preVoteResp"),
      ...base,
      reject: fc.boolean(),
    },
    PLAIN,
  ),
  // `quiesce` is optional: generated absent, false and true.
  heartbeat: fc.record<MsgHeartbeat>(
    {
      type: fc.constant("heartbeat"),
      ...base,
      commit: u64Arb,
      seq: u64Arb,
      sentTick: u64Arb,
      quiesce: fc.boolean(),
    },
    { ...PLAIN, requiredKeys: ["type", "from", "to", "term", "commit", "seq", "sentTick"] },
  ),
  heartbeatResp: fc.record<MsgHeartbeatResp>(
    {
      type: fc.constant("heartbeatResp"),
      ...base,
      seq: u64Arb,
      sentTick: u64Arb,
    },
    PLAIN,
  ),
  snap: fc.record<MsgSnap>({ type: fc.constant("snap"), ...base, snapshot: snapshotArb }, PLAIN),
  timeoutNow: fc.record<MsgTimeoutNow>({ type: fc.constant("timeoutNow"), ...base }, PLAIN),
  readIndex: fc.record<MsgReadIndex>(
    {
      type: fc.constant("readIndex"),
      ...base,
      context: idArb,
      mode: fc.constantFrom("quorum" as const, "lease" as const),
    },
    PLAIN,
  ),
  readIndexResp: fc.record<MsgReadIndexResp>(
    {
      type: fc.constant("readIndexResp"),
      ...base,
      context: idArb,
      index: u64Arb,
    },
    PLAIN,
  ),
  prop: fc.record<MsgProp>(
    {
      type: fc.constant("prop"),
      ...base,
      entries: fc.array(forwardedEntryArb, { maxLength: 5 }),
      incarnation: idArb,
      seq: u64Arb,
    },
    PLAIN,
  ),
  propResp: fc.record<MsgPropResp>(
    {
      type: fc.constant("propResp"),
      ...base,
      entries: fc.array(forwardedEntryArb, { maxLength: 5 }),
      reason: fc.constantFrom(
        "NOT_LEADER" as const,
        "OVERLOADED" as const,
        "TRANSFERRING" as const,
      ),
    },
    PLAIN,
  ),
};

export const messageArb: fc.Arbitrary<Message> = fc.oneof(...Object.values(ARBS));
export const batchArb = fc.array(fc.record({ group: idArb, msg: messageArb }, PLAIN), {
  maxLength: 8,
});

/** W3C traceparent headers (codec.ts drops malformed ones, so round-trips need valid ones). */
export const traceparentArb = fc.stringMatching(
  /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/,
);

/** Trace contexts of a message with `entries` entries, as codec.ts keeps them. */
function tracesArb(entries: number): fc.Arbitrary<EntryTrace[]> {
  const traceArb: fc.Arbitrary<EntryTrace> = fc.record(
    {
      entry: fc.nat({ max: entries - 1 }),
      traceparent: traceparentArb,
      tracestate: fc.string({ unit: "grapheme", minLength: 1, maxLength: 20 }),
    },
    { ...PLAIN, requiredKeys: ["entry", "traceparent"] },
  );
  return fc.array(traceArb, { minLength: 1, maxLength: 3 });
}

/** A group message, with trace contexts on some of the messages that have entries. */
export const groupMessageArb: fc.Arbitrary<GroupMessage> = fc
  .tuple(idArb, messageArb, fc.boolean())
  .chain(([group, msg, traced]) => {
    const entries = msg.type === "app" || msg.type === "prop" ? msg.entries.length : 0;
    if (!traced || entries === 0) return fc.constant({ group, msg });
    return tracesArb(entries).map((traces) => ({ group, msg, traces }));
  });

/** Batches of every kind of group message, traced ones included. */
export const tracedBatchArb = fc.array(groupMessageArb, { maxLength: 8 });
