/**
 * The S3 workload: `clients` concurrent workers do PutObject / GetObject / ListObjectsV2 /
 * DeleteObject / conditional PutObject (`If-None-Match: *`) on a small rotating set of object
 * keys in one bucket, each request through a node picked at random and signed with SigV4
 * (s3sign.ts), and record every operation.
 *
 * An object is a register whose values are SHA-256s of bodies: a put writes the hash of its
 * body, a get reads the hash of what came back (null on NoSuchKey), a delete writes "absent",
 * a conditional put is a compare-and-set from "absent", and a listing is a read of every key at
 * once (present with the hash its ETag names, or absent). s3checker.ts maps these onto the KV
 * checker's register operations.
 *
 * Bodies: mostly 0 B – 64 KiB (inline up to 4 KiB, one chunk above), some 1–3 MiB (several
 * 1 MiB chunks) while the byte budget lasts; each starts with a unique tag so that a hash names
 * one put (an empty body excepted). Every body's SHA-256 and MD5 are kept, so a listing's ETag
 * (the MD5) can be turned back into the hash it stands for.
 *
 * What is certain (`fail`) follows history.ts: no connection was made (ECONNREFUSED, ...), or a
 * 4xx that refuses the request before it changes anything (auth, NoSuchBucket, the 409
 * OperationAborted a writer gets after 8 lost compare-and-sets). A 412 on a conditional put is
 * an `ok` cas that did not hold. Everything else is `info`: timeouts, resets, a body cut short,
 * 5xx (the S3 door's 503 ServiceUnavailable covers "outcome unknown" and is not told apart from
 * "not executed", and SlowDown is not either, so both are unknown) and 400/408 RequestTimeout.
 */
import { createHash, randomBytes } from "node:crypto";
import { Prng } from "../base/index.js";
import type { ChaosCluster } from "./cluster.js";
import { FINAL_CLIENT } from "./history.js";
import { type HttpTarget, type RawOutcome, sendRaw, target } from "./http.js";
import { type S3Credentials, sha256Hex, signS3Request } from "./s3sign.js";
import { OpSchedule, sleep } from "./schedule.js";

export type S3OpKind = "get" | "put" | "cput" | "delete" | "list";
export type S3Status = "ok" | "fail" | "info";

/** One entry of a listing: the key, the hash its ETag stands for, its size. */
export interface S3Listed {
  readonly key: string;
  /** SHA-256 of the body whose MD5 is the ETag, or `etag:<md5>` when no put sent such a body. */
  readonly value: string;
  readonly size: number;
}

/** One recorded S3 operation: a line of history.jsonl. */
export interface S3Op {
  readonly id: number;
  /** Worker number; final audit requests use FINAL_CLIENT. */
  readonly client: number;
  readonly node: string;
  readonly op: S3OpKind;
  /** The object key ("" for a listing of the bucket). */
  readonly key: string;
  /** put / cput: SHA-256 (hex) of the body sent. */
  readonly value?: string;
  /** put / cput: bytes sent; get: bytes received. */
  readonly size?: number;
  readonly call: number;
  readonly ret: number;
  readonly status: S3Status;
  /**
   * get: the SHA-256 of the body read (null = NoSuchKey); cput: whether it succeeded (false on
   * 412); list: the entries.
   */
  readonly result?: {
    readonly value?: string | null;
    readonly ok?: boolean;
    readonly listed?: readonly S3Listed[];
    readonly truncated?: boolean;
  };
  /** HTTP status; 0 when there was no complete HTTP answer (see `error`). */
  readonly http: number;
  /** The S3 error code of an error answer (ServiceUnavailable, PreconditionFailed, ...)... */
  readonly code?: string;
  /** ...and its message (the node's reason), cut to 200 characters. */
  readonly message?: string;
  /** Network-level failure (ECONNREFUSED, TIMEOUT, ABORTED, ...). */
  readonly error?: string;
  /** An answer that contradicts itself or the request (ETag vs body MD5, listed size). */
  readonly mismatch?: string;
  readonly final?: true;
}

export interface S3WorkloadOptions {
  readonly clients: number;
  /** Key slots in use at once. */
  readonly keys: number;
  /** Operations on one key before its slot moves to a new key. */
  readonly opsPerKeyMax: number;
  /** Upper bound on the total request rate, operations per second (all clients). */
  readonly rateMax: number;
  readonly requestTimeoutMs: number;
  readonly seed: number;
  /** Total body bytes the workload may send; past it, bodies stay small (inline). */
  readonly bytesMax: number;
  readonly bucket: string;
  readonly credentials: S3Credentials;
  /**
   * Turn bucket versioning on before the run: every put then keeps a version and a delete
   * leaves a marker, and the audit checks that every acknowledged put is still a version.
   */
  readonly versioning?: boolean;
}

/** Share of each kind of operation, out of 100. */
const MIX: readonly [S3OpKind, number][] = [
  ["get", 35],
  ["put", 25],
  ["cput", 12],
  ["delete", 10],
  ["list", 18],
];

const KiB = 1024;
const MiB = 1024 * KiB;
/** Two refreshes of the nodes' bucket caches (1 s each; src/api/s3/meta.ts). */
const VERSIONING_SETTLE_MS = 2_500;
/** Bodies up to this size are stored inline in the index entry (objects.ts). */
const INLINE_BYTES_MAX = 4 * KiB;

/** Network errors raised before the request could leave (as history.ts). */
const NOT_SENT_ERRORS: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

const md5Hex = (b: Uint8Array) => createHash("md5").update(b).digest("hex");

/** The `<Code>` of an S3 error document. */
export function s3ErrorCode(body: Uint8Array | string): string | undefined {
  const text = typeof body === "string" ? body : Buffer.from(body).toString("utf8");
  return /<Code>([^<]{1,100})<\/Code>/.exec(text)?.[1];
}

/** ok / fail / info of one S3 answer (see the module comment). */
export function classifyS3(
  kind: S3OpKind,
  outcome: RawOutcome,
): { readonly status: S3Status; readonly code?: string } {
  if (outcome.kind === "error")
    return { status: NOT_SENT_ERRORS.has(outcome.code) ? "fail" : "info" };
  const { status } = outcome;
  const code = status >= 400 ? s3ErrorCode(outcome.body) : undefined;
  const withCode = code !== undefined ? { code } : {};
  if (status >= 200 && status < 300) return { status: "ok" };
  if (status === 404 && kind === "get" && code === "NoSuchKey")
    return { status: "ok", code: "NoSuchKey" };
  if (status === 412 && kind === "cput")
    return { status: "ok", code: code ?? "PreconditionFailed" };
  if (status === 408 || code === "RequestTimeout") return { status: "info", ...withCode };
  if (status >= 400 && status < 500) return { status: "fail", ...withCode };
  return { status: "info", ...withCode };
}

const XML_ENTITIES: Record<string, string> = {
  "&amp;": "&",
  "&lt;": "<",
  "&gt;": ">",
  "&quot;": '"',
  "&apos;": "'",
};
const unescapeXml = (s: string) =>
  s.replace(/&(?:amp|lt|gt|quot|apos);|&#x([0-9A-Fa-f]+);|&#(\d+);/g, (m, hex, dec) =>
    hex
      ? String.fromCodePoint(parseInt(hex, 16))
      : dec
        ? String.fromCodePoint(+dec)
        : (XML_ENTITIES[m] ?? m),
  );

/** Key, ETag (hex, unquoted) and size of each `<Contents>` of a ListObjectsV2 answer. */
export function parseListing(xml: string): {
  entries: { key: string; etag: string; size: number }[];
  truncated: boolean;
} {
  const entries: { key: string; etag: string; size: number }[] = [];
  for (const m of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
    const block = m[1] ?? "";
    const key = /<Key>([\s\S]*?)<\/Key>/.exec(block)?.[1];
    const etag = /<ETag>([\s\S]*?)<\/ETag>/.exec(block)?.[1];
    const size = /<Size>(\d+)<\/Size>/.exec(block)?.[1];
    if (key === undefined) continue;
    entries.push({
      key: unescapeXml(key),
      etag: unescapeXml(etag ?? "").replace(/"/g, ""),
      size: Number(size ?? -1),
    });
  }
  return { entries, truncated: /<IsTruncated>true<\/IsTruncated>/.test(xml) };
}

/** Key, ETag (hex, unquoted; "" for a delete marker) of every entry of a ListObjectVersions answer. */
export function parseVersions(xml: string): {
  versions: { key: string; etag: string; marker: boolean }[];
  truncated: boolean;
} {
  const versions: { key: string; etag: string; marker: boolean }[] = [];
  for (const m of xml.matchAll(/<(Version|DeleteMarker)>([\s\S]*?)<\/\1>/g)) {
    const block = m[2] ?? "";
    const key = /<Key>([\s\S]*?)<\/Key>/.exec(block)?.[1];
    if (key === undefined) continue;
    const etag = /<ETag>([\s\S]*?)<\/ETag>/.exec(block)?.[1];
    versions.push({
      key: unescapeXml(key),
      etag: unescapeXml(etag ?? "").replace(/"/g, ""),
      marker: m[1] === "DeleteMarker",
    });
  }
  return { versions, truncated: /<IsTruncated>true<\/IsTruncated>/.test(xml) };
}

/** The body's MD5 as S3 writes an ETag, without quotes; undefined when absent. */
function etagOf(outcome: RawOutcome): string | undefined {
  if (outcome.kind !== "answer") return undefined;
  const e = outcome.headers.etag;
  return typeof e === "string" ? e.replace(/^W\//, "").replace(/"/g, "") : undefined;
}

export class S3Workload {
  readonly ops: S3Op[] = [];
  /** Every object key used, for the final audit. */
  readonly keysUsed = new Set<string>();
  /** SHA-256 of every body sent, by MD5 (a listing's ETag), and the body's size. */
  readonly bodies = new Map<string, { sha: string; size: number }>();
  /** Answers worth a look that are not violations by themselves, counted by kind. */
  readonly oddities = new Map<string, number>();
  private readonly targets = new Map<string, HttpTarget>();
  private readonly schedule: OpSchedule<S3OpKind>;
  private readonly rnd: Prng;
  private t0 = performance.now();
  private stopping = false;
  private running: Promise<void>[] = [];
  private nextId = 0;
  private bytesSent = 0;
  /** Shards of the object index (keyspace _s3), for "the leader of the busiest shard". */
  private indexShards: string[] = [];
  private shardTurn = 0;
  private refreshing = false;

  constructor(
    private readonly cluster: ChaosCluster,
    private readonly opts: S3WorkloadOptions,
  ) {
    this.rnd = new Prng(opts.seed ^ 0x53335eed);
    this.schedule = new OpSchedule(this.rnd, { ...opts, keyPrefix: "o", mix: MIX });
    for (const n of cluster.nodes) this.targets.set(n.id, target(n.s3));
  }

  now(): number {
    return performance.now() - this.t0;
  }

  /**
   * Creates the bucket (retried through every node until one answers 200, or 409
   * BucketAlreadyOwnedByYou after an earlier attempt whose answer was lost), then waits until
   * every node lists it (each node then knows the root key and the bucket).
   */
  async setup(timeoutMs: number): Promise<{ ok: true } | { ok: false; reason: string }> {
    const until = Date.now() + timeoutMs;
    let last = "no node answered";
    let created = false;
    for (let i = 0; !created && Date.now() < until; i++) {
      const node = this.cluster.nodes[i % this.cluster.nodes.length]!;
      const r = await this.request(
        node.id,
        "PUT",
        `/${this.opts.bucket}`,
        "",
        new Uint8Array(),
        {},
      );
      if (
        r.kind === "answer" &&
        (r.status === 200 || s3ErrorCode(r.body) === "BucketAlreadyOwnedByYou")
      )
        created = true;
      else {
        last =
          r.kind === "answer"
            ? `CreateBucket through ${node.id}: ${r.status} ${s3ErrorCode(r.body) ?? ""}`
            : `CreateBucket through ${node.id}: ${r.code}`;
        await sleep(500);
      }
    }
    if (!created)
      return { ok: false, reason: `bucket not created within ${timeoutMs} ms: ${last}` };
    for (let i = 0; this.opts.versioning; i++) {
      const node = this.cluster.nodes[i % this.cluster.nodes.length]!;
      const r = await this.request(
        node.id,
        "PUT",
        `/${this.opts.bucket}`,
        "versioning=",
        Buffer.from("<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"),
        {},
      );
      if (r.kind === "answer" && r.status === 200) {
        // Nodes learn bucket settings from a cache refreshed every second (docs/s3.md): a put
        // through a node that has not seen the change yet still replaces the current object.
        // S3 itself asks to wait after enabling versioning; so does this workload.
        await sleep(VERSIONING_SETTLE_MS);
        break;
      }
      last =
        r.kind === "answer"
          ? `PutBucketVersioning through ${node.id}: ${r.status} ${s3ErrorCode(r.body) ?? ""}`
          : `PutBucketVersioning through ${node.id}: ${r.code}`;
      if (Date.now() > until)
        return { ok: false, reason: `versioning not enabled within ${timeoutMs} ms: ${last}` };
      await sleep(500);
    }
    for (const node of this.cluster.nodes) {
      for (;;) {
        const r = await this.request(
          node.id,
          "GET",
          `/${this.opts.bucket}`,
          "list-type=2",
          undefined,
          {},
        );
        if (r.kind === "answer" && r.status === 200) break;
        last =
          r.kind === "answer"
            ? `ListObjectsV2 through ${node.id}: ${r.status} ${s3ErrorCode(r.body) ?? ""}`
            : `ListObjectsV2 through ${node.id}: ${r.code}`;
        if (Date.now() > until)
          return { ok: false, reason: `bucket not served within ${timeoutMs} ms: ${last}` };
        await sleep(300);
      }
    }
    await this.refreshShards();
    return { ok: true };
  }

  /** Starts the workers; times in the history are relative to `t0` (performance.now()). */
  start(t0: number): void {
    this.t0 = t0;
    this.running = Array.from({ length: this.opts.clients }, (_, c) => this.worker(c));
  }

  /** Stops issuing operations and waits for those in flight (bounded by the request timeout). */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.running);
  }

  /** Closes the workload's connections. */
  close(): void {
    for (const t of this.targets.values()) t.agent.destroy();
  }

  /**
   * A shard of the object index (the nemesis kills or pauses its leader); they take turns.
   * The list is refreshed in the background.
   */
  busiestShard(): string | undefined {
    void this.refreshShards();
    if (this.indexShards.length === 0) return undefined;
    return this.indexShards[this.shardTurn++ % this.indexShards.length];
  }

  private async refreshShards(): Promise<void> {
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      for (const n of this.cluster.alive()) {
        if (n.paused) continue;
        const st = await this.cluster.status(n.id, 1000);
        if (!st) continue;
        const ids = [...new Set(st.filter((s) => s.keyspace === "_s3").map((s) => s.id))];
        if (ids.length > 0) {
          this.indexShards = ids.sort();
          return;
        }
      }
    } finally {
      this.refreshing = false;
    }
  }

  /**
   * A body of varied size starting with a unique tag: 10% empty, 30% up to 4 KiB (inline), 50%
   * up to 64 KiB (one chunk), 10% 1–3 MiB (chunked) while the byte budget allows; once the
   * budget is spent, at most 4 KiB.
   */
  private makeBody(client: number, seq: number): Buffer {
    const r = this.rnd.int(100);
    let size: number;
    if (r < 10) size = 0;
    else if (r < 40) size = this.rnd.range(1, INLINE_BYTES_MAX);
    else if (r < 90) size = this.rnd.range(INLINE_BYTES_MAX + 1, 64 * KiB);
    else size = this.rnd.range(MiB, 3 * MiB);
    if (this.bytesSent + size > this.opts.bytesMax) size = Math.min(size, INLINE_BYTES_MAX);
    this.bytesSent += size;
    if (size === 0) return Buffer.alloc(0);
    const body = randomBytes(size);
    body.write(`${this.opts.seed}.${client}.${seq}.`, 0, "latin1");
    return body;
  }

  private async worker(client: number): Promise<void> {
    let seq = 0;
    while (!this.stopping) {
      await this.schedule.pace();
      if (this.stopping) break;
      const node = this.cluster.nodes[this.rnd.int(this.cluster.nodes.length)]!;
      const kind = this.schedule.pickKind();
      if (kind === "list") {
        await this.invoke(client, node.id, "list", "");
        continue;
      }
      const key = this.schedule.pickKey();
      this.keysUsed.add(key);
      const body = kind === "put" || kind === "cput" ? this.makeBody(client, ++seq) : undefined;
      await this.invoke(client, node.id, kind, key, body);
    }
  }

  private path(key: string): string {
    return key === ""
      ? `/${this.opts.bucket}`
      : `/${this.opts.bucket}/${key.split("/").map(encodeURIComponent).join("/")}`;
  }

  /** One signed request. */
  private request(
    nodeId: string,
    method: "GET" | "PUT" | "DELETE",
    path: string,
    query: string,
    body: Uint8Array | undefined,
    extra: Record<string, string>,
  ): Promise<RawOutcome> {
    const node = this.cluster.node(nodeId);
    const headers = signS3Request(
      {
        method,
        path,
        query,
        host: node.s3,
        payloadHash: sha256Hex(body ?? new Uint8Array()),
        headers: extra,
      },
      this.opts.credentials,
    );
    return sendRaw(this.targets.get(nodeId)!, {
      method,
      path: query === "" ? path : `${path}?${query}`,
      headers,
      ...(body !== undefined ? { body } : {}),
      timeoutMs: this.opts.requestTimeoutMs,
    });
  }

  /**
   * Issues one operation and records it in `ops` (a final-audit op is returned, not recorded:
   * the runner keeps the final reads apart).
   */
  async invoke(
    client: number,
    nodeId: string,
    kind: S3OpKind,
    key: string,
    body?: Buffer,
    extra: { final?: true } = {},
  ): Promise<S3Op> {
    let value: string | undefined;
    let md5: string | undefined;
    if (body !== undefined) {
      value = sha256Hex(body);
      md5 = md5Hex(body);
      this.bodies.set(md5, { sha: value, size: body.byteLength });
    }
    const method = kind === "get" || kind === "list" ? "GET" : kind === "delete" ? "DELETE" : "PUT";
    const id = this.nextId++;
    const call = this.now();
    const outcome = await this.request(
      nodeId,
      method,
      this.path(key),
      kind === "list" ? "list-type=2&max-keys=1000" : "",
      body,
      kind === "cput" ? { "if-none-match": "*" } : {},
    );
    const ret = this.now();
    const c = classifyS3(kind, outcome);
    let result: S3Op["result"];
    let size = body?.byteLength;
    let mismatch: string | undefined;
    if (c.status === "ok" && outcome.kind === "answer") {
      switch (kind) {
        case "get": {
          if (outcome.status === 404) result = { value: null };
          else {
            result = { value: sha256Hex(outcome.body) };
            size = outcome.body.byteLength;
            const etag = etagOf(outcome);
            const got = md5Hex(outcome.body);
            if (etag !== undefined && !etag.includes("-") && etag !== got)
              mismatch = `GET answered a body with MD5 ${got} under ETag ${etag}`;
          }
          break;
        }
        case "cput":
          result = { ok: outcome.status < 300 };
          break;
        case "list": {
          const page = parseListing(outcome.body.toString("utf8"));
          const listed: S3Listed[] = [];
          const bad: string[] = [];
          for (const e of page.entries) {
            const b = this.bodies.get(e.etag);
            listed.push({ key: e.key, value: b?.sha ?? `etag:${e.etag}`, size: e.size });
            if (b && b.size !== e.size)
              bad.push(`${e.key} listed with size ${e.size}, its body has ${b.size} bytes`);
          }
          if (bad.length > 0) mismatch = bad.join("; ");
          result = { listed, ...(page.truncated ? { truncated: true } : {}) };
          break;
        }
        default:
          break;
      }
      if ((kind === "put" || (kind === "cput" && outcome.status < 300)) && md5 !== undefined) {
        const etag = etagOf(outcome);
        if (etag !== undefined && etag !== md5)
          mismatch = `PUT of a body with MD5 ${md5} answered ETag ${etag}`;
      }
    }
    if (outcome.kind === "answer" && c.status !== "ok")
      this.noteOddity(kind, outcome.status, c.code);
    const message =
      outcome.kind === "answer" && outcome.status >= 400 && outcome.status !== 412
        ? /<Message>([^<]{1,200})/.exec(outcome.body.toString("utf8"))?.[1]
        : undefined;
    const op: S3Op = {
      id,
      client,
      node: nodeId,
      op: kind,
      key,
      ...(value !== undefined ? { value } : {}),
      ...(size !== undefined ? { size } : {}),
      call,
      ret,
      status: c.status,
      ...(result ? { result } : {}),
      http: outcome.kind === "answer" ? outcome.status : 0,
      ...(c.code !== undefined ? { code: c.code } : {}),
      ...(message !== undefined ? { message } : {}),
      ...(outcome.kind === "error" ? { error: outcome.code } : {}),
      ...(mismatch !== undefined ? { mismatch } : {}),
      ...(extra.final ? { final: true as const } : {}),
    };
    if (!extra.final) this.ops.push(op);
    return op;
  }

  /** Counts the error answers that are more than "the cluster is busy or degraded". */
  private noteOddity(kind: S3OpKind, status: number, code: string | undefined): void {
    const expected =
      status === 503 || code === "OperationAborted" || code === "RequestTimeout" || status === 408;
    if (expected) return;
    const k = `${kind} ${status} ${code ?? "(no code)"}`;
    this.oddities.set(k, (this.oddities.get(k) ?? 0) + 1);
  }

  /**
   * The post-heal audit: a listing through every node, then every key (used or listed) read
   * through every node, each retried until it gets a definite answer (at most `attemptsMax`
   * times, and once only past `budgetMs`). Returns the ok answers
   * (the final reads) and what could not be read. The audit's own failed attempts are not kept
   * in the checked history (they are reads: no effect), but their last answer is reported.
   */
  async finalAudit(
    attemptsMax: number,
    budgetMs: number,
  ): Promise<{
    finals: S3Op[];
    unreadable: string[];
    unlisted: string[];
    /** With versioning: the ETags of every version of each key. */
    versions?: Map<string, Set<string>>;
  }> {
    const finals: S3Op[] = [];
    const unreadable: string[] = [];
    const unlisted: string[] = [];
    // Past the budget, every remaining read gets one attempt (the audit stays bounded).
    const until = Date.now() + budgetMs;
    const retried = async (nodeId: string, kind: S3OpKind, key: string) => {
      let last: S3Op | undefined;
      for (
        let attempt = 0;
        attempt < attemptsMax && (attempt === 0 || Date.now() < until);
        attempt++
      ) {
        last = await this.invoke(FINAL_CLIENT, nodeId, kind, key, undefined, { final: true });
        if (last.status === "ok") return { ok: last, last };
        await sleep(250);
      }
      return { ok: undefined, last };
    };
    const describe = (op: S3Op | undefined) =>
      op === undefined ? "" : op.http > 0 ? `${op.http} ${op.code ?? ""}`.trim() : (op.error ?? "");
    const keys = new Set(this.keysUsed);
    for (const node of this.cluster.nodes) {
      const r = await retried(node.id, "list", "");
      if (r.ok) {
        finals.push(r.ok);
        for (const e of r.ok.result?.listed ?? []) keys.add(e.key);
      } else unlisted.push(`${node.id} (last: ${describe(r.last)})`);
    }
    for (const key of [...keys].sort()) {
      for (const node of this.cluster.nodes) {
        const r = await retried(node.id, "get", key);
        if (r.ok) finals.push(r.ok);
        else unreadable.push(`${key}@${node.id} (last: ${describe(r.last)})`);
      }
    }
    const versions = this.opts.versioning ? await this.versionsOf([...keys], until) : undefined;
    if (versions) for (const k of versions.unreadable) unreadable.push(k);
    return { finals, unreadable, unlisted, ...(versions ? { versions: versions.etags } : {}) };
  }

  /**
   * The ETags of every version of each key (ListObjectVersions with the key as prefix, through
   * the nodes in turn, retried like the reads). Delete markers have none.
   */
  private async versionsOf(
    keys: readonly string[],
    until: number,
  ): Promise<{ etags: Map<string, Set<string>>; unreadable: string[] }> {
    const etags = new Map<string, Set<string>>();
    const unreadable: string[] = [];
    for (const [i, key] of keys.entries()) {
      let got: Set<string> | undefined;
      let last = "";
      for (let attempt = 0; attempt < 20 && (attempt === 0 || Date.now() < until); attempt++) {
        const node = this.cluster.nodes[(i + attempt) % this.cluster.nodes.length]!;
        const q = `max-keys=1000&prefix=${encodeURIComponent(key)}&versions=`;
        const r = await this.request(node.id, "GET", `/${this.opts.bucket}`, q, undefined, {});
        if (r.kind === "answer" && r.status === 200) {
          const v = parseVersions(Buffer.from(r.body).toString("utf8"));
          if (v.truncated) {
            last = "more than 1,000 versions";
            break;
          }
          got = new Set(v.versions.filter((x) => x.key === key && !x.marker).map((x) => x.etag));
          break;
        }
        last = r.kind === "answer" ? `${r.status} ${s3ErrorCode(r.body) ?? ""}` : r.code;
        await sleep(250);
      }
      if (got) etags.set(key, got);
      else unreadable.push(`versions of ${key} (last: ${last})`);
    }
    return { etags, unreadable };
  }
}
