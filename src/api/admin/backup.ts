/**
 * Backups, the node side (docs/operations.md, "Backup and restore"; the CLI is src/cli/backup.ts).
 *
 * The cut. Every shard is its own Raft log, so there is no shared clock to read "everything as
 * of time T" from; per-shard snapshots taken one after the other could hold the second of two
 * causally ordered writes without the first. A cut is made consistent by holding writes:
 *
 *   1. gate    the coordinator (any node, POST /v1/admin/backup/cut) asks every member to gate
 *              the shards it leads: new proposals wait (local) or are held (forwarded by
 *              followers); the gate answers the leader's term and last log index. Gates are
 *              leases (CUT_LEASE_MS): a coordinator that dies cannot freeze the cluster.
 *   2. check   every shard of the map (all keyspaces, the metadata group "_meta" and the object
 *              index "_s3" included) must be gated by exactly one leader; otherwise the attempt
 *              is abandoned (a leader is missing, or moved) and retried.
 *   3. capture only once every gate is up: each leader waits until it applied everything in its
 *              log at the gate, checks it is still the leader of the same term and that its gate
 *              still holds, and writes the shard's keys and values to a local image file.
 *   4. release every gate opens; the held writes go on.
 *
 * Why it is consistent: all gates are up before any image is taken and none opens before the
 * last one is taken, so a write that depends on another write's acknowledgement (proposed after
 * it was answered) is either held by a gate (after the cut in every shard) or was proposed before
 * its shard's gate, in which case the write it depends on was acknowledged earlier still, hence
 * applied before its own shard's image was taken (an image covers the whole log at its gate).
 *
 * Writes pause from the first gate to the last release: about a round trip plus the time to copy
 * the shards into image files (measured and reported). The images are then read by the CLI at
 * leisure, through any node (GET .../shards/<id>?node=<n>, proxied over the transport), and
 * deleted (DELETE /v1/admin/backup/cuts/<id>; left-over cut files expire after CUT_FILES_TTL_MS).
 *
 * Restore goes through the same service: POST /v1/admin/backup/load writes a batch of records
 * into a keyspace through the KV service (each key routed to the shard that owns it in the new
 * cluster, with its retries), and PUT /v1/admin/backup/chunks/<sha256> stores a chunk on its
 * ring nodes through the blob service's write path.
 */
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  createReadStream,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { decodeRecords, encodeRecord } from "../../backup/format.js";
import { forEachLimited } from "../../base/index.js";
import type { MultiRaftHost } from "../../multiraft/index.js";
import type { NodeId } from "../../raft/index.js";
import type { ApplyResult, ShardMachine } from "../../shard/index.js";
import { keyAfter } from "../../storage/index.js";
import { NoHandlerError, type Transport } from "../../transport/transport.js";
import { type Credentials, HttpError, readBody, requireAdmin, sendJson } from "../kv/http.js";
import type { KvService } from "../kv/service.js";

/** How long a gate holds writes at most (a lost coordinator frees the cluster after this). */
export const CUT_LEASE_MS = 5_000;
/** Attempts at a cut before the request fails (leaders move, shards split meanwhile). */
const CUT_ATTEMPTS = 5;
/** Deadline of each gate/capture/release call to a member. */
const CUT_CALL_TIMEOUT_MS = 4_000;
/** Image files of cuts nobody collected are deleted once this old. */
const CUT_FILES_TTL_MS = 3_600_000;
/** Keys read from a shard per scan while writing its image. */
const CAPTURE_PAGE_KEYS = 1024;
/** Bytes buffered before an image write. */
const CAPTURE_BUFFER_BYTES = 1 << 20;
/** Bytes of an image fetched from another node per transport call. */
const READ_PAGE_BYTES = 1 << 20;
/** Largest load request (a batch of records; a single large value may come alone). */
const LOAD_BODY_BYTES_MAX = 80 << 20;
/** Writes in flight per load request. */
const LOAD_INFLIGHT = 64;
/** Largest chunk accepted by PUT .../chunks/<hash> (the blob layer's own limit). */
const CHUNK_BODY_BYTES_MAX = 8 << 20;

const enc = new TextEncoder();
const dec = new TextDecoder();
const EMPTY = new Uint8Array(0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Host = MultiRaftHost<ApplyResult, ShardMachine>;

/** One shard's image, as the leader that took it reports it. */
export interface CapturedShard {
  readonly id: string;
  readonly keyspace: string;
  readonly node: NodeId;
  readonly term: number;
  readonly index: number;
  readonly keys: number;
  readonly bytes: number;
  readonly sha256: string;
  readonly start?: string;
  readonly end?: string;
}

export interface CutResult {
  readonly id: string;
  readonly coordinator: NodeId;
  readonly cutMs: number;
  readonly attempts: number;
  /** Why earlier attempts were abandoned (a leader moved, a shard was leaderless, ...). */
  readonly abandoned: readonly string[];
  /** First gate sent to last release answered (the coordinator's view of the write pause). */
  readonly pauseMs: number;
  /** The longest any single leader held its gate (its own clock). */
  readonly gateMsMax: number;
  /** Where the pause went: gating every leader, then capturing every image (ms). */
  readonly phasesMs: { readonly gate: number; readonly capture: number };
  readonly members: readonly NodeId[];
  readonly shards: readonly CapturedShard[];
}

export interface BackupDeps {
  readonly self: NodeId;
  readonly host: Host;
  readonly kv: KvService;
  readonly transport: Transport;
  /** Where this node keeps image files of cuts (under its data directory). */
  readonly dir: string;
  /** Who may use the backup endpoints (admin credentials). */
  readonly admin: Credentials;
  readonly members: () => readonly NodeId[];
  /** Re-reads the keyspace records (between attempts: a split may have added a shard). */
  readonly refreshMap: () => Promise<void>;
  readonly chunks: {
    get(hash: Uint8Array): Promise<{ ok: true; data: Uint8Array } | { ok: false; message: string }>;
    put(data: Uint8Array): Promise<{ ok: true; hash: Uint8Array } | { ok: false; message: string }>;
  };
  /** Creates the object index keyspace if needed (before index entries are loaded). */
  readonly ensureIndex: () => Promise<boolean>;
  /** Buckets in the cluster (a restore target must have none). */
  readonly bucketCount: () => Promise<number>;
  readonly onError: (what: string, err: unknown) => void;
}

interface GateAnswer {
  readonly groups: readonly {
    id: string;
    keyspace: string | null;
    term: number;
    lastIndex: number;
  }[];
}

type CaptureAnswer =
  | { readonly ok: true; readonly shards: readonly CapturedShard[]; readonly gateMs: number }
  | { readonly ok: false; readonly message: string };

/** This node's gates of one cut. */
interface LocalCut {
  readonly gatedAt: number;
  readonly groups: Map<string, { term: number; lastIndex: number }>;
}

export class BackupService {
  private readonly cuts = new Map<string, LocalCut>();

  constructor(private readonly d: BackupDeps) {}

  // ------------------------------------------------------------------ coordinator

  /** Takes a consistent cut of every shard (see the file comment). */
  async cut(): Promise<CutResult | { ok: false; message: string }> {
    const abandoned: string[] = [];
    for (let attempt = 1; attempt <= CUT_ATTEMPTS; attempt++) {
      const id = `${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`;
      const r = await this.tryCut(id);
      if ("shards" in r) return { ...r, attempts: attempt, abandoned };
      abandoned.push(r.message);
      this.d.onError("backup cut attempt", new Error(r.message));
      await this.everywhere("backup.drop", { cut: id });
      await Promise.race([this.d.refreshMap().catch(() => undefined), sleep(1_000)]);
      await sleep(200 * attempt);
    }
    return {
      ok: false,
      message: `no consistent cut after ${CUT_ATTEMPTS} attempts: ${abandoned.join("; ")}`,
    };
  }

  private async tryCut(
    id: string,
  ): Promise<Omit<CutResult, "attempts" | "abandoned"> | { message: string }> {
    const members = [...this.d.members()];
    const t0 = performance.now();
    let r: Omit<CutResult, "attempts" | "abandoned" | "pauseMs"> | { message: string };
    try {
      r = await this.gateAndCapture(id, members);
    } finally {
      // Every member, also one whose gate answer was lost: its gates open now, not at lease end.
      await this.everywhere("backup.release", { cut: id }, members);
    }
    const pauseMs = Math.round((performance.now() - t0) * 10) / 10;
    return "message" in r ? r : { ...r, pauseMs };
  }

  private async gateAndCapture(
    id: string,
    members: readonly NodeId[],
  ): Promise<Omit<CutResult, "attempts" | "abandoned" | "pauseMs"> | { message: string }> {
    const cutMs = Date.now();
    const t0 = performance.now();
    let failure: string | undefined;
    const gated: NodeId[] = [];
    const gates = await Promise.all(
      members.map(async (m) => ({
        m,
        r: await this.callMember(m, "backup.gate", { cut: id, leaseMs: CUT_LEASE_MS }),
      })),
    );
    const leaders = new Map<string, { node: NodeId; keyspace: string | null }>();
    for (const { m, r } of gates) {
      if (!r.ok) continue; // a member that is down leads nothing we can use; coverage decides
      const a = JSON.parse(dec.decode(r.body)) as GateAnswer;
      if (a.groups.length > 0) gated.push(m);
      for (const g of a.groups) {
        const seen = leaders.get(g.id);
        if (seen) failure ??= `shard ${g.id} has two leaders (${seen.node}, ${m})`;
        leaders.set(g.id, { node: m, keyspace: g.keyspace });
      }
    }
    for (const s of this.d.kv.shardMap().shards())
      if (!leaders.has(s.id)) failure ??= `shard ${s.id} (${s.keyspace}) has no leader right now`;
    for (const [shard, l] of leaders)
      if (l.keyspace === null)
        failure ??= `shard ${shard} (led by ${l.node}) is in no known keyspace yet`;
    if (failure !== undefined) return { message: failure };
    const t1 = performance.now();
    const captures = await Promise.all(
      gated.map(async (m) => {
        const r = await this.callMember(m, "backup.capture", { cut: id });
        if (!r.ok) return { ok: false as const, message: `${m}: ${r.message}` };
        return JSON.parse(dec.decode(r.body)) as CaptureAnswer;
      }),
    );
    const shards: CapturedShard[] = [];
    const t2 = performance.now();
    let gateMsMax = 0;
    for (const c of captures) {
      if (!c.ok) return { message: c.message };
      shards.push(...c.shards);
      gateMsMax = Math.max(gateMsMax, c.gateMs);
    }
    return {
      id,
      coordinator: this.d.self,
      cutMs,
      gateMsMax: Math.round(gateMsMax * 10) / 10,
      phasesMs: { gate: Math.round((t1 - t0) * 10) / 10, capture: Math.round((t2 - t1) * 10) / 10 },
      members,
      shards: shards.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
    };
  }

  private async everywhere(method: string, body: unknown, who = this.d.members()): Promise<void> {
    await Promise.all(who.map((m) => this.callMember(m, method, body)));
  }

  private async callMember(
    m: NodeId,
    method: string,
    body: unknown,
  ): Promise<{ ok: true; body: Uint8Array } | { ok: false; message: string }> {
    const data = enc.encode(JSON.stringify(body));
    if (m === this.d.self) {
      try {
        return { ok: true, body: await this.handleCall(m, method, data) };
      } catch (e) {
        return { ok: false, message: (e as Error).message };
      }
    }
    const r = await this.d.transport.call(m, method, data, CUT_CALL_TIMEOUT_MS);
    return r.ok ? r : { ok: false, message: `${r.code}: ${r.message}` };
  }

  // ------------------------------------------------------------------ member side

  /** Transport calls "backup.*" from a coordinator. */
  async handleCall(_from: NodeId, method: string, body: Uint8Array): Promise<Uint8Array> {
    const req = JSON.parse(dec.decode(body)) as Record<string, unknown>;
    const cut = String(req.cut ?? "");
    if (!/^[a-z0-9-]{1,64}$/.test(cut)) throw new Error("bad cut id");
    switch (method) {
      case "backup.gate":
        return enc.encode(JSON.stringify(this.gate(cut, Number(req.leaseMs) || CUT_LEASE_MS)));
      case "backup.capture":
        return enc.encode(JSON.stringify(await this.capture(cut)));
      case "backup.release":
        this.release(cut);
        return enc.encode("{}");
      case "backup.read":
        return this.readImage(cut, String(req.shard ?? ""), Number(req.offset ?? 0));
      case "backup.drop":
        this.release(cut);
        rmSync(join(this.d.dir, cut), { recursive: true, force: true });
        return enc.encode("{}");
      default:
        throw new NoHandlerError(method);
    }
  }

  private gate(cut: string, leaseMs: number): GateAnswer {
    this.expireOldCuts();
    const groups: { id: string; keyspace: string | null; term: number; lastIndex: number }[] = [];
    const local: LocalCut = { gatedAt: performance.now(), groups: new Map() };
    const map = this.d.kv.shardMap();
    const keyspaceOf = new Map(map.shards().map((s) => [s.id, s.keyspace]));
    for (const id of this.d.host.groupIds()) {
      if (this.d.host.status(id)?.role !== "leader") continue;
      const m = this.d.host.localMachine(id);
      // A retired shard (its keyspace was deleted) holds nothing to back up.
      if (!m || m.retiredDurable) continue;
      const g = this.d.host.gate(id, Math.min(leaseMs, CUT_LEASE_MS), cut);
      if (!g) continue;
      local.groups.set(id, g);
      groups.push({ id, keyspace: keyspaceOf.get(id) ?? null, ...g });
    }
    this.cuts.set(cut, local);
    return { groups };
  }

  private release(cut: string): void {
    const local = this.cuts.get(cut);
    if (!local) return;
    this.cuts.delete(cut);
    for (const id of local.groups.keys()) this.d.host.ungate(id, cut);
  }

  /** Waits for the gated leaders to apply their logs, then writes their images. */
  private async capture(cut: string): Promise<CaptureAnswer> {
    const local = this.cuts.get(cut);
    if (!local)
      return { ok: false, message: `${this.d.self}: no gates for cut ${cut} (lease over?)` };
    const deadline = local.gatedAt + CUT_LEASE_MS;
    const keyspaceOf = new Map(
      this.d.kv
        .shardMap()
        .shards()
        .map((s) => [s.id, s.keyspace]),
    );
    for (const [id, g] of local.groups) {
      for (;;) {
        const m = this.d.host.localMachine(id);
        if (m && m.durableApplied >= g.lastIndex) break;
        if (performance.now() > deadline)
          return {
            ok: false,
            message: `${this.d.self}: shard ${id} did not apply its log in time`,
          };
        await sleep(1);
      }
    }
    const dir = join(this.d.dir, cut);
    mkdirSync(dir, { recursive: true });
    const shards: CapturedShard[] = [];
    for (const [id, g] of local.groups) {
      const st = this.d.host.status(id);
      const m = this.d.host.localMachine(id);
      if (!m || st?.role !== "leader" || st.term !== g.term)
        return {
          ok: false,
          message: `${this.d.self}: lost the leadership of ${id} during the cut`,
        };
      const keyspace = keyspaceOf.get(id);
      if (keyspace === undefined)
        return { ok: false, message: `${this.d.self}: shard ${id} is in no known keyspace` };
      const index = m.durableApplied;
      const img = this.writeImage(m, join(dir, `${id}.img`));
      const meta = m.metaDurable;
      shards.push({
        id,
        keyspace,
        node: this.d.self,
        term: g.term,
        index,
        ...img,
        ...(meta.start === undefined ? {} : { start: meta.start }),
        ...(meta.end === undefined ? {} : { end: meta.end }),
      });
    }
    for (const id of local.groups.keys())
      if (!this.d.host.gatedBy(id, cut))
        return {
          ok: false,
          message: `${this.d.self}: the gate of ${id} expired during the capture`,
        };
    return { ok: true, shards, gateMs: performance.now() - local.gatedAt };
  }

  /** Copies a shard's keys and values (as of durableApplied) into an image file. */
  private writeImage(
    m: ShardMachine,
    path: string,
  ): { keys: number; bytes: number; sha256: string } {
    const fd = openSync(path, "w");
    const hash = createHash("sha256");
    let keys = 0;
    let bytes = 0;
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    const flush = () => {
      const buf = Buffer.concat(pending);
      writeSync(fd, buf);
      hash.update(buf);
      bytes += buf.byteLength;
      pending = [];
      pendingBytes = 0;
    };
    try {
      let start = EMPTY;
      for (;;) {
        const page = m.scan(start, undefined, CAPTURE_PAGE_KEYS);
        for (const item of page) {
          const rec = encodeRecord(item.key, item.value);
          pending.push(rec);
          pendingBytes += rec.byteLength;
          keys++;
          if (pendingBytes >= CAPTURE_BUFFER_BYTES) flush();
        }
        if (page.length < CAPTURE_PAGE_KEYS) break;
        const lastKey = (page[page.length - 1] as { key: Uint8Array }).key;
        start = keyAfter(lastKey);
      }
      flush();
    } finally {
      closeSync(fd);
    }
    return { keys, bytes, sha256: hash.digest("hex") };
  }

  private imagePath(cut: string, shard: string): string {
    if (
      !/^[a-z0-9-]{1,64}$/.test(cut) ||
      !/^[A-Za-z0-9_.-]{1,128}$/.test(shard) ||
      shard.startsWith(".")
    )
      throw new HttpError(400, "BAD_REQUEST", "bad cut or shard id");
    return join(this.d.dir, cut, `${shard}.img`);
  }

  private readImage(cut: string, shard: string, offset: number): Uint8Array {
    const fd = openSync(this.imagePath(cut, shard), "r");
    try {
      const buf = Buffer.alloc(READ_PAGE_BYTES);
      const n = readSync(fd, buf, 0, READ_PAGE_BYTES, offset);
      return buf.subarray(0, n);
    } finally {
      closeSync(fd);
    }
  }

  private expireOldCuts(): void {
    let names: string[] = [];
    try {
      names = readdirSync(this.d.dir);
    } catch {
      return; // no cut taken here yet
    }
    for (const n of names) {
      const p = join(this.d.dir, n);
      try {
        if (Date.now() - statSync(p).mtimeMs > CUT_FILES_TTL_MS)
          rmSync(p, { recursive: true, force: true });
      } catch (err) {
        this.d.onError("backup file expiry", err);
      }
    }
  }

  // ------------------------------------------------------------------ HTTP (admin token)

  /**
   *   POST   /v1/admin/backup/cut                     → the cut (CutResult)
   *   GET    /v1/admin/backup/cuts/{id}/shards/{shard}?node=<id> → the image (octet stream)
   *   DELETE /v1/admin/backup/cuts/{id}                → deletes its images everywhere
   *   GET    /v1/admin/backup/chunks/{sha256}          → a chunk's bytes
   *   PUT    /v1/admin/backup/chunks/{sha256}          → stores a chunk on its ring nodes
   *   POST   /v1/admin/backup/load?keyspace=K          body: records → {"keys":n}
   *   GET    /v1/admin/backup/target                   → what the cluster holds (restore check)
   */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    const path = url.pathname;
    if (!path.startsWith("/v1/admin/backup/")) return false;
    await requireAdmin(this.d.admin, req);
    const parts = path.slice("/v1/admin/backup/".length).split("/");
    const method = req.method ?? "GET";
    if (parts[0] === "cut" && parts.length === 1 && method === "POST") {
      const r = await this.cut();
      if ("ok" in r) throw new HttpError(503, "UNAVAILABLE", r.message, { "retry-after": "1" });
      sendJson(res, 200, r);
      return true;
    }
    if (parts[0] === "cuts" && parts.length === 4 && parts[2] === "shards" && method === "GET") {
      await this.sendImage(
        res,
        parts[1] as string,
        decodeURIComponent(parts[3] as string),
        url.searchParams.get("node") ?? this.d.self,
      );
      return true;
    }
    if (parts[0] === "cuts" && parts.length === 2 && method === "DELETE") {
      await this.everywhere("backup.drop", { cut: parts[1] });
      sendJson(res, 200, {});
      return true;
    }
    if (parts[0] === "chunks" && parts.length === 2) {
      const hex = parts[1] as string;
      if (!/^[0-9a-f]{64}$/.test(hex))
        throw new HttpError(400, "BAD_REQUEST", "a chunk is named by its SHA-256 (64 hex digits)");
      const hash = Buffer.from(hex, "hex");
      if (method === "GET") {
        const r = await this.d.chunks.get(hash);
        if (!r.ok) throw new HttpError(404, "NOT_FOUND", `chunk ${hex}: ${r.message}`);
        res.writeHead(200, {
          "content-type": "application/octet-stream",
          "content-length": r.data.byteLength,
        });
        res.end(r.data);
        return true;
      }
      if (method === "PUT") {
        const data = await readBody(req, CHUNK_BODY_BYTES_MAX);
        if (createHash("sha256").update(data).digest("hex") !== hex)
          throw new HttpError(400, "BAD_DIGEST", `the body's SHA-256 is not ${hex}`);
        const r = await this.d.chunks.put(data);
        if (!r.ok)
          throw new HttpError(503, "UNAVAILABLE", `chunk ${hex}: ${r.message}`, {
            "retry-after": "1",
          });
        sendJson(res, 200, { stored: hex });
        return true;
      }
    }
    if (parts[0] === "load" && parts.length === 1 && method === "POST") {
      sendJson(
        res,
        200,
        await this.load(
          url.searchParams.get("keyspace") ?? "",
          await readBody(req, LOAD_BODY_BYTES_MAX),
        ),
      );
      return true;
    }
    if (parts[0] === "target" && parts.length === 1 && method === "GET") {
      sendJson(res, 200, await this.target());
      return true;
    }
    throw new HttpError(404, "NOT_FOUND", `no route for ${method} ${path}`);
  }

  private async sendImage(
    res: ServerResponse,
    cut: string,
    shard: string,
    node: string,
  ): Promise<void> {
    if (node === this.d.self) {
      const path = this.imagePath(cut, shard);
      let size: number;
      try {
        size = statSync(path).size;
      } catch {
        throw new HttpError(404, "NOT_FOUND", `no image of ${shard} for cut ${cut} on ${node}`);
      }
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": size });
      await new Promise<void>((resolve, reject) => {
        createReadStream(path)
          .on("error", reject)
          .pipe(res)
          .on("finish", resolve)
          .on("error", reject);
      });
      return;
    }
    // Another node's image: paged over the transport, one page in memory at a time.
    let offset = 0;
    for (;;) {
      const r = await this.d.transport.call(
        node,
        "backup.read",
        enc.encode(JSON.stringify({ cut, shard, offset })),
        CUT_CALL_TIMEOUT_MS * 4,
      );
      if (!r.ok) {
        if (offset === 0) throw new HttpError(502, "UNAVAILABLE", `${node}: ${r.message}`);
        res.destroy(); // the client sees a cut-off body (and a hash mismatch)
        return;
      }
      if (offset === 0) res.writeHead(200, { "content-type": "application/octet-stream" });
      if (r.body.byteLength === 0) break;
      offset += r.body.byteLength;
      if (!res.write(r.body)) await new Promise((resolve) => res.once("drain", resolve));
      if (r.body.byteLength < READ_PAGE_BYTES) break;
    }
    res.end();
  }

  /** Writes a batch of records into a keyspace (idempotent: the CLI retries a failed batch). */
  private async load(keyspace: string, body: Uint8Array): Promise<{ keys: number }> {
    if (keyspace === "") throw new HttpError(400, "BAD_REQUEST", "?keyspace= is required");
    if (keyspace === "_s3" && !(await this.d.ensureIndex()))
      throw new HttpError(503, "UNAVAILABLE", "cannot create the object index", {
        "retry-after": "1",
      });
    if (!(await this.d.kv.knowsKeyspace(keyspace)))
      throw new HttpError(404, "KEYSPACE_NOT_FOUND", `keyspace "${keyspace}" does not exist`);
    const records = decodeRecords(body);
    if ("error" in records) throw new HttpError(400, "BAD_REQUEST", records.error);
    let failed: { code: string; message: string } | undefined;
    await forEachLimited(records, LOAD_INFLIGHT, async (r) => {
      if (failed) return;
      const w = await this.d.kv.put(keyspace, r.key, r.value, { kind: "none" });
      if (!w.ok) failed ??= w;
    });
    if (failed)
      throw new HttpError(503, "UNAVAILABLE", `${keyspace}: ${failed.code}: ${failed.message}`, {
        "retry-after": "1",
      });
    return { keys: records.length };
  }

  private async target(): Promise<{ keyspaces: string[]; defaultKeys: number; buckets: number }> {
    await this.d.refreshMap().catch(() => undefined);
    const keyspaces = this.d.kv
      .shardMap()
      .keyspaces()
      .filter((k) => !k.startsWith("_") && k !== "default");
    const l = await this.d.kv.list(
      "default",
      { prefix: EMPTY, startAfter: undefined, limit: 1 },
      "linearizable",
    );
    if (!l.ok) throw new HttpError(503, "UNAVAILABLE", l.message, { "retry-after": "1" });
    return { keyspaces, defaultKeys: l.items.length, buckets: await this.d.bucketCount() };
  }
}
