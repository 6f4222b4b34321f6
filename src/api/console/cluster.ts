/**
 * What the console shows of the cluster, as JSON (admin token):
 *
 *   GET /v1/admin/console/node     → this node only: addresses, labels, disk, data and chunk
 *                                    bytes, request counters and latency histograms per door,
 *                                    the Raft state of each shard replica it holds
 *   GET /v1/admin/console/cluster  → every node (its liveness as this node sees it, merged with
 *                                    its own /node answer, asked for with the same token and a
 *                                    short deadline), every keyspace's shard map (ranges,
 *                                    replicas, leaders, moves in progress) and the chunk ring's
 *                                    summary
 *   GET /v1/admin/console/ring     → the chunk ring record, with each node's partition counts
 *
 * A leader is known only to the replicas of a shard, so the cluster view takes each shard's
 * Raft state from the nodes holding it (the leader's own answer first). Request rates are not
 * computed here: the page takes the difference of two answers (counters never go backwards
 * except at a restart, which the page detects).
 */
import { readFileSync } from "node:fs";
import { statfs } from "node:fs/promises";
import type { RingRecord } from "../../placement/index.js";
import type { ShardInfo, Sharding } from "../../shard/index.js";

/** Latency buckets of kumo_http_request_duration_seconds (le, seconds), as the node has them. */
export type Buckets = readonly number[];

/** One shard replica's Raft state, as GET /v1/cluster shows it. */
export interface LocalShard {
  readonly id: string;
  readonly keyspace: string;
  readonly replicas: readonly string[];
  readonly voters: readonly string[] | null;
  readonly learners: readonly string[] | null;
  readonly leader: string | null;
  readonly term: number | null;
  readonly localRole: string | null;
  readonly commit: number | null;
  readonly applied: number | null;
}

/** A node as GET /v1/cluster shows it. */
export interface StatusNode {
  readonly id: string;
  readonly peer?: string;
  readonly state: string;
  readonly admin?: string;
  readonly replicas?: number;
  readonly leaders?: number;
  readonly reachable?: boolean;
}

/** The parts of GET /v1/cluster the console reads (the node's `clusterStatus()`). */
export interface ClusterStatusView {
  readonly node: string;
  readonly ready: boolean;
  readonly nodes?: readonly StatusNode[];
  readonly shards?: readonly LocalShard[];
}

/** A member's record (addresses and labels). */
export interface MemberView {
  readonly peer: string;
  readonly api: string;
  readonly s3: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly admin?: string;
}

/** prom-client's registry, as far as the console reads it. */
export interface MetricsRegistry {
  getSingleMetric(name: string):
    | {
        get(): Promise<{
          values: readonly {
            value: number;
            labels: Readonly<Record<string, string | number | undefined>>;
            metricName?: string;
          }[];
        }>;
      }
    | undefined;
}

export interface ClusterSources {
  readonly nodeId: string;
  readonly addresses: { readonly api: string; readonly s3: string; readonly peer: string };
  readonly labels: Readonly<Record<string, string>>;
  readonly dataDir: string;
  /** GET /v1/cluster's document (the node's `clusterStatus()`; see ClusterStatusView). */
  readonly status: () => unknown;
  readonly member: (id: string) => MemberView | undefined;
  readonly shardMap: () => {
    keyspaces(): string[];
    sharding(keyspace: string): Sharding | undefined;
    shards(keyspace?: string): ShardInfo[];
  };
  /** Wanted replicas per keyspace (from the keyspace records), when known. */
  readonly wantedReplicas?: (keyspace: string) => number | undefined;
  readonly ring: () => RingRecord | undefined;
  readonly dataBytes?: () => number;
  readonly chunks?: () => { readonly chunks: number; readonly bytes: number };
  readonly metrics?: MetricsRegistry;
  /** How long the cluster view waits for another node's answer. */
  readonly peerTimeoutMs?: number;
  /** "https" when the nodes' API ports serve TLS (then `peerFetch` trusts the cluster CA). */
  readonly peerScheme?: "http" | "https";
  /** How to call another node's API port (default: the global fetch). */
  readonly peerFetch?: typeof fetch;
}

/** Doors whose requests the console charts (the console's own polling is left out). */
const DOORS = ["kv", "s3", "admin"] as const;
const PEER_TIMEOUT_MS = 1_200;
/** Nodes asked in parallel for their own view (bigger clusters are shown from ours alone). */
const PEERS_ASKED_MAX = 64;
const DISK_CACHE_MS = 5_000;

function packageVersion(): string {
  try {
    const pkg = JSON.parse(
      readFileSync(new URL("../../../../package.json", import.meta.url), "utf8"),
    ) as { version?: string };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}

export interface DoorRequests {
  count: number;
  errors: number;
  sumSeconds: number;
  /** Cumulative counts per bound of `le`, then the +Inf bucket (the total). */
  buckets: number[];
}

export interface NodeSnapshot {
  readonly id: string;
  readonly time: number;
  readonly version: string;
  readonly uptimeSeconds: number;
  readonly addresses: { readonly api: string; readonly s3: string; readonly peer: string };
  readonly labels: Readonly<Record<string, string>>;
  readonly disk: { readonly sizeBytes: number; readonly freeBytes: number } | null;
  readonly dataBytes: number | null;
  readonly chunks: { readonly count: number; readonly bytes: number } | null;
  readonly rssBytes: number;
  readonly le: readonly number[];
  readonly requests: Record<string, DoorRequests>;
  readonly shards: readonly LocalShard[];
}

// ------------------------------------------------------------------ shard ranges

const dec = new TextDecoder("utf-8", { fatal: false });

/** A shard bound for people: "−∞"/"+∞", a hash position, or the key's text. */
export interface Bound {
  readonly hex: string;
  /** What to show. */
  readonly label: string;
  /** Position in [0, 1] within the keyspace (exact for hash sharding, rough for range). */
  readonly pos: number;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

/** Printable text of a key: control and non-UTF-8 bytes escaped as \xNN. */
export function printable(b: Uint8Array): string {
  const esc = (x: number) => `\\x${x.toString(16).padStart(2, "0")}`;
  const s = dec.decode(b);
  let out = "";
  if (!s.includes("\uFFFD")) {
    for (const ch of s) {
      const x = ch.codePointAt(0) as number;
      out += x < 0x20 || x === 0x7f ? esc(x) : ch;
    }
    return out;
  }
  for (const x of b) out += x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : esc(x);
  return out;
}

/** Describes an encoded shard bound of `keyspace` (see src/shard/map.ts encodeKey). */
export function describeBound(
  bound: Uint8Array,
  keyspace: string,
  sharding: Sharding,
  end: boolean,
): Bound {
  const prefix = Buffer.concat([Buffer.from(keyspace, "utf8"), Buffer.from([0])]);
  const b = Buffer.from(bound.buffer, bound.byteOffset, bound.byteLength);
  if (b.byteLength === 0) return { hex: "", label: end ? "+∞" : "−∞", pos: end ? 1 : 0 };
  const cmp = Buffer.compare(b.subarray(0, prefix.byteLength), prefix);
  if (cmp !== 0 || b.byteLength < prefix.byteLength) {
    // Outside the keyspace's own range: before it (the start of everything) or after it.
    const after = cmp > 0;
    return { hex: hex(b), label: after ? "+∞" : "−∞", pos: after ? 1 : 0 };
  }
  const rest = b.subarray(prefix.byteLength);
  if (sharding === "hash") {
    const h = Buffer.alloc(4);
    rest.copy(h, 0, 0, Math.min(4, rest.byteLength));
    const v = h.readUInt32BE(0);
    if (rest.byteLength === 0) return { hex: hex(b), label: "−∞", pos: 0 };
    return {
      hex: hex(b),
      label: `#${h.toString("hex")}${rest.byteLength > 4 ? "…" : ""}`,
      pos: v / 2 ** 32,
    };
  }
  if (rest.byteLength === 0) return { hex: hex(b), label: "−∞", pos: 0 };
  const pos = ((rest[0] ?? 0) * 256 + (rest[1] ?? 0)) / 65_536;
  return { hex: hex(b), label: printable(rest), pos };
}

const sameSet = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && a.every((x) => b.includes(x));

// ------------------------------------------------------------------ the views

export class ClusterViews {
  private disk: { at: number; value: NodeSnapshot["disk"] } | undefined;
  private readonly version = packageVersion();
  private readonly startedMs = Date.now() - process.uptime() * 1000;

  constructor(private readonly src: ClusterSources) {}

  private async diskUsage(): Promise<NodeSnapshot["disk"]> {
    const now = Date.now();
    if (this.disk && now - this.disk.at < DISK_CACHE_MS) return this.disk.value;
    let value: NodeSnapshot["disk"] = null;
    try {
      const fs = await statfs(this.src.dataDir);
      value = { sizeBytes: fs.blocks * fs.bsize, freeBytes: fs.bavail * fs.bsize };
    } catch {
      value = null;
    }
    this.disk = { at: now, value };
    return value;
  }

  /** Request counters and latency histograms per door, from the node's metrics. */
  private async requests(): Promise<{ le: number[]; requests: Record<string, DoorRequests> }> {
    const requests: Record<string, DoorRequests> = {};
    const le: number[] = [];
    for (const d of DOORS) requests[d] = { count: 0, errors: 0, sumSeconds: 0, buckets: [] };
    const m = this.src.metrics;
    if (!m) return { le, requests };
    const counts = await m.getSingleMetric("kumo_http_requests_total")?.get();
    for (const v of counts?.values ?? []) {
      const door = String(v.labels.door);
      const r = requests[door];
      if (!r || v.labels.op === "console") continue;
      r.count += v.value;
      if (Number(v.labels.status) >= 500) r.errors += v.value;
    }
    const hist = await m.getSingleMetric("kumo_http_request_duration_seconds")?.get();
    // Finite bounds in `le`; each door's `buckets` has one more entry, the +Inf bucket.
    const bounds = new Set<number>();
    for (const v of hist?.values ?? [])
      if (v.metricName?.endsWith("_bucket") && v.labels.le !== "+Inf")
        bounds.add(Number(v.labels.le));
    le.push(...[...bounds].sort((a, b) => a - b));
    for (const r of Object.values(requests)) r.buckets = [...le.map(() => 0), 0];
    for (const v of hist?.values ?? []) {
      const r = requests[String(v.labels.door)];
      if (!r || v.labels.op === "console") continue;
      if (v.metricName?.endsWith("_sum")) r.sumSeconds += v.value;
      else if (v.metricName?.endsWith("_bucket")) {
        const i = v.labels.le === "+Inf" ? le.length : le.indexOf(Number(v.labels.le));
        if (i >= 0) r.buckets[i] = (r.buckets[i] ?? 0) + v.value;
      }
    }
    return { le, requests };
  }

  async node(): Promise<NodeSnapshot> {
    const s = this.src;
    const st = s.status() as ClusterStatusView;
    const { le, requests } = await this.requests();
    const chunks = s.chunks?.();
    return {
      id: s.nodeId,
      time: Date.now(),
      version: this.version,
      uptimeSeconds: Math.round((Date.now() - this.startedMs) / 1000),
      addresses: s.addresses,
      labels: s.labels,
      disk: await this.diskUsage(),
      dataBytes: s.dataBytes?.() ?? null,
      chunks: chunks ? { count: chunks.chunks, bytes: chunks.bytes } : null,
      rssBytes: process.memoryUsage.rss(),
      le,
      requests,
      shards: (st.shards ?? []).filter((x) => x.localRole !== null),
    };
  }

  /** Where to reach node `id`'s API: its record's address (a wildcard host: its peer's host). */
  apiAddress(id: string): string | undefined {
    const m = this.src.member(id);
    const peerOf =
      (this.src.status() as ClusterStatusView).nodes?.find((n) => n.id === id)?.peer ?? m?.peer;
    const api = m?.api;
    if (!api) return undefined;
    const i = api.lastIndexOf(":");
    const host = api.slice(0, i);
    if (host === "0.0.0.0" || host === "::" || host === "[::]" || host === "") {
      const ph = peerOf ? peerOf.slice(0, peerOf.lastIndexOf(":")) : "127.0.0.1";
      return `${ph}${api.slice(i)}`;
    }
    return api;
  }

  private async peerSnapshot(
    id: string,
    authorization: string,
  ): Promise<{ snapshot?: NodeSnapshot; error?: string }> {
    const addr = this.apiAddress(id);
    if (!addr) return { error: "no API address known" };
    try {
      const peerFetch = this.src.peerFetch ?? fetch;
      const r = await peerFetch(
        `${this.src.peerScheme ?? "http"}://${addr}/v1/admin/console/node`,
        {
          headers: { authorization },
          signal: AbortSignal.timeout(this.src.peerTimeoutMs ?? PEER_TIMEOUT_MS),
        },
      );
      if (!r.ok) return { error: `answered ${r.status}` };
      return { snapshot: (await r.json()) as NodeSnapshot };
    } catch (e) {
      const err = e as Error & { cause?: { code?: string } };
      return { error: err.cause?.code ?? err.name ?? "unreachable" };
    }
  }

  async cluster(authorization: string): Promise<unknown> {
    const s = this.src;
    const st = s.status() as ClusterStatusView;
    const self = await this.node();
    const statusNodes = st.nodes ?? [{ id: s.nodeId, state: "alive" }];
    const asked = statusNodes
      .filter((n) => n.id !== s.nodeId && n.state !== "dead")
      .slice(0, PEERS_ASKED_MAX);
    const answers = new Map<string, { snapshot?: NodeSnapshot; error?: string }>();
    answers.set(s.nodeId, { snapshot: self });
    await Promise.all(
      asked.map(async (n) => answers.set(n.id, await this.peerSnapshot(n.id, authorization))),
    );

    // Each shard's Raft state: the leader's own report first, then the newest term seen.
    const best = new Map<string, LocalShard>();
    const consider = (x: LocalShard) => {
      const cur = best.get(x.id);
      const rank = (y: LocalShard) => (y.localRole === "leader" ? 1 : 0) * 1e15 + (y.term ?? 0);
      if (!cur || rank(x) > rank(cur)) best.set(x.id, x);
    };
    for (const a of answers.values()) for (const x of a.snapshot?.shards ?? []) consider(x);
    for (const x of st.shards ?? []) if (x.localRole !== null || !best.has(x.id)) consider(x);

    const stateOf = new Map(statusNodes.map((n) => [n.id, n.state]));
    const map = s.shardMap();
    const leadersOf = new Map<string, number>();
    const keyspaces = map
      .keyspaces()
      .sort((a, b) => (a.startsWith("_") === b.startsWith("_") ? (a < b ? -1 : 1) : a < b ? 1 : -1))
      .map((name) => {
        const sharding = map.sharding(name) ?? "range";
        const shards = map.shards(name).map((sh) => {
          const raft = best.get(sh.id);
          const leader = raft?.leader ?? null;
          if (leader) leadersOf.set(leader, (leadersOf.get(leader) ?? 0) + 1);
          const voters = raft?.voters ?? null;
          const learners = raft?.learners ?? [];
          const moving =
            raft?.localRole === "leader" &&
            ((voters !== null && !sameSet(voters, sh.replicas)) || learners.length > 0);
          const down = sh.replicas.filter((r) => (stateOf.get(r) ?? "alive") !== "alive");
          return {
            id: sh.id,
            start: describeBound(sh.start, name, sharding, false),
            end: describeBound(sh.end, name, sharding, true),
            replicas: sh.replicas,
            voters,
            learners,
            leader,
            term: raft?.term ?? null,
            commit: raft?.commit ?? null,
            moving,
            down,
            health: leader === null ? "no-leader" : down.length > 0 ? "degraded" : "ok",
          };
        });
        return {
          name,
          system: name.startsWith("_"),
          sharding,
          replicas: s.wantedReplicas?.(name) ?? shards[0]?.replicas.length ?? 0,
          shards,
        };
      });

    const ring = s.ring();
    const ringCounts = ring ? ringPerNode(ring) : {};
    const nodes = statusNodes.map((n) => {
      const a = answers.get(n.id);
      const snap = a?.snapshot;
      const m = s.member(n.id);
      const labels = snap?.labels ?? m?.labels ?? {};
      return {
        id: n.id,
        self: n.id === s.nodeId,
        state: n.state,
        admin: n.admin ?? m?.admin ?? "active",
        zone: labels.zone ?? "",
        labels,
        api: snap?.addresses.api ?? m?.api ?? "",
        s3: snap?.addresses.s3 ?? m?.s3 ?? "",
        peer: snap?.addresses.peer ?? m?.peer ?? n.peer ?? "",
        replicas: n.replicas ?? 0,
        leaders: leadersOf.get(n.id) ?? 0,
        ringPartitions: ringCounts[n.id]?.total ?? 0,
        responded: snap !== undefined,
        error: a?.error ?? (n.state === "dead" ? "not asked: dead" : null),
        version: snap?.version ?? null,
        uptimeSeconds: snap?.uptimeSeconds ?? null,
        disk: snap?.disk ?? null,
        dataBytes: snap?.dataBytes ?? null,
        chunks: snap?.chunks ?? null,
        rssBytes: snap?.rssBytes ?? null,
        time: snap?.time ?? null,
        le: snap?.le ?? null,
        requests: snap?.requests ?? null,
      };
    });
    const all = keyspaces.flatMap((k) => k.shards);
    return {
      self: s.nodeId,
      time: Date.now(),
      ready: st.ready,
      nodes,
      keyspaces,
      summary: {
        nodes: nodes.length,
        alive: nodes.filter((n) => n.state === "alive").length,
        suspect: nodes.filter((n) => n.state === "suspect").length,
        dead: nodes.filter((n) => n.state === "dead").length,
        shards: all.length,
        leaderless: all.filter((x) => x.leader === null).length,
        degraded: all.filter((x) => x.down.length > 0).length,
        moves: all.filter((x) => x.moving).length,
      },
      ring: ring
        ? {
            version: ring.version,
            partitions: ring.partitions,
            replicas: ring.replicas,
            perNode: ringCounts,
          }
        : null,
    };
  }

  ringView(): unknown {
    const ring = this.src.ring();
    if (!ring) return { ring: null };
    return {
      version: ring.version,
      partitions: ring.partitions,
      replicas: ring.replicas,
      ring: ring.ring,
      perNode: ringPerNode(ring),
    };
  }
}

/** Partitions per node: as first replica (primary) and in all. */
export function ringPerNode(
  ring: Pick<RingRecord, "ring">,
): Record<string, { primary: number; total: number }> {
  const out: Record<string, { primary: number; total: number }> = {};
  for (const part of ring.ring) {
    part.forEach((id, i) => {
      out[id] ??= { primary: 0, total: 0 };
      const o = out[id] as { primary: number; total: number };
      o.total++;
      if (i === 0) o.primary++;
    });
  }
  return out;
}
