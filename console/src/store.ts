/**
 * The cluster as the page knows it: GET /v1/admin/console/cluster every two seconds, and the
 * history of request rates and latencies computed from successive answers (the nodes keep
 * cumulative counters; a rate is the difference of two answers over the time between them).
 */
import { useEffect, useState } from "preact/hooks";
import { API, type ApiError, type ClusterView, getJson } from "./api";

export const POLL_MS = 2_000;
/** Samples kept: ten minutes at one every two seconds. */
const HISTORY_MAX = 300;
export const DOORS = ["kv", "s3", "admin"] as const;
export type DoorName = (typeof DOORS)[number];

export interface DoorSample {
  /** Requests per second. */
  rate: number;
  /** 5xx answers per second. */
  errors: number;
  /** Requests per latency bucket in the interval (cumulative, the last is +Inf). */
  buckets: number[];
}

export interface Sample {
  t: number;
  le: number[];
  doors: Record<DoorName, DoorSample>;
  /** Requests per second per node (every door). */
  perNode: Record<string, number>;
}

/** The q-quantile (0..1) of a cumulative histogram, interpolated inside its bucket (seconds). */
export function quantile(le: readonly number[], cum: readonly number[], q: number): number | null {
  const total = cum[cum.length - 1] ?? 0;
  if (total <= 0) return null;
  const target = q * total;
  for (let i = 0; i < cum.length; i++) {
    const c = cum[i] as number;
    if (c >= target) {
      if (i >= le.length) return le[le.length - 1] ?? null;
      const lo = i === 0 ? 0 : (le[i - 1] as number);
      const hi = le[i] as number;
      const below = i === 0 ? 0 : (cum[i - 1] as number);
      const inBucket = c - below;
      return inBucket <= 0 ? hi : lo + ((target - below) / inBucket) * (hi - lo);
    }
  }
  return le[le.length - 1] ?? null;
}

/** Merges the doors of a sample into one histogram and one rate. */
export function merged(
  s: Sample,
  doors: readonly DoorName[],
): { rate: number; errors: number; buckets: number[] } {
  const buckets = s.le.map(() => 0).concat(0);
  let rate = 0;
  let errors = 0;
  for (const d of doors) {
    const x = s.doors[d];
    rate += x.rate;
    errors += x.errors;
    x.buckets.forEach((v, i) => {
      buckets[i] = (buckets[i] ?? 0) + v;
    });
  }
  return { rate, errors, buckets };
}

export function sampleOf(prev: ClusterView, cur: ClusterView): Sample | undefined {
  const doors = {} as Record<DoorName, DoorSample>;
  let le: number[] = [];
  for (const d of DOORS) doors[d] = { rate: 0, errors: 0, buckets: [] };
  const perNode: Record<string, number> = {};
  let any = false;
  for (const n of cur.nodes) {
    const p = prev.nodes.find((x) => x.id === n.id);
    if (!p?.requests || !n.requests || p.time === null || n.time === null) continue;
    const dt = (n.time - p.time) / 1000;
    if (dt <= 0) continue;
    // A restarted node starts its counters again: skip the interval.
    if (DOORS.some((d) => (n.requests?.[d]?.count ?? 0) < (p.requests?.[d]?.count ?? 0))) continue;
    if (n.le && le.length === 0) le = n.le;
    any = true;
    let nodeRate = 0;
    for (const d of DOORS) {
      const a = p.requests[d];
      const b = n.requests[d];
      if (!a || !b) continue;
      const r = (b.count - a.count) / dt;
      nodeRate += r;
      doors[d].rate += r;
      doors[d].errors += Math.max(0, b.errors - a.errors) / dt;
      const delta = b.buckets.map((v, i) => Math.max(0, v - (a.buckets[i] ?? 0)));
      doors[d].buckets = doors[d].buckets.length
        ? doors[d].buckets.map((v, i) => v + (delta[i] ?? 0))
        : delta;
    }
    perNode[n.id] = nodeRate;
  }
  if (!any) return undefined;
  for (const d of DOORS)
    if (doors[d].buckets.length === 0) doors[d].buckets = le.map(() => 0).concat(0);
  return { t: cur.time, le, doors, perNode };
}

type Listener = () => void;

class ClusterStore {
  view: ClusterView | null = null;
  error: ApiError | null = null;
  samples: Sample[] = [];
  updatedAt = 0;
  private timer: number | undefined;
  private busy = false;
  private readonly listeners = new Set<Listener>();

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  private emit(): void {
    for (const l of this.listeners) l();
  }

  start(): void {
    if (this.timer !== undefined) return;
    void this.poll();
    this.timer = window.setInterval(() => void this.poll(), POLL_MS);
  }

  stop(): void {
    if (this.timer !== undefined) window.clearInterval(this.timer);
    this.timer = undefined;
    this.view = null;
    this.samples = [];
    this.error = null;
  }

  async poll(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const v = await getJson<ClusterView>(`${API}/cluster`);
      if (this.view) {
        const s = sampleOf(this.view, v);
        if (s) {
          this.samples.push(s);
          if (this.samples.length > HISTORY_MAX) this.samples.shift();
        }
      }
      this.view = v;
      this.error = null;
      this.updatedAt = Date.now();
    } catch (e) {
      this.error = e as ApiError;
    } finally {
      this.busy = false;
      this.emit();
    }
  }
}

export const cluster = new ClusterStore();

export function useCluster(): ClusterStore {
  const [, setTick] = useState(0);
  useEffect(() => cluster.subscribe(() => setTick((t) => t + 1)), []);
  return cluster;
}
