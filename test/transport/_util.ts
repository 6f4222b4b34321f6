/** Helpers shared by the transport tests: fixtures, a recording node, polling. */
import assert from "node:assert/strict";
import { Prng } from "../../src/base/index.js";
import type { Message, MsgSnap, NodeId } from "../../src/raft/index.js";
import {
  type GroupMessage,
  NoHandlerError,
  type Transport,
  type TransportHandlers,
} from "../../src/transport/index.js";

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `cond` every few ms; fails with `what` after `timeoutMs`. */
export async function eventually(
  cond: () => boolean,
  what: string | (() => string),
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) {
      assert.fail(
        `timed out after ${timeoutMs} ms waiting for: ${typeof what === "string" ? what : what()}`,
      );
    }
    await sleep(5);
  }
}

export function bytes(n: number, seed = 1): Uint8Array {
  const prng = new Prng(seed);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 4) {
    const v = prng.nextU32();
    out[i] = v & 0xff;
    out[i + 1] = (v >>> 8) & 0xff;
    out[i + 2] = (v >>> 16) & 0xff;
    out[i + 3] = v >>> 24;
  }
  return out;
}

/** One message of every type, with non-zero values in every field (zero hides bugs in proto3). */
export function everyMessageType(from: NodeId, to: NodeId): GroupMessage[] {
  const term = 7;
  const msgs: Message[] = [
    {
      type: "app",
      from,
      to,
      term,
      index: 41,
      logTerm: 6,
      commit: 40,
      entries: [
        { term: 6, index: 42, type: "normal", data: bytes(100) },
        { term: 7, index: 43, type: "conf", data: new Uint8Array([1, 2, 3]) },
        { term: 7, index: 44, type: "normal", data: new Uint8Array(0) },
      ],
    },
    { type: "appResp", from, to, term, index: 44, reject: true, rejectHint: 30, logTerm: 5 },
    { type: "vote", from, to, term, index: 44, logTerm: 7, force: true },
    { type: "preVote", from, to, term: term + 1, index: 44, logTerm: 7, force: false },
    { type: "voteResp", from, to, term, reject: true },
    { type: "preVoteResp", from, to, term, reject: false },
    { type: "heartbeat", from, to, term, commit: 44, seq: 9, sentTick: 1234 },
    { type: "heartbeat", from, to, term, commit: 44, seq: 10, sentTick: 1235, quiesce: true },
    { type: "heartbeatResp", from, to, term, seq: 9, sentTick: 1234 },
    snapMessage(from, to, bytes(1000, 2)),
    { type: "timeoutNow", from, to, term },
    { type: "readIndex", from, to, term, context: "ctx-é-🙂", mode: "lease" },
    { type: "readIndexResp", from, to, term, context: "ctx-é-🙂", index: 44 },
  ];
  return msgs.map((msg, i) => ({ group: i % 2 === 0 ? "shard-1" : "meta", msg }));
}

export function snapMessage(from: NodeId, to: NodeId, data: Uint8Array): MsgSnap {
  return {
    type: "snap",
    from,
    to,
    term: 9,
    snapshot: {
      meta: {
        index: 1000,
        term: 8,
        confState: {
          voters: [from, to, "c"],
          learners: ["d"],
          votersOutgoing: [from, "e"],
          learnersNext: ["e"],
          autoLeave: true,
        },
      },
      data,
    },
  };
}

export function heartbeat(from: NodeId, to: NodeId, seq: number): GroupMessage {
  return {
    group: "g",
    msg: { type: "heartbeat", from, to, term: 1, commit: 0, seq, sentTick: seq },
  };
}

export function seqOf(gm: GroupMessage): number {
  assert.equal(gm.msg.type, "heartbeat");
  return gm.msg.type === "heartbeat" ? gm.msg.seq : -1;
}

export const text = (s: string) => new TextEncoder().encode(s);
export const untext = (b: Uint8Array) => new TextDecoder().decode(b);

/**
 * Handlers that record Raft batches and answer calls by method:
 * "echo" → `${from}:${body}`, "fail" → throws, "hang" → never answers, anything else → NO_HANDLER.
 */
export class Recorder implements TransportHandlers {
  readonly batches: { from: NodeId; batch: readonly GroupMessage[] }[] = [];
  readonly calls: { from: NodeId; method: string }[] = [];

  onRaft(from: NodeId, batch: readonly GroupMessage[]): void {
    this.batches.push({ from, batch });
  }

  onCall(from: NodeId, method: string, body: Uint8Array): Promise<Uint8Array> {
    this.calls.push({ from, method });
    switch (method) {
      case "echo":
        return Promise.resolve(text(`${from}:${untext(body)}`));
      case "fail":
        return Promise.reject(new Error(`boom: ${untext(body)}`));
      case "hang":
        return new Promise(() => {});
      default:
        return Promise.reject(new NoHandlerError(method));
    }
  }

  messages(): GroupMessage[] {
    return this.batches.flatMap((b) => b.batch);
  }
}

/** A started transport with its recorder. */
export interface Started<T extends Transport> {
  readonly t: T;
  readonly rec: Recorder;
}

export async function started<T extends Transport>(t: T): Promise<Started<T>> {
  const rec = new Recorder();
  await t.start(rec);
  return { t, rec };
}
