/**
 * `kumo dev`: a local cluster of real node processes on 127.0.0.1, for development and demos.
 * It writes DIR/cluster.json (endpoints, pids, credentials), prints the endpoints, and stops
 * every node it started on SIGINT/SIGTERM. Started again on the same DIR, it restarts the same
 * cluster (same ids, ports, credentials) with its data.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { prettyLine } from "../node/log.js";

export interface ClusterFileNode {
  id: string;
  pid: number;
  api: string;
  s3: string;
  peer: string;
}

export interface ClusterFile {
  nodes: ClusterFileNode[];
  token: string;
  s3: { accessKeyId: string; secretAccessKey: string };
}

export interface DevOptions {
  nodes: number;
  data: string;
  basePort: number;
  /** Extra arguments for every `kumo server` (e.g. shorter timeouts in tests). */
  serverArgs: string[];
  quiet: boolean;
  /** Nodes to add to the folder's cluster (`--add-node`). */
  addNodes?: number;
}

const mainScript = join(fileURLToPath(import.meta.url), "../main.js");

async function waitReady(api: string, deadlineMs: number): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    try {
      const r = await fetch(`http://${api}/readyz`);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`node at ${api} not ready after ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until a write and a read go through (every shard has a leader). */
async function waitServing(api: string, token: string, deadlineMs: number): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    try {
      const r = await fetch(`http://${api}/v1/cluster`, {
        headers: { authorization: `Bearer ${token}` },
      });
      if (r.ok) {
        const st = (await r.json()) as {
          shards: { leader: string | null; localRole: string | null }[];
        };
        // This node knows the leaders of the shards it holds.
        if (st.shards.every((s) => s.leader || s.localRole === null)) {
          const w = await fetch(`http://${api}/v1/kv/default/.kumo-dev-probe`, {
            method: "PUT",
            headers: { authorization: `Bearer ${token}` },
            body: new Date().toISOString(),
          });
          if (w.ok) return;
        }
      }
    } catch {
      // retry
    }
    if (Date.now() > until) throw new Error(`cluster not serving after ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function runDev(opts: DevOptions): Promise<void> {
  const dir = resolve(opts.data);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "cluster.json");
  let cluster: ClusterFile;
  if (existsSync(file)) {
    cluster = JSON.parse(readFileSync(file, "utf8")) as ClusterFile;
    // More nodes than the folder has: start the extra ones, which join the running cluster
    // (replicas and leaders then move to them). Fewer: the folder's nodes all start (removing
    // nodes is `kumo node drain` / `remove`, not a smaller --nodes).
    const first = cluster.nodes[0];
    const base = first ? Number(first.peer.slice(first.peer.lastIndexOf(":") + 1)) : opts.basePort;
    const want = Math.max(opts.nodes, cluster.nodes.length) + (opts.addNodes ?? 0);
    for (let i = cluster.nodes.length; i < want; i++) {
      const p = base + i * 10;
      cluster.nodes.push({
        id: `n${i + 1}`,
        pid: 0,
        peer: `127.0.0.1:${p}`,
        api: `127.0.0.1:${p + 1}`,
        s3: `127.0.0.1:${p + 2}`,
      });
    }
  } else {
    cluster = {
      nodes: Array.from({ length: opts.nodes + (opts.addNodes ?? 0) }, (_, i) => {
        const p = opts.basePort + i * 10;
        return {
          id: `n${i + 1}`,
          pid: 0,
          peer: `127.0.0.1:${p}`,
          api: `127.0.0.1:${p + 1}`,
          s3: `127.0.0.1:${p + 2}`,
        };
      }),
      token: randomBytes(24).toString("base64url"),
      s3: {
        accessKeyId: `KUMO${randomBytes(8).toString("hex").toUpperCase()}`,
        secretAccessKey: randomBytes(30).toString("base64url"),
      },
    };
  }

  const children = new Map<string, ChildProcess>();
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    if (!opts.quiet) console.log("kumo dev: stopping every node...");
    await Promise.all(
      [...children.values()].map(
        (c) =>
          new Promise<void>((r) => {
            if (c.exitCode !== null || c.signalCode !== null) return r();
            c.once("exit", () => r());
            c.kill("SIGTERM");
            setTimeout(() => c.kill("SIGKILL"), 10_000).unref();
          }),
      ),
    );
    process.exit(code);
  };
  process.on("SIGINT", () => void stopAll(0));
  process.on("SIGTERM", () => void stopAll(0));

  for (const n of cluster.nodes) {
    const others = cluster.nodes.filter((o) => o.id !== n.id).map((o) => `${o.id}=${o.peer}`);
    const args = [
      mainScript,
      "server",
      "--id",
      n.id,
      "--data",
      join(dir, n.id),
      "--peer",
      n.peer,
      "--api",
      n.api,
      "--s3",
      n.s3,
      ...(others.length > 0 ? ["--join", others.join(",")] : []),
      ...opts.serverArgs,
    ];
    const child = spawn(process.execPath, args, {
      env: {
        ...process.env,
        KUMO_TOKENS: cluster.token,
        KUMO_S3_ROOT_KEY: `${cluster.s3.accessKeyId}:${cluster.s3.secretAccessKey}`,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const prefix = `[${n.id}] `;
    // Nodes log JSON lines (for machines); a person at a terminal gets them short and plain.
    const forward = (stream: NodeJS.ReadableStream | null, out: NodeJS.WriteStream) => {
      if (!stream) return;
      createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (line) => {
        if (opts.quiet || !line) return;
        out.write(`${prefix}${prettyLine(line)}\n`);
      });
    };
    forward(child.stdout, process.stdout);
    forward(child.stderr, process.stderr);
    child.on("exit", (code, signal) => {
      if (!stopping) console.log(`kumo dev: node ${n.id} exited (${signal ?? `code ${code}`})`);
    });
    children.set(n.id, child);
    n.pid = child.pid ?? 0;
  }

  try {
    await Promise.all(cluster.nodes.map((n) => waitReady(n.api, 60_000)));
    await waitServing((cluster.nodes[0] as ClusterFileNode).api, cluster.token, 60_000);
  } catch (e) {
    console.error(`kumo dev: ${(e as Error).message}`);
    await stopAll(1);
    return;
  }
  writeFileSync(file, `${JSON.stringify(cluster, null, 2)}\n`);
  const first = cluster.nodes[0] as ClusterFileNode;
  console.log(
    [
      "",
      `Kumo is running: ${cluster.nodes.length} nodes, data in ${dir}`,
      `  KV API:      ${cluster.nodes.map((n) => `http://${n.api}`).join("  ")}`,
      `  S3 endpoint: ${cluster.nodes.map((n) => `http://${n.s3}`).join("  ")}`,
      `  Console:     http://${first.api}/console/  (sign in with the token below)`,
      `  Metrics:     ${cluster.nodes.map((n) => `http://${n.api}/metrics`).join("  ")}`,
      `  Token:       ${cluster.token}`,
      `  S3 keys:     ${cluster.s3.accessKeyId} / ${cluster.s3.secretAccessKey}`,
      `  Cluster:     ${file}`,
      "",
      `Try:  curl -X PUT -H "Authorization: Bearer ${cluster.token}" --data hello http://${first.api}/v1/kv/default/greeting`,
      `      node ${mainScript} kv get greeting --cluster ${file}`,
      `      AWS_ACCESS_KEY_ID=${cluster.s3.accessKeyId} AWS_SECRET_ACCESS_KEY=${cluster.s3.secretAccessKey} aws --endpoint-url http://${first.s3} s3 mb s3://photos`,
      "Press Ctrl+C to stop every node.",
      "",
    ].join("\n"),
  );
}
