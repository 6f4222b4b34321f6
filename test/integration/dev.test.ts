/**
 * `kumo dev`: starts a local 3-node cluster, describes it in DIR/cluster.json, works with the
 * `kumo kv` CLI, stops every node on SIGTERM, and comes back with the same identity and data.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import {
  freePortRange,
  http,
  killProcess,
  MAIN,
  runCli,
  spawnTracked,
  waitFor,
} from "./_cluster.js";
import { s3Client } from "./_s3.js";

interface ClusterFile {
  nodes: { id: string; pid: number; api: string; s3: string; peer: string }[];
  token: string;
  s3: { accessKeyId: string; secretAccessKey: string };
}

const dir = mkdtempSync(join(tmpdir(), "kumo-dev-it-"));
const file = join(dir, "cluster.json");
/** Every dev process started, and every node pid seen: all gone after the file. */
const devs: ChildProcess[] = [];
const pids = new Set<number>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Starts `kumo dev` and resolves once it printed "Kumo is running" (and its output so far). */
async function startDev(
  basePort: number,
): Promise<{ proc: ChildProcess; out: () => string; cluster: ClusterFile }> {
  const proc = spawnTracked([
    MAIN,
    "dev",
    "--nodes",
    "3",
    "--data",
    dir,
    "--base-port",
    String(basePort),
    "--quiet",
  ]);
  devs.push(proc);
  let out = "";
  proc.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  await waitFor(
    async () => {
      if (proc.exitCode !== null) throw new Error(`kumo dev exited (${proc.exitCode}):\n${out}`);
      return out.includes("Kumo is running") && existsSync(file);
    },
    60_000,
    `kumo dev running (output so far:\n${out})`,
  );
  const cluster = JSON.parse(readFileSync(file, "utf8")) as ClusterFile;
  for (const n of cluster.nodes) pids.add(n.pid);
  return { proc, out: () => out, cluster };
}

/** SIGTERM to the dev process; resolves with its exit code once it is gone. */
async function stopDev(proc: ChildProcess): Promise<number | null> {
  await killProcess(proc, "SIGTERM", 20_000);
  return proc.exitCode;
}

after(async () => {
  for (const d of devs) await killProcess(d, "SIGTERM", 10_000);
  // Nodes are children of dev; if one outlived it (a failure), do not leave it running.
  for (const pid of pids) {
    if (alive(pid)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

describe("kumo dev", () => {
  const key = `dev-${randomBytes(4).toString("hex")}/café`;
  const value = `hello ${randomBytes(6).toString("hex")}`;
  let first: ClusterFile | undefined;

  test("starts 3 nodes, writes cluster.json, serves the kv CLI, and SIGTERM stops every node", async () => {
    const base = await freePortRange(30);
    const dev = await startDev(base);
    const c = dev.cluster;
    first = c;

    // The shape of cluster.json.
    assert.deepEqual(Object.keys(c).sort(), ["nodes", "s3", "token"]);
    assert.equal(c.nodes.length, 3);
    for (const [i, n] of c.nodes.entries()) {
      const p = base + 10 * i;
      assert.deepEqual(Object.keys(n).sort(), ["api", "id", "peer", "pid", "s3"]);
      assert.equal(n.id, `n${i + 1}`);
      assert.equal(n.peer, `127.0.0.1:${p}`);
      assert.equal(n.api, `127.0.0.1:${p + 1}`);
      assert.equal(n.s3, `127.0.0.1:${p + 2}`);
      assert.ok(Number.isInteger(n.pid) && n.pid > 1, `pid ${n.pid}`);
      assert.ok(alive(n.pid), `${n.id} (pid ${n.pid}) is running`);
      const h = await http(`http://${n.api}/healthz`);
      assert.equal(h.status, 200);
      assert.equal((JSON.parse(h.text) as { node: string }).node, n.id);
    }
    assert.equal(new Set(c.nodes.map((n) => n.pid)).size, 3);
    assert.equal(typeof c.token, "string");
    assert.ok(c.token.length >= 16, "a long random token");
    assert.equal(typeof c.s3.accessKeyId, "string");
    assert.equal(typeof c.s3.secretAccessKey, "string");
    assert.ok(c.s3.accessKeyId.length >= 16 && c.s3.secretAccessKey.length >= 16);
    // The banner names the endpoints and the token.
    const out = dev.out();
    for (const n of c.nodes)
      assert.ok(out.includes(`http://${n.api}`), `banner lacks ${n.api}:\n${out}`);
    assert.ok(out.includes(c.token));

    // The token works, and is required.
    const api = `http://${c.nodes[1]?.api}`;
    assert.equal((await http(`${api}/v1/kv/default/x`)).status, 401);

    // The kv CLI, pointed at cluster.json.
    const put = await runCli(["kv", "put", key, value, "--cluster", file]);
    assert.equal(put.code, 0, `kv put: ${put.stderr}`);
    const rev = (JSON.parse(put.stdout) as { revision: number }).revision;
    assert.ok(Number.isInteger(rev) && rev > 0);
    const get = await runCli(["kv", "get", key, "--cluster", file]);
    assert.equal(get.code, 0, `kv get: ${get.stderr}`);
    assert.equal(get.stdout, value);
    // The same key over HTTP on another node (the CLI percent-encodes each path segment).
    const viaHttp = await http(
      `http://${c.nodes[2]?.api}/v1/kv/default/${key.split("/").map(encodeURIComponent).join("/")}`,
      {
        headers: { authorization: `Bearer ${c.token}` },
      },
    );
    assert.equal(viaHttp.status, 200, viaHttp.text);
    assert.equal(viaHttp.text, value);
    assert.equal(viaHttp.headers.get("etag"), `"${rev}"`);

    // The S3 endpoint, with the printed key (stored as the cluster's root key by the nodes), and
    // `kumo key create` for an application key.
    const s3 = s3Client(c.nodes[0]?.s3 as string, c.s3);
    try {
      await waitFor(
        async () => {
          try {
            await s3.send(new CreateBucketCommand({ Bucket: "dev-bucket" }));
            return true;
          } catch {
            return false;
          }
        },
        20_000,
        "the root key to work",
      );
      await s3.send(new PutObjectCommand({ Bucket: "dev-bucket", Key: "hello.txt", Body: value }));
      assert.ok(out.includes(c.s3.accessKeyId) && out.includes(`http://${c.nodes[0]?.s3}`));
    } finally {
      s3.destroy();
    }
    const mk = await runCli([
      "key",
      "create",
      "app",
      "--bucket",
      "dev-bucket:read",
      "--cluster",
      file,
    ]);
    assert.equal(mk.code, 0, `key create: ${mk.stderr}`);
    const id = /Access key id:\s+(\S+)/.exec(mk.stdout)?.[1];
    const secret = /Secret access key:\s+(\S+)/.exec(mk.stdout)?.[1];
    assert.ok(id && secret, mk.stdout);
    const app = s3Client(c.nodes[2]?.s3 as string, { accessKeyId: id, secretAccessKey: secret });
    try {
      const g = await app.send(new GetObjectCommand({ Bucket: "dev-bucket", Key: "hello.txt" }));
      assert.equal(await g.Body?.transformToString(), value);
    } finally {
      app.destroy();
    }
    const ls = await runCli(["key", "ls", "--cluster", file]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.ok(
      ls.stdout.includes(id) &&
        ls.stdout.includes("dev-bucket:read") &&
        !ls.stdout.includes(secret),
    );
    const lsJson = await runCli(["key", "ls", "--json", "--cluster", file]);
    assert.equal(lsJson.code, 0, lsJson.stderr);
    const listed = JSON.parse(lsJson.stdout) as { keys: { accessKeyId: string }[] };
    assert.ok(listed.keys.some((k) => k.accessKeyId === id));

    // `kumo s3 cp` both ways, multipart (5 MiB parts for a 12 MiB + 1 byte file), and `s3 ls`.
    const local = join(dir, "big.bin");
    const bytes = randomBytes(12 * 2 ** 20 + 1);
    writeFileSync(local, bytes);
    const up = await runCli(
      ["s3", "cp", local, "s3://dev-bucket/dir/", "--part-size", "5", "--cluster", file],
      60_000,
    );
    assert.equal(up.code, 0, `s3 cp up: ${up.stderr}`);
    assert.match(up.stdout, /-> s3:\/\/dev-bucket\/dir\/big\.bin \(12582913 bytes\)/);
    // Not a terminal: no bar drawn, one summary line on stderr.
    assert.ok(!up.stderr.includes("\r") && /upload big\.bin: uploaded, 12\.0 MiB/.test(up.stderr));
    const back = join(dir, "back.bin");
    const down = await runCli(
      ["s3", "cp", "s3://dev-bucket/dir/big.bin", back, "--json", "--cluster", file],
      60_000,
    );
    assert.equal(down.code, 0, `s3 cp down: ${down.stderr}`);
    assert.equal(JSON.parse(down.stdout).bytes, bytes.length);
    assert.ok(readFileSync(back).equals(bytes), "downloaded bytes differ");
    const s3ls = await runCli(["s3", "ls", "s3://dev-bucket/", "--cluster", file]);
    assert.equal(s3ls.code, 0, s3ls.stderr);
    assert.deepEqual(
      s3ls.stdout
        .trim()
        .split("\n")
        .map((l) => l.split("\t")[0]),
      ["KEY", "dir/", "hello.txt"],
    );
    const absent = await runCli(["s3", "cp", "s3://dev-bucket/nope", back, "--cluster", file]);
    assert.equal(absent.code, 1);
    assert.match(absent.stderr, /NoSuchKey|does not exist/);
    assert.ok(readFileSync(back).equals(bytes), "a failed download leaves the old file alone");

    const missing = await runCli(["kv", "get", `${key}-absent`, "--cluster", file]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /NOT_FOUND/);

    // SIGTERM: dev exits and takes every node with it.
    const code = await stopDev(dev.proc);
    assert.equal(code, 0, `kumo dev exit code:\n${dev.out()}`);
    await waitFor(
      async () => c.nodes.every((n) => !alive(n.pid)),
      10_000,
      "every node process gone",
    );
    for (const n of c.nodes)
      assert.equal(
        (await http(`http://${n.api}/healthz`, {}, 2000)).status,
        0,
        `${n.api} still answers`,
      );
  });

  test("started again on the same directory: same token, same ports, the data is still there", async () => {
    assert.ok(first, "the first dev run succeeded");
    // Another base port on purpose: an existing cluster keeps the ports recorded in cluster.json.
    const otherBase = await freePortRange(30);
    const dev = await startDev(otherBase);
    const c = dev.cluster;
    assert.equal(c.token, first.token);
    assert.deepEqual(c.s3, first.s3);
    assert.deepEqual(
      c.nodes.map(({ id, api, s3, peer }) => ({ id, api, s3, peer })),
      first.nodes.map(({ id, api, s3, peer }) => ({ id, api, s3, peer })),
    );
    for (const n of c.nodes) {
      assert.ok(alive(n.pid), `${n.id} (pid ${n.pid}) is running`);
      assert.ok(!first.nodes.some((o) => o.pid === n.pid), "new processes");
    }

    const get = await runCli(["kv", "get", key, "--cluster", file]);
    assert.equal(get.code, 0, `kv get: ${get.stderr}`);
    assert.equal(get.stdout, value);
    const ls = await runCli(["kv", "ls", key.split("/")[0] as string, "--cluster", file]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, new RegExp(`^${key}\\t\\d+\\n$`));

    const code = await stopDev(dev.proc);
    assert.equal(code, 0);
    await waitFor(
      async () => c.nodes.every((n) => !alive(n.pid)),
      10_000,
      "every node process gone",
    );
  });
});
