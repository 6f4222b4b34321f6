/**
 * The closed-loop load generator of the KV benchmarks (bench/kv.ts, bench/etcd.ts): one driver
 * and interchangeable targets, so that Kumo and etcd run under the same code path and only the
 * client library differs.
 *
 * The driver (`runLoad`) starts `clients` concurrent loops in this process. Each loop sends one
 * operation, waits for its answer, and sends the next, until the measured window ends (a closed
 * loop: the offered load adapts to the latency). Each operation is a get with probability
 * `getShare`, else a put of `value`, on a key drawn uniformly from `keys` keys. A warm-up comes
 * first; operations that complete inside the measured window count (throughput, latency from
 * just before the call to the target until its promise settles, errors). Loops start no new
 * operation after the window; operations in flight finish (each target bounds them by a
 * timeout).
 *
 * A target maps a key number to its own key and sends the operation: `KumoTarget` is the KV
 * HTTP API over a keep-alive node:http Agent, requests round-robin over the nodes; bench/etcd.ts
 * has the etcd one (gRPC).
 */
import { Progress } from "../src/cli/progress.js";
import { fmt, KvClient, percentile } from "./_lib.js";

/** Keys the workloads draw from (uniformly). */
export const KEYS = 10_000;

/** The name of key number `i` (the same on every target). */
export function keyName(i: number): string {
  return `bench-${String(i).padStart(5, "0")}`;
}

/** A value of `bytes` bytes (the same fixed pattern on every target; neither compresses values). */
export function benchValue(bytes: number): Buffer {
  const v = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) v[i] = (i * 31 + 7) & 0xff;
  return v;
}

export interface OpResult {
  /** Acknowledged (a put: committed and durable; a get: answered, found or not). */
  readonly ok: boolean;
  /** A get of a key that does not exist. */
  readonly miss?: boolean;
  /** What went wrong when not ok (an error code, `HTTP 503`, a gRPC error name). */
  readonly error?: string;
}

export const OK: OpResult = { ok: true };
export const MISS: OpResult = { ok: true, miss: true };

/** What the load generator drives: a KV store behind its own client library. */
export interface KvTarget {
  /** Writes `value` under key number `key`; resolves once the store acknowledges it. */
  put(key: number, value: Buffer): Promise<OpResult>;
  /** A linearizable read of key number `key`. */
  get(key: number): Promise<OpResult>;
  /** Closes the connections. */
  close(): void;
}

export interface LoadOptions {
  readonly clients: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  /** Keys drawn from (uniformly): 0 .. keys-1. */
  readonly keys: number;
  /** The share of operations that are gets (0: puts only, 1: gets only). */
  readonly getShare: number;
  readonly value: Buffer;
  /**
   * Called when the measured window opens (to snapshot counters and CPU); the driver waits for
   * it before it returns.
   */
  readonly onWindowStart?: () => Promise<void> | void;
  /** On a terminal: a progress bar with this label (seconds of warm-up + window) on stderr. */
  readonly label?: string;
}

export interface LoadResult {
  /** The measured window, in seconds. */
  readonly secs: number;
  /** Operations acknowledged inside the window. */
  readonly ops: number;
  readonly puts: number;
  readonly gets: number;
  readonly misses: number;
  readonly errors: number;
  readonly errorKinds: ReadonlyMap<string, number>;
  /** Latencies (ms) of the acknowledged operations inside the window, ascending. */
  readonly lat: readonly number[];
  readonly putLat: readonly number[];
  readonly getLat: readonly number[];
  /**
   * Operations acknowledged from the window's start until every loop stopped (those in flight
   * at the end included): what counters snapshotted by `onWindowStart` and right after
   * `runLoad` returns cover.
   */
  readonly opsAcked: number;
  readonly putsAcked: number;
}

/** p50, p90, p99 of an ascending list (NaN when empty). */
export function quantiles(sorted: readonly number[]): { p50: number; p90: number; p99: number } {
  return {
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    p99: percentile(sorted, 0.99),
  };
}

function errorName(e: unknown): string {
  if (e instanceof Error) return e.name !== "Error" ? e.name : e.message.slice(0, 60);
  return String(e).slice(0, 60);
}

/** The closed-loop driver: see the file comment. */
export async function runLoad(target: KvTarget, o: LoadOptions): Promise<LoadResult> {
  const t0 = performance.now();
  const measureFrom = t0 + o.warmupMs;
  const measureTo = measureFrom + o.measureMs;
  const lat: number[] = [];
  const putLat: number[] = [];
  const getLat: number[] = [];
  let misses = 0;
  let errors = 0;
  const errorKinds = new Map<string, number>();
  let counting = false;
  let opsAcked = 0;
  let putsAcked = 0;

  const opened = new Promise<void>((resolve, reject) => {
    setTimeout(() => {
      counting = true;
      Promise.resolve(o.onWindowStart?.()).then(() => resolve(), reject);
    }, o.warmupMs);
  });

  const loop = async () => {
    while (performance.now() < measureTo) {
      const isPut = Math.random() >= o.getShare;
      const k = Math.floor(Math.random() * o.keys);
      const start = performance.now();
      let r: OpResult;
      try {
        r = await (isPut ? target.put(k, o.value) : target.get(k));
      } catch (e) {
        r = { ok: false, error: errorName(e) };
      }
      const now = performance.now();
      if (counting && r.ok) {
        opsAcked++;
        if (isPut) putsAcked++;
      }
      if (now < measureFrom || now > measureTo) continue;
      if (!r.ok) {
        errors++;
        const kind = r.error ?? "error";
        errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
        continue;
      }
      const ms = now - start;
      lat.push(ms);
      if (isPut) putLat.push(ms);
      else {
        getLat.push(ms);
        if (r.miss) misses++;
      }
    }
  };
  const totalSecs = Math.round((o.warmupMs + o.measureMs) / 1000);
  const bar =
    o.label && process.stderr.isTTY
      ? new Progress({ label: `${o.label} (s)`, unit: "items", total: totalSecs })
      : undefined;
  const ticker = bar
    ? setInterval(() => bar.update(Math.min(totalSecs, (performance.now() - t0) / 1000)), 250)
    : undefined;
  try {
    await Promise.all([opened, ...Array.from({ length: o.clients }, loop)]);
  } finally {
    clearInterval(ticker);
    bar?.clear();
  }

  const asc = (a: number, b: number) => a - b;
  lat.sort(asc);
  putLat.sort(asc);
  getLat.sort(asc);
  return {
    secs: o.measureMs / 1000,
    ops: lat.length,
    puts: putLat.length,
    gets: getLat.length,
    misses,
    errors,
    errorKinds,
    lat,
    putLat,
    getLat,
    opsAcked,
    putsAcked,
  };
}

/** Several runs of the same workload as one (counts added, latencies pooled). */
export function mergeLoad(rs: readonly LoadResult[]): LoadResult {
  const add = (f: (r: LoadResult) => number) => rs.reduce((a, r) => a + f(r), 0);
  const pool = (f: (r: LoadResult) => readonly number[]) => rs.flatMap(f).sort((a, b) => a - b);
  const errorKinds = new Map<string, number>();
  for (const r of rs)
    for (const [k, n] of r.errorKinds) errorKinds.set(k, (errorKinds.get(k) ?? 0) + n);
  return {
    secs: add((r) => r.secs),
    ops: add((r) => r.ops),
    puts: add((r) => r.puts),
    gets: add((r) => r.gets),
    misses: add((r) => r.misses),
    errors: add((r) => r.errors),
    errorKinds,
    lat: pool((r) => r.lat),
    putLat: pool((r) => r.putLat),
    getLat: pool((r) => r.getLat),
    opsAcked: add((r) => r.opsAcked),
    putsAcked: add((r) => r.putsAcked),
  };
}

/**
 * Writes every key once (`workers` concurrent loops, each failed put retried until it succeeds
 * or `deadlineMs` passes), so that gets find their keys; returns a line that says how it went.
 */
export async function preload(
  target: KvTarget,
  keys: number,
  value: Buffer,
  workers = 64,
  deadlineMs = 120_000,
): Promise<string> {
  let next = 0;
  let loaded = 0;
  let errors = 0;
  const t0 = performance.now();
  const deadline = t0 + deadlineMs;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < keys && performance.now() < deadline) {
        const i = next++;
        while (performance.now() < deadline) {
          const r = await target.put(i, value).catch(() => ({ ok: false }));
          if (r.ok) {
            loaded++;
            break;
          }
          errors++;
        }
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  return `preloaded ${loaded} of ${keys} keys in ${secs.toFixed(1)} s (${fmt(loaded / secs)} puts/s, ${workers} clients, ${errors} errors)`;
}

/**
 * Kumo's KV HTTP API: `PUT` / `GET /v1/kv/default/<key>` (gets are linearizable by default) over
 * one keep-alive Agent, each request to the next node in turn (or where `route` says), with a
 * 15 s timeout per request.
 */
export class KumoTarget implements KvTarget {
  private readonly client: KvClient;
  private readonly paths: string[];
  private readonly getPaths: string[];
  private rr = 0;

  constructor(
    private readonly apis: readonly string[],
    token: string,
    maxSockets: number,
    opts: {
      keys?: number;
      /** The node each request of key number `key` goes to (default: round-robin). */
      route?: (key: number) => string;
      /** Appended to the path of gets (e.g. "?consistency=stale"). */
      getQuery?: string;
    } = {},
  ) {
    this.client = new KvClient(token, Math.max(1, maxSockets));
    this.paths = Array.from(
      { length: opts.keys ?? KEYS },
      (_, i) => `/v1/kv/default/${keyName(i)}`,
    );
    this.getPaths = this.paths.map((p) => p + (opts.getQuery ?? ""));
    if (opts.route) this.next = opts.route;
  }

  private next = (_key: number): string => this.apis[this.rr++ % this.apis.length] as string;

  async put(key: number, value: Buffer): Promise<OpResult> {
    const r = await this.client.send(this.next(key), "PUT", this.paths[key] as string, value);
    return r.status === 200 ? OK : { ok: false, error: r.error ?? `HTTP ${r.status}` };
  }

  async get(key: number): Promise<OpResult> {
    const r = await this.client.send(this.next(key), "GET", this.getPaths[key] as string);
    if (r.status === 200) return OK;
    if (r.status === 404) return MISS;
    return { ok: false, error: r.error ?? `HTTP ${r.status}` };
  }

  close(): void {
    this.client.close();
  }
}
