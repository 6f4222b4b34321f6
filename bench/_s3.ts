/** What the S3 benchmarks share (bench/s3.ts, bench/scale.ts). */
import {
  CreateBucketCommand,
  ListBucketsCommand,
  type S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Waits until the root key works and `bucket` exists, then until `probe` succeeds through every
 * node's client (a node learns a bucket created through another one on its next refresh, or on
 * its first miss; the first writes to the object index also wait for its shards' leaders).
 * Every step is retried every 250 ms until `timeoutMs` passes.
 */
export async function waitS3(
  s3: readonly S3Client[],
  bucket: string,
  timeoutMs: number,
  probe: (c: S3Client, key: string) => Promise<unknown>,
): Promise<void> {
  const until = performance.now() + timeoutMs;
  const retry = async (what: (c: S3Client) => Promise<unknown>, c: S3Client) => {
    for (;;) {
      try {
        return await what(c);
      } catch (e) {
        if (performance.now() > until) throw e;
        await sleep(250);
      }
    }
  };
  await retry(async (c) => {
    await c.send(new ListBucketsCommand({}));
    await c.send(new CreateBucketCommand({ Bucket: bucket })).catch((e: unknown) => {
      if (!(e instanceof S3ServiceException && e.name === "BucketAlreadyOwnedByYou")) throw e;
    });
  }, s3[0] as S3Client);
  for (const [i, client] of s3.entries()) await retry((c) => probe(c, `probe/${i}`), client);
}
