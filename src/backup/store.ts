/**
 * Where a backup lives: a directory, or a prefix in an S3 bucket (`s3://bucket/prefix`, any
 * S3-compatible service: AWS, MinIO, another Kumo cluster). Both hold the same layout
 * (src/backup/format.ts), addressed by relative, "/"-separated paths.
 *
 * Every write is atomic: a reader sees a whole file or none (a directory writes a temporary
 * file and renames it; an S3 PUT or completed multipart upload is atomic by itself). The
 * manifest is written last, so an interrupted backup is visibly incomplete in both.
 *
 * The S3 store is in s3-store.ts: only the CLI loads the AWS SDK (nodes write images through
 * format.ts and never need it).
 */
import { createReadStream, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";

export interface BackupStore {
  /** Where it is, for messages: the directory, or s3://bucket/prefix. */
  readonly location: string;
  /** The size of the file at `path`, or undefined when there is none. */
  size(path: string): Promise<number | undefined>;
  /** The file's bytes, streamed (throws when it does not exist). */
  read(path: string): AsyncIterable<Uint8Array>;
  readAll(path: string): Promise<Buffer>;
  /** Writes the whole file atomically, replacing any previous one. */
  write(path: string, body: Uint8Array | AsyncIterable<Uint8Array>): Promise<void>;
  remove(path: string): Promise<void>;
  /** Removes every file under the directory `prefix`. */
  removeTree(prefix: string): Promise<void>;
  /** Releases connections (an S3 client's sockets). */
  close(): void;
}

/** A backup in a local directory. */
export class DirStore implements BackupStore {
  constructor(readonly location: string) {}

  private abs(path: string): string {
    return join(this.location, path);
  }

  async size(path: string): Promise<number | undefined> {
    try {
      return statSync(this.abs(path)).size;
    } catch {
      return undefined;
    }
  }

  read(path: string): AsyncIterable<Uint8Array> {
    return createReadStream(this.abs(path), { highWaterMark: 1 << 20 });
  }

  readAll(path: string): Promise<Buffer> {
    return readFile(this.abs(path));
  }

  async write(path: string, body: Uint8Array | AsyncIterable<Uint8Array>): Promise<void> {
    const abs = this.abs(path);
    mkdirSync(dirname(abs), { recursive: true });
    const tmp = `${abs}.tmp`;
    const fh = await open(tmp, "w");
    try {
      try {
        if (body instanceof Uint8Array) await fh.writeFile(body);
        else for await (const piece of body) await fh.write(piece);
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
    renameSync(tmp, abs);
  }

  async remove(path: string): Promise<void> {
    rmSync(this.abs(path), { force: true });
  }

  async removeTree(prefix: string): Promise<void> {
    rmSync(this.abs(prefix), { recursive: true, force: true });
  }

  close(): void {}
}
