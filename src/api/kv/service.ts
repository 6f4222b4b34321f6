/**
 * The KV service: turns a key-level request into shard-level work. It finds the shard through
 * the shard map and proposes through the local replica when this node has one (a follower
 * forwards the proposal to its leader inside Raft); a node without a replica sends the request
 * to the shard's leader over the transport. Leader changes are retried inside one
 * deadline; everything that can go wrong comes back as a typed error (never a hang, never a
 * stack trace).
 *
 * Retrying is only ever done when the previous attempt certainly did not take effect
 * (NOT_LEADER, DROPPED, UNREACHABLE before sending); an attempt whose outcome is unknown
 * (TIMEOUT) is reported as such.
 */
import { context, type Span, SpanStatusCode, TraceFlags, trace } from "@opentelemetry/api";
import { tracing } from "../../base/index.js";
import type { MultiRaftHost } from "../../multiraft/index.js";
import type { NodeId } from "../../raft/index.js";
import {
  type ApplyResult,
  type Condition,
  encodeCommand,
  encodeKey,
  type KvItem,
  SHARD_KEY_BYTES_MAX,
  type ShardInfo,
  type Sharding,
  type ShardMachine,
  type ShardMap,
} from "../../shard/index.js";
import { compareBytes, fromHex, keyAfter, prefixEnd } from "../../storage/index.js";
import { NoHandlerError, type Transport } from "../../transport/transport.js";
import { decodeBatch, ForwardBatcher, type ForwardOutcome, PROPOSE_BATCH } from "./forward.js";

export type KvErrorCode =
  | "NOT_FOUND"
  | "PRECONDITION_FAILED"
  | "KEYSPACE_NOT_FOUND"
  | "UNAVAILABLE"
  | "OUTCOME_UNKNOWN"
  | "OVERLOADED"
  | "INVALID_KEY"
  /** Internal: the shard was retired; the caller refreshes its map (never sent to clients). */
  | "STALE_ROUTE";

export interface KvError {
  readonly ok: false;
  readonly code: KvErrorCode;
  readonly message: string;
  /** The key's current revision, for PRECONDITION_FAILED. */
  readonly revision?: number;
}

export type Consistency = "linearizable" | "stale";

export interface KvServiceOptions {
  /** The deadline of one client request, all retries included. */
  readonly requestTimeoutMs: number;
  /** Fail fast: give up when no shard leader has been known for this long. */
  readonly leaderlessTimeoutMs: number;
}

export interface ListRequest {
  readonly prefix: Uint8Array;
  readonly startAfter: Uint8Array | undefined;
  readonly limit: number;
  /** Roll keys up at a delimiter where they are scanned (see `Rollup`). */
  readonly rollup?: Rollup;
}

/**
 * Keys rolled up at a delimiter, by the replica that scans them (S3's common prefixes): a key
 * whose bytes from offset `from` on contain `delimiter` (before its first `stopAt` byte, when
 * given) comes back once as its prefix up to and including the delimiter, marked `rolledUp`,
 * and the scan skips every other key under that prefix. A page of N common prefixes then costs
 * one read instead of N (each a ReadIndex round and a scan of keys the caller throws away).
 * A replica that does not know `rollup` returns plain keys; callers must handle both.
 */
export interface Rollup {
  readonly from: number;
  readonly delimiter: Uint8Array;
  readonly stopAt?: number;
}

/** An item of a listing: a key, or (with `rollup`) a common prefix (empty value, revision 0). */
export type ListItem = KvItem & { readonly rolledUp?: true };

type Host = MultiRaftHost<ApplyResult, ShardMachine>;

const enc = new TextEncoder();
const dec = new TextDecoder();

function b64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
}
function unb64(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, "base64"));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The metadata group's keyspace: always known (refreshing the map reads it). */
const META_KEYSPACE_NAME = "_meta";

/** How long an unavailable answer waits to learn whether its keyspace was deleted meanwhile. */
const GONE_CHECK_MS = 250;

/** Transport method names of the forwarded requests. */
const READ = "kv.read";

export class KvService {
  private readonly forwarder: ForwardBatcher;

  constructor(
    private readonly self: NodeId,
    private readonly host: Host,
    private readonly transport: Transport,
    private map: ShardMap,
    private readonly opts: KvServiceOptions,
  ) {
    this.forwarder = new ForwardBatcher(transport);
  }

  setShardMap(map: ShardMap): void {
    this.map = map;
  }

  hasKeyspace(keyspace: string): boolean {
    return this.map.hasKeyspace(keyspace);
  }

  /** Asked when a keyspace is not in the cached map: refreshes it (e.g. from the metadata group). */
  private resolveKeyspace: ((name: string) => Promise<void>) | undefined;

  setKeyspaceResolver(resolve: (name: string) => Promise<void>): void {
    this.resolveKeyspace = resolve;
  }

  /**
   * Whether the keyspace exists, refreshing the cached map once when it is not known: a keyspace
   * created through another node a moment ago is found.
   */
  async knowsKeyspace(keyspace: string): Promise<boolean> {
    if (this.map.hasKeyspace(keyspace)) return true;
    if (!this.resolveKeyspace) return false;
    await this.resolveKeyspace(keyspace);
    return this.map.hasKeyspace(keyspace);
  }

  shardMap(): ShardMap {
    return this.map;
  }

  async put(
    keyspace: string,
    key: Uint8Array,
    value: Uint8Array,
    cond: Condition,
  ): Promise<{ ok: true; revision: number } | KvError> {
    const cmd = encodeCommand({ op: "put", key, value, cond });
    return this.routed(keyspace, () => this.write(keyspace, key, cmd));
  }

  async delete(
    keyspace: string,
    key: Uint8Array,
    cond: Condition,
  ): Promise<{ ok: true; revision: number } | KvError> {
    const cmd = encodeCommand({ op: "delete", key, cond });
    return this.routed(keyspace, () => this.write(keyspace, key, cmd));
  }

  /**
   * Runs `op` against the current shard map, refreshing the map when the shard answers that it
   * no longer serves the range (STALE_ROUTE: it was split, or retired because its keyspace was
   * deleted) and retrying, invisibly to the client, until the deadline. A shard without a
   * leader may also be one of a keyspace deleted through another node: after a refresh, a
   * keyspace that is gone is reported as such instead of "unavailable".
   */
  private async routed<T extends { ok: true }>(
    keyspace: string,
    op: () => Promise<T | KvError>,
  ): Promise<T | KvError> {
    const deadline = Date.now() + this.opts.requestTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      const routedBy = this.map;
      const r = await op();
      if (r.ok) return r;
      // A keyspace created through another node a moment ago (for instance the object index,
      // created with the first bucket): learn of it once, then try again.
      if (
        r.code === "KEYSPACE_NOT_FOUND" &&
        attempt === 0 &&
        keyspace !== META_KEYSPACE_NAME &&
        (await this.knowsKeyspace(keyspace))
      )
        continue;
      // Refreshing reads "_meta" itself (a node that lost track of where "_meta" moved asks
      // its peers: KeyspaceAdmin.rediscoverMeta), so its own errors go straight back.
      if ((r.code !== "UNAVAILABLE" && r.code !== "STALE_ROUTE") || keyspace === META_KEYSPACE_NAME)
        return r;
      if (r.code === "UNAVAILABLE") {
        // System keyspaces never go away: unavailable is the answer.
        if (keyspace.startsWith("_")) return r;
        // Gone, or just without a leader? Ask the metadata group briefly: when it is down too
        // (a majority of nodes lost), the answer stays "unavailable" within the same deadline.
        if (this.resolveKeyspace)
          await Promise.race([this.resolveKeyspace(keyspace), sleep(GONE_CHECK_MS)]);
        if (!this.map.hasKeyspace(keyspace)) return keyspaceNotFound(keyspace);
        // The keyspace was deleted and created again under the same name (or its shards
        // changed) while the request ran: the shard that failed is not the keyspace's any
        // more, so the request goes again, to the shards the map has now.
        if (!shardsChanged(routedBy, this.map, keyspace) || Date.now() >= deadline) return r;
        continue;
      }
      if (this.resolveKeyspace) await this.resolveKeyspace(keyspace);
      if (!this.map.hasKeyspace(keyspace)) return keyspaceNotFound(keyspace);
      if (Date.now() >= deadline)
        return unavailable(`keyspace "${keyspace}": the shard map kept changing; retry`);
      // The map may lag the split or deletion by one refresh: back off a little.
      if (attempt > 0) await sleep(Math.min(20 * attempt, 200));
    }
  }

  async get(
    keyspace: string,
    key: Uint8Array,
    consistency: Consistency,
  ): Promise<{ ok: true; item: KvItem | undefined } | KvError> {
    return this.routed(keyspace, async () => {
      const shard = this.map.locate(keyspace, key);
      if (!shard) return keyspaceNotFound(keyspace);
      const r = await this.readShard(shard, consistency, {
        prefix: key,
        startAfter: undefined,
        limit: 1,
        exact: true,
      });
      return r.ok ? { ok: true as const, item: r.items[0] } : r;
    });
  }

  /** Keys with `prefix` after `startAfter`, in key order, merged from every shard. */
  async list(
    keyspace: string,
    req: ListRequest,
    consistency: Consistency,
  ): Promise<{ ok: true; items: ListItem[]; more: boolean } | KvError> {
    return this.routed(keyspace, async () => {
      if (!this.map.hasKeyspace(keyspace)) return keyspaceNotFound(keyspace);
      const results = await Promise.all(
        this.map.shards(keyspace).map((s) =>
          this.readShard(s, consistency, {
            prefix: req.prefix,
            startAfter: req.startAfter,
            limit: req.limit + 1,
            exact: false,
            ...(req.rollup ? { rollup: req.rollup } : {}),
          }),
        ),
      );
      let items: ListItem[] = [];
      for (const r of results) {
        if (!r.ok) return r;
        items.push(...r.items);
      }
      items.sort((a, b) => compareBytes(a.key, b.key));
      // Keys under one common prefix may sit in two shards (a split inside it): each rolls
      // them up, the prefix is listed once. (A shard that returned limit+1 items still has
      // limit+1 distinct ones, so `more` stays right.)
      if (req.rollup)
        items = items.filter(
          (it, i, all) => i === 0 || !sameBytes(it.key, (all[i - 1] as ListItem).key),
        );
      const more = items.length > req.limit;
      return { ok: true as const, items: items.slice(0, req.limit), more };
    });
  }

  // ------------------------------------------------------------------ writes

  private async write(
    keyspace: string,
    key: Uint8Array,
    cmd: Uint8Array,
  ): Promise<{ ok: true; revision: number } | KvError> {
    const shard = this.map.locate(keyspace, key);
    if (!shard) return keyspaceNotFound(keyspace);
    return this.writeShard(shard, cmd);
  }

  /**
   * Retires a shard (its keyspace is being deleted): once this returns ok, every later write
   * and linearizable read of the shard, on any replica, answers STALE_ROUTE.
   */
  async retireShard(shard: ShardInfo): Promise<{ ok: true } | KvError> {
    const r = await this.writeShard(shard, encodeCommand({ op: "retire" }));
    // Already retired (a delete that is being retried) is as good.
    return r.ok || r.code === "STALE_ROUTE" ? { ok: true } : r;
  }

  /**
   * Splits a shard at the user key `at` (docs/kv-api.md, "Splits"): proposed through the local
   * replica like any write, applied by every replica at the same log position.
   */
  async splitShard(
    shard: ShardInfo,
    at: Uint8Array,
    newShard: string,
    voters: readonly NodeId[],
    hashed = false,
  ): Promise<{ ok: true; revision: number } | KvError> {
    return this.writeShard(
      shard,
      encodeCommand({ op: "split", at, newShard, voters, ...(hashed ? { hashed: true } : {}) }),
    );
  }

  private writeShard(
    shard: ShardInfo,
    cmd: Uint8Array,
  ): Promise<{ ok: true; revision: number } | KvError> {
    const span = tracing.on ? routeSpan(this.self, "write", shard) : undefined;
    if (span === undefined) return this.writeShardRouted(shard, cmd, undefined);
    return traced(span, () => this.writeShardRouted(shard, cmd, span));
  }

  private async writeShardRouted(
    shard: ShardInfo,
    cmd: Uint8Array,
    span: Span | undefined,
  ): Promise<{ ok: true; revision: number } | KvError> {
    const deadline = Date.now() + this.opts.requestTimeoutMs;
    // A local replica proposes (a follower forwards inside Raft, see MultiRaftHost.propose);
    // only a node without one sends the request to the leader. Decided again on every attempt:
    // a replica being moved off this node stops serving as soon as the map says so.
    let local = this.servesLocally(shard);
    let target: NodeId | undefined = local ? this.self : this.host.leaderOf(shard.id);
    let leaderlessSince: number | undefined;
    let attempt = 0;
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0)
        return unavailable(
          `shard ${shard.id}: no leader accepted the write within ${this.opts.requestTimeoutMs} ms`,
        );
      const replicas = this.currentReplicas(shard);
      target ??= replicas[attempt % replicas.length] as NodeId;
      attempt++;
      span?.setAttributes({ "kumo.kv.target": target, "kumo.kv.attempts": attempt });
      const outcome =
        target === this.self
          ? await this.host.propose(shard.id, cmd, remaining)
          : await this.forwardPropose(target, shard.id, cmd, remaining);
      if (outcome.ok) return applyResultToKv(outcome.result);
      switch (outcome.code) {
        case "NOT_LEADER":
        case "UNREACHABLE":
        case "NO_GROUP": {
          const hint = outcome.code === "NOT_LEADER" ? outcome.leaderHint : "";
          if (hint && hint !== target && hint !== this.self) {
            // Certainly not appended: try the leader itself. A local replica's forward was
            // refused too (the leader is taking this replica out of the group, say): asking the
            // leader directly gets an answer this replica may no longer be able to give.
            target = hint;
            local = false;
            leaderlessSince = undefined;
            continue;
          }
          // Nobody knows a leader right now: an election may be running. Fail fast if it lasts.
          leaderlessSince ??= Date.now();
          if (Date.now() - leaderlessSince > this.opts.leaderlessTimeoutMs) {
            return unavailable(
              `shard ${shard.id} has no leader (a majority of its replicas may be down)`,
            );
          }
          await sleep(Math.min(local ? 10 : 50, Math.max(1, deadline - Date.now())));
          local = this.servesLocally(shard);
          target = local ? this.self : this.host.leaderOf(shard.id);
          continue;
        }
        case "DROPPED":
          local = this.servesLocally(shard);
          target = local ? this.self : this.host.leaderOf(shard.id);
          continue; // certainly not applied: safe to retry
        case "OVERLOADED":
          return { ok: false, code: "OVERLOADED", message: outcome.message };
        case "TIMEOUT":
          return {
            ok: false,
            code: "OUTCOME_UNKNOWN",
            message: `shard ${shard.id} did not confirm the write (${outcome.message}); it may or may not have been applied`,
          };
      }
    }
  }

  private forwardPropose(
    to: NodeId,
    shardId: string,
    cmd: Uint8Array,
    timeoutMs: number,
  ): Promise<ForwardOutcome> {
    return this.forwarder.propose(to, { shard: shardId, command: cmd, timeoutMs });
  }

  // ------------------------------------------------------------------ reads

  /** The shard's replicas in the current map (it may have changed since `shard` was read). */
  private currentReplicas(shard: ShardInfo): readonly NodeId[] {
    return (
      this.map.shards(shard.keyspace).find((s) => s.id === shard.id)?.replicas ?? shard.replicas
    );
  }

  /**
   * This node has a replica of the shard and the current map still places one here: a replica
   * being moved away stops serving as soon as the map says so. (A replica without a known
   * leader still serves: its reads and writes wait for one, within the same deadlines.)
   */
  private servesLocally(shard: ShardInfo): boolean {
    return this.host.hasGroup(shard.id) && this.currentReplicas(shard).includes(this.self);
  }

  /**
   * Reads one shard: on a local replica (linearizable through ReadIndex, or stale), else on a
   * replica that has it. The replica checks that the shard still covers what `shard` (from our
   * map) says; if not, the answer is STALE_ROUTE and the caller refreshes its map.
   */
  private readShard(
    shard: ShardInfo,
    consistency: Consistency,
    wire: WireRead,
  ): Promise<{ ok: true; items: ListItem[] } | KvError> {
    const span = tracing.on ? routeSpan(this.self, "read", shard) : undefined;
    if (span === undefined) return this.readShardRouted(shard, consistency, wire, undefined);
    span.setAttribute("kumo.kv.consistency", consistency);
    return traced(span, () => this.readShardRouted(shard, consistency, wire, span));
  }

  private async readShardRouted(
    shard: ShardInfo,
    consistency: Consistency,
    wire: WireRead,
    span: Span | undefined,
  ): Promise<{ ok: true; items: ListItem[] } | KvError> {
    const shardId = shard.id;
    const expect = {
      keyspace: shard.keyspace,
      sharding: this.map.sharding(shard.keyspace) ?? "hash",
      start: shard.start,
      end: shard.end,
    };
    if (!this.servesLocally(shard)) {
      // No local replica: ask one that has it (it runs the same logic locally).
      // A replica that is down, or does not hold the shard (yet, or any more: STALE_ROUTE),
      // passes the read on to the next one; when none serves it, a stale answer makes the
      // router refresh its map and try again.
      let stale: KvError | undefined;
      for (const r of this.currentReplicas(shard)) {
        span?.setAttribute("kumo.kv.target", r);
        const res = await this.forwardRead(r, shardId, consistency, wire, expect);
        if (res.ok || (res.code !== "UNAVAILABLE" && res.code !== "STALE_ROUTE")) return res;
        if (res.code === "STALE_ROUTE") stale ??= res;
      }
      return stale ?? unavailable(`no replica of shard ${shardId} answered`);
    }
    span?.setAttribute("kumo.kv.target", this.self);
    return this.readLocal(shardId, consistency, wire, expect, true);
  }

  /** Reads served from this node's replicas, per shard (for the placement reports). */
  private readonly readsServed = new Map<string, number>();

  /** Reads this node served from its replica of `shardId` since it started. */
  readsOf(shardId: string): number {
    return this.readsServed.get(shardId) ?? 0;
  }

  /** Drops the read counters of every shard not in `hosted` (replicas this node let go). */
  forgetReadsExcept(hosted: ReadonlySet<string>): void {
    for (const id of this.readsServed.keys()) if (!hosted.has(id)) this.readsServed.delete(id);
  }

  /**
   * Serves a read from the local replica. `mayForward` (a client's request, not one forwarded
   * here): when the leader refuses to confirm this replica's read (the replica is being moved
   * away, say), the leader is asked to serve it instead.
   */
  private async readLocal(
    shardId: string,
    consistency: Consistency,
    wire: WireRead,
    expect: Expect,
    mayForward = false,
  ): Promise<{ ok: true; items: ListItem[] } | KvError> {
    this.readsServed.set(shardId, (this.readsServed.get(shardId) ?? 0) + 1);
    if (consistency === "stale") {
      const m = this.host.localMachine(shardId);
      if (!m) return { ok: false, code: "STALE_ROUTE", message: `no replica of ${shardId} here` };
      return readMachine(m, wire, expect);
    }
    const deadline = Date.now() + this.opts.requestTimeoutMs;
    let leaderlessSince: number | undefined;
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0)
        return unavailable(
          `shard ${shardId}: read not confirmed within ${this.opts.requestTimeoutMs} ms`,
        );
      // ReadIndex works on followers too: the leader confirms, this replica serves. A read is
      // idempotent, so an attempt that gets no confirmation (the leader died, or stepped down)
      // is simply retried; after leaderlessTimeoutMs without one the shard is unavailable.
      const attemptStart = Date.now();
      const r = await this.host.linearizableRead(
        shardId,
        Math.min(remaining, this.opts.leaderlessTimeoutMs),
      );
      if (r.ok) return readMachine(r.machine, wire, expect);
      if (r.code === "NOT_LEADER" && mayForward && r.leaderHint && r.leaderHint !== this.self) {
        mayForward = false; // once: the leader's own replica needs no further hop
        const res = await this.forwardRead(r.leaderHint, shardId, consistency, wire, expect);
        if (res.ok || (res.code !== "UNAVAILABLE" && res.code !== "STALE_ROUTE")) return res;
      }
      if (r.code === "NOT_LEADER" || r.code === "TIMEOUT") {
        leaderlessSince ??= attemptStart;
        if (Date.now() - leaderlessSince > this.opts.leaderlessTimeoutMs) {
          return unavailable(
            `shard ${shardId} has no leader (a majority of its replicas may be down)`,
          );
        }
        await sleep(25);
        continue;
      }
      if (r.code === "OVERLOADED") return { ok: false, code: "OVERLOADED", message: r.message };
      // No replica here (any more, or not yet: a keyspace created a moment ago, a replica
      // being moved): the router refreshes its map and tries again, within its deadline.
      return { ok: false, code: "STALE_ROUTE", message: `shard ${shardId}: ${r.message}` };
    }
  }

  private async forwardRead(
    to: NodeId,
    shardId: string,
    consistency: Consistency,
    wire: WireRead,
    expect: Expect,
  ): Promise<{ ok: true; items: ListItem[] } | KvError> {
    const body = enc.encode(
      JSON.stringify({
        shard: shardId,
        consistency,
        prefix: b64(wire.prefix),
        startAfter: wire.startAfter ? b64(wire.startAfter) : undefined,
        limit: wire.limit,
        exact: wire.exact,
        rollup: wire.rollup
          ? {
              from: wire.rollup.from,
              delimiter: b64(wire.rollup.delimiter),
              stopAt: wire.rollup.stopAt,
            }
          : undefined,
        keyspace: expect.keyspace,
        sharding: expect.sharding,
        start: b64(expect.start),
        end: b64(expect.end),
      }),
    );
    const r = await this.transport.call(to, READ, body, this.opts.requestTimeoutMs);
    if (!r.ok) return unavailable(`replica ${to} unreachable: ${r.message}`);
    const res = JSON.parse(dec.decode(r.body)) as
      | {
          ok: true;
          items: { key: string; value: string; revision: number; rolledUp?: true }[];
        }
      | KvError;
    if (!res.ok) return res;
    return {
      ok: true,
      items: res.items.map((i) => ({
        key: unb64(i.key),
        value: unb64(i.value),
        revision: i.revision,
        ...(i.rolledUp ? { rolledUp: true as const } : {}),
      })),
    };
  }

  // ------------------------------------------------------------------ serving forwarded requests

  /** Answers a request forwarded by another node (registered as the transport's call handler). */
  async handleCall(_from: NodeId, method: string, body: Uint8Array): Promise<Uint8Array> {
    if (method === PROPOSE_BATCH) {
      // All proposals of the batch go into the same host cycle (and fsync).
      const outcomes = await Promise.all(
        decodeBatch(body).map((it) =>
          this.host.propose(it.shard, it.command.slice(), it.timeoutMs),
        ),
      );
      return enc.encode(JSON.stringify(outcomes));
    }
    const req = JSON.parse(dec.decode(body)) as Record<string, unknown>;
    if (method === READ) {
      const prefix = unb64(String(req.prefix));
      const startAfter = typeof req.startAfter === "string" ? unb64(req.startAfter) : undefined;
      const limit = Number(req.limit);
      const exact = req.exact === true;
      const rollup = parseRollup(req.rollup);
      const res = await this.readLocal(
        String(req.shard),
        req.consistency === "stale" ? "stale" : "linearizable",
        { prefix, startAfter, limit, exact, ...(rollup ? { rollup } : {}) },
        {
          keyspace: String(req.keyspace),
          sharding: req.sharding === "range" ? "range" : "hash",
          start: unb64(String(req.start ?? "")),
          end: unb64(String(req.end ?? "")),
        },
      );
      const out = res.ok
        ? {
            ok: true,
            items: res.items.map((i) => ({
              key: b64(i.key),
              value: b64(i.value),
              revision: i.revision,
              ...(i.rolledUp ? { rolledUp: true } : {}),
            })),
          }
        : res;
      return enc.encode(JSON.stringify(out));
    }
    throw new NoHandlerError(`this node serves no "${method}" requests`);
  }
}

interface WireRead {
  readonly prefix: Uint8Array;
  readonly startAfter: Uint8Array | undefined;
  readonly limit: number;
  /** A point read of the key `prefix`. */
  readonly exact: boolean;
  readonly rollup?: Rollup;
}

/** The `rollup` of a forwarded read (absent or malformed: none, i.e. plain keys). */
function parseRollup(v: unknown): Rollup | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const r = v as Record<string, unknown>;
  if (typeof r.delimiter !== "string" || !Number.isSafeInteger(r.from)) return undefined;
  const delimiter = unb64(r.delimiter);
  if (delimiter.byteLength === 0 || (r.from as number) < 0) return undefined;
  const stopAt = Number.isInteger(r.stopAt) ? (r.stopAt as number) & 0xff : undefined;
  return { from: r.from as number, delimiter, ...(stopAt !== undefined ? { stopAt } : {}) };
}

/** The shard's range according to the reader's map (encoded keys, as in ShardInfo). */
interface Expect {
  readonly keyspace: string;
  readonly sharding: Sharding;
  readonly start: Uint8Array;
  readonly end: Uint8Array;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return compareBytes(a, b) === 0;
}

/**
 * Serves a read from a machine, or STALE_ROUTE when the machine does not serve what the reader's
 * map expects: retired, the key moved in a split, or (for a listing) the shard's range differs
 * from the map's, so that a listing through an outdated map cannot silently miss a split half.
 */
function readMachine(
  m: ShardMachine,
  wire: WireRead,
  expect: Expect,
): { ok: true; items: ListItem[] } | KvError {
  const meta = m.metaDurable;
  if (meta.retired) return staleRoute();
  if (wire.exact) {
    if (!m.ownsDurable(wire.prefix)) return staleRoute();
    const item = m.get(wire.prefix);
    return { ok: true, items: item ? [item] : [] };
  }
  // A hash keyspace's shard has bounds of its own once it split (in hash order: "keyspace 0x00
  // hash4"); before that, its range is the one it was created with, which only the map knows.
  if (meta.hashed) {
    const bound = (hex: string) => encodeKey(expect.keyspace, fromHex(hex), "range");
    const startOk = meta.start === undefined || sameBytes(expect.start, bound(meta.start));
    const endOk = meta.end === undefined || sameBytes(expect.end, bound(meta.end));
    if (!startOk || !endOk) return staleRoute();
  }
  // A range keyspace's encoded bounds are "keyspace 0x00 key".
  if (expect.sharding === "range") {
    const encoded = (hexKey: string) => encodeKey(expect.keyspace, fromHex(hexKey), "range");
    const startOk =
      meta.start === undefined
        ? sameBytes(expect.start, encodeKey(expect.keyspace, new Uint8Array(0), "range"))
        : sameBytes(expect.start, encoded(meta.start));
    const endOk =
      meta.end === undefined
        ? expect.end.byteLength === 0
        : sameBytes(expect.end, encoded(meta.end));
    if (!startOk || !endOk) return staleRoute();
  }
  return {
    ok: true,
    items: scanMachine(m, wire.prefix, wire.startAfter, wire.limit, wire.rollup),
  };
}

/** Keys read per engine scan while rolling up: small after a jump, doubling while none comes. */
const ROLLUP_CHUNK_MIN = 8;
const ROLLUP_CHUNK_MAX = 1024;
const EMPTY = new Uint8Array(0);

export function scanMachine(
  m: ShardMachine,
  prefix: Uint8Array,
  startAfter: Uint8Array | undefined,
  limit: number,
  rollup?: Rollup,
): ListItem[] {
  let start = prefix;
  if (startAfter && compareBytes(startAfter, prefix) >= 0) start = keyAfter(startAfter);
  // No upper bound for an empty prefix, or one of only 0xff bytes (nothing sorts after it).
  const end = prefix.some((b) => b !== 0xff) ? prefixEnd(prefix) : undefined;
  if (!rollup) return m.scan(start, end, limit);
  const out: ListItem[] = [];
  let chunk = ROLLUP_CHUNK_MIN;
  while (out.length < limit) {
    const want = Math.min(chunk, limit - out.length);
    const items = m.scan(start, end, want);
    let jumped = false;
    for (const it of items) {
      const at = delimiterAt(it.key, rollup);
      if (at < 0) {
        out.push(it);
        continue;
      }
      const common = it.key.slice(0, at + rollup.delimiter.byteLength);
      out.push({ key: common, value: EMPTY, revision: 0, rolledUp: true });
      // Nothing sorts after a prefix of only 0xff bytes: the scan is over.
      if (common.every((b) => b === 0xff)) return out;
      start = prefixEnd(common);
      chunk = ROLLUP_CHUNK_MIN;
      jumped = true;
      break;
    }
    if (jumped) continue;
    if (items.length < want) break;
    start = keyAfter((items[items.length - 1] as ListItem).key);
    chunk = Math.min(chunk * 2, ROLLUP_CHUNK_MAX);
  }
  return out;
}

/** Where `rollup.delimiter` starts in `key` past `rollup.from` (and before `stopAt`), or -1. */
function delimiterAt(key: Uint8Array, rollup: Rollup): number {
  if (key.byteLength <= rollup.from) return -1;
  const buf = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  const at = buf.indexOf(rollup.delimiter, rollup.from);
  if (at < 0) return -1;
  if (rollup.stopAt !== undefined) {
    const stop = buf.indexOf(rollup.stopAt, rollup.from);
    if (stop >= 0 && stop < at + rollup.delimiter.byteLength) return -1;
  }
  return at;
}

/**
 * A `kv.route` span (the key's shard, where the request went, how many attempts) when inside a
 * traced request: a sampled span is active. Background work is not traced.
 */
function routeSpan(self: NodeId, op: "read" | "write", shard: ShardInfo): Span | undefined {
  const parent = context.active();
  const sc = trace.getSpanContext(parent);
  if (sc === undefined || (sc.traceFlags & TraceFlags.SAMPLED) === 0) return undefined;
  return trace.getTracer("kumo.kv").startSpan(
    "kv.route",
    {
      attributes: {
        "kumo.node": self,
        "kumo.kv.op": op,
        "kumo.keyspace": shard.keyspace,
        "kumo.shard": shard.id,
      },
    },
    parent,
  );
}

/** Runs `op` with `span` active and ends it with the outcome. */
async function traced<T extends { ok: true }>(
  span: Span,
  op: () => Promise<T | KvError>,
): Promise<T | KvError> {
  try {
    const r = await context.with(trace.setSpan(context.active(), span), op);
    if (!r.ok) {
      span.setAttribute("kumo.kv.error", r.code);
      // Answers such as "not found" or a failed condition are outcomes, not failures.
      if (r.code === "UNAVAILABLE" || r.code === "OUTCOME_UNKNOWN" || r.code === "OVERLOADED")
        span.setStatus({ code: SpanStatusCode.ERROR, message: r.message });
    }
    return r;
  } catch (err) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
    throw err;
  } finally {
    span.end();
  }
}

function keyspaceNotFound(keyspace: string): KvError {
  return {
    ok: false,
    code: "KEYSPACE_NOT_FOUND",
    message: `keyspace "${keyspace}" does not exist`,
  };
}

function staleRoute(): KvError {
  return { ok: false, code: "STALE_ROUTE", message: "the shard no longer serves this range" };
}

/** Whether `keyspace` has other shards in `now` than in `before` (checked on failures only). */
function shardsChanged(before: ShardMap, now: ShardMap, keyspace: string): boolean {
  if (before === now) return false;
  const a = before.shards(keyspace);
  const b = now.shards(keyspace);
  return a.length !== b.length || a.some((s, i) => s.id !== b[i]?.id);
}

function unavailable(message: string): KvError {
  return { ok: false, code: "UNAVAILABLE", message };
}

function applyResultToKv(r: ApplyResult | undefined): { ok: true; revision: number } | KvError {
  if (!r)
    return { ok: false, code: "UNAVAILABLE", message: "the write was applied without a result" };
  if (r.ok) return { ok: true, revision: r.revision };
  if (r.code === "NOT_FOUND") return { ok: false, code: "NOT_FOUND", message: "no such key" };
  if (r.code === "RETIRED" || r.code === "WRONG_SHARD") return staleRoute();
  if (r.code === "INVALID_SPLIT")
    return { ok: false, code: "UNAVAILABLE", message: "the split does not fit the shard" };
  if (r.code === "INVALID_KEY") {
    return {
      ok: false,
      code: "INVALID_KEY",
      message: `keys must be 1 to ${SHARD_KEY_BYTES_MAX} bytes`,
    };
  }
  return {
    ok: false,
    code: "PRECONDITION_FAILED",
    message: r.revision === 0 ? "the key does not exist" : `the key's revision is ${r.revision}`,
    revision: r.revision,
  };
}
