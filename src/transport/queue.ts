/**
 * A FIFO bounded in items and in bytes that makes room by evicting its oldest items. For Raft
 * traffic the newest messages are the useful ones (a queued heartbeat or append from long ago is
 * superseded by what the leader sends next), so when a peer is slow or down the oldest go first.
 */
import { assert } from "../base/index.js";

export class BoundedQueue<T> {
  private readonly items: (T | undefined)[];
  private readonly sizes: number[];
  private head = 0;
  private count = 0;
  private bytesTotal = 0;

  constructor(
    readonly itemsMax: number,
    readonly bytesMax: number = Number.POSITIVE_INFINITY,
  ) {
    assert(Number.isSafeInteger(itemsMax) && itemsMax > 0, "BoundedQueue needs itemsMax >= 1");
    assert(bytesMax > 0, "BoundedQueue needs bytesMax > 0");
    this.items = new Array<T | undefined>(itemsMax);
    this.sizes = new Array<number>(itemsMax).fill(0);
  }

  get length(): number {
    return this.count;
  }

  get bytes(): number {
    return this.bytesTotal;
  }

  /**
   * Appends `item`, evicting the oldest items while the queue is over either bound; returns the
   * evicted items (the caller counts them as dropped). The new item itself is always kept, even
   * when it alone exceeds `bytesMax`: refusing it would make that message impossible to send.
   */
  push(item: T, sizeBytes: number): T[] {
    assert(sizeBytes >= 0, "negative size");
    const evicted: T[] = [];
    while (
      this.count > 0 &&
      (this.count === this.itemsMax || this.bytesTotal + sizeBytes > this.bytesMax)
    ) {
      evicted.push(this.shift() as T);
    }
    const at = (this.head + this.count) % this.itemsMax;
    this.items[at] = item;
    this.sizes[at] = sizeBytes;
    this.count++;
    this.bytesTotal += sizeBytes;
    return evicted;
  }

  peek(): T | undefined {
    return this.count === 0 ? undefined : this.items[this.head];
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.items[this.head];
    this.bytesTotal -= this.sizes[this.head] ?? 0;
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.itemsMax;
    this.count--;
    return item;
  }

  /** Empties the queue and returns what it held, oldest first. */
  drain(): T[] {
    const out: T[] = [];
    while (this.count > 0) out.push(this.shift() as T);
    return out;
  }
}
