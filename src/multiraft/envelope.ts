/**
 * Proposal envelopes: how a host recognizes its own proposals among committed entries.
 *
 * A follower forwards proposals to its leader inside Raft (MsgProp) and answers its client when
 * it applies the entry itself, so it cannot match entries by index (it never learns the index
 * when proposing). Every entry the host proposes is therefore wrapped:
 *
 *   [MAGIC u8][originLength u8][origin utf-8][seq f64][payload...]
 *
 * `origin` names this host incarnation (node id and boot id): after a restart, sequence numbers
 * start again and must not match entries proposed by the previous incarnation. The state machine
 * only ever sees the payload. Entries without the magic byte (leader no-ops, which are empty, and
 * entries written before envelopes existed) pass through unchanged: no application command starts
 * with MAGIC (the shard codec's first byte is the op, 1 or 2).
 */
import { assert } from "../base/index.js";

const MAGIC = 0xf1;
const SEQ_BYTES = 8;

export interface Unwrapped {
  readonly payload: Uint8Array;
  /** Set when the entry was proposed by `origin` (this incarnation) with this sequence number. */
  readonly seq: number | undefined;
}

export class Envelope {
  private readonly origin: Uint8Array;

  constructor(origin: string) {
    this.origin = new TextEncoder().encode(origin);
    assert(
      this.origin.byteLength > 0 && this.origin.byteLength <= 255,
      "origin must be 1-255 bytes",
    );
  }

  /** Extra bytes per proposal. */
  get overheadBytes(): number {
    return 2 + this.origin.byteLength + SEQ_BYTES;
  }

  wrap(seq: number, payload: Uint8Array): Uint8Array {
    const o = this.origin;
    const out = new Uint8Array(this.overheadBytes + payload.byteLength);
    out[0] = MAGIC;
    out[1] = o.byteLength;
    out.set(o, 2);
    new DataView(out.buffer).setFloat64(2 + o.byteLength, seq);
    out.set(payload, this.overheadBytes);
    return out;
  }

  /** The payload of any entry, and its sequence number if this incarnation proposed it. */
  unwrap(data: Uint8Array): Unwrapped {
    if (data.byteLength < 2 || data[0] !== MAGIC) return { payload: data, seq: undefined };
    const len = data[1] as number;
    const header = 2 + len + SEQ_BYTES;
    assert(data.byteLength >= header, "truncated proposal envelope");
    const payload = data.subarray(header);
    if (len !== this.origin.byteLength) return { payload, seq: undefined };
    for (let i = 0; i < len; i++) {
      if (data[2 + i] !== this.origin[i]) return { payload, seq: undefined };
    }
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    return { payload, seq: view.getFloat64(2 + len) };
  }
}
