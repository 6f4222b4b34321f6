/**
 * What every chaos workload needs to choose its next operation: a global pace (the total rate
 * stays under a bound), rotating key slots (a key moves on after a number of operations, which
 * keeps each key's history checkable), and a weighted pick of the operation kind.
 */
import type { Prng } from "../base/index.js";

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class OpSchedule<K extends string> {
  private readonly slots: { gen: number; used: number }[];
  private nextSendAt = 0;

  constructor(
    private readonly rnd: Prng,
    private readonly o: {
      readonly keys: number;
      readonly opsPerKeyMax: number;
      readonly rateMax: number;
      /** Key names are `<prefix><slot>.<generation>`. */
      readonly keyPrefix: string;
      /** Share of each kind, out of 100. */
      readonly mix: readonly (readonly [K, number])[];
    },
  ) {
    this.slots = Array.from({ length: o.keys }, () => ({ gen: 0, used: 0 }));
  }

  /** Global pacing: each op takes the next send slot, so the total rate stays under rateMax. */
  async pace(): Promise<void> {
    const gapMs = 1000 / this.o.rateMax;
    const now = performance.now();
    const at = Math.max(now, this.nextSendAt);
    this.nextSendAt = at + gapMs;
    if (at > now) await sleep(at - now);
  }

  pickKey(): string {
    const slot = this.rnd.int(this.slots.length);
    const s = this.slots[slot] as { gen: number; used: number };
    if (s.used >= this.o.opsPerKeyMax) {
      s.gen++;
      s.used = 0;
    }
    s.used++;
    return `${this.o.keyPrefix}${slot}.${s.gen}`;
  }

  pickKind(): K {
    let r = this.rnd.int(100);
    for (const [kind, share] of this.o.mix) {
      if (r < share) return kind;
      r -= share;
    }
    return (this.o.mix[0] as readonly [K, number])[0];
  }
}
