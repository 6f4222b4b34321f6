/**
 * `kumo backup create|restore|verify` (docs/operations.md, "Backup and restore").
 *
 * Where: a directory, or s3://bucket/prefix in any S3-compatible service (src/backup/store.ts,
 * s3-store.ts); the same files either way (DIR below).
 *
 * create: asks a node for a consistent cut of every shard (src/api/admin/backup.ts), copies
 *   each shard's image into DIR/shards/, then every chunk the object index references in the
 *   cut into DIR/chunks/ (content-addressed and verified: a chunk already in DIR is not copied
 *   again, so repeated backups into one place are incremental), and writes manifest.json
 *   last: a backup without it is visibly incomplete.
 * restore: verifies the whole backup first (hashes, chunk presence), refuses a cluster that
 *   holds data (unless --force), then recreates keyspaces, uploads the chunks to their ring
 *   nodes, and writes the metadata records and every key and object-index entry anew: logically,
 *   so the new cluster's shard layout does not have to match the old one's.
 * verify: the offline check of a backup (no cluster needed).
 *
 * Memory stays bounded: images stream to and from disk, chunks go one at a time per worker, and
 * restore batches are at most LOAD_BATCH_BYTES (a single larger value goes alone).
 */
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { Command } from "commander";
import type { CutResult } from "../api/admin/backup.js";
import {
  BACKUP_FORMAT,
  BACKUP_FORMAT_VERSION,
  CHUNK_LIST_FILE,
  chunkOfIndexKey,
  chunkPath,
  encodeRecord,
  loadChunkList,
  MANIFEST_FILE,
  type Manifest,
  type ManifestKeyspace,
  type ManifestShard,
  readImage,
  shardFile,
  verifyBackup,
} from "../backup/format.js";
import { openBackupStore, type S3StoreOptions } from "../backup/s3-store.js";
import type { BackupStore } from "../backup/store.js";
import { type Client, type ClientOptions, failOnError, request, resolveClient } from "./client.js";
import { formatBytes } from "./output.js";
import { Progress } from "./progress.js";

/** Bytes of records per restore request. */
const LOAD_BATCH_BYTES = 1 << 20;
/** Restore requests in flight. */
const LOAD_INFLIGHT = 4;
/** Chunk transfers in flight (each holds one chunk, about 1 MiB). */
const CHUNK_INFLIGHT = 4;
/** Attempts of one chunk or batch transfer before the command fails. */
const TRANSFER_ATTEMPTS = 6;
/** Metadata records that describe the old cluster's layout, not its data: never restored. */
const META_LAYOUT_PREFIXES = ["ks/", "m/"];
const META_LAYOUT_KEYS = new Set(["ring"]);

const enc = new TextEncoder();
const dec = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface CommonOptions extends ClientOptions, StoreFlags {
  json?: boolean;
  quiet?: boolean;
}

/** Where an S3 backup location is served (the credentials come from the AWS SDK's chain). */
interface StoreFlags {
  s3Endpoint?: string;
  s3Region?: string;
  s3VirtualHost?: boolean;
}

function withStoreFlags(cmd: Command): Command {
  return cmd
    .option(
      "--s3-endpoint <url>",
      "S3 service of an s3://bucket/prefix location (default: AWS); credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the AWS SDK's other sources)",
      process.env.KUMO_BACKUP_S3_ENDPOINT,
    )
    .option("--s3-region <region>", "region of the S3 location", "us-east-1")
    .option(
      "--s3-virtual-host",
      "virtual-host-style S3 addressing (default: path style with --s3-endpoint)",
      false,
    );
}

function storeAt(location: string, o: StoreFlags): BackupStore {
  const s3: S3StoreOptions = {
    ...(o.s3Endpoint ? { endpoint: o.s3Endpoint } : {}),
    ...(o.s3Region ? { region: o.s3Region } : {}),
    ...(o.s3VirtualHost ? { pathStyle: false } : {}),
  };
  return openBackupStore(location, s3);
}

/** Runs `fn` until it succeeds or TRANSFER_ATTEMPTS failed (with growing pauses). */
async function retried<T>(what: string, fn: () => Promise<T>): Promise<T> {
  let last: unknown;
  for (let attempt = 1; attempt <= TRANSFER_ATTEMPTS; attempt++) {
    try {
      return await fn();
    } catch (e) {
      last = e;
      if ((e as { permanent?: boolean }).permanent) break;
      await sleep(Math.min(250 * 2 ** attempt, 4_000));
    }
  }
  throw new Error(`${what}: ${(last as Error)?.message ?? String(last)}`);
}

async function workers<T>(
  items: readonly T[],
  n: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const run = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, run));
}

// ------------------------------------------------------------------ create

export interface CreateSummary {
  readonly dir: string;
  readonly cut: string;
  readonly shards: number;
  readonly keys: number;
  readonly imageBytes: number;
  readonly chunks: number;
  readonly chunksCopied: number;
  readonly chunksSkipped: number;
  readonly chunkBytes: number;
  readonly pauseMs: number;
  readonly gateMsMax: number;
  readonly phasesMs: { readonly gate: number; readonly capture: number };
  readonly attempts: number;
  /** Why earlier cut attempts were abandoned. */
  readonly abandoned: readonly string[];
  readonly seconds: number;
}

export async function backupCreate(
  c: Client,
  store: BackupStore,
  quiet: boolean,
): Promise<CreateSummary> {
  const t0 = performance.now();
  const dir = store.location;
  // The manifest goes first and comes back last: an interrupted run leaves no valid backup.
  await store.remove(MANIFEST_FILE);
  await store.removeTree("shards");
  await store.remove(CHUNK_LIST_FILE);

  const r = await request(c, "POST", "/v1/admin/backup/cut");
  await failOnError(r);
  const cut = (await r.json()) as CutResult;
  try {
    const shards = await downloadImages(c, store, cut, quiet);
    const keyspaces = await keyspacesOf(store, shards);
    const chunks = await copyChunks(c, store, shards, quiet);
    const manifest: Manifest = {
      format: BACKUP_FORMAT,
      version: BACKUP_FORMAT_VERSION,
      cutMs: cut.cutMs,
      cut: {
        id: cut.id,
        coordinator: cut.coordinator,
        attempts: cut.attempts,
        pauseMs: cut.pauseMs,
      },
      cluster: { members: cut.members },
      keyspaces,
      shards,
      chunks: {
        count: chunks.count,
        bytes: chunks.bytes,
        file: CHUNK_LIST_FILE,
        sha256: chunks.sha256,
      },
    };
    await store.write(MANIFEST_FILE, enc.encode(`${JSON.stringify(manifest, null, 2)}\n`));
    return {
      dir,
      cut: cut.id,
      shards: shards.length,
      keys: shards.reduce((n, s) => n + s.keys, 0),
      imageBytes: shards.reduce((n, s) => n + s.bytes, 0),
      chunks: chunks.count,
      chunksCopied: chunks.copied,
      chunksSkipped: chunks.count - chunks.copied,
      chunkBytes: chunks.bytes,
      pauseMs: cut.pauseMs,
      gateMsMax: cut.gateMsMax,
      phasesMs: cut.phasesMs,
      attempts: cut.attempts,
      abandoned: cut.abandoned,
      seconds: Math.round((performance.now() - t0) / 100) / 10,
    };
  } finally {
    // The nodes' copies of the images are no longer needed (they also expire on their own).
    await request(c, "DELETE", `/v1/admin/backup/cuts/${cut.id}`).catch(() => undefined);
  }
}

async function downloadImages(
  c: Client,
  store: BackupStore,
  cut: CutResult,
  quiet: boolean,
): Promise<ManifestShard[]> {
  const total = cut.shards.reduce((n, s) => n + s.bytes, 0);
  const bar = new Progress({ label: "shard images", unit: "bytes", total, quiet });
  let done = 0;
  const out: ManifestShard[] = [];
  for (const s of cut.shards) {
    const file = shardFile(s.keyspace, s.id);
    await retried(`shard ${s.id}`, async () => {
      const r = await request(
        c,
        "GET",
        `/v1/admin/backup/cuts/${cut.id}/shards/${encodeURIComponent(s.id)}?node=${encodeURIComponent(s.node)}`,
      );
      await failOnError(r);
      if (!r.body) throw new Error("empty answer");
      const hash = createHash("sha256");
      let bytes = 0;
      const counted = Readable.fromWeb(
        r.body as import("node:stream/web").ReadableStream<Uint8Array>,
      ).map((piece: Buffer) => {
        hash.update(piece);
        bytes += piece.byteLength;
        bar.update(done + bytes);
        return piece;
      });
      await store.write(file, counted);
      // (A damaged image written meanwhile is replaced by the next attempt; without the
      // manifest, which comes last, no backup includes it.)
      if (bytes !== s.bytes || hash.digest("hex") !== s.sha256)
        throw new Error(
          `the image arrived damaged (${bytes} of ${s.bytes} bytes, or a different SHA-256)`,
        );
    });
    done += s.bytes;
    out.push({
      id: s.id,
      keyspace: s.keyspace,
      file,
      term: s.term,
      index: s.index,
      keys: s.keys,
      bytes: s.bytes,
      sha256: s.sha256,
      ...(s.start === undefined ? {} : { start: s.start }),
      ...(s.end === undefined ? {} : { end: s.end }),
    });
  }
  bar.finish();
  return out;
}

/**
 * The keyspaces of the backup: the keyspace records of the metadata group's image, and those
 * without a record ("default", fixed when the cluster was created) described by their shards.
 */
async function keyspacesOf(
  store: BackupStore,
  shards: readonly ManifestShard[],
): Promise<ManifestKeyspace[]> {
  const out = new Map<string, ManifestKeyspace>();
  for (const s of shards.filter((x) => x.keyspace === "_meta")) {
    for await (const rec of readImage(store.read(s.file), s.file)) {
      if (!dec.decode(rec.key.subarray(0, 3)).startsWith("ks/")) continue;
      const r = JSON.parse(dec.decode(rec.value)) as {
        name: string;
        sharding: "hash" | "range";
        replicas: number;
        shards: unknown[];
      };
      out.set(r.name, {
        name: r.name,
        sharding: r.sharding,
        replicas: r.replicas,
        shards: r.sharding === "hash" ? Math.min(256, r.shards.length) : 1,
      });
    }
  }
  for (const s of shards) {
    if (out.has(s.keyspace)) continue;
    const count = shards.filter((x) => x.keyspace === s.keyspace).length;
    out.set(s.keyspace, {
      name: s.keyspace,
      sharding: s.keyspace.startsWith("_") ? "range" : "hash",
      replicas: 3,
      shards: count,
    });
  }
  return [...out.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
}

async function copyChunks(
  c: Client,
  store: BackupStore,
  shards: readonly ManifestShard[],
  quiet: boolean,
): Promise<{ count: number; copied: number; bytes: number; sha256: string }> {
  const hashes = new Set<string>();
  for (const s of shards.filter((x) => x.keyspace === "_s3")) {
    for await (const rec of readImage(store.read(s.file), s.file)) {
      const h = chunkOfIndexKey(rec.key);
      if (h !== undefined) hashes.add(h);
    }
  }
  const list = [...hashes].sort();
  const bar = new Progress({ label: "chunks", unit: "items", total: list.length, quiet });
  let done = 0;
  let copied = 0;
  let bytes = 0;
  await workers(list, CHUNK_INFLIGHT, async (h) => {
    const path = chunkPath(h);
    const have = await store.size(path);
    if (have !== undefined) {
      bytes += have;
    } else {
      await retried(`chunk ${h}`, async () => {
        const r = await request(c, "GET", `/v1/admin/backup/chunks/${h}`);
        if (r.status === 404) {
          const body = (await r.json().catch(() => ({}))) as { error?: { message?: string } };
          const e = new Error(
            `missing in the cluster (${body.error?.message ?? "not found"}); was it collected after the cut? Take a new backup`,
          ) as Error & { permanent: boolean };
          e.permanent = true;
          throw e;
        }
        await failOnError(r);
        const data = new Uint8Array(await r.arrayBuffer());
        if (createHash("sha256").update(data).digest("hex") !== h)
          throw new Error("the chunk arrived damaged");
        await store.write(path, data);
        bytes += data.byteLength;
        copied++;
      });
    }
    bar.update(++done);
  });
  bar.finish();
  const text = list.map((h) => `${h}\n`).join("");
  await store.write(CHUNK_LIST_FILE, enc.encode(text));
  return {
    count: list.length,
    copied,
    bytes,
    sha256: createHash("sha256").update(text).digest("hex"),
  };
}

// ------------------------------------------------------------------ restore

export interface RestoreSummary {
  readonly keyspaces: number;
  readonly keys: number;
  readonly metadataRecords: number;
  readonly objects: number;
  readonly chunks: number;
  readonly bytes: number;
  readonly seconds: number;
}

export async function backupRestore(
  c: Client,
  store: BackupStore,
  force: boolean,
  quiet: boolean,
): Promise<RestoreSummary> {
  const t0 = performance.now();
  const dir = store.location;
  // Everything is checked before anything is written.
  const report = await verifyBackup(store);
  if (report.problems.length > 0 || !report.manifest)
    throw new Error(
      `the backup in ${dir} cannot be restored:\n  ${report.problems.slice(0, 20).join("\n  ")}${report.problems.length > 20 ? `\n  (and ${report.problems.length - 20} more)` : ""}`,
    );
  const m = report.manifest;
  const t = await request(c, "GET", "/v1/admin/backup/target");
  await failOnError(t);
  const target = (await t.json()) as { keyspaces: string[]; defaultKeys: number; buckets: number };
  const nonEmpty = target.keyspaces.length > 0 || target.defaultKeys > 0 || target.buckets > 0;
  if (nonEmpty && !force)
    throw new Error(
      `the target cluster is not empty (${target.keyspaces.length} keyspaces, ${target.buckets} buckets, default keyspace ${target.defaultKeys > 0 ? "not empty" : "empty"}); restore into a new cluster, or pass --force to write over it`,
    );
  const cl = await request(c, "GET", "/v1/cluster");
  await failOnError(cl);
  const nodes = ((await cl.json()) as { nodes?: unknown[] }).nodes?.length ?? 3;

  // 1. Keyspaces (the system ones are the cluster's own; "_s3" is created with the first load).
  let keyspaces = 0;
  for (const k of m.keyspaces) {
    if (k.name.startsWith("_") || k.name === "default") continue;
    const body = {
      sharding: k.sharding,
      replicas: Math.max(1, Math.min(k.replicas, nodes)),
      ...(k.sharding === "hash" ? { shards: k.shards } : {}),
    };
    await retried(`keyspace ${k.name}`, async () => {
      const r = await request(
        c,
        "PUT",
        `/v1/keyspaces/${encodeURIComponent(k.name)}`,
        enc.encode(JSON.stringify(body)),
        {
          "content-type": "application/json",
        },
      );
      if (r.status === 409 && force) return; // exists with other settings: written over anyway
      if (r.status >= 400 && r.status < 500) {
        const e = new Error(await r.text()) as Error & { permanent: boolean };
        e.permanent = true;
        throw e;
      }
      await failOnError(r);
    });
    keyspaces++;
  }

  // 2. Chunks, before the index entries that point at them.
  const hashes = await loadChunkList(store);
  const cbar = new Progress({ label: "chunks", unit: "items", total: hashes.length, quiet });
  let chunkBytes = 0;
  let cdone = 0;
  await workers(hashes, CHUNK_INFLIGHT, async (h) => {
    const data = await store.readAll(chunkPath(h));
    await retried(`chunk ${h}`, async () => {
      const r = await request(c, "PUT", `/v1/admin/backup/chunks/${h}`, data, {
        "content-type": "application/octet-stream",
      });
      await failOnError(r);
    });
    chunkBytes += data.byteLength;
    cbar.update(++cdone);
  });
  cbar.finish();

  // 3. Metadata records (buckets, access keys, tokens, ...), then 4. every keyspace's keys.
  const total = m.shards.reduce((n, s) => n + s.bytes, 0);
  const kbar = new Progress({ label: "keys", unit: "bytes", total, quiet });
  let loadedBytes = 0;
  let metadataRecords = 0;
  let keys = 0;
  let objects = 0;
  const order = [...m.shards].sort((a, b) => rank(a.keyspace) - rank(b.keyspace));
  for (const s of order) {
    const meta = s.keyspace === "_meta";
    await loadImage(c, store, s.file, s.keyspace, (rec) => {
      loadedBytes += rec.bytes;
      kbar.update(loadedBytes);
      if (meta) {
        const key = dec.decode(rec.key);
        if (META_LAYOUT_KEYS.has(key) || META_LAYOUT_PREFIXES.some((p) => key.startsWith(p)))
          return false;
        metadataRecords++;
        return true;
      }
      if (s.keyspace === "_s3" && rec.key[0] === 0x68 && rec.key[1] === 0x2f) objects++; // "h/"
      keys++;
      return true;
    });
  }
  kbar.finish();
  return {
    keyspaces,
    keys,
    metadataRecords,
    objects,
    chunks: hashes.length,
    bytes: chunkBytes + loadedBytes,
    seconds: Math.round((performance.now() - t0) / 100) / 10,
  };
}

/** Metadata first (buckets before their objects), then the object index, then user data. */
function rank(keyspace: string): number {
  return keyspace === "_meta" ? 0 : keyspace === "_s3" ? 1 : 2;
}

async function loadImage(
  c: Client,
  store: BackupStore,
  path: string,
  keyspace: string,
  keep: (rec: { key: Uint8Array; bytes: number }) => boolean,
): Promise<void> {
  const inflight = new Set<Promise<void>>();
  let failure: unknown;
  const send = (batch: Uint8Array[]) => {
    const body = Buffer.concat(batch);
    const p = retried(`loading ${keyspace}`, async () => {
      const r = await request(
        c,
        "POST",
        `/v1/admin/backup/load?keyspace=${encodeURIComponent(keyspace)}`,
        body,
        {
          "content-type": "application/octet-stream",
        },
      );
      await failOnError(r);
    })
      .catch((e: unknown) => {
        failure ??= e;
      })
      .finally(() => inflight.delete(p));
    inflight.add(p);
  };
  let batch: Uint8Array[] = [];
  let batchBytes = 0;
  for await (const rec of readImage(store.read(path), path)) {
    if (failure) break;
    if (!keep(rec)) continue;
    const encoded = encodeRecord(rec.key, rec.value);
    if (batchBytes > 0 && batchBytes + encoded.byteLength > LOAD_BATCH_BYTES) {
      send(batch);
      batch = [];
      batchBytes = 0;
      while (inflight.size >= LOAD_INFLIGHT) await Promise.race(inflight);
    }
    batch.push(encoded);
    batchBytes += encoded.byteLength;
  }
  if (batchBytes > 0 && !failure) send(batch);
  while (inflight.size > 0) await Promise.race(inflight);
  if (failure) throw failure;
}

// ------------------------------------------------------------------ commands

export function registerBackup(
  program: Command,
  withClient: (cmd: Command) => Command,
  run: (fn: () => Promise<void>) => Promise<void>,
): void {
  const backup = program
    .command("backup")
    .description("consistent backups of the whole cluster, and restores");
  withStoreFlags(withClient(backup.command("create")))
    .description(
      "write a consistent backup (all shards at one cut, metadata, chunks) to a directory or an S3 bucket",
    )
    .requiredOption(
      "--to <location>",
      "backup directory, or s3://bucket/prefix (chunks already there are not copied again)",
    )
    .option("--json", "print the summary as JSON", false)
    .option("--quiet", "no progress output", false)
    .action((o: CommonOptions & { to: string }) =>
      run(async () => {
        const store = storeAt(o.to, o);
        const s = await backupCreate(
          resolveClient(o),
          store,
          o.quiet === true || o.json === true,
        ).finally(() => store.close());
        if (o.json) console.log(JSON.stringify(s));
        else
          console.log(
            `backup ${s.cut} in ${s.dir}: ${s.shards} shards, ${s.keys} keys (${formatBytes(s.imageBytes)}), ` +
              `${s.chunks} chunks (${s.chunksCopied} copied, ${s.chunksSkipped} already there, ${formatBytes(s.chunkBytes)}); ` +
              `writes paused ${s.pauseMs} ms; ${s.seconds} s`,
          );
      }),
    );
  withStoreFlags(withClient(backup.command("restore")))
    .description("rebuild a new, empty cluster from a backup (verified first)")
    .requiredOption("--from <location>", "backup directory, or s3://bucket/prefix")
    .option("--force", "restore into a cluster that already holds data (writes over it)", false)
    .option("--json", "print the summary as JSON", false)
    .option("--quiet", "no progress output", false)
    .action((o: CommonOptions & { from: string; force: boolean }) =>
      run(async () => {
        const store = storeAt(o.from, o);
        const s = await backupRestore(
          resolveClient(o),
          store,
          o.force,
          o.quiet === true || o.json === true,
        ).finally(() => store.close());
        if (o.json) console.log(JSON.stringify(s));
        else
          console.log(
            `restored ${s.keys} keys (${s.objects} objects), ${s.metadataRecords} metadata records, ` +
              `${s.keyspaces} keyspaces, ${s.chunks} chunks, ${formatBytes(s.bytes)} in ${s.seconds} s`,
          );
      }),
    );
  withStoreFlags(backup.command("verify <location>"))
    .description(
      "check a backup (a directory or s3://bucket/prefix) without a cluster: manifest, image and chunk hashes, chunk presence",
    )
    .option("--quick", "check chunks' presence and size only, not their hashes", false)
    .option("--json", "print the report as JSON", false)
    .action((dir: string, o: StoreFlags & { quick: boolean; json: boolean }) =>
      run(async () => {
        const store = storeAt(dir, o);
        const r = await verifyBackup(store, { chunkHashes: !o.quick }).finally(() => store.close());
        const { manifest: _m, ...rest } = r;
        if (o.json) console.log(JSON.stringify({ ok: r.problems.length === 0, ...rest }));
        else if (r.problems.length === 0)
          console.log(
            `backup ${dir} is whole: ${r.shards} shards, ${r.keys} keys, ${r.chunks} chunks, ${formatBytes(r.bytes)}`,
          );
        else console.log(`backup ${dir} is damaged:\n  ${r.problems.join("\n  ")}`);
        if (r.problems.length > 0) process.exitCode = 1;
      }),
    );
}
