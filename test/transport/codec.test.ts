/**
 * The codec is lossless: every variant of the Raft `Message` union, every field, through real
 * protobuf bytes (the same serializers the gRPC transport uses) and back.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { loadSync } from "@grpc/proto-loader";
import fc from "fast-check";
import type { Entry, Message, MsgApp, MsgHeartbeat } from "../../src/raft/index.js";
import {
  batchBytesUpperBound,
  decodeBatch,
  decodeMessage,
  decodeSnapshotHeader,
  encodeBatch,
  encodeMessage,
  encodeSnapshotHeader,
  type PbRaftBatch,
} from "../../src/transport/codec.js";
import { LOADER_OPTIONS, method, peerService, protoDir } from "../../src/transport/protos.js";
import type { GroupMessage } from "../../src/transport/transport.js";
import { ARBS, batchArb, idArb, type Variant } from "./_arbitraries.js";

/**
 * Every key of every variant. Adding a field to a message in src/raft/types.ts breaks the build
 * of this test until the field is listed here, generated below, and therefore round-tripped by
 * the codec (the property fails otherwise).
 */
const KEYS = {
  app: ["type", "from", "to", "term", "index", "logTerm", "entries", "commit"],
  appResp: ["type", "from", "to", "term", "index", "reject", "rejectHint", "logTerm"],
  vote: ["type", "from", "to", "term", "index", "logTerm", "force"],
  preVote: ["type", "from", "to", "term", "index", "logTerm", "force"],
  voteResp: ["type", "from", "to", "term", "reject"],
  preVoteResp: ["type", "from", "to", "term", "reject"],
  heartbeat: ["type", "from", "to", "term", "commit", "seq", "sentTick", "quiesce"],
  heartbeatResp: ["type", "from", "to", "term", "seq", "sentTick"],
  snap: ["type", "from", "to", "term", "snapshot"],
  timeoutNow: ["type", "from", "to", "term"],
  readIndex: ["type", "from", "to", "term", "context", "mode"],
  readIndexResp: ["type", "from", "to", "term", "context", "index"],
  prop: ["type", "from", "to", "term", "entries", "incarnation", "seq"],
  propResp: ["type", "from", "to", "term", "entries", "reason"],
} as const satisfies { [T in Message["type"]]: readonly (keyof Variant<T>)[] };

type Unlisted = { [T in Message["type"]]: Exclude<keyof Variant<T>, (typeof KEYS)[T][number]> };
const everyKeyListed: { [T in Message["type"]]: never } = {} as Unlisted;
void everyKeyListed;

const raft = method<PbRaftBatch, unknown>(peerService(), "Raft");

/** What the receiving server gets: the batch through protobuf bytes. */
function throughWire(from: string, batch: readonly GroupMessage[]): unknown {
  return raft.requestDeserialize(raft.requestSerialize(encodeBatch(from, batch)));
}

function assertPlainBytes(m: Message): void {
  const isPlain = (b: Uint8Array): boolean => Object.getPrototypeOf(b) === Uint8Array.prototype;
  if (m.type === "app" || m.type === "prop" || m.type === "propResp")
    for (const e of m.entries) assert.ok(isPlain(e.data), "entry data");
  if (m.type === "snap") assert.ok(isPlain(m.snapshot.data), "snapshot data");
}

const TRACEPARENT_EXAMPLE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const ARBS_APP_EXAMPLE: MsgApp = {
  type: "app",
  from: "a",
  to: "b",
  term: 2,
  index: 4,
  logTerm: 2,
  entries: [{ term: 2, index: 5, type: "normal", data: new Uint8Array([1, 2, 3]) }],
  commit: 4,
};

describe("codec", () => {
  test("the generators produce every key of every variant", () => {
    for (const [type, arb] of Object.entries(ARBS)) {
      const seen = new Set<string>();
      for (const m of fc.sample(arb as fc.Arbitrary<Message>, { numRuns: 200, seed: 7 })) {
        for (const k of Object.keys(m)) seen.add(k);
      }
      assert.deepEqual([...seen].sort(), [...KEYS[type as Message["type"]]].sort(), type);
    }
  });

  test("every message round-trips through protobuf bytes, deep-equal", () => {
    fc.assert(
      fc.property(
        idArb.filter((s) => s !== ""),
        batchArb,
        (from, batch) => {
          const back = decodeBatch(throughWire(from, batch) as PbRaftBatch);
          assert.ok(back.ok, back.ok ? "" : back.reason);
          assert.deepStrictEqual(back.value, { from, batch });
          for (const gm of back.value.batch) assertPlainBytes(gm.msg);
        },
      ),
      { numRuns: 500 },
    );
  });

  test("each variant round-trips on its own (object level)", () => {
    for (const arb of Object.values(ARBS)) {
      fc.assert(
        fc.property(arb as fc.Arbitrary<Message>, (m) => {
          const back = decodeMessage(encodeMessage(m));
          assert.ok(back.ok);
          assert.deepStrictEqual(back.value, m);
        }),
        { numRuns: 100 },
      );
    }
  });

  test("a snapshot header plus the reassembled data gives the original message", () => {
    fc.assert(
      fc.property(ARBS.snap, (m) => {
        const header = encodeSnapshotHeader(m);
        assert.equal(header.snapshot?.data?.length, 0);
        const back = decodeSnapshotHeader(header, new Uint8Array(m.snapshot.data));
        assert.ok(back.ok);
        assert.deepStrictEqual(back.value, m);
      }),
    );
  });

  test("the size bound is an upper bound of the encoded size", () => {
    fc.assert(
      fc.property(
        idArb.filter((s) => s !== ""),
        batchArb,
        (from, batch) => {
          const wireBytes = raft.requestSerialize(encodeBatch(from, batch)).length;
          assert.ok(wireBytes <= batchBytesUpperBound(batch) + from.length * 3 + 6);
        },
      ),
      { numRuns: 300 },
    );
  });

  test("garbage from the network is an error value, never an exception", () => {
    const cases: unknown[] = [
      null,
      {},
      { from: "n1", messages: [{ group: "g", msg: { type: "MESSAGE_TYPE_UNSPECIFIED" } }] },
      { from: "n1", messages: [{ group: "g", msg: { type: 99 } }] },
      { from: "n1", messages: [{ group: "g", msg: null }] },
      {
        from: "n1",
        messages: [{ group: "g", msg: { type: "MESSAGE_TYPE_SNAP", snapshot: null } }],
      },
      { from: "n1", messages: [{ group: "g", msg: { type: "MESSAGE_TYPE_APP", term: -1 } }] },
      { from: "n1", messages: [{ group: "g", msg: { type: "MESSAGE_TYPE_APP", term: 2 ** 60 } }] },
      {
        from: "n1",
        messages: [{ group: "g", msg: { type: "MESSAGE_TYPE_APP", entries: [{ type: 7 }] } }],
      },
      {
        from: "n1",
        messages: [{ group: "g", msg: { type: "MESSAGE_TYPE_READ_INDEX", readMode: 5 } }],
      },
      // A forwarded proposal that claims a log position, or a refusal with no known reason.
      {
        from: "n1",
        messages: [{ group: "g", msg: { type: "MESSAGE_TYPE_PROP", entries: [{ index: 3 }] } }],
      },
      {
        from: "n1",
        messages: [
          {
            group: "g",
            msg: { type: "MESSAGE_TYPE_PROP", entries: [{ type: "ENTRY_TYPE_CONF" }] },
          },
        ],
      },
      {
        from: "n1",
        messages: [{ group: "g", msg: { type: "MESSAGE_TYPE_PROP_RESP", context: "NOPE" } }],
      },
    ];
    for (const c of cases) {
      const r = decodeBatch(c as PbRaftBatch);
      assert.equal(r.ok, false, JSON.stringify(c));
    }
  });

  test("trace contexts of entries round-trip; malformed ones are skipped, not fatal", () => {
    const tp = TRACEPARENT_EXAMPLE;
    const entry = (index: number): Entry => ({
      term: 2,
      index,
      type: "normal",
      data: new Uint8Array([index]),
    });
    const app: MsgApp = {
      type: "app",
      from: "a",
      to: "b",
      term: 2,
      index: 4,
      logTerm: 2,
      entries: [entry(5), entry(6)],
      commit: 4,
    };
    const batch: GroupMessage[] = [
      { group: "g", msg: app, traces: [{ entry: 1, traceparent: tp, tracestate: "k=v" }] },
      { group: "h", msg: app },
    ];
    const back = decodeBatch(throughWire("a", batch) as PbRaftBatch);
    assert.ok(back.ok);
    assert.deepStrictEqual(back.value.batch, batch);
    assert.ok(
      raft.requestSerialize(encodeBatch("a", batch)).length <= batchBytesUpperBound(batch) + 9,
    );
    // A bad header, an entry the message does not have: dropped, the message still delivered.
    const bad = decodeBatch({
      from: "a",
      messages: [
        {
          ...encodeBatch("a", [{ group: "g", msg: app }]).messages?.[0],
          traces: [
            { entry: 5, traceparent: tp },
            { entry: 0, traceparent: "garbage" },
            { entry: 0, traceparent: tp, tracestate: "x".repeat(600) },
          ],
        },
      ],
    });
    assert.ok(bad.ok);
    assert.deepStrictEqual(bad.value.batch, [
      { group: "g", msg: app, traces: [{ entry: 0, traceparent: tp }] },
    ]);
  });

  test("a peer built before trace contexts existed decodes batches that carry them", () => {
    // That peer's schema: GroupMessage without field 3.
    const dir = mkdtempSync(join(tmpdir(), "kumo-oldproto-"));
    try {
      const current = readFileSync(join(protoDir(), "kumo/v1/peer.proto"), "utf8");
      const old = current.replace(/\n\s*repeated EntryTrace traces = 3;/, "");
      assert.notEqual(old, current);
      writeFileSync(join(dir, "peer.proto"), old);
      const oldDef = loadSync("peer.proto", { ...LOADER_OPTIONS, includeDirs: [dir] });
      const oldService = oldDef["kumo.v1.Peer"] as unknown as Parameters<typeof method>[0];
      const oldRaft = method<PbRaftBatch, PbRaftBatch>(oldService, "Raft");
      const msg: MsgHeartbeat = {
        type: "heartbeat",
        from: "a",
        to: "b",
        term: 3,
        commit: 7,
        seq: 1,
        sentTick: 9,
      };
      const app = ARBS_APP_EXAMPLE;
      const batch: GroupMessage[] = [
        { group: "g", msg: app, traces: [{ entry: 0, traceparent: TRACEPARENT_EXAMPLE }] },
        { group: "g", msg },
      ];
      const bytes = raft.requestSerialize(encodeBatch("a", batch));
      const back = decodeBatch(oldRaft.requestDeserialize(bytes));
      assert.ok(back.ok);
      assert.deepStrictEqual(back.value.batch, [
        { group: "g", msg: app },
        { group: "g", msg },
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("encoding asserts on numbers that would not survive uint64", () => {
    const bad: Message = { type: "timeoutNow", from: "a", to: "b", term: -1 };
    assert.throws(() => encodeMessage(bad), /term/);
    assert.throws(() => encodeMessage({ ...bad, term: 1.5 }), /term/);
  });
});
