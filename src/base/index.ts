/**
 * Base: the few things every layer needs and that depend on nothing.
 * - `assert` for programmer errors (invariants). Operating errors are returned as typed results.
 * - `Prng`: a seeded, splittable pseudo-random source. Deterministic code (raft/, sim/,
 *   placement planners) takes randomness only through this interface so a run replays from its seed.
 */

export class AssertionError extends Error {
  override name = "AssertionError";
}

/** Fails loudly on a broken invariant. Never use for input validation: return a typed error. */
export function assert(condition: unknown, message?: string | (() => string)): asserts condition {
  if (!condition) {
    const text = typeof message === "function" ? message() : message;
    throw new AssertionError(text ?? "assertion failed");
  }
}

/** Marks a switch as exhaustive: the compiler rejects a missing case. */
export function unreachable(value: never, what = "value"): never {
  throw new AssertionError(`unreachable ${what}: ${JSON.stringify(value)}`);
}

/** A source of randomness. `next()` returns a float in [0, 1). */
export interface Random {
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
}

/**
 * sfc32 seeded from a 32-bit seed through splitmix32: fast, good statistical quality, and
 * identical on every platform (only 32-bit integer arithmetic).
 */
export class Prng implements Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const splitmix = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = splitmix();
    this.b = splitmix();
    this.c = splitmix();
    this.d = splitmix();
    for (let i = 0; i < 12; i++) this.nextU32();
  }

  nextU32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  next(): number {
    return this.nextU32() / 4294967296;
  }

  int(n: number): number {
    assert(Number.isInteger(n) && n > 0, "Prng.int needs a positive integer bound");
    return Math.floor(this.next() * n);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  pick<T>(items: readonly T[]): T {
    assert(items.length > 0, "Prng.pick from an empty list");
    return items[this.int(items.length)] as T;
  }

  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = items[i] as T;
      items[i] = items[j] as T;
      items[j] = t;
    }
    return items;
  }

  /** An independent stream derived from this one (for per-node or per-link randomness). */
  fork(): Prng {
    return new Prng(this.nextU32());
  }
}
export { forEachLimited } from "./limited.js";
export { setTracing, tracing } from "./tracing.js";
