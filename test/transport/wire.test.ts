/**
 * The hand-written Raft stream codec (src/transport/wire.ts) is protobufjs, only faster: the same
 * bytes out, the same objects in, for every batch the transport sends; and it never crashes or
 * hangs on bytes from the network.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { loadSync } from "@grpc/proto-loader";
import fc from "fast-check";
import type { Message } from "../../src/raft/index.js";
import { decodeBatch, encodeBatch, type PbRaftBatch } from "../../src/transport/codec.js";
import { LOADER_OPTIONS, method, peerService, protoDir } from "../../src/transport/protos.js";
import type { GroupMessage } from "../../src/transport/transport.js";
import { deserializeRaftBatch, serializeRaftBatch } from "../../src/transport/wire.js";
import { idArb, PLAIN, tracedBatchArb, u64Arb } from "./_arbitraries.js";

const raft = method<PbRaftBatch, unknown>(peerService(), "Raft");

/** protobufjs's `toObject` marks a set `optional` field with a synthetic oneof; nothing reads it. */
function withoutOneofMarkers(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutOneofMarkers);
  if (v === null || typeof v !== "object" || v instanceof Uint8Array) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (k !== "_quiesce") out[k] = withoutOneofMarkers(x);
  return out;
}

/** Both decoders agree on `bytes`, as objects and after decodeBatch. */
function assertSameDecoding(bytes: Buffer): void {
  const ours = deserializeRaftBatch(bytes);
  const theirs = raft.requestDeserialize(bytes) as PbRaftBatch;
  assert.deepStrictEqual(ours, withoutOneofMarkers(theirs));
  assert.deepStrictEqual(decodeBatch(ours), decodeBatch(theirs));
}

/** Any Error is fine; a TypeError or RangeError from a bug is not (it would be a crash). */
function parseOrError(bytes: Buffer): PbRaftBatch | undefined {
  try {
    return deserializeRaftBatch(bytes);
  } catch (e) {
    assert.ok(e instanceof Error && e.constructor === Error, `unexpected ${String(e)}`);
    return undefined;
  }
}

function varint(n: bigint): number[] {
  const out: number[] = [];
  while (n >= 0x80n) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  out.push(Number(n));
  return out;
}

/** Encoded `from: "a"` then a group message of an empty timeoutNow, for hand-made variations. */
function timeoutNowBatch(extraMsgFields: number[] = []): Buffer {
  const msg = [0x08, 10, ...extraMsgFields]; // type = MESSAGE_TYPE_TIMEOUT_NOW
  const gm = [0x0a, 1, 0x67, 0x12, msg.length, ...msg]; // group "g", msg
  return Buffer.from([0x0a, 1, 0x61, 0x12, gm.length, ...gm]);
}

const fromArb = idArb.filter((s) => s !== "");

/**
 * Pb objects beyond what encodeBatch produces: any field present or absent, null sub-messages,
 * enum numbers (known, unknown, negative), empty sub-messages.
 */
const pbBatchArb = (() => {
  const opt = { ...PLAIN, requiredKeys: [] as never[] };
  const enumArb = (names: readonly string[]) =>
    fc.oneof(fc.constantFrom(...names), fc.constantFrom(0, 1, 5, 99, 300, -1, -(2 ** 31)));
  const entry = fc.record(
    {
      term: u64Arb,
      index: u64Arb,
      type: enumArb(["ENTRY_TYPE_NORMAL", "ENTRY_TYPE_CONF", "ENTRY_TYPE_NOT_IN_THIS_BUILD"]),
      data: fc.uint8Array({ maxLength: 200 }),
    },
    opt,
  );
  const ids = fc.array(idArb, { maxLength: 3 });
  const confState = fc.record(
    {
      voters: ids,
      learners: ids,
      votersOutgoing: ids,
      learnersNext: ids,
      autoLeave: fc.boolean(),
    },
    opt,
  );
  const meta = fc.record(
    { index: u64Arb, term: u64Arb, confState: fc.option(confState, { nil: null }) },
    opt,
  );
  const snapshot = fc.record(
    { meta: fc.option(meta, { nil: null }), data: fc.uint8Array({ maxLength: 200 }) },
    opt,
  );
  const msg = fc.record(
    {
      type: enumArb([
        "MESSAGE_TYPE_UNSPECIFIED",
        "MESSAGE_TYPE_APP",
        "MESSAGE_TYPE_HEARTBEAT",
        "MESSAGE_TYPE_SNAP",
        "MESSAGE_TYPE_PROP_RESP",
        "MESSAGE_TYPE_NOT_IN_THIS_BUILD",
      ]),
      from: idArb,
      to: idArb,
      term: u64Arb,
      index: u64Arb,
      logTerm: u64Arb,
      entries: fc.array(entry, { maxLength: 3 }),
      commit: u64Arb,
      reject: fc.boolean(),
      rejectHint: u64Arb,
      force: fc.boolean(),
      seq: u64Arb,
      sentTick: u64Arb,
      snapshot: fc.option(snapshot, { nil: null }),
      context: idArb,
      readMode: enumArb(["READ_MODE_QUORUM", "READ_MODE_LEASE"]),
      quiesce: fc.boolean(),
    },
    opt,
  );
  const trace = fc.record(
    { entry: fc.nat({ max: 2 ** 32 - 1 }), traceparent: idArb, tracestate: idArb },
    opt,
  );
  const gm = fc.record(
    {
      group: idArb,
      msg: fc.option(msg, { nil: null }),
      traces: fc.array(trace, { maxLength: 3 }),
    },
    opt,
  );
  return fc.record({ from: idArb, messages: fc.array(gm, { maxLength: 4 }) }, opt);
})() as fc.Arbitrary<PbRaftBatch>;

describe("wire (RaftBatch codec)", () => {
  test("encodes every batch the transport sends to protobufjs's bytes", () => {
    fc.assert(
      fc.property(idArb, tracedBatchArb, (from, batch) => {
        const pb = encodeBatch(from, batch);
        assert.deepStrictEqual(serializeRaftBatch(pb), raft.requestSerialize(pb));
      }),
      { numRuns: 1000 },
    );
  });

  test("decodes to protobufjs's objects, and round-trips through decodeBatch", () => {
    fc.assert(
      fc.property(fromArb, tracedBatchArb, (from, batch) => {
        const bytes = serializeRaftBatch(encodeBatch(from, batch));
        assertSameDecoding(bytes);
        const back = decodeBatch(deserializeRaftBatch(bytes));
        assert.ok(back.ok, back.ok ? "" : back.reason);
        assert.deepStrictEqual(back.value, { from, batch });
      }),
      { numRuns: 1000 },
    );
  });

  test("agrees with protobufjs on Pb objects beyond encodeBatch's (absent, null, numeric enums)", () => {
    fc.assert(
      fc.property(pbBatchArb, (pb) => {
        const bytes = serializeRaftBatch(pb);
        assert.deepStrictEqual(bytes, raft.requestSerialize(pb));
        assertSameDecoding(bytes);
      }),
      { numRuns: 1000 },
    );
  });

  test("quiesce: absent, false and true travel as sent; absent sub-messages read as null", () => {
    const hb = { type: "MESSAGE_TYPE_HEARTBEAT", from: "a", to: "b", term: 1 } as const;
    for (const quiesce of [undefined, false, true]) {
      const pb: PbRaftBatch = {
        from: "a",
        messages: [{ group: "g", msg: quiesce === undefined ? hb : { ...hb, quiesce } }, {}],
      };
      const bytes = serializeRaftBatch(pb);
      assert.deepStrictEqual(bytes, raft.requestSerialize(pb));
      const back = deserializeRaftBatch(bytes);
      assert.equal(back.messages?.[0]?.msg?.quiesce, quiesce);
      assert.equal("quiesce" in (back.messages?.[0]?.msg ?? {}), quiesce !== undefined);
      assert.equal(back.messages?.[0]?.msg?.snapshot, null);
      assert.equal(back.messages?.[1]?.msg, null);
    }
  });

  test("uint64 fields up to MAX_SAFE_INTEGER round-trip; larger varints read as protobufjs does", () => {
    for (const n of [0, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 49, 2 ** 52 + 1, 2 ** 53 - 1]) {
      const msgs: Message[] = [
        { type: "app", from: "a", to: "b", term: n, index: n, logTerm: n, commit: n, entries: [] },
        {
          type: "appResp",
          from: "a",
          to: "b",
          term: n,
          index: n,
          reject: true,
          rejectHint: n,
          logTerm: n,
        },
        { type: "heartbeat", from: "a", to: "b", term: n, commit: n, seq: n, sentTick: n },
      ];
      const batch: GroupMessage[] = msgs.map((msg) => ({ group: "g", msg }));
      batch.push({
        group: "s",
        msg: {
          type: "snap",
          from: "a",
          to: "b",
          term: n,
          snapshot: {
            meta: {
              index: n,
              term: n,
              confState: {
                voters: ["a"],
                learners: [],
                votersOutgoing: [],
                learnersNext: [],
                autoLeave: false,
              },
            },
            data: new Uint8Array([1]),
          },
        },
      });
      const pb = encodeBatch("a", batch);
      const bytes = serializeRaftBatch(pb);
      assert.deepStrictEqual(bytes, raft.requestSerialize(pb), String(n));
      const back = decodeBatch(deserializeRaftBatch(bytes));
      assert.ok(back.ok);
      assert.deepStrictEqual(back.value, { from: "a", batch }, String(n));
    }
    assert.throws(() => serializeRaftBatch({ from: "a", messages: [{ msg: { term: 2 ** 53 } }] }));
    // Beyond 2^53 protobufjs (longs: Number) reads lo + hi * 2^32, lossy; so do we, and
    // decodeBatch rejects what is not a safe integer.
    for (const big of [2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n]) {
      const bytes = timeoutNowBatch([0x20, ...varint(big)]); // term
      assertSameDecoding(bytes);
      assert.equal(deserializeRaftBatch(bytes).messages?.[0]?.msg?.term, Number(big));
      assert.equal(decodeBatch(deserializeRaftBatch(bytes)).ok, false);
    }
  });

  test("unknown fields of every wire type are skipped, at every level", () => {
    // A newer peer's schema: extra fields (high numbers, each wire type) in every message.
    const dir = mkdtempSync(join(tmpdir(), "kumo-newproto-"));
    try {
      const current = readFileSync(join(protoDir(), "kumo/v1/peer.proto"), "utf8");
      const extras =
        "uint64 x_varint = 1000; fixed64 x_fixed64 = 1001; bytes x_bytes = 1002; " +
        "fixed32 x_fixed32 = 1003; sint32 x_negative = 536870911;";
      const newer = current.replace(/^message (\w+) \{$/gm, `message $1 { ${extras}`);
      assert.notEqual(newer, current);
      writeFileSync(join(dir, "peer.proto"), newer);
      const newDef = loadSync("peer.proto", { ...LOADER_OPTIONS, includeDirs: [dir] });
      const newService = newDef["kumo.v1.Peer"] as unknown as Parameters<typeof method>[0];
      const newRaft = method<unknown, unknown>(newService, "Raft");
      const withExtras = (v: unknown): unknown => {
        if (Array.isArray(v)) return v.map(withExtras);
        if (v === null || typeof v !== "object" || v instanceof Uint8Array) return v;
        const out: Record<string, unknown> = {
          xVarint: 2 ** 50,
          xFixed64: 7,
          xBytes: new Uint8Array([1, 2, 3]),
          xFixed32: 9,
          xNegative: -5,
        };
        for (const [k, x] of Object.entries(v)) out[k] = withExtras(x);
        return out;
      };
      fc.assert(
        fc.property(fromArb, tracedBatchArb, (from, batch) => {
          const bytes = newRaft.requestSerialize(withExtras(encodeBatch(from, batch)));
          assertSameDecoding(bytes);
          const back = decodeBatch(deserializeRaftBatch(bytes));
          assert.ok(back.ok, back.ok ? "" : back.reason);
          assert.deepStrictEqual(back.value, { from, batch });
        }),
        { numRuns: 200 },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // Unknown fields before the known ones, and a known field with an unexpected wire type.
    const unknown = [0xf8, 0x3e, 0x05, 0xf9, 0x3e, 1, 2, 3, 4, 5, 6, 7, 8, 0xfa, 0x3e, 2, 9, 9];
    const bytes = Buffer.concat([Buffer.from(unknown), timeoutNowBatch([0x25, 1, 2, 3, 4])]);
    const back = decodeBatch(deserializeRaftBatch(bytes));
    assert.ok(back.ok);
    assert.deepStrictEqual(back.value.batch[0]?.msg, {
      type: "timeoutNow",
      from: "",
      to: "",
      term: 0,
    });
    // Groups (wire types 3 and 4) and wire types 6 and 7 are malformed.
    for (const wireType of [3, 4, 6, 7]) {
      const tag = varint(BigInt((20 << 3) | wireType));
      assert.throws(() => deserializeRaftBatch(timeoutNowBatch([...tag, 0])), /wire type/);
    }
  });

  test("an enum number this build does not know stays a number, and decodeBatch rejects it", () => {
    const cases: PbRaftBatch[] = [
      { from: "a", messages: [{ group: "g", msg: { type: 99 } }] },
      { from: "a", messages: [{ group: "g", msg: { type: -1 } }] },
      {
        from: "a",
        messages: [{ group: "g", msg: { type: "MESSAGE_TYPE_APP", entries: [{ type: 5 }] } }],
      },
      {
        from: "a",
        messages: [{ group: "g", msg: { type: "MESSAGE_TYPE_READ_INDEX", readMode: 7 } }],
      },
    ];
    for (const pb of cases) {
      const bytes = serializeRaftBatch(pb);
      assert.deepStrictEqual(bytes, raft.requestSerialize(pb));
      assertSameDecoding(bytes);
      assert.equal(decodeBatch(deserializeRaftBatch(bytes)).ok, false, JSON.stringify(pb));
    }
    assert.equal(deserializeRaftBatch(serializeRaftBatch(cases[0]!)).messages?.[0]?.msg?.type, 99);
  });

  test("malformed input throws an Error or parses to something; it never crashes or hangs", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const pb = parseOrError(Buffer.from(bytes));
        if (pb) decodeBatch(pb); // a Decoded value, never a throw
      }),
      { numRuns: 5000 },
    );
    // Every truncation, and every single-byte change, of valid encodings.
    fc.assert(
      fc.property(
        fromArb,
        tracedBatchArb,
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        (from, batch, at, byte) => {
          const bytes = serializeRaftBatch(encodeBatch(from, batch));
          for (let i = 0; i < bytes.length; i++) {
            const pb = parseOrError(bytes.subarray(0, i));
            if (pb) decodeBatch(pb);
          }
          if (bytes.length > 0) {
            const changed = Buffer.from(bytes);
            changed[at % bytes.length] = byte;
            const pb = parseOrError(changed);
            if (pb) decodeBatch(pb);
          }
        },
      ),
      { numRuns: 300 },
    );
    for (const bad of [
      [0x0a, 0x05, 0x61], // length past the end
      [0x12, 0x02, 0x12, 0x05, 0x0a, 0x03, 0x61, 0x62, 0x63], // past its parent's end
      [0x08, 0x80], // truncated varint
      [0x08, ...Array(11).fill(0x80), 0x01], // varint longer than 10 bytes
      [0x00, 0x01], // field number 0
      [0x09, 1, 2, 3], // fixed64 past the end
    ]) {
      assert.throws(() => deserializeRaftBatch(Buffer.from(bad)), Error, JSON.stringify(bad));
    }
    assert.deepStrictEqual(deserializeRaftBatch(Buffer.alloc(0)), { from: "", messages: [] });
  });
});
