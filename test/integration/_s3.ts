/**
 * What the S3 integration tests share: an SDK client pointed at one node's S3 port, hashing,
 * reading a body, and catching the S3 error a call must fail with.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { join } from "node:path";
import {
  CreateBucketCommand,
  S3Client,
  type S3ClientConfig,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { TestCluster, waitFor } from "./_cluster.js";

export interface S3Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

/** An SDK client for the S3 port at `address` (path style; any region works with Kumo). */
export function s3Client(
  address: string,
  credentials: S3Credentials,
  extra: Partial<S3ClientConfig> = {},
): S3Client {
  return new S3Client({
    endpoint: `http://${address}`,
    region: "us-east-1",
    forcePathStyle: true,
    // A copy: the SDK annotates the credentials object it is given.
    credentials: { ...credentials },
    ...extra,
  });
}

export const sha256Hex = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

/** The whole body of a GetObject answer. */
export async function bytesOf(body: unknown): Promise<Buffer> {
  const b = body as { transformToByteArray(): Promise<Uint8Array> };
  return Buffer.from(await b.transformToByteArray());
}

/** The S3 error (name and status) `p` fails with; fails the test if it succeeds. */
export async function s3Error(
  p: Promise<unknown>,
): Promise<{ name: string; status: number | undefined }> {
  try {
    await p;
  } catch (e) {
    if (e instanceof S3ServiceException)
      return { name: e.name, status: e.$metadata.httpStatusCode };
    throw e;
  }
  assert.fail("expected an S3 error");
}

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * A runner of the real `aws` CLI with `credentials`: our environment without any AWS_*
 * variable, config and credentials files that do not exist (under `workDir`, also the working
 * directory), no pager, no prompts, and Python writing nothing next to its modules. A run never
 * rejects on the exit code; a timeout or a missing binary is code -1.
 */
export function awsCli(
  credentials: S3Credentials,
  workDir: string,
): (args: readonly string[], timeoutMs?: number) => Promise<CliRun> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("AWS_")) env[k] = v;
  Object.assign(env, {
    AWS_ACCESS_KEY_ID: credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    AWS_DEFAULT_REGION: "us-east-1",
    AWS_CONFIG_FILE: join(workDir, "no-such-dir", "config"),
    AWS_SHARED_CREDENTIALS_FILE: join(workDir, "no-such-dir", "credentials"),
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_PAGER: "",
    AWS_CLI_AUTO_PROMPT: "off",
    // Python (CLI v1) writes nothing next to its modules, and answers in UTF-8.
    PYTHONDONTWRITEBYTECODE: "1",
    PYTHONIOENCODING: "utf-8",
  });
  return (args, timeoutMs = 60_000) =>
    new Promise((resolve) => {
      execFile(
        "aws",
        [...args],
        { env, timeout: timeoutMs, maxBuffer: 16 << 20, encoding: "utf8", cwd: workDir },
        (err, stdout, stderr) => {
          const code = err === null ? 0 : typeof err.code === "number" ? err.code : -1;
          resolve({
            code,
            stdout,
            stderr: err && code === -1 ? `${stderr}\n${err.message}` : stderr,
          });
        },
      );
    });
}

/**
 * A cluster whose nodes know `root` as the S3 root key (KUMO_S3_ROOT_KEY), with `args` on every
 * node.
 */
export function startS3Cluster(
  root: S3Credentials,
  args: readonly string[],
  nodes = 3,
): Promise<TestCluster> {
  return TestCluster.start({
    nodes,
    args,
    env: { KUMO_S3_ROOT_KEY: `${root.accessKeyId}:${root.secretAccessKey}` },
  });
}

/** Creates a bucket once the root key is stored (the metadata leader writes it after start). */
export async function createBucketWhenReady(client: S3Client, bucket: string): Promise<void> {
  await waitFor(
    async () => {
      try {
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
        return true;
      } catch {
        return false;
      }
    },
    20_000,
    `bucket ${bucket} to be created (the root key stored)`,
  );
}
