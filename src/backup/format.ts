/**
 * The on-disk format of a backup (docs/operations.md, "Backup and restore"):
 *
 *   DIR/manifest.json                 written last: a directory without it is incomplete
 *   DIR/shards/<keyspace>/<shard>.img  one image per shard at the cut
 *   DIR/chunks.list                   the chunks this backup references (hex SHA-256, sorted)
 *   DIR/chunks/<aa>/<sha256>          content-addressed chunk files (shared by every backup
 *                                     written to DIR: a chunk already there is not copied again)
 *
 * An image is a sequence of records `[keyLength u32 BE][valueLength u32 BE][key][value]`: the
 * shard's user keys and values as of the cut, in key order. Revisions are not kept (they are log
 * indexes of the old cluster; a restore writes every key anew).
 *
 * Used by the nodes (writing images) and by the CLI (reading them, verifying, restoring).
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type BackupStore, DirStore } from "./store.js";

export const BACKUP_FORMAT = "kumo-backup";
export const BACKUP_FORMAT_VERSION = 1;
export const MANIFEST_FILE = "manifest.json";
export const CHUNK_LIST_FILE = "chunks.list";
const RECORD_HEAD_BYTES = 8;
/** A record larger than this in an image is corruption, not data (values are at most 64 MiB). */
export const RECORD_BYTES_MAX = 80 << 20;

export interface ManifestKeyspace {
  readonly name: string;
  readonly sharding: "hash" | "range";
  readonly replicas: number;
  /** Shards to create on restore (hash keyspaces; a range keyspace starts with one). */
  readonly shards: number;
}

export interface ManifestShard {
  readonly id: string;
  readonly keyspace: string;
  /** Relative to the backup directory. */
  readonly file: string;
  /** The leader's term and the applied index the image was taken at. */
  readonly term: number;
  readonly index: number;
  readonly keys: number;
  readonly bytes: number;
  readonly sha256: string;
  /** The shard's own range (hex positions), when it has split. */
  readonly start?: string;
  readonly end?: string;
}

export interface Manifest {
  readonly format: typeof BACKUP_FORMAT;
  readonly version: number;
  /** When the cut was taken (the coordinator's clock). */
  readonly cutMs: number;
  readonly cut: {
    readonly id: string;
    readonly coordinator: string;
    readonly attempts: number;
    /** How long writes were held, coordinator's view (first gate to last release). */
    readonly pauseMs: number;
  };
  readonly cluster: { readonly members: readonly string[] };
  readonly keyspaces: readonly ManifestKeyspace[];
  readonly shards: readonly ManifestShard[];
  readonly chunks: {
    readonly count: number;
    readonly bytes: number;
    readonly file: typeof CHUNK_LIST_FILE;
    readonly sha256: string;
  };
}

export function encodeRecord(key: Uint8Array, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(RECORD_HEAD_BYTES + key.byteLength + value.byteLength);
  const view = new DataView(out.buffer);
  view.setUint32(0, key.byteLength);
  view.setUint32(4, value.byteLength);
  out.set(key, RECORD_HEAD_BYTES);
  out.set(value, RECORD_HEAD_BYTES + key.byteLength);
  return out;
}

export interface BackupRecord {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  /** The record's encoded size. */
  readonly bytes: number;
}

/** Decodes records from a buffer holding whole records (a load request's body). */
export function decodeRecords(data: Uint8Array): BackupRecord[] | { error: string } {
  const out: BackupRecord[] = [];
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let at = 0;
  while (at < data.byteLength) {
    if (at + RECORD_HEAD_BYTES > data.byteLength) return { error: "a record header is cut off" };
    const kl = view.getUint32(at);
    const vl = view.getUint32(at + 4);
    const end = at + RECORD_HEAD_BYTES + kl + vl;
    if (end > data.byteLength) return { error: "a record is cut off" };
    const key = data.subarray(at + RECORD_HEAD_BYTES, at + RECORD_HEAD_BYTES + kl);
    out.push({ key, value: data.subarray(at + RECORD_HEAD_BYTES + kl, end), bytes: end - at });
    at = end;
  }
  return out;
}

/**
 * Streams the records of an image (a file's path, or its bytes as they are read from a backup
 * store), holding at most one read buffer and one record in memory. Throws on a truncated or
 * implausible record.
 */
export async function* readImage(
  input: string | AsyncIterable<Uint8Array>,
  path: string = typeof input === "string" ? input : "image",
): AsyncGenerator<BackupRecord> {
  const source =
    typeof input === "string" ? createReadStream(input, { highWaterMark: 1 << 20 }) : input;
  let buf: Buffer = Buffer.alloc(0);
  for await (const raw of source) {
    const piece = Buffer.isBuffer(raw)
      ? raw
      : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    buf = buf.byteLength === 0 ? piece : Buffer.concat([buf, piece]);
    let at = 0;
    while (buf.byteLength - at >= RECORD_HEAD_BYTES) {
      const kl = buf.readUInt32BE(at);
      const vl = buf.readUInt32BE(at + 4);
      if (kl + vl > RECORD_BYTES_MAX) throw new Error(`${path}: implausible record at ${at}`);
      const end = at + RECORD_HEAD_BYTES + kl + vl;
      if (end > buf.byteLength) break;
      const key = new Uint8Array(buf.subarray(at + RECORD_HEAD_BYTES, at + RECORD_HEAD_BYTES + kl));
      const value = new Uint8Array(buf.subarray(at + RECORD_HEAD_BYTES + kl, end));
      yield { key, value, bytes: end - at };
      at = end;
    }
    buf = buf.subarray(at);
  }
  if (buf.byteLength > 0) throw new Error(`${path}: the last record is cut off`);
}

/** A chunk's path in a backup (relative). */
export function chunkPath(hex: string): string {
  return join("chunks", hex.slice(0, 2), hex);
}

export function chunkFile(dir: string, hex: string): string {
  return join(dir, chunkPath(hex));
}

export function shardFile(keyspace: string, shard: string): string {
  return join("shards", keyspace, `${shard}.img`);
}

/** The chunk an object-index reference entry (`r/<sha256 hex>/<dataId>`) points at. */
export function chunkOfIndexKey(key: Uint8Array): string | undefined {
  // "r/" + 64 hex digits + "/"
  if (key.byteLength < 67 || key[0] !== 0x72 || key[1] !== 0x2f || key[66] !== 0x2f)
    return undefined;
  const hex = Buffer.from(key.subarray(2, 66)).toString("latin1");
  return /^[0-9a-f]{64}$/.test(hex) ? hex : undefined;
}

export async function sha256Of(source: AsyncIterable<Uint8Array>): Promise<string> {
  const h = createHash("sha256");
  for await (const piece of source) h.update(piece);
  return h.digest("hex");
}

const HEX64 = /^[0-9a-f]{64}$/;
const isObj = (x: unknown): x is Record<string, unknown> =>
  typeof x === "object" && x !== null && !Array.isArray(x);
const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
/** A keyspace or shard name safe to use as a path segment. */
const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/** Checks a manifest's shape (every field a restore relies on); names what is wrong. */
export function parseManifest(
  text: string,
): { ok: true; manifest: Manifest } | { ok: false; message: string } {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    return { ok: false, message: "manifest.json is not JSON" };
  }
  const bad = (message: string) => ({ ok: false as const, message: `manifest.json: ${message}` });
  if (!isObj(m) || m.format !== BACKUP_FORMAT) return bad(`not a ${BACKUP_FORMAT} manifest`);
  if (m.version !== BACKUP_FORMAT_VERSION)
    return bad(`format version ${String(m.version)} (this kumo reads ${BACKUP_FORMAT_VERSION})`);
  if (!isCount(m.cutMs) || !isObj(m.cut) || typeof m.cut.id !== "string") return bad("bad cut");
  if (!isObj(m.cluster) || !Array.isArray(m.cluster.members)) return bad("bad cluster");
  if (!Array.isArray(m.keyspaces)) return bad("bad keyspaces");
  for (const k of m.keyspaces) {
    if (!isObj(k) || typeof k.name !== "string" || !SAFE_NAME.test(k.name))
      return bad("a keyspace without a valid name");
    if (k.sharding !== "hash" && k.sharding !== "range") return bad(`keyspace ${k.name}: sharding`);
    if (!isCount(k.replicas) || !isCount(k.shards)) return bad(`keyspace ${k.name}: counts`);
  }
  if (!Array.isArray(m.shards)) return bad("bad shards");
  const ids = new Set<string>();
  for (const s of m.shards) {
    if (!isObj(s) || typeof s.id !== "string" || !SAFE_NAME.test(s.id))
      return bad("a shard without a valid id");
    if (ids.has(s.id)) return bad(`shard ${s.id} is listed twice`);
    ids.add(s.id);
    if (typeof s.keyspace !== "string" || !SAFE_NAME.test(s.keyspace))
      return bad(`shard ${s.id}: keyspace`);
    if (s.file !== shardFile(s.keyspace, s.id)) return bad(`shard ${s.id}: unexpected file name`);
    if (!isCount(s.term) || !isCount(s.index) || !isCount(s.keys) || !isCount(s.bytes))
      return bad(`shard ${s.id}: counts`);
    if (typeof s.sha256 !== "string" || !HEX64.test(s.sha256)) return bad(`shard ${s.id}: sha256`);
  }
  const c = m.chunks;
  if (!isObj(c) || !isCount(c.count) || !isCount(c.bytes) || c.file !== CHUNK_LIST_FILE)
    return bad("bad chunks");
  if (typeof c.sha256 !== "string" || !HEX64.test(c.sha256)) return bad("chunks: sha256");
  return { ok: true, manifest: m as unknown as Manifest };
}

const noManifest = (where: string) => ({
  ok: false as const,
  message: `${where} does not exist: not a backup, or an incomplete one (the manifest is written last)`,
});

/** The manifest of a backup directory. */
export function readManifest(
  dir: string,
): { ok: true; manifest: Manifest } | { ok: false; message: string } {
  const path = join(dir, MANIFEST_FILE);
  if (!existsSync(path)) return noManifest(path);
  return parseManifest(readFileSync(path, "utf8"));
}

/** The manifest of a backup in any store. */
export async function loadManifest(
  store: BackupStore,
): Promise<{ ok: true; manifest: Manifest } | { ok: false; message: string }> {
  if ((await store.size(MANIFEST_FILE)) === undefined)
    return noManifest(`${store.location.replace(/\/$/, "")}/${MANIFEST_FILE}`);
  return parseManifest((await store.readAll(MANIFEST_FILE)).toString("utf8"));
}

export interface VerifyReport {
  readonly manifest: Manifest | undefined;
  /** Everything wrong, one line each; empty when the backup is whole. */
  readonly problems: string[];
  readonly shards: number;
  readonly keys: number;
  readonly chunks: number;
  readonly bytes: number;
}

/**
 * Checks a backup offline: the manifest, every image's size and SHA-256, the chunk list's
 * SHA-256, and every listed chunk's presence and content hash (`chunkHashes`: false checks only
 * presence and size, for a quick look). Reads everything once, streaming.
 */
export async function verifyBackup(
  at: string | BackupStore,
  opts: { readonly chunkHashes?: boolean; readonly onProgress?: (bytes: number) => void } = {},
): Promise<VerifyReport> {
  const store = typeof at === "string" ? new DirStore(at) : at;
  const problems: string[] = [];
  const r = await loadManifest(store);
  if (!r.ok)
    return { manifest: undefined, problems: [r.message], shards: 0, keys: 0, chunks: 0, bytes: 0 };
  const m = r.manifest;
  let bytes = 0;
  let keys = 0;
  for (const s of m.shards) {
    const size = await store.size(s.file);
    if (size === undefined) {
      problems.push(`shard ${s.id}: ${s.file} is missing`);
      continue;
    }
    if (size !== s.bytes)
      problems.push(`shard ${s.id}: ${s.file} has ${size} bytes, the manifest says ${s.bytes}`);
    else if ((await sha256Of(store.read(s.file))) !== s.sha256)
      problems.push(
        `shard ${s.id}: ${s.file} is corrupt (its SHA-256 differs from the manifest's)`,
      );
    bytes += size;
    keys += s.keys;
    opts.onProgress?.(bytes);
  }
  let hashes: string[] = [];
  if ((await store.size(CHUNK_LIST_FILE)) === undefined)
    problems.push(`${CHUNK_LIST_FILE} is missing`);
  else {
    const text = await store.readAll(CHUNK_LIST_FILE);
    if (createHash("sha256").update(text).digest("hex") !== m.chunks.sha256)
      problems.push(`${CHUNK_LIST_FILE} is corrupt (its SHA-256 differs from the manifest's)`);
    else hashes = parseChunkList(text.toString("utf8"));
  }
  if (hashes.length !== m.chunks.count && problems.length === 0)
    problems.push(
      `${CHUNK_LIST_FILE} lists ${hashes.length} chunks, the manifest says ${m.chunks.count}`,
    );
  const checkHashes = opts.chunkHashes ?? true;
  for (const h of hashes) {
    const path = chunkPath(h);
    const size = await store.size(path);
    if (size === undefined) {
      problems.push(`chunk ${h} is missing`);
      continue;
    }
    if (checkHashes && (await sha256Of(store.read(path))) !== h)
      problems.push(`chunk ${h} is corrupt`);
    bytes += size;
    opts.onProgress?.(bytes);
  }
  return { manifest: m, problems, shards: m.shards.length, keys, chunks: hashes.length, bytes };
}

function parseChunkList(text: string): string[] {
  return text.split("\n").filter((l) => l !== "");
}

/** The chunk hashes a backup in any store lists. */
export async function loadChunkList(store: BackupStore): Promise<string[]> {
  return parseChunkList((await store.readAll(CHUNK_LIST_FILE)).toString("utf8"));
}

/** The chunk hashes a backup lists (its chunks.list). */
export function chunkList(dir: string): string[] {
  return parseChunkList(readFileSync(join(dir, CHUNK_LIST_FILE), "utf8"));
}
