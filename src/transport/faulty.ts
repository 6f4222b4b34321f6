/**
 * Fault injection between node ids, for tests: `FaultyTransport` wraps any `Transport` and
 * consults a `NetworkFaults` rule set that every node of a test cluster shares.
 *
 * Rules are applied once per message, by the sender's wrapper (wrap every node, with one shared
 * `NetworkFaults`; an unwrapped node's traffic passes untouched):
 * - `send`: a cut link loses the batch; a dropped batch is lost with the link's probability; a
 *   delayed batch is handed to the inner transport `ms` later, unless the link was cut meanwhile.
 *   Equal delays keep per-link order; changing a link's delay may reorder its traffic.
 * - `call`: if the request direction (self → to) is cut or drops the request, the call fails at
 *   once with UNREACHABLE and the request certainly did not reach the peer. If only the response
 *   direction (to → self) is cut or drops the response, the handler DOES run on the peer and the
 *   caller gets TIMEOUT when its timeout expires: like a real network, a lost answer is an
 *   unknown outcome. Delays apply to the request and to the response, within the caller's
 *   timeout (a request delayed past the timeout is not delivered: TIMEOUT). This keeps the
 *   port's rule: UNREACHABLE only when the request certainly did not arrive.
 *
 * Deterministic given a seeded `Prng`: the only randomness is the drop decision, drawn once per
 * message in the order of the `send`/`call` invocations, and only for links whose probability is
 * strictly between 0 and 1.
 */
import { assert, Prng } from "../base/index.js";
import type { NodeId } from "../raft/index.js";
import type {
  CallResult,
  GroupMessage,
  Transport,
  TransportHandlers,
  TransportStats,
} from "./transport.js";

function link(from: NodeId, to: NodeId): string {
  return `${from}\u0000${to}`;
}

/** The shared rule set. Every rule holds until `heal()`; rules add up. */
export class NetworkFaults {
  private readonly cuts = new Set<string>();
  private readonly isolated = new Set<NodeId>();
  private readonly drops = new Map<string, number>();
  private readonly delays = new Map<string, number>();

  constructor(readonly prng: Prng = new Prng(Math.floor(Math.random() * 2 ** 32))) {}

  /** Cuts every link between a node of `a` and a node of `b`, both ways. */
  partition(a: readonly NodeId[], b: readonly NodeId[]): void {
    for (const x of a) {
      for (const y of b) {
        if (x === y) continue;
        this.cuts.add(link(x, y));
        this.cuts.add(link(y, x));
      }
    }
  }

  /** Cuts `id` from every other node, including nodes that join later. */
  isolate(id: NodeId): void {
    this.isolated.add(id);
  }

  cutOneWay(from: NodeId, to: NodeId): void {
    this.cuts.add(link(from, to));
  }

  /** Loses each message from `from` to `to` with `probability` (0 removes the rule). */
  drop(from: NodeId, to: NodeId, probability: number): void {
    assert(probability >= 0 && probability <= 1, "drop probability must be in [0, 1]");
    if (probability === 0) this.drops.delete(link(from, to));
    else this.drops.set(link(from, to), probability);
  }

  /** Delays each message from `from` to `to` by `ms` (0 removes the rule). */
  delay(from: NodeId, to: NodeId, ms: number): void {
    assert(Number.isFinite(ms) && ms >= 0, "delay must be a finite number of ms >= 0");
    if (ms === 0) this.delays.delete(link(from, to));
    else this.delays.set(link(from, to), ms);
  }

  heal(): void {
    this.cuts.clear();
    this.isolated.clear();
    this.drops.clear();
    this.delays.clear();
  }

  isCut(from: NodeId, to: NodeId): boolean {
    if (from === to) return false;
    return this.isolated.has(from) || this.isolated.has(to) || this.cuts.has(link(from, to));
  }

  /** Draws from the PRNG only when the outcome is actually random. */
  shouldDrop(from: NodeId, to: NodeId): boolean {
    const p = this.drops.get(link(from, to)) ?? 0;
    if (p <= 0) return false;
    if (p >= 1) return true;
    return this.prng.chance(p);
  }

  delayMs(from: NodeId, to: NodeId): number {
    return this.delays.get(link(from, to)) ?? 0;
  }
}

export interface FaultyTransportOptions {
  /** The rule set, shared by every node of the cluster (default: a private one). */
  readonly faults?: NetworkFaults;
  /** Batches held back by `delay` at once; beyond it new delayed batches are lost. */
  readonly delayedBatchesMax?: number;
  /** Timeout of a `call` whose `timeoutMs` is not finite. */
  readonly callTimeoutMsDefault?: number;
}

export interface FaultStats {
  /** Messages lost to cut links (partitions, isolation, one-way cuts). */
  readonly cut: number;
  /** Messages lost to `drop` rules. */
  readonly dropped: number;
  /** Messages held back by `delay` rules (delivered or not). */
  readonly delayed: number;
}

export class FaultyTransport implements Transport {
  readonly self: NodeId;
  readonly faults: NetworkFaults;
  private readonly delayedBatchesMax: number;
  private readonly callTimeoutMsDefault: number;
  private readonly delayed = new Set<NodeJS.Timeout>();
  private readonly waits = new Map<NodeJS.Timeout, () => void>();
  private readonly counters = { cut: 0, dropped: 0, delayed: 0 };
  private stopped = false;

  constructor(
    readonly inner: Transport,
    options: FaultyTransportOptions = {},
  ) {
    this.self = inner.self;
    this.faults = options.faults ?? new NetworkFaults();
    this.delayedBatchesMax = options.delayedBatchesMax ?? 10_000;
    this.callTimeoutMsDefault = options.callTimeoutMsDefault ?? 5_000;
  }

  // ---- the rules (shared: they act on every node using the same NetworkFaults) ----

  partition(a: readonly NodeId[], b: readonly NodeId[]): void {
    this.faults.partition(a, b);
  }

  isolate(id: NodeId): void {
    this.faults.isolate(id);
  }

  cutOneWay(from: NodeId, to: NodeId): void {
    this.faults.cutOneWay(from, to);
  }

  drop(from: NodeId, to: NodeId, probability: number): void {
    this.faults.drop(from, to, probability);
  }

  delay(from: NodeId, to: NodeId, ms: number): void {
    this.faults.delay(from, to, ms);
  }

  heal(): void {
    this.faults.heal();
  }

  faultStats(): FaultStats {
    return { ...this.counters };
  }

  // ---- Transport ----

  start(handlers: TransportHandlers): Promise<void> {
    return this.inner.start(handlers);
  }

  setPeer(id: NodeId, address: string): void {
    this.inner.setPeer(id, address);
  }

  send(to: NodeId, batch: readonly GroupMessage[]): void {
    if (batch.length === 0 || this.stopped) {
      this.inner.send(to, batch);
      return;
    }
    const f = this.faults;
    if (f.isCut(this.self, to)) {
      this.counters.cut += batch.length;
      return;
    }
    if (f.shouldDrop(this.self, to)) {
      this.counters.dropped += batch.length;
      return;
    }
    const ms = f.delayMs(this.self, to);
    if (ms === 0) {
      this.inner.send(to, batch);
      return;
    }
    if (this.delayed.size >= this.delayedBatchesMax) {
      this.counters.dropped += batch.length;
      return;
    }
    this.counters.delayed += batch.length;
    const timer = setTimeout(() => {
      this.delayed.delete(timer);
      // A partition that starts while the batch is "on the wire" loses it, as a real one would.
      if (f.isCut(this.self, to)) this.counters.cut += batch.length;
      else this.inner.send(to, batch);
    }, ms);
    this.delayed.add(timer);
  }

  async call(to: NodeId, method: string, body: Uint8Array, timeoutMs: number): Promise<CallResult> {
    const budgetMs = Number.isFinite(timeoutMs) ? timeoutMs : this.callTimeoutMsDefault;
    const f = this.faults;
    const cutMessage = `fault injection: ${this.self} -> ${to} is cut`;
    if (this.stopped) return this.inner.call(to, method, body, budgetMs);
    if (f.isCut(this.self, to)) {
      this.counters.cut++;
      return { ok: false, code: "UNREACHABLE", message: cutMessage };
    }
    if (f.shouldDrop(this.self, to)) {
      this.counters.dropped++;
      return {
        ok: false,
        code: "UNREACHABLE",
        message: `fault injection: request to ${to} dropped`,
      };
    }
    const startMs = Date.now();
    const timeout: CallResult = {
      ok: false,
      code: "TIMEOUT",
      message: `no answer within ${budgetMs} ms (fault injection)`,
    };
    const requestDelayMs = f.delayMs(this.self, to);
    if (requestDelayMs > 0) {
      this.counters.delayed++;
      // The request is still "on the wire": stopping now means it never arrives (UNREACHABLE).
      if (requestDelayMs >= budgetMs) {
        return (await this.wait(budgetMs)) ? timeout : this.stoppedResult();
      }
      if (!(await this.wait(requestDelayMs))) return this.stoppedResult();
      if (f.isCut(this.self, to)) {
        this.counters.cut++;
        return { ok: false, code: "UNREACHABLE", message: cutMessage };
      }
    }
    const r = await this.inner.call(to, method, body, budgetMs - requestDelayMs);
    // Only an answer produced by the peer travels back over the to → self direction.
    const answered = r.ok || r.code === "NO_HANDLER" || r.code === "REMOTE_ERROR";
    if (!answered || this.stopped) return r;
    // From here on the handler has run: losing the answer (a cut, a drop, a stop while it is
    // held back) is an unknown outcome for the caller (TIMEOUT), never UNREACHABLE.
    const leftMs = budgetMs - (Date.now() - startMs);
    if (f.isCut(to, this.self) || f.shouldDrop(to, this.self)) {
      if (f.isCut(to, this.self)) this.counters.cut++;
      else this.counters.dropped++;
      await this.wait(leftMs);
      return timeout;
    }
    const responseDelayMs = f.delayMs(to, this.self);
    if (responseDelayMs === 0) return r;
    this.counters.delayed++;
    if (responseDelayMs >= leftMs) {
      await this.wait(leftMs);
      return timeout;
    }
    return (await this.wait(responseDelayMs)) ? r : timeout;
  }

  reachable(to: NodeId): boolean {
    return !this.faults.isCut(this.self, to) && this.inner.reachable(to);
  }

  setServing(serving: boolean): void {
    this.inner.setServing(serving);
  }

  /** The inner transport's stats: what the fault injector lost is in `faultStats()`. */
  stats(): TransportStats {
    return this.inner.stats();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.delayed) clearTimeout(t);
    this.delayed.clear();
    for (const [t, wake] of this.waits) {
      clearTimeout(t);
      wake();
    }
    this.waits.clear();
    await this.inner.stop();
  }

  private stoppedResult(): CallResult {
    return { ok: false, code: "UNREACHABLE", message: `${this.self} stopped` };
  }

  /** Resolves true after `ms`, or false at once if the transport stops meanwhile. */
  private wait(ms: number): Promise<boolean> {
    if (this.stopped) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(
        () => {
          this.waits.delete(timer);
          resolve(true);
        },
        Math.max(0, ms),
      );
      this.waits.set(timer, () => resolve(false));
    });
  }
}
