/**
 * `MemoryTransport`: nodes of one process talking through a `MemoryNetwork`, for tests and
 * in-process clusters. It keeps the promises of the real transport that callers could otherwise
 * come to rely on by accident:
 * - delivery is asynchronous (a later macrotask), never re-entrant into the sender;
 * - per-peer FIFO order, with a bounded queue that drops oldest-first while the peer is down;
 * - `call` answers with the same typed errors, with a timeout;
 * - a peer "restarts" by starting a new transport on the same address.
 * Messages are passed by reference, not copied: as with gRPC the sender hands them over and must
 * not mutate them afterwards (the gRPC transport may encode them after `send` returned).
 */
import { assert } from "../base/index.js";
import type { NodeId } from "../raft/index.js";
import { batchBytesUpperBound } from "./codec.js";
import { BoundedQueue } from "./queue.js";
import {
  type CallError,
  type CallResult,
  type GroupMessage,
  NoHandlerError,
  type Transport,
  type TransportHandlers,
  type TransportStats,
} from "./transport.js";

export interface MemoryTransportOptions {
  /** Where the node listens in its network; defaults to its id. Reuse it to "restart" a node. */
  readonly address?: string;
  /** Batches queued per peer while it is down; the oldest are dropped beyond this. */
  readonly queueBatchesMax?: number;
  /** Deadline of a `call` whose `timeoutMs` is not finite (Infinity, NaN). */
  readonly callTimeoutMsDefault?: number;
  /** Outgoing calls in flight at once; beyond it `call` fails with UNREACHABLE at once. */
  readonly callsInflightMax?: number;
}

const DEFAULTS = { queueBatchesMax: 1024, callTimeoutMsDefault: 5_000, callsInflightMax: 1024 };

/** A registry of listening transports by address: the "wire" between in-process nodes. */
export class MemoryNetwork {
  private readonly listening = new Map<string, MemoryTransport>();
  private readonly members = new Set<MemoryTransport>();

  transport(self: NodeId, options: MemoryTransportOptions = {}): MemoryTransport {
    const t = new MemoryTransport(this, self, options);
    this.members.add(t);
    return t;
  }

  /** @internal */
  listen(address: string, t: MemoryTransport): boolean {
    if (this.listening.has(address)) return false;
    this.listening.set(address, t);
    // Whoever queued traffic for this address while it was down may deliver it now.
    for (const m of this.members) m.peerListening(address);
    return true;
  }

  /** @internal */
  unlisten(address: string, t: MemoryTransport): void {
    if (this.listening.get(address) === t) this.listening.delete(address);
    this.members.delete(t);
  }

  /** @internal */
  lookup(address: string): MemoryTransport | undefined {
    return this.listening.get(address);
  }
}

type State = "new" | "started" | "stopped";

interface PendingCall {
  /** Whether the request reached the peer's handler: from then on a failure is TIMEOUT. */
  dispatched: boolean;
  settle(r: CallResult): void;
}

export class MemoryTransport implements Transport {
  readonly self: NodeId;
  private readonly addressValue: string;
  private readonly queueBatchesMax: number;
  private readonly callTimeoutMsDefault: number;
  private readonly callsInflightMax: number;
  private state: State = "new";
  private handlers: TransportHandlers | undefined;
  private healthServing = false;
  private readonly peers = new Map<NodeId, string>();
  private readonly queues = new Map<NodeId, BoundedQueue<readonly GroupMessage[]>>();
  private drainScheduled: NodeJS.Immediate | undefined;
  /** Calls we made, and calls made to us that are being served: a stop fails both. */
  private readonly outgoing = new Set<PendingCall>();
  private readonly beingServed = new Set<PendingCall>();
  private readonly counters = { batchesSent: 0, messagesSent: 0, messagesDropped: 0, bytesSent: 0 };

  constructor(
    private readonly network: MemoryNetwork,
    self: NodeId,
    options: MemoryTransportOptions,
  ) {
    assert(self !== "", "MemoryTransport needs a non-empty id");
    this.self = self;
    this.addressValue = options.address ?? self;
    this.queueBatchesMax = options.queueBatchesMax ?? DEFAULTS.queueBatchesMax;
    this.callTimeoutMsDefault = options.callTimeoutMsDefault ?? DEFAULTS.callTimeoutMsDefault;
    this.callsInflightMax = options.callsInflightMax ?? DEFAULTS.callsInflightMax;
  }

  address(): string {
    return this.addressValue;
  }

  /** Whether `setServing(true)` was called last (memory has no health service to report it). */
  isServing(): boolean {
    return this.healthServing;
  }

  async start(handlers: TransportHandlers): Promise<void> {
    assert(this.state === "new", `start() in state ${this.state}`);
    if (!this.network.listen(this.addressValue, this)) {
      this.state = "stopped";
      throw new Error(`transport ${this.self}: address ${this.addressValue} is in use`);
    }
    this.handlers = handlers;
    this.state = "started";
  }

  setPeer(id: NodeId, address: string): void {
    assert(id !== this.self, "setPeer(self)");
    this.peers.set(id, address);
  }

  send(to: NodeId, batch: readonly GroupMessage[]): void {
    if (batch.length === 0) return;
    if (this.state === "stopped" || !this.peers.has(to)) {
      this.counters.messagesDropped += batch.length;
      return;
    }
    let q = this.queues.get(to);
    if (!q) {
      q = new BoundedQueue(this.queueBatchesMax);
      this.queues.set(to, q);
    }
    for (const dropped of q.push(batch, 0)) this.counters.messagesDropped += dropped.length;
    this.scheduleDrain();
  }

  call(to: NodeId, method: string, body: Uint8Array, timeoutMs: number): Promise<CallResult> {
    const budgetMs = Number.isFinite(timeoutMs) ? timeoutMs : this.callTimeoutMsDefault;
    const address = this.peers.get(to);
    const failNow = (r: CallError): Promise<CallResult> =>
      new Promise((resolve) => setImmediate(() => resolve(r)));
    if (this.state !== "started") {
      return failNow({
        ok: false,
        code: "UNREACHABLE",
        message: `transport ${this.self} is ${this.state}`,
      });
    }
    if (address === undefined)
      return failNow({ ok: false, code: "UNREACHABLE", message: `unknown peer ${to}` });
    if (budgetMs <= 0) return failNow({ ok: false, code: "TIMEOUT", message: "no time left" });
    if (this.outgoing.size >= this.callsInflightMax) {
      const message = `${this.outgoing.size} calls in flight already`;
      return failNow({ ok: false, code: "UNREACHABLE", message });
    }
    return new Promise<CallResult>((resolve) => {
      let settled = false;
      const pending: PendingCall = {
        dispatched: false,
        settle: (r) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          this.outgoing.delete(pending);
          resolve(r);
        },
      };
      const timer = setTimeout(
        () =>
          pending.settle({
            ok: false,
            code: "TIMEOUT",
            message: `no answer within ${budgetMs} ms`,
          }),
        budgetMs,
      );
      this.outgoing.add(pending);
      setImmediate(() => {
        if (settled) return;
        const target = this.network.lookup(address);
        if (!target?.accepting()) {
          pending.settle({ ok: false, code: "UNREACHABLE", message: `${to} is not listening` });
          return;
        }
        pending.dispatched = true;
        target.serveCall(this.self, method, body, pending);
      });
    });
  }

  reachable(to: NodeId): boolean {
    const address = this.peers.get(to);
    return (
      this.state !== "stopped" &&
      address !== undefined &&
      (this.network.lookup(address)?.accepting() ?? false)
    );
  }

  setServing(serving: boolean): void {
    this.healthServing = serving;
  }

  stats(): TransportStats {
    return { ...this.counters };
  }

  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    this.state = "stopped";
    this.healthServing = false;
    this.network.unlisten(this.addressValue, this);
    if (this.drainScheduled) clearImmediate(this.drainScheduled);
    this.drainScheduled = undefined;
    for (const q of this.queues.values()) {
      for (const b of q.drain()) this.counters.messagesDropped += b.length;
    }
    // As over a real network: a request not yet handed over certainly did not run (UNREACHABLE);
    // one the handler has (ours or the caller's) has an unknown outcome (TIMEOUT).
    for (const c of [...this.outgoing, ...this.beingServed]) {
      c.settle(
        c.dispatched
          ? {
              ok: false,
              code: "TIMEOUT",
              message: `${this.self} stopped before the answer; outcome unknown`,
            }
          : { ok: false, code: "UNREACHABLE", message: `${this.self} stopped` },
      );
    }
    this.beingServed.clear();
  }

  /** @internal */
  accepting(): boolean {
    return this.state === "started";
  }

  /** @internal */
  peerListening(address: string): void {
    for (const [id, a] of this.peers) {
      if (a === address && (this.queues.get(id)?.length ?? 0) > 0) this.scheduleDrain();
    }
  }

  /** @internal Runs the handler for a caller; `pending` settles the caller's promise. */
  serveCall(from: NodeId, method: string, body: Uint8Array, pending: PendingCall): void {
    const handlers = this.handlers;
    assert(handlers !== undefined && this.state === "started", "serveCall on a stopped transport");
    const entry: PendingCall = {
      dispatched: true,
      settle: (r) => {
        this.beingServed.delete(entry);
        pending.settle(r);
      },
    };
    this.beingServed.add(entry);
    let answer: Promise<Uint8Array>;
    try {
      answer = handlers.onCall(from, method, body);
    } catch (e) {
      answer = Promise.reject(e);
    }
    answer.then(
      (b) => entry.settle({ ok: true, body: b }),
      (e: unknown) => {
        const message = e instanceof Error ? e.message : String(e);
        entry.settle(
          e instanceof NoHandlerError
            ? { ok: false, code: "NO_HANDLER", message }
            : { ok: false, code: "REMOTE_ERROR", message },
        );
      },
    );
  }

  /** @internal */
  deliver(from: NodeId, batch: readonly GroupMessage[]): void {
    this.handlers?.onRaft(from, batch);
  }

  private scheduleDrain(): void {
    if (this.drainScheduled || this.state === "stopped") return;
    this.drainScheduled = setImmediate(() => {
      this.drainScheduled = undefined;
      this.drain();
    });
  }

  /** Delivers every queue whose peer is listening; the others keep waiting (bounded). */
  private drain(): void {
    for (const [id, q] of this.queues) {
      const address = this.peers.get(id);
      if (address === undefined) continue;
      const target = this.network.lookup(address);
      if (!target?.accepting()) continue;
      while (q.length > 0 && this.state !== "stopped" && target.accepting()) {
        const batch = q.shift() as readonly GroupMessage[];
        this.counters.batchesSent++;
        this.counters.messagesSent += batch.length;
        this.counters.bytesSent += batchBytesUpperBound(batch);
        target.deliver(this.self, batch);
      }
    }
  }
}
