/**
 * Forwarding writes to shard leaders, batched. Two thirds of requests reach a node that does not
 * lead their shard; sending each as its own gRPC call made forwarding the most expensive part of
 * a write (docs/benchmarks.md). Instead, every proposal bound for the same node within one turn
 * of the event loop travels in ONE call, and the answers come back in one response. Under load
 * that amortizes the call overhead over many writes; a lone write still goes out at once.
 *
 * Wire format (binary, no base64): request = [count u32] then per item
 * [shardLength u16][shard utf-8][timeoutMs u32][commandLength u32][command]; response = JSON
 * array of outcomes, in order.
 */
import { TraceFlags, trace } from "@opentelemetry/api";
import { assert, tracing } from "../../base/index.js";
import type { ProposeOutcome } from "../../multiraft/index.js";
import type { NodeId } from "../../raft/index.js";
import type { ApplyResult } from "../../shard/index.js";
import type { Transport } from "../../transport/transport.js";

export const PROPOSE_BATCH = "kv.proposeBatch";

export type ForwardOutcome =
  | ProposeOutcome<ApplyResult>
  | { readonly ok: false; readonly code: "UNREACHABLE" };

export interface ForwardItem {
  readonly shard: string;
  readonly command: Uint8Array;
  readonly timeoutMs: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeBatch(items: readonly ForwardItem[]): Uint8Array {
  const shards = items.map((i) => enc.encode(i.shard));
  let size = 4;
  items.forEach((it, i) => {
    size += 2 + (shards[i] as Uint8Array).byteLength + 4 + 4 + it.command.byteLength;
  });
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, items.length);
  let at = 4;
  items.forEach((it, i) => {
    const s = shards[i] as Uint8Array;
    view.setUint16(at, s.byteLength);
    out.set(s, at + 2);
    at += 2 + s.byteLength;
    view.setUint32(at, Math.max(0, Math.min(0xffffffff, Math.round(it.timeoutMs))));
    view.setUint32(at + 4, it.command.byteLength);
    out.set(it.command, at + 8);
    at += 8 + it.command.byteLength;
  });
  return out;
}

export function decodeBatch(body: Uint8Array): ForwardItem[] {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const n = view.getUint32(0);
  const out: ForwardItem[] = [];
  let at = 4;
  for (let i = 0; i < n; i++) {
    const sl = view.getUint16(at);
    const shard = dec.decode(body.subarray(at + 2, at + 2 + sl));
    at += 2 + sl;
    const timeoutMs = view.getUint32(at);
    const cl = view.getUint32(at + 4);
    const command = body.subarray(at + 8, at + 8 + cl);
    assert(command.byteLength === cl, "truncated forwarded command");
    at += 8 + cl;
    out.push({ shard, command, timeoutMs });
  }
  assert(at === body.byteLength, "trailing bytes in a forwarded batch");
  return out;
}

interface Pending extends ForwardItem {
  readonly resolve: (o: ForwardOutcome) => void;
}

/**
 * Batches are per (node, shard): one call's answer waits for its slowest proposal, and
 * proposals of one shard share their fate anyway (same leader, same quorum), whereas a shard
 * that lost its quorum must not hold up writes to healthy shards led by the same node.
 */
export class ForwardBatcher {
  private readonly queues = new Map<string, { to: NodeId; items: Pending[] }>();
  /** Calls are split beyond this many proposals or bytes. */
  private readonly itemsMax = 512;
  private readonly bytesMax = 4 << 20;

  constructor(private readonly transport: Transport) {}

  propose(to: NodeId, item: ForwardItem): Promise<ForwardOutcome> {
    return new Promise((resolve) => {
      let key = `${to}\u0000${item.shard}`;
      // A traced request's proposal gets a call of its own, sent from its context (the flush
      // runs in the context of the proposal that scheduled it): the call carries that request's
      // trace context, which a batch of many requests could not.
      if (tracing.on) {
        const sc = trace.getActiveSpan()?.spanContext();
        if (sc && (sc.traceFlags & TraceFlags.SAMPLED) !== 0) key += `\u0000${sc.spanId}`;
      }
      let q = this.queues.get(key);
      if (!q) {
        q = { to, items: [] };
        this.queues.set(key, q);
        setImmediate(() => this.flush(key));
      }
      q.items.push({ ...item, resolve });
    });
  }

  private flush(key: string): void {
    const entry = this.queues.get(key);
    this.queues.delete(key);
    if (!entry) return;
    const { to, items: q } = entry;
    let start = 0;
    while (start < q.length) {
      let bytes = 0;
      let end = start;
      while (end < q.length && end - start < this.itemsMax && bytes < this.bytesMax) {
        bytes += (q[end] as Pending).command.byteLength;
        end++;
      }
      void this.send(to, q.slice(start, end));
      start = end;
    }
  }

  private async send(to: NodeId, items: Pending[]): Promise<void> {
    const timeoutMs = Math.max(...items.map((i) => i.timeoutMs));
    const r = await this.transport.call(to, PROPOSE_BATCH, encodeBatch(items), timeoutMs + 200);
    if (!r.ok) {
      // UNREACHABLE: certainly not delivered (safe to retry elsewhere). Anything else: the remote
      // may have proposed some of them, so their outcome is unknown.
      for (const it of items) {
        it.resolve(
          r.code === "UNREACHABLE"
            ? { ok: false, code: "UNREACHABLE" }
            : { ok: false, code: "TIMEOUT", message: r.message },
        );
      }
      return;
    }
    const outcomes = JSON.parse(dec.decode(r.body)) as ProposeOutcome<ApplyResult>[];
    assert(outcomes.length === items.length, "forwarded batch answered with the wrong count");
    for (const [i, it] of items.entries()) it.resolve(outcomes[i] as ProposeOutcome<ApplyResult>);
  }
}
