/**
 * What the S3 integration tests share: an SDK client pointed at one node's S3 port, hashing,
 * reading a body, and catching the S3 error a call must fail with.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { S3Client, type S3ClientConfig, S3ServiceException } from "@aws-sdk/client-s3";

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
