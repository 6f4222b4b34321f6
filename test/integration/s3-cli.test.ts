/**
 * The real AWS CLI (`aws`, v1 or v2) against a 3-node cluster: bucket create and remove,
 * small and multipart (20 MiB: the CLI cuts 8 MiB parts) uploads and downloads compared by
 * SHA-256, listings (buckets, prefixes, recursive), sync of a directory tree both ways, recursive
 * delete, conditional create (`--if-none-match '*'`), presigned URLs and head-object.
 *
 * Skipped, with the reason, where the `aws` command is missing (CI installs Debian's awscli).
 * The CLI gets credentials and region from the environment only: its config and credentials
 * files point at paths that do not exist, so no user configuration leaks in.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { sleep, TestCluster, waitFor } from "./_cluster.js";
import { awsCli, type CliRun } from "./_s3.js";

const ARGS = ["--tick-ms", "20", "--election-ticks", "10"];
const ROOT = { accessKeyId: "GKROOTCLITEST0000001", secretAccessKey: "root-secret-cli-test-0001" };
const MiB = 1024 * 1024;

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const shaFile = (p: string) => sha(readFileSync(p));

/** Where the CLI writes nothing of ours: config and credentials files that do not exist. */
const work = mkdtempSync(join(tmpdir(), "kumo-cli-"));

/** Runs `aws …` (never rejects on exit code; a timeout is code -1). */
const aws = awsCli(ROOT, work);

/** `aws --version`, or undefined when the command is missing or broken. */
async function awsVersion(): Promise<string | undefined> {
  const r = await aws(["--version"], 30_000);
  if (r.code !== 0) return undefined;
  return (r.stdout + r.stderr).trim().split("\n")[0];
}

const version = await awsVersion();
const skip =
  version === undefined ? "the aws CLI is not installed (`aws --version` failed)" : false;
/** CLI v1 (botocore) rather than v2. */
const v1 = version !== undefined && /^aws-cli\/1\./.test(version);

let c: TestCluster | undefined;
let endpoint: string;
const bucket = `cli-${randomBytes(3).toString("hex")}`;

/** `aws <args> --endpoint-url …`, asserting success. */
async function ok(args: readonly string[], timeoutMs?: number): Promise<string> {
  const t0 = Date.now();
  const r = await aws([...args, "--endpoint-url", endpoint], timeoutMs);
  // KUMO_CLI_TIMING=1: how long each command took (the CLI's start-up dominates).
  if (process.env.KUMO_CLI_TIMING)
    process.stderr.write(`${Date.now() - t0} ms: aws ${args.join(" ")}\n`);
  assert.equal(
    r.code,
    0,
    `aws ${args.join(" ")} exited ${r.code}\nstdout: ${r.stdout.slice(-2000)}\nstderr: ${r.stderr.slice(-2000)}`,
  );
  return r.stdout;
}

async function fails(args: readonly string[]): Promise<CliRun> {
  const r = await aws([...args, "--endpoint-url", endpoint]);
  assert.notEqual(r.code, 0, `aws ${args.join(" ")} should fail:\n${r.stdout}`);
  return r;
}

/** The keys (with sizes) of `aws s3 ls --recursive` output. */
function lsRecursive(out: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of out.split("\n")) {
    const x = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+(\d+) (.+)$/.exec(line.trimEnd());
    if (x) m.set(x[2] as string, Number(x[1]));
  }
  return m;
}

describe("the aws CLI", () => {
  const small = join(work, "small.txt");
  const big = join(work, "big.bin");
  const tree = join(work, "tree");
  const treeFiles: Record<string, Buffer> = {
    "a.txt": Buffer.from("alpha\n"),
    "with space.txt": Buffer.from("spaces in the name\n"),
    "sub/b.txt": Buffer.from("bravo\n"),
    "sub/deeper/c.bin": randomBytes(300_000),
    "sub/deeper/empty": Buffer.alloc(0),
  };

  before(async () => {
    if (skip) return;
    c = await TestCluster.start({
      nodes: 3,
      args: ARGS,
      env: { KUMO_S3_ROOT_KEY: `${ROOT.accessKeyId}:${ROOT.secretAccessKey}` },
    });
    endpoint = `http://${c.node("n2").s3}`;
    await waitFor(
      async () => (await aws(["s3", "ls", "--endpoint-url", endpoint], 30_000)).code === 0,
      30_000,
      "the root key usable from the CLI",
      300,
    );
    writeFileSync(small, "hello from the aws cli\n");
    writeFileSync(big, randomBytes(20 * MiB + 12345));
    for (const [rel, data] of Object.entries(treeFiles)) {
      mkdirSync(join(tree, rel, ".."), { recursive: true });
      writeFileSync(join(tree, rel), data);
    }
  });

  after(async () => {
    await c?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  test(`mb, cp (small and 20 MiB multipart) up and down, ls (${version ?? "no aws"})`, {
    skip,
  }, async () => {
    const mb = await ok(["s3", "mb", `s3://${bucket}`]);
    assert.match(mb, new RegExp(`make_bucket: ${bucket}`));
    await ok(["s3", "cp", small, `s3://${bucket}/dir/small.txt`]);
    await ok(["s3", "cp", big, `s3://${bucket}/dir/big.bin`], 180_000);

    const buckets = await ok(["s3", "ls"]);
    assert.match(buckets, new RegExp(`\\s${bucket}$`, "m"));
    const top = await ok(["s3", "ls", `s3://${bucket}`]);
    assert.match(top, /^\s+PRE dir\/$/m);
    const dir = await ok(["s3", "ls", `s3://${bucket}/dir/`]);
    assert.match(dir, /\s23 small\.txt$/m);
    assert.match(dir, new RegExp(`\\s${20 * MiB + 12345} big\\.bin$`, "m"));
    const rec = lsRecursive(await ok(["s3", "ls", `s3://${bucket}`, "--recursive"]));
    assert.deepEqual(
      [...rec],
      [
        ["dir/big.bin", 20 * MiB + 12345],
        ["dir/small.txt", 23],
      ],
    );

    // Both back down in one recursive cp.
    const down = join(work, "down");
    await ok(["s3", "cp", `s3://${bucket}/dir/`, down, "--recursive"], 180_000);
    assert.equal(shaFile(join(down, "big.bin")), shaFile(big));
    assert.equal(shaFile(join(down, "small.txt")), shaFile(small));

    // The big one went up in parts: its ETag says how many (8 MiB parts: 3).
    const head = JSON.parse(
      await ok(["s3api", "head-object", "--bucket", bucket, "--key", "dir/big.bin"]),
    ) as { ContentLength: number; ETag: string };
    assert.equal(head.ContentLength, 20 * MiB + 12345);
    assert.match(head.ETag, /^"[0-9a-f]{32}-3"$/);
    const headSmall = JSON.parse(
      await ok(["s3api", "head-object", "--bucket", bucket, "--key", "dir/small.txt"]),
    ) as { ContentLength: number; ETag: string };
    assert.equal(headSmall.ContentLength, 23);
    assert.equal(
      headSmall.ETag,
      `"${createHash("md5").update(readFileSync(small)).digest("hex")}"`,
    );
    const missing = await fails(["s3api", "head-object", "--bucket", bucket, "--key", "nope"]);
    assert.match(missing.stderr, /404|Not Found/);
  });

  test("sync a directory tree up and back down; a second sync copies nothing", {
    skip,
  }, async () => {
    const up = await ok(["s3", "sync", tree, `s3://${bucket}/tree/`]);
    assert.equal(
      (up.match(/^upload: /gm) ?? []).length,
      Object.keys(treeFiles).length,
      `one upload per file:\n${up}`,
    );
    const rec = lsRecursive(await ok(["s3", "ls", `s3://${bucket}/tree/`, "--recursive"]));
    assert.deepEqual(
      [...rec].sort(),
      Object.entries(treeFiles)
        .map(([rel, data]): [string, number] => [`tree/${rel}`, data.length])
        .sort(),
    );
    const again = await ok(["s3", "sync", tree, `s3://${bucket}/tree/`]);
    assert.doesNotMatch(again, /upload:/, "nothing changed, nothing uploaded");
    const back = join(work, "back");
    await ok(["s3", "sync", `s3://${bucket}/tree/`, back]);
    for (const [rel, data] of Object.entries(treeFiles))
      assert.equal(shaFile(join(back, rel)), sha(data), rel);
    const prefixed = await ok(["s3", "ls", `s3://${bucket}/tree/sub/`]);
    assert.match(prefixed, /^\s+PRE deeper\/$/m);
    assert.match(prefixed, /\s6 b\.txt$/m);
  });

  test("put-object --if-none-match '*': the first creates, the second is PreconditionFailed", {
    skip,
  }, async (t) => {
    const body = join(work, "cond.txt");
    writeFileSync(body, "first\n");
    const key = "cond/once";
    const args = ["s3api", "put-object", "--bucket", bucket, "--key", key, "--body", body];
    const r = await aws([...args, "--if-none-match", "*", "--endpoint-url", endpoint]);
    if (r.code !== 0 && /Unknown options: --if-none-match/.test(r.stderr)) {
      // Conditional writes came to the CLI in 2024 (v1.34 / v2.17); older ones lack the flag.
      t.skip(`${version} has no --if-none-match (put-object conditional writes)`);
      return;
    }
    assert.equal(r.code, 0, `put-object --if-none-match: ${r.stdout}\n${r.stderr}`);
    const first = JSON.parse(r.stdout) as { ETag: string };
    assert.match(first.ETag, /^"[0-9a-f]{32}"$/);
    writeFileSync(body, "second\n");
    const second = await fails([...args, "--if-none-match", "*"]);
    assert.match(second.stderr, /PreconditionFailed/);
    const down = join(work, "cond-down.txt");
    await ok(["s3", "cp", `s3://${bucket}/${key}`, down]);
    assert.equal(readFileSync(down, "utf8"), "first\n", "the first write stands");
  });

  test("presign (SigV4): the URL fetches the object without credentials, until it expires", {
    skip,
  }, async () => {
    // CLI v1 presigns with Signature V2 in regions that still take it (us-east-1), and Kumo
    // speaks SigV4 only (docs/s3.md): in a SigV4-only region v1 signs with SigV4 too (Kumo takes
    // any region). CLI v2 always presigns with SigV4.
    const region = v1 ? ["--region", "eu-central-1"] : [];
    const presign = async (key: string, expires: number) =>
      (
        await ok([
          "s3",
          "presign",
          `s3://${bucket}/${key}`,
          "--expires-in",
          String(expires),
          ...region,
        ])
      ).trim();
    const url = await presign("dir/small.txt", 60);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/.*X-Amz-Algorithm=AWS4-HMAC-SHA256/);
    const r = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    const text = await r.text();
    assert.equal(r.status, 200, text);
    assert.equal(text, readFileSync(small, "utf8"));
    const other = await fetch(url.replace("small.txt", "big.bin"), {
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(other.status, 403, "a presigned URL is good for its own key only");
    await other.arrayBuffer();
    const short = await presign("dir/small.txt", 1);
    await sleep(2_100);
    const late = await fetch(short, { signal: AbortSignal.timeout(10_000) });
    assert.equal(late.status, 403, "expired");
    assert.match(await late.text(), /<Code>AccessDenied<\/Code>/);
    if (v1) {
      // The v1 default: a Signature V2 URL, refused as documented (not served anonymously).
      const v2url = (await ok(["s3", "presign", `s3://${bucket}/dir/small.txt`])).trim();
      assert.match(v2url, /AWSAccessKeyId=/);
      const v2 = await fetch(v2url, { signal: AbortSignal.timeout(10_000) });
      assert.equal(v2.status, 400);
      assert.match(await v2.text(), /<Code>InvalidRequest<\/Code>/);
    }
  });

  test("rm --recursive empties the bucket; rb removes it", { skip }, async () => {
    const notEmpty = await fails(["s3", "rb", `s3://${bucket}`]);
    assert.match(notEmpty.stderr, /BucketNotEmpty/);
    const before = lsRecursive(await ok(["s3", "ls", `s3://${bucket}`, "--recursive"]));
    assert.ok(before.size >= 7, `objects left: ${[...before.keys()].join(", ")}`);
    const rm = await ok(["s3", "rm", `s3://${bucket}`, "--recursive"]);
    assert.deepEqual(
      (rm.match(/^delete: s3:\/\/.+$/gm) ?? [])
        .map((l) => l.slice(`delete: s3://${bucket}/`.length))
        .sort(),
      [...before.keys()].sort(),
      "one delete per object",
    );
    const left = await ok(["s3", "ls", `s3://${bucket}`, "--recursive"]);
    assert.equal(left.trim(), "");
    const rb = await ok(["s3", "rb", `s3://${bucket}`]);
    assert.match(rb, new RegExp(`remove_bucket: ${bucket}`));
    const buckets = await ok(["s3", "ls"]);
    assert.doesNotMatch(buckets, new RegExp(`\\s${bucket}$`, "m"));
  });
});
