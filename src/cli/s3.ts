/**
 * `kumo s3 cp|ls`: the object store from the command line, through the S3 door with the AWS
 * SDK (the same protocol every other client speaks), with a progress bar and ETA on a terminal.
 *
 * Uploads stream the file in parts (multipart above one part, parts uploaded 4 at a time), so
 * memory stays at about partSize × 4 whatever the file's size. Downloads stream into a temporary
 * file beside the destination and rename it at the end: an interrupted download never leaves a
 * truncated file under the real name.
 */

import { createReadStream, createWriteStream, existsSync, readFileSync, statSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { Agent as HttpsAgent } from "node:https";
import { basename, dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  GetObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { readCaFile, resolveCaFile } from "./client.js";
import type { ClusterFile } from "./dev.js";
import { formatBytes, type OutputMode, renderTable } from "./output.js";
import { Progress } from "./progress.js";

export interface S3Options {
  s3Endpoint?: string;
  accessKey?: string;
  secretKey?: string;
  cluster?: string;
  /** PEM file of a CA to trust for https:// endpoints (env KUMO_CA). */
  ca?: string;
}

/** Part size bounds: S3's own (5 MiB minimum except the last part), and ours for memory. */
export const PART_MIB_MIN = 5;
export const PART_MIB_MAX = 512;
const PARTS_IN_FLIGHT = 4;

export function s3ClientFor(o: S3Options): S3Client {
  const clusterFile = o.cluster ?? process.env.KUMO_CLUSTER ?? ".kumo/cluster.json";
  const fromFile = existsSync(clusterFile)
    ? (JSON.parse(readFileSync(clusterFile, "utf8")) as ClusterFile)
    : undefined;
  const endpoint =
    o.s3Endpoint ??
    process.env.KUMO_S3_ENDPOINT ??
    (fromFile?.nodes[0]
      ? `${fromFile.ca ? "https" : "http"}://${fromFile.nodes[0].s3}`
      : undefined);
  const accessKeyId = o.accessKey ?? process.env.AWS_ACCESS_KEY_ID ?? fromFile?.s3.accessKeyId;
  const secretAccessKey =
    o.secretKey ?? process.env.AWS_SECRET_ACCESS_KEY ?? fromFile?.s3.secretAccessKey;
  if (!endpoint)
    throw new Error(
      "no S3 endpoint: pass --s3-endpoint, set KUMO_S3_ENDPOINT, or point --cluster at a cluster.json",
    );
  if (!accessKeyId || !secretAccessKey)
    throw new Error(
      "no S3 credentials: pass --access-key/--secret-key, set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or point --cluster at a cluster.json",
    );
  const ca = readCaFile(resolveCaFile(o, fromFile));
  return new S3Client({
    endpoint: endpoint.startsWith("http") ? endpoint : `http://${endpoint}`,
    region: process.env.AWS_REGION ?? "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    // The SDK's node handler takes its options inline; the agent carries the CA to trust.
    ...(ca ? { requestHandler: { httpsAgent: new HttpsAgent({ ca, keepAlive: true }) } } : {}),
  });
}

export interface S3Url {
  readonly bucket: string;
  readonly key: string;
}

/** `s3://bucket/some/key` → { bucket, key }; undefined if `s` is not an s3:// URL. */
export function parseS3Url(s: string): S3Url | undefined {
  if (!s.startsWith("s3://")) return undefined;
  const rest = s.slice(5);
  const slash = rest.indexOf("/");
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  if (bucket === "") throw new Error(`no bucket in ${JSON.stringify(s)}`);
  return { bucket, key: slash < 0 ? "" : rest.slice(slash + 1) };
}

export interface CopyResult {
  readonly from: string;
  readonly to: string;
  readonly bytes: number;
  readonly seconds: number;
  readonly etag?: string;
}

export async function s3Copy(
  client: S3Client,
  src: string,
  dst: string,
  o: { partMiB: number; mode: OutputMode },
): Promise<CopyResult> {
  const from = parseS3Url(src);
  const to = parseS3Url(dst);
  if (from && to)
    throw new Error("copying between two s3:// URLs is not supported; use one local path");
  if (!from && !to) throw new Error("one of the two paths must be an s3:// URL");
  if (!Number.isInteger(o.partMiB) || o.partMiB < PART_MIB_MIN || o.partMiB > PART_MIB_MAX)
    throw new Error(`--part-size must be an integer from ${PART_MIB_MIN} to ${PART_MIB_MAX} (MiB)`);
  const t0 = performance.now();
  if (to) {
    const st = statSync(src, { throwIfNoEntry: false });
    if (!st) throw new Error(`${src}: no such file`);
    if (!st.isFile()) throw new Error(`${src}: not a regular file (directories are not copied)`);
    const key = to.key === "" || to.key.endsWith("/") ? to.key + basename(src) : to.key;
    const progress = new Progress({
      label: `upload ${basename(src)}`,
      unit: "bytes",
      total: st.size,
      quiet: o.mode.json,
    });
    const up = new Upload({
      client,
      params: { Bucket: to.bucket, Key: key, Body: createReadStream(src) },
      partSize: o.partMiB * 2 ** 20,
      queueSize: PARTS_IN_FLIGHT,
      leavePartsOnError: false,
    });
    up.on("httpUploadProgress", (p) => progress.update(p.loaded ?? 0, p.total ?? st.size));
    try {
      const r = await up.done();
      progress.update(st.size);
      progress.finish("uploaded");
      return {
        from: src,
        to: `s3://${to.bucket}/${key}`,
        bytes: st.size,
        seconds: (performance.now() - t0) / 1000,
        ...(r.ETag ? { etag: r.ETag } : {}),
      };
    } catch (err) {
      progress.finish("failed");
      throw err;
    }
  }
  const f = from as S3Url;
  if (f.key === "" || f.key.endsWith("/")) throw new Error(`${src}: name an object, not a prefix`);
  const st = statSync(dst, { throwIfNoEntry: false });
  const target = st?.isDirectory() ? join(dst, basename(f.key)) : dst;
  const r = await client.send(new GetObjectCommand({ Bucket: f.bucket, Key: f.key }));
  const total = r.ContentLength;
  const progress = new Progress({
    label: `download ${basename(f.key)}`,
    unit: "bytes",
    ...(total !== undefined ? { total } : {}),
    quiet: o.mode.json,
  });
  const partial = join(dirname(target), `.${basename(target)}.kumo-partial-${process.pid}`);
  let bytes = 0;
  const body = r.Body as Readable;
  body.on("data", (chunk: Buffer) => {
    bytes += chunk.length;
    progress.update(bytes);
  });
  try {
    await pipeline(body, createWriteStream(partial));
    if (total !== undefined && bytes !== total)
      throw new Error(`short download: ${bytes} of ${total} bytes`);
    await rename(partial, target);
  } catch (err) {
    progress.finish("failed");
    await rm(partial, { force: true });
    throw err;
  }
  progress.finish("downloaded");
  return {
    from: src,
    to: target,
    bytes,
    seconds: (performance.now() - t0) / 1000,
    ...(r.ETag ? { etag: r.ETag } : {}),
  };
}

/** `kumo s3 ls`: buckets, or the objects and common prefixes under s3://bucket/prefix. */
export async function s3List(
  client: S3Client,
  url: string | undefined,
  mode: OutputMode,
): Promise<string> {
  const where = url ? parseS3Url(url) : undefined;
  if (url && !where) throw new Error(`${url}: not an s3:// URL`);
  if (!where) {
    const r = await client.send(new ListBucketsCommand({}));
    const buckets = (r.Buckets ?? []).map((b) => ({
      name: b.Name ?? "",
      created: b.CreationDate?.toISOString() ?? "",
    }));
    if (mode.json) return JSON.stringify({ buckets }, null, 2);
    return renderTable(
      mode,
      ["BUCKET", "CREATED"],
      buckets.map((b) => [b.name, b.created]),
    );
  }
  const prefixes: string[] = [];
  const objects: { key: string; size: number; modified: string; etag: string }[] = [];
  let token: string | undefined;
  do {
    const r = await client.send(
      new ListObjectsV2Command({
        Bucket: where.bucket,
        Prefix: where.key,
        Delimiter: "/",
        ...(token ? { ContinuationToken: token } : {}),
      }),
    );
    for (const p of r.CommonPrefixes ?? []) if (p.Prefix) prefixes.push(p.Prefix);
    for (const c of r.Contents ?? [])
      objects.push({
        key: c.Key ?? "",
        size: c.Size ?? 0,
        modified: c.LastModified?.toISOString() ?? "",
        etag: c.ETag ?? "",
      });
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  if (mode.json) return JSON.stringify({ prefixes, objects }, null, 2);
  return renderTable(
    mode,
    ["KEY", "SIZE", "MODIFIED"],
    [
      ...prefixes.map((p) => [{ text: p, style: "cyan" as const }, "-", ""]),
      ...objects.map((c) => [c.key, mode.tty ? formatBytes(c.size) : String(c.size), c.modified]),
    ],
  );
}
