/**
 * A cluster set up exactly as docs/deploy.md ("Bare machines") says, on five "hosts": each
 * node is a real `kumo server` process in its own network namespace with its own IP on a bridge
 * (the chaos suite's NetLab, src/chaos/netns.ts), started with the systemd unit's ExecStart
 * (deploy/systemd/kumo.service), its configuration the example file of its host
 * (deploy/bare-metal/nN.yaml: join by address, zones z1/z2/z3) with only the addresses and the
 * data directory changed, and its secrets from deploy/bare-metal/kumo.env.example. The test
 * client sits on the bridge, as a client on the hosts' network would. Checks: every node ready;
 * KV writes through one host read back through others; an S3 bucket and object made through one
 * host (AWS SDK, the root key) read back through another; every host sees the five nodes alive;
 * each node carries its zone. Needs root and `ip netns` (skipped otherwise); bounded to 2 min.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { NetLab, probe } from "../../src/chaos/netns.js";
import { parseLabels, resolveConfig } from "../../src/node/config.js";
import { ROOT, repoFile } from "./_deploy.js";

const HOSTS = 5;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** GET/PUT with a deadline; never throws (a node that does not answer yet is normal here). */
async function http(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; body: string }> {
  try {
    const r = await fetch(url, { ...init, signal: AbortSignal.timeout(5000) });
    return { status: r.status, body: await r.text() };
  } catch (e) {
    return { status: 0, body: (e as Error).message };
  }
}

const netns = probe();

test("five hosts configured as the bare-metal docs say serve KV and S3 across hosts", {
  skip: netns.ok ? false : `network namespaces unavailable: ${netns.ok ? "" : netns.reason}`,
  timeout: 120_000,
}, async (t) => {
  assert.ok(netns.ok);
  const started = Date.now();
  const made = NetLab.create(HOSTS, netns.caps);
  assert.ok(made.ok, made.ok ? "" : made.reason);
  const lab = made.lab;
  const dir = mkdtempSync(join(tmpdir(), "kumo-multihost-"));
  const procs: ChildProcess[] = [];
  const cleanup = () => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
    lab.destroy();
  };
  process.once("exit", cleanup);
  const logs = Array.from({ length: HOSTS }, (_, i) => join(dir, `n${i + 1}.log`));
  const tails = () =>
    logs
      .map((f, i) => {
        let text = "";
        try {
          text = readFileSync(f, "utf8").trim().split("\n").slice(-5).join("\n");
        } catch {
          // not started
        }
        return `--- n${i + 1}\n${text}`;
      })
      .join("\n");
  try {
    // The secrets, as systemd's EnvironmentFile= gives them.
    const secrets: Record<string, string> = {};
    for (const line of repoFile("deploy/bare-metal/kumo.env.example").split("\n")) {
      const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
      if (m) secrets[m[1] as string] = m[2] as string;
    }
    const token = (secrets.KUMO_TOKENS ?? "").split(",")[0] as string;
    const admin = (secrets.KUMO_ADMIN_TOKENS ?? "").split(",")[0] as string;
    const [accessKeyId, secretAccessKey] = (secrets.KUMO_S3_ROOT_KEY ?? "").split(":") as [
      string,
      string,
    ];

    // Each host's /etc/kumo/kumo.yaml: the example, with the lab's addresses for 10.0.0.1N.
    const ipOf = (n: number) => lab.ips[n - 1] as string;
    const files: string[] = [];
    const zones = new Map<string, string>();
    for (let n = 1; n <= HOSTS; n++) {
      const example = repoFile(`deploy/bare-metal/n${n}.yaml`);
      const data = join(dir, `n${n}`, "data");
      mkdirSync(data, { recursive: true });
      const text = example
        .replace(/\b10\.0\.0\.1(\d)\b/g, (_, d: string) => ipOf(Number(d)))
        .replace("/var/lib/kumo", data);
      assert.ok(!text.includes("10.0.0."), "every example address is a host of the lab");
      const file = join(dir, `n${n}`, "kumo.yaml");
      writeFileSync(file, text);
      files.push(file);
      const cfg = resolveConfig({ config: file }, secrets);
      zones.set(cfg.id, parseLabels(cfg.labels).zone as string);
    }
    assert.deepEqual([...new Set(zones.values())].sort(), ["z1", "z2", "z3"]);

    // Started as the systemd unit starts it, each in its host's namespace.
    const unit = repoFile("deploy/systemd/kumo.service");
    const execStart = (/^ExecStart=(.*)$/m.exec(unit)?.[1] ?? "").split(/\s+/);
    for (let n = 1; n <= HOSTS; n++) {
      const argv = execStart.map((a) =>
        a === "/usr/bin/node"
          ? process.execPath
          : a === "/etc/kumo/kumo.yaml"
            ? (files[n - 1] as string)
            : a.replace(/^\/opt\/kumo\//, `${ROOT}/`),
      );
      const full = [...lab.exec(n - 1), ...argv];
      const log = openSync(logs[n - 1] as string, "a");
      const p = spawn(full[0] as string, full.slice(1), {
        env: { PATH: process.env.PATH ?? "", ...secrets },
        stdio: ["ignore", log, log],
      });
      closeSync(log);
      procs.push(p);
    }

    // Ready: every node's /readyz (each shard it holds has a leader), seen from the bridge.
    const api = (n: number, path: string) => `http://${ipOf(n)}:7001${path}`;
    const until = Date.now() + 60_000;
    const ready = new Set<number>();
    while (ready.size < HOSTS && Date.now() < until) {
      for (let n = 1; n <= HOSTS; n++) {
        assert.equal(procs[n - 1]?.exitCode, null, `n${n} exited\n${tails()}`);
        if (!ready.has(n) && (await http(api(n, "/readyz"))).status === 200) ready.add(n);
      }
      if (ready.size < HOSTS) await sleep(250);
    }
    assert.equal(ready.size, HOSTS, `ready: ${[...ready]}\n${tails()}`);
    t.diagnostic(`5 hosts ready in ${Date.now() - started} ms`);

    // KV: each key written through one host, read through the two hosts after it.
    const auth = { authorization: `Bearer ${token}` };
    const keys = Array.from({ length: 20 }, (_, i) => `host-key-${i}`);
    for (const [i, k] of keys.entries()) {
      const n = (i % HOSTS) + 1;
      const put = await http(api(n, `/v1/kv/default/${k}`), {
        method: "PUT",
        headers: auth,
        body: `value ${i} via n${n}`,
      });
      assert.equal(put.status, 200, `PUT ${k} via n${n}: ${put.body}`);
    }
    for (const [i, k] of keys.entries()) {
      for (const d of [1, 2]) {
        const n = ((i + d) % HOSTS) + 1;
        const got = await http(api(n, `/v1/kv/default/${k}`), { headers: auth });
        assert.equal(got.status, 200, `GET ${k} via n${n}: ${got.body}`);
        assert.equal(got.body, `value ${i} via n${(i % HOSTS) + 1}`);
      }
    }

    // S3: a bucket and an object made through n2, read through n5 and listed through n3.
    const s3 = (n: number) =>
      new S3Client({
        endpoint: `http://${ipOf(n)}:7002`,
        region: "us-east-1",
        forcePathStyle: true,
        credentials: { accessKeyId, secretAccessKey },
      });
    const body = randomBytes(1 << 20);
    const [s3a, s3b, s3c] = [s3(2), s3(5), s3(3)];
    try {
      await s3a.send(new CreateBucketCommand({ Bucket: "multihost" }));
      await s3a.send(new PutObjectCommand({ Bucket: "multihost", Key: "blob.bin", Body: body }));
      const got = await s3b.send(new GetObjectCommand({ Bucket: "multihost", Key: "blob.bin" }));
      const bytes = await (
        got.Body as { transformToByteArray(): Promise<Uint8Array> }
      ).transformToByteArray();
      assert.equal(sha(bytes), sha(body), "the object read through n5 is the one put through n2");
      const listed = await s3c.send(new ListObjectsV2Command({ Bucket: "multihost" }));
      assert.deepEqual(
        listed.Contents?.map((o) => [o.Key, o.Size]),
        [["blob.bin", body.length]],
      );
    } finally {
      for (const c of [s3a, s3b, s3c]) c.destroy();
    }

    // Every host sees five nodes alive, at the addresses of the example files.
    for (let n = 1; n <= HOSTS; n++) {
      const r = await http(api(n, "/v1/cluster"), { headers: auth });
      assert.equal(r.status, 200, r.body);
      const nodes = (
        JSON.parse(r.body) as {
          nodes: { id: string; state: string; peer: string; labels: { zone?: string } }[];
        }
      ).nodes;
      assert.deepEqual(
        nodes.map((x) => `${x.id} ${x.state} ${x.peer}`).sort(),
        Array.from({ length: HOSTS }, (_, i) => `n${i + 1} alive ${ipOf(i + 1)}:7000`),
        `the view of n${n}`,
      );
      // Each node carries the zone of its file, in every node's view (kumo status shows it).
      assert.deepEqual(
        Object.fromEntries(nodes.map((x) => [x.id, x.labels.zone])),
        Object.fromEntries(zones),
        `zones in the view of n${n}`,
      );
    }
    // The console's cluster view too (every node's own answer, gathered by the node asked).
    const view = await http(api(4, "/v1/admin/console/cluster"), {
      headers: { authorization: `Bearer ${admin}` },
    });
    assert.equal(view.status, 200, view.body);
    const seen = (JSON.parse(view.body) as { nodes: { id: string; zone: string; state: string }[] })
      .nodes;
    assert.deepEqual(
      Object.fromEntries(seen.map((x) => [x.id, x.zone])),
      Object.fromEntries(zones),
      "zones",
    );
    t.diagnostic(`done in ${Date.now() - started} ms`);
  } finally {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(
        procs.map(
          (p) =>
            new Promise<void>((r) => {
              if (p.exitCode !== null || p.signalCode !== null) return r();
              p.once("exit", () => r());
            }),
        ),
      ),
      new Promise<void>((r) => {
        timer = setTimeout(r, 10_000);
      }),
    ]);
    clearTimeout(timer);
    cleanup();
    process.removeListener("exit", cleanup);
    rmSync(dir, { recursive: true, force: true });
  }
});
