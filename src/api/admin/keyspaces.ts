/**
 * Keyspaces as a service: create, list, describe and delete them, and keep every node's shard
 * map in step with the metadata group.
 *
 * The metadata group is the shard "meta" of the system keyspace "_meta" (range-sharded, one
 * shard, replicated on up to 3 members). Keyspace records live in it as keys `ks/<name>`
 * (src/placement/keyspaces.ts), so reading and writing them goes through the same KV service,
 * with the same routing, forwarding, retries and fail-fast deadlines as user data, and creating a
 * keyspace is one create-only write: two nodes racing to create it cannot both win.
 *
 * Every node refreshes its map from the records periodically and whenever a request names a
 * keyspace it does not know, then creates its replicas of shards placed on it (each replica of
 * a new shard bootstraps the same initial configuration, as the initial shards do).
 *
 *   PUT    /v1/keyspaces/{name}  {"sharding":"hash"|"range","replicas":3,"shards":8}
 *                                → 201 (created) / 200 (exists with the same settings) / 409
 *   GET    /v1/keyspaces          → {"keyspaces":[...]}
 *   GET    /v1/keyspaces/{name}   → its shards, ranges, replicas, leaders
 *   DELETE /v1/keyspaces/{name}[?force=true] → 200; 409 KEYSPACE_NOT_EMPTY unless forced
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { MultiRaftHost } from "../../multiraft/index.js";
import {
  applyPlan,
  type ClusterView,
  clusterViewOf,
  KEYSPACE_RECORD_PREFIX,
  type KeyspaceRecord,
  keyspacePrefixHex,
  livenessAt,
  MEMBER_RECORD_PREFIX,
  META_REPLICAS_SMALL,
  type MemberRecord,
  metaReplicasWanted,
  type NodeReport,
  type NodeState,
  nextMembershipChange,
  PLAN_LIMITS_DEFAULT,
  parseKeyspaceRecord,
  planAll,
  planKeyspace,
  REPORT_RECORD_PREFIX,
  REPORT_SHARDS_MAX,
  recordAfterSplit,
  replicaLoad,
  replicasWantedOn,
  type ShardStats,
  SPLIT_BYTES_DEFAULT,
  statsFromReports,
  validateKeyspaceSpec,
  withMovesSince,
} from "../../placement/index.js";
import type { NodeId } from "../../raft/index.js";
import {
  type ApplyResult,
  type ShardInfo,
  type Sharding,
  type ShardMachine,
  ShardMap,
} from "../../shard/index.js";
import { fromHex, toHex } from "../../storage/index.js";
import {
  type Credentials,
  HttpError,
  readBody,
  requireAdmin,
  requireAuthenticated,
  sendJson,
} from "../kv/http.js";
import type { KvError, KvService } from "../kv/service.js";

export const META_KEYSPACE = "_meta";
export const META_SHARD = "meta";
/** Replicas of the metadata group at creation (fewer on smaller clusters; see metaReplicasWanted). */
export const META_REPLICAS = META_REPLICAS_SMALL;
/** Keyspace records read per refresh; creating more keyspaces than this is refused. */
export const KEYSPACES_MAX = 1000;
/** Placement rounds that changed something are at least this far apart. */
const PLAN_INTERVAL_MS = 2_000;
/** Replica moves decided per round (each costs a snapshot transfer). */
const MOVES_PER_ROUND = 2;
/**
 * A replica no record places here any more is deleted once this node's copy of the group no
 * longer counts it as a voter (it applied its removal) and no write proposed through it waits
 * for an answer, or after this long in any case (it was removed while it was down, and will
 * never hear of it).
 */
const UNLISTED_GRACE_MS = 30_000;
/** How long PUT waits for a new keyspace's shards to elect leaders before answering 201. */
const CREATE_WAIT_MS = 10_000;

const enc = new TextEncoder();
const dec = new TextDecoder();

export interface StaticKeyspace {
  readonly name: string;
  readonly sharding: Sharding;
  readonly shards: readonly ShardInfo[];
}

/**
 * The system keyspace holding the metadata group: one shard over the whole `_meta` range. At
 * creation it lives on the first initial members; later its record (`ks/_meta`) places it like
 * any shard, and each node starts from the placement it last saw (`replicas`).
 */
export function metaKeyspace(
  members: readonly NodeId[],
  replicas?: readonly NodeId[],
): StaticKeyspace {
  const voters =
    replicas && replicas.length > 0 ? [...replicas] : [...members].sort().slice(0, META_REPLICAS);
  return {
    name: META_KEYSPACE,
    sharding: "range",
    shards: [
      {
        id: META_SHARD,
        keyspace: META_KEYSPACE,
        start: fromHex(keyspacePrefixHex(META_KEYSPACE)),
        end: new Uint8Array(0),
        replicas: voters,
      },
    ],
  };
}

export function staticKeyspaces(map: ShardMap): StaticKeyspace[] {
  return map.keyspaces().map((name) => ({
    name,
    sharding: map.sharding(name) as Sharding,
    shards: map.shards(name),
  }));
}

function recordKeyspace(r: KeyspaceRecord): StaticKeyspace {
  return {
    name: r.name,
    sharding: r.sharding,
    shards: r.shards.map((s) => ({
      id: s.id,
      keyspace: r.name,
      start: fromHex(s.start),
      end: fromHex(s.end),
      replicas: s.replicas,
    })),
  };
}

export interface SplitOptions {
  /** A shard holding more than this many bytes splits. */
  readonly bytes: number;
  /** A shard applying more writes per second than this for a few rounds splits (0: off). */
  readonly loadOpsPerSec: number;
}

/** Rounds (one per second) a shard must stay over the load threshold before it splits. */
const SPLIT_HOT_ROUNDS_MIN = 3;

/**
 * Drives a stepped computation of a shard machine (a split-point search) with a turn of the
 * event loop between steps: reading a whole 64 MiB shard at once kept this node (a leader) from
 * answering anyone for about half a second.
 */
async function stepped<T>(steps: Generator<void, T>): Promise<T> {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

export interface LivenessOptions {
  /** Unreachable this long: suspect (shown; nothing moves). */
  readonly suspectAfterMs: number;
  /** Unreachable this long: dead (its replicas are re-created elsewhere). */
  readonly deadAfterMs: number;
}

export const LIVENESS_DEFAULTS: LivenessOptions = { suspectAfterMs: 10_000, deadAfterMs: 60_000 };

export type AdminError =
  | KvError
  | {
      readonly ok: false;
      readonly code:
        | "INVALID"
        | "KEYSPACE_EXISTS"
        | "KEYSPACE_NOT_EMPTY"
        | "TOO_MANY_KEYSPACES"
        | "PROTECTED";
      readonly message: string;
    };

type Host = MultiRaftHost<ApplyResult, ShardMachine>;

export class KeyspaceAdmin {
  private version = 0;
  private refreshing: Promise<void> | undefined;
  private lastRecords: KeyspaceRecord[] = [];
  /** Local replicas that no record lists, since when (see UNLISTED_GRACE_MS). */
  private readonly unlistedSince = new Map<string, number>();
  private splitting = false;

  constructor(
    private readonly self: NodeId,
    private readonly kv: KvService,
    private readonly host: Host,
    /** The cluster's initial members; members who joined later come from their records. */
    private readonly initialMembers: readonly NodeId[],
    /** Keyspaces that exist without a record: "default" (from the cluster's creation) and "_meta". */
    private readonly fixed: readonly StaticKeyspace[],
    private readonly onError: (err: unknown) => void,
    private readonly splits: SplitOptions = { bytes: SPLIT_BYTES_DEFAULT, loadOpsPerSec: 0 },
    private readonly liveness: LivenessOptions = LIVENESS_DEFAULTS,
    /** This node's own member record (written to the metadata group, kept up to date). */
    private readonly selfRecord?: MemberRecord,
    /** Called for every member record seen (the node registers the peer's address). */
    private readonly onMember: (m: MemberRecord) => void = () => {},
    private readonly meta: MetaPlacementHooks = {},
  ) {}

  /** The metadata group's replicas as last installed in the map (see `doRefresh`). */
  private metaReplicas: readonly NodeId[] | undefined;
  private lastDiscoverMs = 0;

  private readonly memberRecords = new Map<NodeId, MemberRecord>();

  /** Every member: the initial ones and those that joined (sorted). */
  get members(): readonly NodeId[] {
    return [...new Set([...this.initialMembers, ...this.memberRecords.keys()])].sort();
  }

  memberRecord(id: NodeId): MemberRecord | undefined {
    return this.memberRecords.get(id);
  }

  /** Reads the member records, registers their addresses, and writes ours if it changed. */
  private async refreshMembers(): Promise<void> {
    const r = await this.kv.list(
      META_KEYSPACE,
      { prefix: enc.encode(MEMBER_RECORD_PREFIX), startAfter: undefined, limit: KEYSPACES_MAX },
      "linearizable",
    );
    if (!r.ok) return;
    let mine: { record: MemberRecord; revision: number } | undefined;
    for (const i of r.items) {
      const m = JSON.parse(dec.decode(i.value)) as MemberRecord;
      this.memberRecords.set(m.id, m);
      if (m.id !== this.self) this.onMember(m);
      else mine = { record: m, revision: i.revision };
    }
    const me = this.selfRecord;
    if (!me) return;
    // The operator's intent (draining, removed) is kept: a node only updates its addresses and
    // labels, conditionally, so a concurrent drain is never overwritten.
    const want: MemberRecord = {
      ...me,
      ...(mine?.record.admin ? { admin: mine.record.admin } : {}),
    };
    if (JSON.stringify(mine?.record) === JSON.stringify(want)) return;
    const w = await this.kv.put(
      META_KEYSPACE,
      enc.encode(MEMBER_RECORD_PREFIX + me.id),
      enc.encode(JSON.stringify(want)),
      mine ? { kind: "ifRevision", revision: mine.revision } : { kind: "ifAbsent" },
    );
    if (w.ok) this.memberRecords.set(me.id, want);
  }

  /**
   * Sets a member's operator state: "draining" moves every replica off it (and leadership
   * first), "removed" retires it for good (its replicas are re-created elsewhere at once, as
   * for a dead node), "active" undoes a drain. A conditional write of its member record.
   */
  async setMemberAdmin(
    id: NodeId,
    admin: "active" | "draining" | "removed",
  ): Promise<{ ok: true; record: MemberRecord } | AdminError> {
    const key = enc.encode(MEMBER_RECORD_PREFIX + id);
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = await this.kv.get(META_KEYSPACE, key, "linearizable");
      if (!cur.ok) return cur;
      if (!cur.item) {
        if (!this.initialMembers.includes(id))
          return { ok: false, code: "NOT_FOUND", message: `no member ${JSON.stringify(id)}` };
      }
      const old: MemberRecord = cur.item
        ? (JSON.parse(dec.decode(cur.item.value)) as MemberRecord)
        : { id, peer: "", api: "", s3: "" };
      if (old.admin === "removed" && admin !== "removed")
        return { ok: false, code: "PROTECTED", message: `member ${id} was removed for good` };
      const { admin: _old, ...rest } = old;
      const next: MemberRecord = admin === "active" ? rest : { ...rest, admin };
      const w = await this.kv.put(
        META_KEYSPACE,
        key,
        enc.encode(JSON.stringify(next)),
        cur.item ? { kind: "ifRevision", revision: cur.item.revision } : { kind: "ifAbsent" },
      );
      if (w.ok) {
        this.memberRecords.set(id, next);
        this.lastPlanMs = 0; // act on it in the next round
        return { ok: true, record: next };
      }
      if (w.code !== "PRECONDITION_FAILED") return w;
    }
    return { ok: false, code: "UNAVAILABLE", message: "the member record kept changing; retry" };
  }

  // ------------------------------------------------------------------ liveness and placement

  /** Since when each member has been unreachable from this node (absent: reachable). */
  private readonly unreachableSince = new Map<NodeId, number>();

  /**
   * Samples reachability (the transport's connection state to each member; called every
   * second). Every node keeps this history, so a node that becomes the metadata leader judges
   * with what it saw all along, not from scratch.
   */
  observe(reachable: (id: NodeId) => boolean, nowMs: number): void {
    for (const m of this.members) {
      if (m === this.self || reachable(m)) this.unreachableSince.delete(m);
      else if (!this.unreachableSince.has(m)) this.unreachableSince.set(m, nowMs);
    }
  }

  livenessOf(id: NodeId, nowMs: number): NodeState {
    // Last heard = when it became unreachable (now, while it is reachable).
    return livenessAt(
      { lastHeartbeatMs: this.unreachableSince.get(id) ?? nowMs },
      nowMs,
      this.liveness,
    );
  }

  /** When the last placement round changed a record (rounds are at least PLAN_INTERVAL_MS apart). */
  private lastPlanMs = 0;

  /**
   * The placement round, acted on by the metadata group's leader only: the pure schedulers
   * (src/placement/planner.ts: repair of replicas on dead nodes first, then replica and leader
   * balance) decide on the cluster as the records describe it; their operations become record
   * changes (one conditional write per keyspace), which the shards' leaders then carry out
   * (`reconcile`). Splits are decided by the shards' leaders, who know their sizes
   * (`checkSplits`). A round that changed something is followed by a pause, so that moves
   * never flood the cluster with snapshots.
   */
  async repair(nowMs: number): Promise<void> {
    if (this.host.status(META_SHARD)?.role !== "leader") return;
    if (nowMs - this.lastPlanMs < PLAN_INTERVAL_MS) return;
    const r = await this.recordsWithRevisions();
    if (!r.ok) return;
    const records = r.records.map((x) => x.record);
    if (await this.resizeMeta(r.records, nowMs)) return;
    const plan = planAll(this.clusterView(records, nowMs), {
      ...PLAN_LIMITS_DEFAULT,
      movesMax: MOVES_PER_ROUND,
    });
    const changed = applyPlan(records, plan.ops);
    if (changed.length === 0) return;
    this.lastPlanMs = nowMs;
    for (const rec of changed) {
      const revision = r.records.find((x) => x.record.name === rec.name)?.revision;
      if (revision === undefined) continue;
      const w = await this.kv.put(
        META_KEYSPACE,
        enc.encode(KEYSPACE_RECORD_PREFIX + rec.name),
        enc.encode(JSON.stringify(rec)),
        { kind: "ifRevision", revision },
      );
      if (!w.ok && w.code !== "PRECONDITION_FAILED") this.onError(new Error(w.message));
    }
    await this.refresh();
  }

  /**
   * Sets the metadata group's wanted replica count (`metaReplicasWanted`) in its record; the
   * repair scheduler then adds or removes replicas one safe step at a time, as for any shard.
   * True when it wrote (the round ends there).
   */
  private async resizeMeta(
    records: readonly { record: KeyspaceRecord; revision: number }[],
    nowMs: number,
  ): Promise<boolean> {
    const cur = records.find((x) => x.record.name === META_KEYSPACE);
    if (!cur) return false;
    const eligible = this.members.filter(
      (m) => this.memberRecords.get(m)?.admin === undefined && this.livenessOf(m, nowMs) !== "dead",
    ).length;
    const want = metaReplicasWanted(eligible, cur.record.replicas);
    if (want === cur.record.replicas) return false;
    const w = await this.kv.put(
      META_KEYSPACE,
      enc.encode(KEYSPACE_RECORD_PREFIX + META_KEYSPACE),
      enc.encode(JSON.stringify({ ...cur.record, replicas: want })),
      { kind: "ifRevision", revision: cur.revision },
    );
    if (!w.ok && w.code !== "PRECONDITION_FAILED") this.onError(new Error(w.message));
    this.lastPlanMs = nowMs;
    return true;
  }

  /**
   * Since when this node, planning as the metadata leader, has seen each shard's move in
   * flight (a new placement leader starts counting afresh: it can only be later, never wrongly
   * early).
   */
  private readonly movesSince = new Map<string, number>();

  /** The records as the planners see them, with the members' latest reports. */
  private clusterView(records: readonly KeyspaceRecord[], nowMs: number): ClusterView {
    const { stats, reports } = statsFromReports(this.reports, Date.now(), REPORT_STALE_MS);
    return withMovesSince(
      clusterViewOf({
        records,
        members: this.members,
        memberRecord: (id) => this.memberRecords.get(id),
        liveness: (id) => this.livenessOf(id, nowMs),
        unreachableSince: (id) => this.unreachableSince.get(id),
        nowMs,
        stats,
        report: (id) => reports.get(id),
      }),
      this.movesSince,
    );
  }

  // ------------------------------------------------------------------ reports

  /** The members' reports as last read from the metadata group (every refresh). */
  private reports: NodeReport[] = [];
  /** Per shard led here: writes applied and reads served at the previous report. */
  private readonly lastCounts = new Map<string, { writes: number; reads: number; atMs: number }>();

  /** A member's latest report (for `GET /v1/cluster`), unless older than REPORT_STALE_MS. */
  reportOf(id: NodeId): NodeReport | undefined {
    const r = this.reports.find((x) => x.id === id);
    return r && Date.now() - r.atMs <= REPORT_STALE_MS ? r : undefined;
  }

  /**
   * Writes this node's report (`r/<id>`): its disk, and size, rates and Raft configuration of
   * every shard it leads. Called by the node every REPORT_INTERVAL_MS; only this node writes
   * its record, so a plain put is enough.
   */
  async report(disk: { capacityBytes: number; usedBytes: number }): Promise<void> {
    const nowMs = Date.now();
    const shards: ShardStats[] = [];
    const rate = (now: number, before: number, ms: number) =>
      ms > 0 ? Math.max(0, ((now - before) * 1000) / ms) : 0;
    const hosted = new Set(this.host.groupIds());
    // Counters of replicas this node no longer holds (moved, split away, deleted) go.
    this.kv.forgetReadsExcept(hosted);
    for (const id of this.lastCounts.keys()) if (!hosted.has(id)) this.lastCounts.delete(id);
    for (const id of hosted) {
      const st = this.host.status(id);
      const m = this.host.localMachine(id);
      if (st?.role !== "leader" || !m) {
        this.lastCounts.delete(id);
        continue;
      }
      const writes = m.writesApplied;
      const reads = this.kv.readsOf(id);
      const prev = this.lastCounts.get(id);
      this.lastCounts.set(id, { writes, reads, atMs: nowMs });
      const size = m.approximateSize();
      shards.push({
        shard: id,
        sizeBytes: size.bytes,
        keys: size.keys,
        readsPerSec: prev ? rate(reads, prev.reads, nowMs - prev.atMs) : 0,
        writesPerSec: prev ? rate(writes, prev.writes, nowMs - prev.atMs) : 0,
        voters: st.voters,
        learners: st.learners,
        leader: this.self,
      });
    }
    shards.sort((a, b) => b.sizeBytes - a.sizeBytes);
    const listed = shards.slice(0, REPORT_SHARDS_MAX);
    const report: NodeReport = {
      id: this.self,
      atMs: nowMs,
      capacityBytes: disk.capacityBytes,
      usedBytes: disk.usedBytes,
      load: {
        readsPerSec: listed.reduce((sum, x) => sum + x.readsPerSec, 0),
        writesPerSec: listed.reduce((sum, x) => sum + x.writesPerSec, 0),
      },
      shards: listed,
    };
    const w = await this.kv.put(
      META_KEYSPACE,
      enc.encode(REPORT_RECORD_PREFIX + this.self),
      enc.encode(JSON.stringify(report)),
      { kind: "none" },
    );
    if (!w.ok && w.code !== "UNAVAILABLE") this.onError(new Error(w.message));
  }

  /** When the reports were last read (see `doRefresh`). */
  private reportsReadMs = 0;

  private async refreshReports(): Promise<void> {
    this.reportsReadMs = Date.now();
    const r = await this.kv.list(
      META_KEYSPACE,
      { prefix: enc.encode(REPORT_RECORD_PREFIX), startAfter: undefined, limit: KEYSPACES_MAX },
      "linearizable",
    );
    if (r.ok) this.reports = r.items.map((i) => JSON.parse(dec.decode(i.value)) as NodeReport);
  }

  /**
   * Membership reconciliation, run on every node for the shards it leads: moves the shard's
   * Raft configuration toward the replicas its record lists, one safe step at a time
   * (`nextMembershipChange`, src/placement/membership.ts).
   */
  reconcile(): void {
    for (const rec of this.lastRecords) {
      for (const s of rec.shards) {
        const st = this.host.status(s.id);
        if (st?.role !== "leader" || st.joint) continue;
        const now = Date.now();
        const cc = nextMembershipChange(
          st,
          s.replicas,
          (id) => this.livenessOf(id, now) === "alive",
        );
        if (cc) this.host.proposeConfChange(s.id, cc);
      }
    }
  }

  /** Keyspace records with the revision of each (for conditional updates). */
  private async recordsWithRevisions(): Promise<
    { ok: true; records: { record: KeyspaceRecord; revision: number }[] } | KvError
  > {
    const r = await this.kv.list(
      META_KEYSPACE,
      { prefix: enc.encode(KEYSPACE_RECORD_PREFIX), startAfter: undefined, limit: KEYSPACES_MAX },
      "linearizable",
    );
    if (!r.ok) return r;
    return {
      ok: true,
      records: r.items.map((i) => ({
        record: parseKeyspaceRecord(dec.decode(i.value)),
        revision: i.revision,
      })),
    };
  }

  /**
   * The split scheduler, run periodically on every node for the shards it leads: a shard larger
   * than `splitBytes` splits at its middle key (for a hash keyspace: its middle hash); a shard whose own range
   * no longer matches its record (a split committed, but the node that made it stopped before
   * recording it) gets its record repaired. One split at a time per shard: a shard splits again
   * only once its record shows the previous split.
   */
  async checkSplits(): Promise<void> {
    if (this.splitting) return; // the previous round is still running
    this.splitting = true;
    try {
      await this.splitRound();
    } catch (err) {
      this.onError(err);
    } finally {
      this.splitting = false;
    }
  }

  /** Per shard: the write count at the last round, and how many rounds in a row were hot. */
  private readonly writeRates = new Map<string, { writes: number; atMs: number; hot: number }>();

  /**
   * Consecutive split rounds in which the shard applied more than `splits.loadOpsPerSec`
   * writes per second (0 when load splitting is off). Writes are what a leader sees of a
   * shard's load; reads served by followers are not counted.
   */
  private hotRounds(shard: string, writes: number, nowMs: number): number {
    const prev = this.writeRates.get(shard);
    const rate =
      prev && nowMs > prev.atMs ? ((writes - prev.writes) * 1000) / (nowMs - prev.atMs) : 0;
    const hot =
      this.splits.loadOpsPerSec > 0 && rate > this.splits.loadOpsPerSec ? (prev?.hot ?? 0) + 1 : 0;
    this.writeRates.set(shard, { writes, atMs: nowMs, hot });
    return hot;
  }

  private async splitRound(): Promise<void> {
    const nowMs = Date.now();
    for (const rec of this.lastRecords) {
      // The metadata group stays one shard (every node finds it by its id).
      if (rec.name === META_KEYSPACE) continue;
      // A hash keyspace's shard splits in hash order (ShardMeta.hashed): its halves are hash
      // ranges, as the shard map routes.
      const hashed = rec.sharding === "hash";
      for (const s of rec.shards) {
        const st = this.host.status(s.id);
        const m = this.host.localMachine(s.id);
        if (st?.role !== "leader" || !m || m.retiredDurable) continue;
        const meta = m.metaDurable;
        const prefix = keyspacePrefixHex(rec.name);
        if (meta.end !== undefined && s.end !== prefix + meta.end) {
          await this.recordSplit(rec.name, s.id);
          continue;
        }
        const hot = this.hotRounds(s.id, m.writesApplied, nowMs);
        if (m.approximateSize().bytes < this.splits.bytes && hot < SPLIT_HOT_ROUNDS_MIN) continue;
        const at = await stepped(hashed ? m.middleHashSteps() : m.middleKeySteps());
        const shard = this.kv
          .shardMap()
          .shards(rec.name)
          .find((x) => x.id === s.id);
        if (!at || !shard) continue;
        const child = `${rec.name}.${rec.generation}.${Math.floor(Math.random() * 36 ** 6).toString(36)}`;
        const r = await this.kv.splitShard(shard, at, child, st.voters, hashed);
        if (r.ok) await this.recordSplit(rec.name, s.id);
      }
    }
  }

  /** Makes the keyspace record show the split that shard `shardId`'s replica here applied. */
  private async recordSplit(name: string, shardId: string): Promise<void> {
    const key = enc.encode(KEYSPACE_RECORD_PREFIX + name);
    for (let attempt = 0; attempt < 5; attempt++) {
      const meta = this.host.localMachine(shardId)?.metaDurable;
      if (meta?.end === undefined || meta.child === undefined) return;
      const cur = await this.kv.get(META_KEYSPACE, key, "linearizable");
      if (!cur.ok || !cur.item) return;
      const rec = parseKeyspaceRecord(dec.decode(cur.item.value));
      const next = recordAfterSplit(rec, shardId, keyspacePrefixHex(name) + meta.end, meta.child);
      if (!next) return;
      const w = await this.kv.put(META_KEYSPACE, key, enc.encode(JSON.stringify(next)), {
        kind: "ifRevision",
        revision: cur.item.revision,
      });
      if (w.ok) {
        await this.refresh();
        return;
      }
      if (w.code !== "PRECONDITION_FAILED") return;
    }
  }

  /** Tells the node where the metadata group is, when that changed (it keeps it on disk). */
  private notePlacement(map: ShardMap): void {
    const replicas = map.shards(META_KEYSPACE).find((s) => s.id === META_SHARD)?.replicas;
    if (!replicas || sameList(replicas, this.metaReplicas ?? [])) return;
    this.metaReplicas = [...replicas];
    this.meta.onPlacement?.(this.metaReplicas);
  }

  /**
   * Asks the peers (`meta.discover`) for the metadata group's voters and, when they differ from
   * the map's, routes to them until a refresh reads the records again. At most every
   * META_DISCOVER_INTERVAL_MS (each attempt costs a call to every member).
   */
  private async rediscoverMeta(): Promise<void> {
    const now = Date.now();
    if (!this.meta.discover || now - this.lastDiscoverMs < META_DISCOVER_INTERVAL_MS) return;
    this.lastDiscoverMs = now;
    const voters = await this.meta.discover(this.members);
    const current = this.kv
      .shardMap()
      .shards(META_KEYSPACE)
      .find((s) => s.id === META_SHARD)?.replicas;
    if (!voters || voters.length === 0 || sameList(voters, current ?? [])) return;
    const map = this.kv.shardMap();
    const keyspaces = map.keyspaces().map((name) => {
      const shards = map.shards(name);
      return {
        name,
        sharding: map.sharding(name) as Sharding,
        shards:
          name === META_KEYSPACE
            ? shards.map((s) => (s.id === META_SHARD ? { ...s, replicas: [...voters] } : s))
            : shards,
      };
    });
    this.kv.setShardMap(new ShardMap(++this.version, keyspaces));
  }

  /** Keyspace records as committed in the metadata group (a linearizable read). */
  async records(): Promise<{ ok: true; records: KeyspaceRecord[] } | KvError> {
    const r = await this.recordsWithRevisions();
    return r.ok ? { ok: true, records: r.records.map((x) => x.record) } : r;
  }

  /** Re-reads the records, installs the new map and creates local replicas of new shards. */
  refresh(): Promise<void> {
    // Concurrent callers share one refresh in flight.
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /**
   * A refresh that reads the records after this call: one already in flight may have read
   * them before a write the caller just made (a keyspace it created or deleted).
   */
  async refreshAfterWrite(): Promise<void> {
    if (this.refreshing) await this.refreshing.catch(() => undefined);
    return this.refresh();
  }

  private async doRefresh(): Promise<void> {
    await this.refreshMembers();
    let r = await this.records();
    if (!r.ok) {
      // The metadata group is unavailable where the map places it: keep the map we have, but
      // ask the peers where the group is now (it may have moved while this node was away).
      await this.rediscoverMeta();
      return;
    }
    if (await this.recordFixed(r.records)) {
      r = await this.records();
      if (!r.ok) return;
    }
    this.lastRecords = r.records;
    // Reports change every REPORT_INTERVAL_MS: reading them on every refresh (each second,
    // on every node) would double the reads for nothing.
    if (Date.now() - this.reportsReadMs >= REPORT_INTERVAL_MS) await this.refreshReports();
    const recorded = new Set(r.records.map((rec) => rec.name));
    const fixed = this.fixed.filter((k) => !recorded.has(k.name));
    const map = new ShardMap(++this.version, [...fixed, ...r.records.map(recordKeyspace)]);
    this.kv.setShardMap(map);
    this.notePlacement(map);
    // Replicas of shards no record places here any more go (a moved replica, a deleted
    // keyspace); the fixed keyspaces' shards are never removed here. A split half exists
    // locally before its record does (recordSplit writes it afterwards): see replicasWantedOn.
    const localChildren: string[] = [];
    for (const id of this.host.groupIds()) {
      const child = this.host.localMachine(id)?.metaDurable.child;
      if (child !== undefined) localChildren.push(child);
    }
    const wanted = replicasWantedOn(
      this.self,
      r.records,
      fixed.flatMap((k) => k.shards.map((s) => s.id)),
      localChildren,
    );
    const now = Date.now();
    for (const id of this.host.groupIds()) {
      if (wanted.has(id)) {
        this.unlistedSince.delete(id);
        continue;
      }
      const since = this.unlistedSince.get(id) ?? now;
      this.unlistedSince.set(id, since);
      const st = this.host.status(id);
      const retired = this.host.localMachine(id)?.retiredDurable === true;
      if (st?.role === "leader" && !retired && now - since < UNLISTED_GRACE_MS) {
        // Still leading a group it is being moved out of: hand over first (no election gap).
        const to = st.voters.find((v) => v !== this.self);
        if (to && !st.voters.includes(this.self)) this.host.transferLeadership(id, to);
        continue;
      }
      // Writes still waiting on this replica get their answer first (each is bounded by its
      // request deadline): the refusal of a forward, or the entry, is usually a round trip
      // away, while removing the replica now would leave their outcome unknown.
      const draining = this.host.pendingProposals(id) > 0 && now - since < UNLISTED_GRACE_MS;
      if (draining && !retired) continue;
      if (retired || !st?.voters.includes(this.self) || now - since >= UNLISTED_GRACE_MS) {
        this.host.removeGroup(id);
        this.unlistedSince.delete(id);
      }
    }
    for (const rec of r.records) {
      for (const s of rec.shards) {
        if (!s.replicas.includes(this.self) || this.host.hasGroup(s.id)) continue;
        if (s.parent !== undefined && !this.splitPassed(s.parent, s.start, rec.name)) continue;
        try {
          // A shard born of a split exists wherever its parent applied the split; a replica
          // that skipped the split entry (it caught up by snapshot) starts empty and gets the
          // shard from its leader. A keyspace's initial shards bootstrap on every replica.
          // Of the others, the initial voters bootstrap the same first entry; a node added
          // later starts empty.
          const boot = s.parent === undefined ? (s.bootstrap ?? s.replicas) : undefined;
          await this.host.createGroup(s.id, boot?.includes(this.self) ? boot : undefined);
        } catch (err) {
          this.onError(err);
        }
      }
    }
  }

  /**
   * Writes a record for each fixed keyspace that has none yet: "default" and "_meta" become
   * keyspaces like the others, whose replicas the repair scheduler can move (so the metadata
   * group is re-placed when its members die, and grows to 5 on larger clusters). Done by the
   * metadata leader; the record is the map every node computed at start (for "_meta": the
   * group's voters as the leader knows them), so which node writes it does not matter.
   */
  private async recordFixed(records: readonly KeyspaceRecord[]): Promise<boolean> {
    const st = this.host.status(META_SHARD);
    if (st?.role !== "leader") return false;
    let wrote = false;
    for (const fixed of this.fixed) {
      if (records.some((r) => r.name === fixed.name)) continue;
      const k: StaticKeyspace =
        fixed.name === META_KEYSPACE && !st.joint
          ? { ...fixed, shards: fixed.shards.map((s) => ({ ...s, replicas: [...st.voters] })) }
          : fixed;
      const rec: KeyspaceRecord = {
        name: k.name,
        sharding: k.sharding,
        replicas: Math.max(...k.shards.map((s) => s.replicas.length)),
        generation: "0",
        shards: k.shards.map((s) => ({
          id: s.id,
          start: toHex(s.start),
          end: toHex(s.end),
          replicas: s.replicas,
          bootstrap: s.replicas,
        })),
      };
      const w = await this.kv.put(
        META_KEYSPACE,
        enc.encode(KEYSPACE_RECORD_PREFIX + k.name),
        enc.encode(JSON.stringify(rec)),
        { kind: "ifAbsent" },
      );
      wrote ||= w.ok;
    }
    return wrote;
  }

  /**
   * Whether this node may create split-born shard starting at `start` empty: only once its
   * replica of the parent has passed the split (or it has none), never before, since applying
   * the split entry itself creates the shard.
   */
  private splitPassed(parent: string, start: string, keyspace: string): boolean {
    const m = this.host.localMachine(parent);
    if (!m) return true;
    const end = m.metaDurable.end;
    return end !== undefined && keyspacePrefixHex(keyspace) + end <= start;
  }

  async create(
    input: {
      name: string;
      sharding?: unknown;
      replicas?: unknown;
      shards?: unknown;
    },
    /**
     * A system keyspace (its name starts with "_", e.g. "_s3", the object index): created by
     * the node itself, hidden from listings, protected from deletion through the API.
     */
    system = false,
  ): Promise<{ ok: true; created: boolean; record: KeyspaceRecord } | AdminError> {
    const isSystem = input.name.startsWith("_");
    if (isSystem !== system)
      return {
        ok: false,
        code: "INVALID",
        message: 'keyspace names starting with "_" are reserved for the system',
      };
    const v = validateKeyspaceSpec(isSystem ? { ...input, name: input.name.slice(1) } : input);
    if (!v.ok) return v;
    const spec = isSystem ? { ...v.spec, name: input.name } : v.spec;
    if (this.fixed.some((k) => k.name === spec.name)) {
      return {
        ok: false,
        code: "KEYSPACE_EXISTS",
        message: `keyspace "${spec.name}" already exists`,
      };
    }
    const r = await this.records();
    if (!r.ok) return r;
    const existing = r.records.find((k) => k.name === spec.name);
    if (existing) return this.sameOrConflict(existing, spec);
    if (r.records.length >= KEYSPACES_MAX) {
      return {
        ok: false,
        code: "TOO_MANY_KEYSPACES",
        message: `at most ${KEYSPACES_MAX} keyspaces`,
      };
    }
    const load = replicaLoad(r.records);
    for (const k of this.fixed)
      for (const s of k.shards) for (const n of s.replicas) load.set(n, (load.get(n) ?? 0) + 1);
    const generation = `${Date.now().toString(36)}${Math.floor(Math.random() * 36 ** 4).toString(36)}`;
    // New replicas go only to live members that take replicas (not draining or removed).
    const now = Date.now();
    const eligible = this.members.filter(
      (m) => this.memberRecords.get(m)?.admin === undefined && this.livenessOf(m, now) === "alive",
    );
    if (eligible.length === 0)
      return { ok: false, code: "UNAVAILABLE", message: "no live member can take replicas" };
    const record = planKeyspace(spec, eligible, load, generation);
    const w = await this.kv.put(
      META_KEYSPACE,
      enc.encode(KEYSPACE_RECORD_PREFIX + spec.name),
      enc.encode(JSON.stringify(record)),
      { kind: "ifAbsent" },
    );
    if (!w.ok) {
      if (w.code !== "PRECONDITION_FAILED") return w;
      // Someone created it between our read and our write: theirs stands.
      const again = await this.records();
      if (!again.ok) return again;
      const theirs = again.records.find((k) => k.name === spec.name);
      if (!theirs)
        return {
          ok: false,
          code: "UNAVAILABLE",
          message: "the keyspace changed concurrently; retry",
        };
      return this.sameOrConflict(theirs, spec);
    }
    await this.refreshAfterWrite();
    await this.waitForLeaders(record);
    return { ok: true, created: true, record };
  }

  private sameOrConflict(
    existing: KeyspaceRecord,
    spec: { sharding: Sharding; replicas: number },
  ): { ok: true; created: false; record: KeyspaceRecord } | AdminError {
    if (existing.sharding === spec.sharding && existing.replicas === spec.replicas)
      return { ok: true, created: false, record: existing };
    return {
      ok: false,
      code: "KEYSPACE_EXISTS",
      message: `keyspace "${existing.name}" already exists with sharding=${existing.sharding} replicas=${existing.replicas}`,
    };
  }

  /** Best effort: answers once every shard has a leader (or after CREATE_WAIT_MS). */
  private async waitForLeaders(record: KeyspaceRecord): Promise<void> {
    const until = Date.now() + CREATE_WAIT_MS;
    while (Date.now() < until) {
      const local = record.shards.filter((s) => this.host.hasGroup(s.id));
      if (local.every((s) => this.host.leaderOf(s.id))) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async remove(name: string, force: boolean): Promise<{ ok: true } | AdminError> {
    if (this.fixed.some((k) => k.name === name) || name.startsWith("_")) {
      return { ok: false, code: "PROTECTED", message: `keyspace "${name}" cannot be deleted` };
    }
    // (Fixed keyspaces may have records too: "default" gets one so that repair can move it.)
    const key = enc.encode(KEYSPACE_RECORD_PREFIX + name);
    const cur = await this.kv.get(META_KEYSPACE, key, "linearizable");
    if (!cur.ok) return cur;
    if (!cur.item)
      return {
        ok: false,
        code: "KEYSPACE_NOT_FOUND",
        message: `keyspace "${name}" does not exist`,
      };
    await this.refresh(); // the map must hold the keyspace's shards (to check and retire them)
    if (!force) {
      const some = await this.kv.list(
        name,
        { prefix: new Uint8Array(0), startAfter: undefined, limit: 1 },
        "linearizable",
      );
      if (!some.ok) return some;
      if (some.items.length > 0) {
        return {
          ok: false,
          code: "KEYSPACE_NOT_EMPTY",
          message: `keyspace "${name}" is not empty; delete its keys first, or delete with ?force=true`,
        };
      }
    }
    // Retire every shard first: from then on no replica serves the keyspace, however stale
    // its node's map, so the deletion is visible at once everywhere. Then drop the record.
    for (const shard of this.kv.shardMap().shards(name)) {
      const r = await this.kv.retireShard(shard);
      if (!r.ok) return r;
    }
    const d = await this.kv.delete(META_KEYSPACE, key, {
      kind: "ifRevision",
      revision: cur.item.revision,
    });
    if (!d.ok) return d;
    await this.refreshAfterWrite();
    return { ok: true };
  }

  /** What GET /v1/keyspaces/{name} shows: each shard's range, replicas and current leader. */
  describe(name: string): unknown {
    const map = this.kv.shardMap();
    if (!map.hasKeyspace(name) || name.startsWith("_")) return undefined;
    const rec = this.lastRecords.find((r) => r.name === name);
    return {
      name,
      sharding: map.sharding(name),
      replicas: rec?.replicas ?? map.shards(name)[0]?.replicas.length,
      shards: map.shards(name).map((s) => ({
        id: s.id,
        start: toHex(s.start),
        end: toHex(s.end),
        replicas: s.replicas,
        leader: this.host.leaderOf(s.id) ?? null,
      })),
    };
  }

  list(): unknown[] {
    const map = this.kv.shardMap();
    return map
      .keyspaces()
      .filter((k) => !k.startsWith("_"))
      .sort()
      .map((name) => ({ name, sharding: map.sharding(name), shards: map.shards(name).length }));
  }
}

const ADMIN_STATES = { drain: "draining", remove: "removed", activate: "active" } as const;

const ADMIN_STATUS: Record<AdminError["code"], number> = {
  INVALID: 400,
  KEYSPACE_EXISTS: 409,
  KEYSPACE_NOT_EMPTY: 409,
  TOO_MANY_KEYSPACES: 409,
  PROTECTED: 409,
  NOT_FOUND: 404,
  KEYSPACE_NOT_FOUND: 404,
  PRECONDITION_FAILED: 409,
  UNAVAILABLE: 503,
  OUTCOME_UNKNOWN: 503,
  OVERLOADED: 503,
  INVALID_KEY: 400,
  STALE_ROUTE: 503,
};

function adminError(e: AdminError): HttpError {
  const status = ADMIN_STATUS[e.code];
  return new HttpError(status, e.code, e.message, status === 503 ? { "retry-after": "1" } : {});
}

/** Request bodies of the keyspace API are small JSON documents. */
const BODY_BYTES_MAX = 64 << 10;

export class KeyspaceHttpApi {
  constructor(
    private readonly admin: KeyspaceAdmin,
    /** Listing and describing keyspaces: any valid credential. */
    private readonly tokens: Credentials,
    /** Creating and deleting keyspaces, node drain/remove/activate: an admin credential. */
    private readonly adminTokens: Credentials = tokens,
  ) {}

  /** POST /v1/nodes/{id}/drain|remove|activate (admin token). */
  private async nodeAdmin(
    req: IncomingMessage,
    res: ServerResponse,
    id: string,
    action: string,
  ): Promise<true> {
    await requireAdmin(this.adminTokens, req);
    if (req.method !== "POST")
      throw new HttpError(405, "METHOD_NOT_ALLOWED", "POST only", { allow: "POST" });
    const r = await this.admin.setMemberAdmin(
      id,
      ADMIN_STATES[action as keyof typeof ADMIN_STATES],
    );
    if (!r.ok) throw adminError(r);
    sendJson(res, 200, { node: id, admin: r.record.admin ?? "active" });
    return true;
  }

  /** Handles /v1/keyspaces[/name]; returns false if the path is not ours. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    const path = url.pathname;
    const node = /^\/v1\/nodes\/([^/]+)\/(drain|remove|activate)$/.exec(path);
    if (node)
      return this.nodeAdmin(req, res, decodeURIComponent(node[1] as string), node[2] as string);
    if (path !== "/v1/keyspaces" && !path.startsWith("/v1/keyspaces/")) return false;
    await requireAuthenticated(this.tokens, req);
    // Changing keyspaces is an admin's; looking at them, anyone's with a valid credential.
    if (req.method !== "GET") await requireAdmin(this.adminTokens, req);
    if (path === "/v1/keyspaces" || path === "/v1/keyspaces/") {
      if (req.method !== "GET")
        throw new HttpError(405, "METHOD_NOT_ALLOWED", "GET only", { allow: "GET" });
      await this.admin.refresh();
      sendJson(res, 200, { keyspaces: this.admin.list() });
      return true;
    }
    let name: string;
    try {
      name = decodeURIComponent(path.slice("/v1/keyspaces/".length));
    } catch {
      throw new HttpError(400, "BAD_REQUEST", "the keyspace name is not valid percent-encoding");
    }
    switch (req.method) {
      case "PUT": {
        const body = await readBody(req, BODY_BYTES_MAX);
        let spec: Record<string, unknown> = {};
        if (body.byteLength > 0) {
          try {
            const parsed: unknown = JSON.parse(dec.decode(body));
            if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
              throw new Error();
            spec = parsed as Record<string, unknown>;
          } catch {
            throw new HttpError(
              400,
              "BAD_REQUEST",
              'the body must be a JSON object such as {"sharding":"range","replicas":3}',
            );
          }
        }
        const unknown = Object.keys(spec).filter(
          (k) => !["sharding", "replicas", "shards"].includes(k),
        );
        if (unknown.length > 0)
          throw new HttpError(400, "BAD_REQUEST", `unknown field(s): ${unknown.join(", ")}`);
        const r = await this.admin.create({ name, ...spec });
        if (!r.ok) throw adminError(r);
        sendJson(res, r.created ? 201 : 200, this.admin.describe(name) ?? r.record);
        return true;
      }
      case "GET": {
        await this.admin.refresh();
        const d = this.admin.describe(name);
        if (!d) throw new HttpError(404, "KEYSPACE_NOT_FOUND", `keyspace "${name}" does not exist`);
        sendJson(res, 200, d);
        return true;
      }
      case "DELETE": {
        const force = url.searchParams.get("force");
        if (force !== null && force !== "true" && force !== "false")
          throw new HttpError(400, "BAD_REQUEST", "force must be true or false");
        const r = await this.admin.remove(name, force === "true");
        if (!r.ok) throw adminError(r);
        sendJson(res, 200, { deleted: name });
        return true;
      }
      default:
        throw new HttpError(405, "METHOD_NOT_ALLOWED", "PUT, GET or DELETE", {
          allow: "PUT, GET, DELETE",
        });
    }
  }
}

/** How often a node writes its report (`KeyspaceAdmin.report`). */
export const REPORT_INTERVAL_MS = 2_000;
/** A report older than this is ignored (its node is gone or cannot reach the metadata group). */
const REPORT_STALE_MS = 10_000;

/** How often a node that cannot reach the metadata group asks its peers where it went. */
const META_DISCOVER_INTERVAL_MS = 3_000;

/**
 * What the node provides so that the metadata group can move: where to keep its last known
 * placement (read back at start), and how to ask peers for the group's current voters.
 */
export interface MetaPlacementHooks {
  readonly onPlacement?: (replicas: readonly NodeId[]) => void;
  readonly discover?: (members: readonly NodeId[]) => Promise<readonly NodeId[] | undefined>;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
