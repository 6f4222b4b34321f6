/**
 * A little in-process blob cluster for the tests: every node has a real `ChunkStore` in a temp
 * directory and a `BlobService` on a `FaultyTransport` over a `MemoryTransport`, all sharing one
 * `NetworkFaults` (isolate / partition / delay) and one mutable ring view and fake clock.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Prng } from "../../src/base/index.js";
import {
  BlobService,
  type BlobServiceOptions,
  ChunkStore,
  QUARANTINE_DIR,
  type RingView,
} from "../../src/blob/index.js";
import { partitionOf, type Ring } from "../../src/placement/index.js";
import type { NodeId } from "../../src/raft/index.js";
import {
  FaultyTransport,
  MemoryNetwork,
  NetworkFaults,
  NoHandlerError,
} from "../../src/transport/index.js";

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function eventually(cond: () => boolean | Promise<boolean>, what: string, ms = 1500) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await sleep(5);
  }
}

export function chunk(n: number): Buffer {
  return randomBytes(n);
}

export async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), "kumo-blob-"));
}

/** Flips a byte of a file in place (same inode), as a disk would. */
export async function corrupt(path: string, at = 0): Promise<void> {
  const b = await readFile(path);
  b[at % b.length] = (b[at % b.length] as number) ^ 0xff;
  await writeFile(path, b);
}

export async function exists(path: string): Promise<boolean> {
  try {
    await readFile(path);
    return true;
  } catch {
    return false;
  }
}

export interface BlobNode {
  readonly id: NodeId;
  readonly dir: string;
  readonly store: ChunkStore;
  readonly svc: BlobService;
  readonly t: FaultyTransport;
  /** Calls this node served, by method. */
  readonly served: Map<string, number>;
}

/** Four partitions, every one on a, b and c (in rotating order); d owns nothing. */
export const RING_ABC: Ring = [
  ["a", "b", "c"],
  ["b", "c", "a"],
  ["c", "a", "b"],
  ["a", "c", "b"],
];

export class BlobCluster {
  readonly faults = new NetworkFaults(new Prng(7));
  readonly nodes = new Map<NodeId, BlobNode>();
  view: RingView;
  clockMs = 1_000_000;

  private constructor(ring: Ring) {
    this.view = { ring, partitions: ring.length };
  }

  static async create(
    ids: readonly NodeId[] = ["a", "b", "c", "d"],
    options: { ring?: Ring; svc?: Partial<BlobServiceOptions> } = {},
  ): Promise<BlobCluster> {
    const c = new BlobCluster(options.ring ?? RING_ABC);
    const net = new MemoryNetwork();
    for (const id of ids) {
      const dir = await tempDir();
      const store = await ChunkStore.open(dir);
      const t = new FaultyTransport(net.transport(id), { faults: c.faults });
      const svc = new BlobService({
        self: id,
        transport: t,
        store,
        ring: () => c.view,
        callTimeoutMs: 1_000,
        now: () => c.clockMs,
        ...options.svc,
      });
      const served = new Map<string, number>();
      await t.start({
        onRaft: () => {},
        onCall: (from, method, body) => {
          served.set(method, (served.get(method) ?? 0) + 1);
          return svc.handleCall(from, method, body) ?? Promise.reject(new NoHandlerError(method));
        },
      });
      c.nodes.set(id, { id, dir, store, svc, t, served });
    }
    for (const a of ids) for (const b of ids) if (a !== b) c.node(a).t.setPeer(b, b);
    return c;
  }

  node(id: NodeId): BlobNode {
    const n = this.nodes.get(id);
    assert.ok(n, `no node ${id}`);
    return n;
  }

  ownersOf(hash: Uint8Array): readonly NodeId[] {
    return this.view.ring[partitionOf(hash, this.view.partitions)] ?? [];
  }

  /** Served calls of `method` summed over all nodes. */
  served(method: string): number {
    let n = 0;
    for (const node of this.nodes.values()) n += node.served.get(method) ?? 0;
    return n;
  }

  async fileOf(id: NodeId, hash: Uint8Array): Promise<Buffer | undefined> {
    try {
      return await readFile(this.node(id).store.pathOf(hash));
    } catch {
      return undefined;
    }
  }

  async quarantined(id: NodeId): Promise<string[]> {
    return readdir(join(this.node(id).dir, QUARANTINE_DIR));
  }

  async close(): Promise<void> {
    for (const n of this.nodes.values()) {
      await n.svc.stop();
      await n.t.stop();
      await rm(n.dir, { recursive: true, force: true });
    }
  }
}
