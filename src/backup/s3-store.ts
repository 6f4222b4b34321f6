/**
 * A backup under a prefix of an S3 bucket (see store.ts), and `openBackupStore`, which picks a
 * store for a `--to`/`--from` location. Loaded by the CLI only (the AWS SDK is large).
 */
import { Readable } from "node:stream";
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { type BackupStore, DirStore } from "./store.js";

export interface S3StoreOptions {
  /** The service's URL (e.g. http://127.0.0.1:9000); absent: AWS's own endpoints. */
  readonly endpoint?: string;
  /** Default us-east-1 (Kumo accepts any). */
  readonly region?: string;
  /** Path-style addressing; default: on when an endpoint is given. */
  readonly pathStyle?: boolean;
  /** Absent: the AWS SDK's default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ...). */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string };
}

/** Files larger than this are sent as multipart uploads (in parts of this size). */
const PART_BYTES = 16 << 20;

/** A backup under a prefix of an S3 bucket. */
export class S3Store implements BackupStore {
  readonly location: string;
  private readonly client: S3Client;

  constructor(
    private readonly bucket: string,
    /** "" or a prefix ending in "/". */
    private readonly prefix: string,
    opts: S3StoreOptions = {},
  ) {
    this.location = `s3://${bucket}/${prefix}`;
    this.client = new S3Client({
      region: opts.region ?? "us-east-1",
      ...(opts.endpoint !== undefined ? { endpoint: opts.endpoint } : {}),
      forcePathStyle: opts.pathStyle ?? opts.endpoint !== undefined,
      ...(opts.credentials ? { credentials: { ...opts.credentials } } : {}),
      maxAttempts: 5,
    });
  }

  private key(path: string): string {
    return this.prefix + path.split("\\").join("/");
  }

  async size(path: string): Promise<number | undefined> {
    try {
      const h = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(path) }),
      );
      return h.ContentLength ?? 0;
    } catch (e) {
      if (e instanceof S3ServiceException && e.$metadata.httpStatusCode === 404) return undefined;
      throw e;
    }
  }

  async *read(path: string): AsyncIterable<Uint8Array> {
    const r = await this.client.send(
      new GetObjectCommand({ Bucket: this.bucket, Key: this.key(path) }),
    );
    yield* r.Body as Readable;
  }

  async readAll(path: string): Promise<Buffer> {
    const r = await this.client.send(
      new GetObjectCommand({ Bucket: this.bucket, Key: this.key(path) }),
    );
    return Buffer.from(
      await (r.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
    );
  }

  async write(path: string, body: Uint8Array | AsyncIterable<Uint8Array>): Promise<void> {
    // lib-storage sends a small body in one PutObject and a large one as a multipart upload
    // (completed only once every part is in: atomic either way), holding at most
    // queueSize × partSize in memory.
    const upload = new Upload({
      client: this.client,
      params: {
        Bucket: this.bucket,
        Key: this.key(path),
        Body: body instanceof Uint8Array ? body : Readable.from(body),
      },
      partSize: PART_BYTES,
      queueSize: 2,
    });
    await upload.done();
  }

  async remove(path: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(path) }));
  }

  async removeTree(prefix: string): Promise<void> {
    const base = `${this.key(prefix)}/`;
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: base, ContinuationToken: token }),
      );
      const keys = (page.Contents ?? []).flatMap((o) => (o.Key ? [{ Key: o.Key }] : []));
      if (keys.length > 0)
        await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: keys, Quiet: true },
          }),
        );
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  close(): void {
    this.client.destroy();
  }
}

/**
 * The store a `--to`/`--from` location names: `s3://bucket[/prefix]`, or a directory. Throws a
 * readable error for a malformed S3 location.
 */
export function openBackupStore(location: string, s3: S3StoreOptions = {}): BackupStore {
  if (!location.startsWith("s3://")) return new DirStore(location);
  const rest = location.slice("s3://".length);
  const slash = rest.indexOf("/");
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  let prefix = slash < 0 ? "" : rest.slice(slash + 1);
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
    throw new Error(`${location}: "${bucket}" is not a bucket name (s3://bucket/prefix)`);
  if (prefix !== "" && !prefix.endsWith("/")) prefix += "/";
  return new S3Store(bucket, prefix, s3);
}
