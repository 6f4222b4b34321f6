/**
 * The KV workload: `clients` concurrent workers issue get / put / compare-and-set / delete on a
 * small set of keys, each request through a node picked at random, and record every operation
 * (history.ts). Extension point: an S3 workload implements the same `Workload` shape (start,
 * stop, ops) and its own checker; the runner does not care which one it drives.
 *
 * Keys rotate: after `opsPerKeyMax` operations a key slot moves on to a fresh key. The checker's
 * cost grows with the operations and unknown outcomes on one key (it is exponential in the
 * worst case), so bounding them keeps a long run checkable, while contention on the few live
 * keys stays high (Jepsen's "independent keys" do the same).
 *
 * Values are unique (`<client>.<seq>`), which is what lets a revision-based CAS be checked as a
 * value-based one (see history.ts).
 */
import { Prng } from "../base/index.js";
import { initialShardMap } from "../shard/index.js";
import type { ChaosCluster } from "./cluster.js";
import { type ChaosOp, classify, type KvOpKind } from "./history.js";
import { send } from "./http.js";
import { OpSchedule } from "./schedule.js";

export interface WorkloadOptions {
  readonly clients: number;
  /** Key slots in use at once. */
  readonly keys: number;
  /** Operations on one key before its slot moves to a new key. */
  readonly opsPerKeyMax: number;
  /** Upper bound on the total request rate, operations per second (all clients). */
  readonly rateMax: number;
  /** A client gives up on a request after this long (its outcome is then unknown). */
  readonly requestTimeoutMs: number;
  readonly seed: number;
  /**
   * Serve the workload's reads with `?consistency=stale` (from whichever replica answers):
   * deliberately not linearizable, to show that the checkers catch stale reads.
   */
  readonly staleReads: boolean;
}

/** Share of each kind of operation, out of 100. */
const MIX: readonly [KvOpKind, number][] = [
  ["read", 40],
  ["write", 25],
  ["cas", 25],
  ["delete", 10],
];

/** What some client has seen a key hold, with its revision: the basis of a cas. */
interface Known {
  readonly value: string | null;
  readonly revision: number;
}

export class KvWorkload {
  readonly ops: ChaosOp[] = [];
  /** Every key used, for the final audit. */
  readonly keysUsed = new Set<string>();
  private readonly schedule: OpSchedule<KvOpKind>;
  private readonly known = new Map<string, Known>();
  private readonly rnd: Prng;
  private readonly t0: number;
  private stopping = false;
  private running: Promise<void>[] = [];
  private nextId = 0;
  /** Recent operations per shard, for "the leader of a busy shard". */
  private readonly shardOf: (key: string) => string;
  private readonly shardHits = new Map<string, number>();

  constructor(
    private readonly cluster: ChaosCluster,
    private readonly opts: WorkloadOptions,
    /** performance.now() at the start of the run: every time in the history is relative to it. */
    t0: number,
  ) {
    this.t0 = t0;
    this.rnd = new Prng(opts.seed ^ 0x5eed);
    this.schedule = new OpSchedule(this.rnd, { ...opts, keyPrefix: "k", mix: MIX });
    const map = initialShardMap(
      cluster.nodes.map((n) => n.id),
      cluster.cfg.shards,
      cluster.cfg.replicas,
    );
    const enc = new TextEncoder();
    this.shardOf = (key) => map.locate("default", enc.encode(key))?.id ?? "?";
  }

  now(): number {
    return performance.now() - this.t0;
  }

  start(): void {
    this.running = Array.from({ length: this.opts.clients }, (_, c) => this.worker(c));
  }

  /** Stops issuing operations and waits for those in flight (bounded by the request timeout). */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.running);
  }

  /** The shard with the most operations since the last call (and resets the counts). */
  busiestShard(): string | undefined {
    let best: string | undefined;
    let most = 0;
    for (const [s, n] of this.shardHits) {
      if (n > most) {
        best = s;
        most = n;
      }
    }
    this.shardHits.clear();
    return best;
  }

  private async worker(client: number): Promise<void> {
    let seq = 0;
    while (!this.stopping) {
      await this.schedule.pace();
      if (this.stopping) break;
      const node = this.cluster.nodes[this.rnd.int(this.cluster.nodes.length)]!;
      const key = this.schedule.pickKey();
      const kind = this.schedule.pickKind();
      const value = `${client}.${++seq}`;
      this.keysUsed.add(key);
      const shard = this.shardOf(key);
      this.shardHits.set(shard, (this.shardHits.get(shard) ?? 0) + 1);
      await this.invoke(
        client,
        node.id,
        kind,
        key,
        value,
        this.opts.staleReads && kind === "read" ? { query: "?consistency=stale" } : {},
      );
    }
  }

  /** Issues one operation and records it. Exposed for the final audit reads. */
  async invoke(
    client: number,
    nodeId: string,
    kind: KvOpKind,
    key: string,
    value: string,
    extra: { final?: true; query?: string } = {},
  ): Promise<ChaosOp> {
    const node = this.cluster.node(nodeId);
    const headers: Record<string, string> = { authorization: `Bearer ${this.cluster.cfg.token}` };
    const path = `/v1/kv/default/${encodeURIComponent(key)}${extra.query ?? ""}`;
    const known = this.known.get(key) ?? { value: null, revision: 0 };
    let method: "GET" | "PUT" | "DELETE" = "GET";
    let body: string | undefined;
    if (kind === "write" || kind === "cas") {
      method = "PUT";
      body = value;
      if (kind === "cas") headers["if-match"] = `"${known.revision}"`;
    } else if (kind === "delete") method = "DELETE";
    const id = this.nextId++;
    const call = this.now();
    const outcome = await send(node.http, {
      method,
      path,
      headers,
      ...(body !== undefined ? { body } : {}),
      timeoutMs: this.opts.requestTimeoutMs,
    });
    const ret = this.now();
    const c = classify(kind, outcome);
    const op: ChaosOp = {
      id,
      client,
      node: nodeId,
      op: kind,
      key,
      ...(kind === "write" || kind === "cas" ? { value } : {}),
      ...(kind === "cas" ? { expect: known.value, expectRevision: known.revision } : {}),
      call,
      ret,
      status: c.status,
      ...(c.result ? { result: c.result } : {}),
      ...(c.revision !== undefined ? { revision: c.revision } : {}),
      http: outcome.kind === "answer" ? outcome.status : 0,
      ...(c.code !== undefined ? { code: c.code } : {}),
      ...(outcome.kind === "error" ? { error: outcome.code } : {}),
      ...(extra.final ? { final: true as const } : {}),
    };
    this.ops.push(op);
    this.learn(op);
    return op;
  }

  /**
   * A stale read of a node's own replica, not recorded (the convergence audit): the value,
   * null if absent, undefined if the node did not answer.
   */
  async peek(nodeId: string, key: string): Promise<string | null | undefined> {
    const r = await send(this.cluster.node(nodeId).http, {
      method: "GET",
      path: `/v1/kv/default/${encodeURIComponent(key)}?consistency=stale`,
      headers: { authorization: `Bearer ${this.cluster.cfg.token}` },
      timeoutMs: this.opts.requestTimeoutMs,
    });
    if (r.kind !== "answer") return undefined;
    if (r.status === 200) return r.body;
    return r.status === 404 ? null : undefined;
  }

  /** Remembers the newest (value, revision) of a key that an ok op revealed. */
  private learn(op: ChaosOp): void {
    if (op.status !== "ok") return;
    let seen: Known | undefined;
    if (op.op === "read") {
      const v = op.result?.value ?? null;
      seen =
        v === null
          ? { value: null, revision: 0 }
          : op.revision
            ? { value: v, revision: op.revision }
            : undefined;
    } else if ((op.op === "write" || (op.op === "cas" && op.result?.ok)) && op.revision) {
      seen = { value: op.value ?? null, revision: op.revision };
    } else if (op.op === "delete") {
      seen = { value: null, revision: 0 };
    }
    if (!seen) return;
    // An absent key has no revision of its own to compare; otherwise keep the newest.
    const cur = this.known.get(op.key);
    if (!cur || seen.revision === 0 || seen.revision >= cur.revision) this.known.set(op.key, seen);
  }
}
