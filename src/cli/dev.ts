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
import { newSecretKeyText } from "../api/auth/secrets.js";
import { type CertKeyPem, makeCa, makeLeaf, writeCertFiles } from "../node/certs.js";
import { prettyLine } from "../node/log.js";
import { fetchTrusting } from "../node/tls.js";

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
  /** With `kumo dev --tls`: the CA (PEM file) that signed every node's certificate. */
  ca?: string;
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
  /**
   * Make a throwaway CA and node certificates in DIR/tls and run with mutual TLS between nodes
   * and HTTPS on the API and S3 ports. A folder made with --tls keeps TLS on later starts.
   */
  tls?: boolean;
}

const mainScript = join(fileURLToPath(import.meta.url), "../main.js");

/** How `kumo dev` reaches its nodes' API ports: the scheme, and a fetch trusting the dev CA. */
interface DevHttp {
  readonly scheme: "http" | "https";
  readonly fetch: typeof fetch;
}

async function waitReady(api: string, deadlineMs: number, h: DevHttp): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    try {
      const r = await h.fetch(`${h.scheme}://${api}/readyz`);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`node at ${api} not ready after ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until a write and a read go through (every shard has a leader). */
async function waitServing(
  api: string,
  token: string,
  deadlineMs: number,
  h: DevHttp,
): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    try {
      const r = await h.fetch(`${h.scheme}://${api}/v1/cluster`, {
        headers: { authorization: `Bearer ${token}` },
      });
      if (r.ok) {
        const st = (await r.json()) as {
          shards: { leader: string | null; localRole: string | null }[];
        };
        // This node knows the leaders of the shards it holds.
        if (st.shards.every((s) => s.leader || s.localRole === null)) {
          const w = await h.fetch(`${h.scheme}://${api}/v1/kv/default/.kumo-dev-probe`, {
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

  // The cluster secret key that seals S3 secrets at rest: made once, kept with the data.
  const secretKeyFile = join(dir, "secret.key");
  if (!existsSync(secretKeyFile)) writeFileSync(secretKeyFile, newSecretKeyText(), { mode: 0o600 });

  // TLS: the CA (kept, so nodes added later get certificates from it) and one certificate per
  // node (CN = node id, checked by peers; SAN = 127.0.0.1 and localhost, checked by clients).
  const tlsDir = join(dir, "tls");
  const tlsArgs = new Map<string, string[]>();
  if (opts.tls || cluster.ca) {
    const caFile = join(tlsDir, "ca.crt");
    const caKeyFile = join(tlsDir, "ca.key");
    let ca: CertKeyPem;
    if (existsSync(caFile) && existsSync(caKeyFile)) {
      ca = { certPem: readFileSync(caFile, "utf8"), keyPem: readFileSync(caKeyFile, "utf8") };
    } else {
      ca = makeCa({ commonName: "Kumo dev CA (throwaway)" });
      writeCertFiles(tlsDir, "ca", ca);
    }
    for (const n of cluster.nodes) {
      const files = { certFile: join(tlsDir, `${n.id}.crt`), keyFile: join(tlsDir, `${n.id}.key`) };
      if (!existsSync(files.certFile) || !existsSync(files.keyFile))
        writeCertFiles(tlsDir, n.id, makeLeaf(ca, { commonName: n.id }));
      const pair = ["--tls-cert", files.certFile, "--tls-key", files.keyFile];
      tlsArgs.set(n.id, [
        ...["--tls-ca", caFile, ...pair],
        ...["--client-tls-cert", files.certFile, "--client-tls-key", files.keyFile],
      ]);
    }
    cluster.ca = caFile;
  }
  const caPem = cluster.ca ? readFileSync(cluster.ca) : undefined;
  const h: DevHttp = {
    scheme: caPem ? "https" : "http",
    fetch: fetchTrusting(() => caPem),
  };

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
  // The terminal closed: the nodes reload their certificates on SIGHUP instead of exiting, so
  // stop them here rather than leave them running without us.
  process.on("SIGHUP", () => void stopAll(0));

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
      ...(tlsArgs.get(n.id) ?? []),
      ...opts.serverArgs,
    ];
    const child = spawn(process.execPath, args, {
      env: {
        ...process.env,
        KUMO_TOKENS: cluster.token,
        KUMO_SECRET_KEY_FILE: secretKeyFile,
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
    await Promise.all(cluster.nodes.map((n) => waitReady(n.api, 60_000, h)));
    await waitServing((cluster.nodes[0] as ClusterFileNode).api, cluster.token, 60_000, h);
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
      `  KV API:      ${cluster.nodes.map((n) => `${h.scheme}://${n.api}`).join("  ")}`,
      `  S3 endpoint: ${cluster.nodes.map((n) => `${h.scheme}://${n.s3}`).join("  ")}`,
      `  Console:     ${h.scheme}://${first.api}/console/  (sign in with the token below)`,
      `  Metrics:     ${cluster.nodes.map((n) => `${h.scheme}://${n.api}/metrics`).join("  ")}`,
      `  Token:       ${cluster.token}`,
      `  S3 keys:     ${cluster.s3.accessKeyId} / ${cluster.s3.secretAccessKey}`,
      `  Cluster:     ${file}`,
      "",
      ...(cluster.ca
        ? [
            `  TLS CA:      ${cluster.ca}  (throwaway; trust it for this cluster only)`,
            `               curl --cacert ${cluster.ca}   aws --ca-bundle ${cluster.ca}   kumo --ca ${cluster.ca} (or KUMO_CA)`,
            "               the browser warns about the console's certificate: accept it, or import the CA",
          ]
        : []),
      "",
      `Try:  curl${cluster.ca ? ` --cacert ${cluster.ca}` : ""} -X PUT -H "Authorization: Bearer ${cluster.token}" --data hello ${h.scheme}://${first.api}/v1/kv/default/greeting`,
      `      node ${mainScript} kv get greeting --cluster ${file}`,
      `      AWS_ACCESS_KEY_ID=${cluster.s3.accessKeyId} AWS_SECRET_ACCESS_KEY=${cluster.s3.secretAccessKey} aws --endpoint-url ${h.scheme}://${first.s3}${cluster.ca ? ` --ca-bundle ${cluster.ca}` : ""} s3 mb s3://photos`,
      "Press Ctrl+C to stop every node.",
      "",
    ].join("\n"),
  );
}
