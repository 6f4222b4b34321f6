/**
 * Admission control for the client doors: token buckets per bearer token and per node, a bound
 * on requests in progress, and load shedding on event-loop delay. Every refusal is decided in
 * O(1) before the request does any work, so a flood costs the node little more than parsing it,
 * and the answer (429 with Retry-After) comes at once instead of after a queue.
 *
 * Order matters for fairness: a token's own bucket is checked first, so requests beyond one
 * tenant's rate are refused without consuming anything shared (node tokens, concurrency);
 * another tenant's requests are then only refused if the node as a whole is over its limits.
 *
 * Only client requests pass through here: Raft and forwarding between nodes use the peer port
 * (gRPC) and never wait behind client load. Pure logic with an injected clock and load signal,
 * so it is tested without timers.
 */
import { assert } from "../base/index.js";

export interface LimitSettings {
  /** Requests per second per token (0: unlimited). */
  readonly tokenRatePerSecond: number;
  /** Bucket size per token (0: one second's worth of the rate). */
  readonly tokenBurstRequests: number;
  readonly nodeRatePerSecond: number;
  readonly nodeBurstRequests: number;
  readonly concurrentRequestsMax: number;
  /** Shed while the recent event-loop delay (p99) is above this (0: never). */
  readonly shedEventLoopDelayMs: number;
}

export const LIMIT_KEYS: readonly (keyof LimitSettings)[] = [
  "tokenRatePerSecond",
  "tokenBurstRequests",
  "nodeRatePerSecond",
  "nodeBurstRequests",
  "concurrentRequestsMax",
  "shedEventLoopDelayMs",
];

export type Refusal = {
  readonly ok: false;
  readonly code: "RATE_LIMITED" | "OVERLOADED";
  /** What refused: a token's bucket, the node's bucket, concurrency or event-loop delay. */
  readonly reason: "token" | "node" | "concurrency" | "event_loop";
  readonly retryAfterSeconds: number;
  readonly message: string;
};

export type Admission = { readonly ok: true; readonly release: () => void } | Refusal;

/** A classic token bucket: `rate` tokens per second refill it up to `burst`. */
export class TokenBucket {
  private tokens: number;
  private lastMs: number;

  constructor(
    private rate: number,
    private burst: number,
    nowMs: number,
  ) {
    assert(rate > 0 && burst >= 1, "a token bucket needs a positive rate and burst");
    this.tokens = burst;
    this.lastMs = nowMs;
  }

  /** Changes rate and burst, keeping the tokens it has (capped by the new burst). */
  configure(rate: number, burst: number, nowMs: number): void {
    assert(rate > 0 && burst >= 1, "a token bucket needs a positive rate and burst");
    this.refill(nowMs);
    this.rate = rate;
    this.burst = burst;
    this.tokens = Math.min(this.tokens, burst);
  }

  private refill(nowMs: number): void {
    // A clock that went backwards (it should not: callers pass a monotonic one) refills nothing.
    const elapsedMs = Math.max(0, nowMs - this.lastMs);
    this.tokens = Math.min(this.burst, this.tokens + (elapsedMs * this.rate) / 1000);
    this.lastMs = nowMs;
  }

  /** Whether a token is there now (without taking it). */
  has(nowMs: number): boolean {
    this.refill(nowMs);
    return this.tokens >= 1;
  }

  take(): void {
    this.tokens -= 1;
  }

  /** Seconds until a token is there: what Retry-After says (at least 1, as it is whole seconds). */
  waitSeconds(): number {
    return Math.max(1, Math.ceil((1 - this.tokens) / this.rate));
  }
}

export interface LimiterOptions {
  readonly settings: LimitSettings;
  /** Monotonic milliseconds. */
  readonly nowMs: () => number;
  /** The event loop's recent delay (p99, milliseconds). */
  readonly eventLoopDelayMs: () => number;
}

export class Limiter {
  private current: LimitSettings;
  private readonly buckets = new Map<string, TokenBucket>();
  private node: TokenBucket | undefined;
  private inFlightCount = 0;
  private readonly nowMs: () => number;
  private readonly eventLoopDelayMs: () => number;

  constructor(opts: LimiterOptions) {
    this.nowMs = opts.nowMs;
    this.eventLoopDelayMs = opts.eventLoopDelayMs;
    this.current = opts.settings;
    this.apply();
  }

  get settings(): LimitSettings {
    return this.current;
  }

  get inFlight(): number {
    return this.inFlightCount;
  }

  /** Replaces some settings (already validated: see `checkLimits`); returns all of them. */
  update(changes: Partial<LimitSettings>): LimitSettings {
    this.current = { ...this.current, ...changes };
    this.apply();
    return this.current;
  }

  private apply(): void {
    const s = this.current;
    const now = this.nowMs();
    // Existing buckets keep their tokens; with no rate the buckets go (nothing to remember).
    if (s.tokenRatePerSecond > 0) {
      const burst = s.tokenBurstRequests > 0 ? s.tokenBurstRequests : s.tokenRatePerSecond;
      for (const b of this.buckets.values()) b.configure(s.tokenRatePerSecond, burst, now);
    } else this.buckets.clear();
    if (s.nodeRatePerSecond > 0) {
      const burst = s.nodeBurstRequests > 0 ? s.nodeBurstRequests : s.nodeRatePerSecond;
      if (this.node) this.node.configure(s.nodeRatePerSecond, burst, now);
      else this.node = new TokenBucket(s.nodeRatePerSecond, burst, now);
    } else this.node = undefined;
  }

  private bucketOf(tenant: string, now: number): TokenBucket | undefined {
    const s = this.current;
    if (s.tokenRatePerSecond <= 0) return undefined;
    let b = this.buckets.get(tenant);
    if (!b) {
      const burst = s.tokenBurstRequests > 0 ? s.tokenBurstRequests : s.tokenRatePerSecond;
      b = new TokenBucket(s.tokenRatePerSecond, burst, now);
      this.buckets.set(tenant, b);
    }
    return b;
  }

  /**
   * Admits one request of `tenant` (an identifier of an authenticated token: the caller must not
   * pass arbitrary client input, as every tenant gets a bucket), or says why not. An admitted
   * request must call `release()` exactly once when it is answered.
   */
  admit(tenant: string): Admission {
    const now = this.nowMs();
    const s = this.current;
    const own = this.bucketOf(tenant, now);
    if (own && !own.has(now)) {
      return {
        ok: false,
        code: "RATE_LIMITED",
        reason: "token",
        retryAfterSeconds: own.waitSeconds(),
        message: `this token is limited to ${s.tokenRatePerSecond} requests per second on this node; retry later`,
      };
    }
    if (this.inFlightCount >= s.concurrentRequestsMax) {
      return {
        ok: false,
        code: "OVERLOADED",
        reason: "concurrency",
        retryAfterSeconds: 1,
        message: `this node has ${this.inFlightCount} requests in progress (the limit); retry later or through another node`,
      };
    }
    if (s.shedEventLoopDelayMs > 0) {
      const delayMs = this.eventLoopDelayMs();
      if (delayMs > s.shedEventLoopDelayMs) {
        return {
          ok: false,
          code: "OVERLOADED",
          reason: "event_loop",
          retryAfterSeconds: 1,
          message: `this node is overloaded (event loop delay ${Math.round(delayMs)} ms); retry later or through another node`,
        };
      }
    }
    const node = this.node;
    if (node && !node.has(now)) {
      return {
        ok: false,
        code: "RATE_LIMITED",
        reason: "node",
        retryAfterSeconds: node.waitSeconds(),
        message: `this node is limited to ${s.nodeRatePerSecond} requests per second; retry later or through another node`,
      };
    }
    own?.take();
    node?.take();
    this.inFlightCount++;
    let released = false;
    return {
      ok: true,
      release: () => {
        assert(!released, "an admitted request was released twice");
        released = true;
        this.inFlightCount--;
      },
    };
  }
}

/** Bounds of each setting (the same as the configuration options'). */
export type LimitBounds = Readonly<Record<keyof LimitSettings, { min: number; max: number }>>;

/**
 * Checks a JSON object of changes (from the admin API): known keys, integers within bounds.
 * Returns the changes or a message for the client.
 */
export function checkLimits(
  body: unknown,
  bounds: LimitBounds,
): { ok: true; changes: Partial<LimitSettings> } | { ok: false; message: string } {
  if (typeof body !== "object" || body === null || Array.isArray(body))
    return { ok: false, message: "the body must be a JSON object of limits" };
  const changes: Record<string, number> = {};
  for (const [k, v] of Object.entries(body)) {
    if (!(LIMIT_KEYS as readonly string[]).includes(k))
      return {
        ok: false,
        message: `unknown limit ${JSON.stringify(k)}; known: ${LIMIT_KEYS.join(", ")}`,
      };
    const b = bounds[k as keyof LimitSettings];
    if (typeof v !== "number" || !Number.isInteger(v) || v < b.min || v > b.max)
      return { ok: false, message: `${k} must be an integer from ${b.min} to ${b.max}` };
    changes[k] = v;
  }
  return { ok: true, changes: changes as Partial<LimitSettings> };
}
