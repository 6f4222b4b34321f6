/**
 * A real multi-process Kumo cluster on 127.0.0.1 for integration tests and benchmarks (bench/_lib.ts
 * reuses it): each node is a `kumo server` child process with its own data directory and free ports.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type CertKeyPem, makeCa, makeLeaf, writeCertFiles } from "../../src/node/certs.js";
import { fetchTrusting } from "../../src/node/tls.js";
import { initialShardMap } from "../../src/shard/index.js";

export const MAIN = join(fileURLToPath(import.meta.url), "../../../src/cli/main.js");

/** Every child process a test started and that is still running: killed if the runner exits. */
const children = new Set<ChildProcess>();
/** Data directories of clusters not stopped yet: removed if the runner exits. */
const dataDirs = new Set<string>();
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
  for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
});

/** Spawns a child process that is SIGKILLed if the test process exits before it does. */
export function spawnTracked(
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): ChildProcess {
  // `node` flags (e.g. --cpu-prof) go before the script in `args`.
  const proc = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  children.add(proc);
  proc.once("exit", () => children.delete(proc));
  return proc;
}

/** Sends `signal` and resolves once the process has exited; escalates to SIGKILL after `graceMs`. */
export async function killProcess(
  p: ChildProcess,
  signal: NodeJS.Signals = "SIGKILL",
  graceMs = 10_000,
): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((r) => {
    const timer = setTimeout(() => p.kill("SIGKILL"), graceMs);
    p.once("exit", () => {
      clearTimeout(timer);
      r();
    });
    p.kill(signal);
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/** A base port such that base .. base+count-1 are all free on 127.0.0.1 (right now). */
export async function freePortRange(count: number, attempts = 50): Promise<number> {
  for (let i = 0; i < attempts; i++) {
    const p = await freePort();
    const base = p - (p % 10);
    if (base < 1024 || base + count > 65_535) continue;
    let ok = true;
    for (let q = base; q < base + count && ok; q++) ok = await portFree(q);
    if (ok) return base;
  }
  throw new Error(`no free range of ${count} ports found`);
}

export interface HttpAnswer {
  /** 0 when the request failed at the network level (see `error`). */
  readonly status: number;
  readonly headers: Headers;
  readonly body: Buffer;
  readonly text: string;
  readonly error?: string;
}

/** One HTTP request that never throws: a network failure is status 0. */
export async function http(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: Uint8Array | string } = {},
  timeoutMs = 20_000,
  fetchFn: typeof fetch = fetch,
): Promise<HttpAnswer> {
  try {
    const r = await fetchFn(url, {
      method: init.method ?? "GET",
      headers: init.headers ?? {},
      ...(init.body !== undefined ? { body: init.body } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = Buffer.from(await r.arrayBuffer());
    return { status: r.status, headers: r.headers, body, text: body.toString("utf8") };
  } catch (e) {
    const err = e as Error & { cause?: Error };
    return {
      status: 0,
      headers: new Headers(),
      body: Buffer.alloc(0),
      text: "",
      error: `${err.message}${err.cause ? `: ${err.cause.message}` : ""}`,
    };
  }
}

/**
 * A request through node:http with a chunked (Transfer-Encoding: chunked) body written as
 * `chunks`, like a well-behaved streaming client: it yields between chunks and stops sending as
 * soon as the server has answered (e.g. an early 413), so it sees that answer even when the
 * server closes the connection before the whole body was sent.
 */
export function chunkedRequest(
  url: string,
  method: string,
  headers: Record<string, string>,
  chunks: readonly Uint8Array[],
  timeoutMs = 20_000,
): Promise<{
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  sent: number;
}> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    let answered = false;
    let sent = 0;
    const req = httpRequest(
      { host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers },
      (res) => {
        answered = true;
        const parts: Buffer[] = [];
        res.on("data", (d: Buffer) => parts.push(d));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(parts).toString("utf8"),
            sent,
          }),
        );
        res.on("error", reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    void (async () => {
      for (const c of chunks) {
        if (answered || req.destroyed) return;
        const flushed = req.write(c);
        sent += c.byteLength;
        if (!flushed) await new Promise((r) => req.once("drain", r));
        await new Promise((r) => setTimeout(r, 1));
      }
      if (!answered && !req.destroyed) req.end();
    })();
  });
}

/** Runs the `kumo` CLI; resolves with its exit code and output (never rejects on exit code). */
export function runCli(
  args: readonly string[],
  timeoutMs = 30_000,
  env: Readonly<Record<string, string>> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [MAIN, ...args],
      { timeout: timeoutMs, encoding: "utf8", env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        const code =
          err === null ? 0 : typeof err.code === "number" ? err.code : err.killed ? -1 : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface NodeInfo {
  readonly id: string;
  readonly peer: string;
  readonly api: string;
  readonly s3: string;
  readonly data: string;
  proc: ChildProcess | undefined;
  log: string[];
  /** Extra environment variables of this node's next (re)start (e.g. a new version's). */
  env?: Record<string, string>;
}

export interface ClusterOptions {
  readonly nodes?: number;
  /** Extra `kumo server` flags for every node. */
  readonly args?: readonly string[];
  readonly token?: string;
  /** --shards (8 by default, as the server's default); used by `keysOfShard`. */
  readonly shards?: number;
  /** Extra environment variables for every node (e.g. KUMO_* options). */
  readonly env?: Readonly<Record<string, string>>;
  /** Flags for `node` itself, per node id (e.g. --cpu-prof). */
  readonly nodeArgs?: (id: string) => readonly string[];
  /** Where the cluster's temporary directory goes (the OS temp directory by default). */
  readonly baseDir?: string;
  /** How long `start` waits (30 s by default). */
  readonly startTimeoutMs?: number;
  /**
   * true (the default): `start` resolves once every shard has a leader; false: as soon as every
   * node is ready (see `waitLeaders`).
   */
  readonly waitLeaders?: boolean;
  /**
   * Mutual TLS between the nodes and HTTPS on their API and S3 ports, with a throwaway CA and
   * one certificate per node (CN = id) made by src/node/certs.ts in DIR/tls. The cluster's own
   * requests (`fetch`, `req`, `status`...) then trust that CA.
   */
  readonly tls?: boolean;
}

/** The certificates of a TestCluster started with `tls`. */
export interface TestClusterTls {
  readonly dir: string;
  readonly caFile: string;
  readonly ca: CertKeyPem;
}

/** One shard in GET /v1/cluster. */
export interface ShardStatus {
  id: string;
  keyspace: string;
  replicas: string[];
  leader: string | null;
  term: number | null;
  localRole: string | null;
  commit: number;
  applied: number;
  quiesced: boolean | null;
}

/** The counters of one node in GET /v1/cluster. */
export interface NodeStats {
  readonly host: Record<string, number>;
  readonly engine: { syncs: number; batches: number; bytesWritten: number };
  readonly transport: Record<string, number>;
}

/** GET /v1/cluster of one node. */
export interface ClusterStatus {
  readonly node: string;
  readonly shards: ShardStatus[];
  readonly stats: NodeStats;
}

export class TestCluster {
  readonly nodes: NodeInfo[] = [];
  readonly token: string;
  readonly dir: string;
  readonly shards: number;
  private readonly args: readonly string[];
  private readonly env: Readonly<Record<string, string>>;
  private readonly nodeArgs: (id: string) => readonly string[];
  readonly tls: TestClusterTls | undefined;
  readonly scheme: "http" | "https";
  /** fetch for this cluster's API and S3 ports (trusting its CA with `tls`). */
  readonly fetch: typeof fetch;

  private constructor(opts: ClusterOptions) {
    this.token = opts.token ?? "test-token";
    this.nodeArgs = opts.nodeArgs ?? (() => []);
    this.shards = opts.shards ?? 8;
    this.env = opts.env ?? {};
    this.args = [
      ...(opts.shards !== undefined ? ["--shards", String(opts.shards)] : []),
      ...(opts.args ?? []),
    ];
    this.dir = mkdtempSync(join(opts.baseDir ?? tmpdir(), "kumo-it-"));
    dataDirs.add(this.dir);
    if (opts.tls) {
      const ca = makeCa({ commonName: "kumo test CA", validDays: 2 });
      const dir = join(this.dir, "tls");
      this.tls = { dir, ca, caFile: writeCertFiles(dir, "ca", ca).certFile };
    }
    this.scheme = this.tls ? "https" : "http";
    const caPem = this.tls?.ca.certPem;
    this.fetch = fetchTrusting(() => caPem);
  }

  /** `kumo server` flags of node `id`'s certificates (made on first use) with `tls`. */
  private tlsArgs(id: string): string[] {
    const t = this.tls;
    if (!t) return [];
    const certFile = join(t.dir, `${id}.crt`);
    const keyFile = join(t.dir, `${id}.key`);
    if (!existsSync(certFile))
      writeCertFiles(t.dir, id, makeLeaf(t.ca, { commonName: id, validDays: 2 }));
    return [
      ...["--tls-ca", t.caFile, "--tls-cert", certFile, "--tls-key", keyFile],
      ...["--client-tls-cert", certFile, "--client-tls-key", keyFile],
    ];
  }

  /**
   * Starts the cluster. A port picked free can be taken before the node binds it (by another
   * test's process, or an outgoing connection's ephemeral port): a start that fails with
   * EADDRINUSE is tried again on new ports, up to 3 times.
   */
  static async start(opts: ClusterOptions = {}): Promise<TestCluster> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await TestCluster.startOnce(opts);
      } catch (e) {
        const m = e instanceof Error ? e.message : "";
        if (!m.includes("exited while starting") || !m.includes("EADDRINUSE") || attempt >= 3)
          throw e;
      }
    }
  }

  private static async startOnce(opts: ClusterOptions): Promise<TestCluster> {
    const c = new TestCluster(opts);
    const n = opts.nodes ?? 3;
    const taken = new Set<number>();
    const port = async () => {
      for (;;) {
        const p = await freePort();
        if (!taken.has(p)) {
          taken.add(p);
          return p;
        }
      }
    };
    for (let i = 1; i <= n; i++) {
      c.nodes.push({
        id: `n${i}`,
        peer: `127.0.0.1:${await port()}`,
        api: `127.0.0.1:${await port()}`,
        s3: `127.0.0.1:${await port()}`,
        data: join(c.dir, `n${i}`),
        proc: undefined,
        log: [],
      });
    }
    for (const node of c.nodes) c.spawn(node);
    try {
      // A node that exits while starting (e.g. a refused flag) fails the start at once.
      await waitFor(
        async () => {
          const dead = c.nodes.find((n) => !n.proc);
          if (dead) throw new StartError(`${dead.id} exited while starting`);
          return true;
        },
        1,
        "nodes started",
      );
      await c.waitServing(opts.startTimeoutMs ?? 30_000, true, opts.waitLeaders ?? true);
    } catch (e) {
      await c.stop();
      throw e;
    }
    return c;
  }

  /**
   * Starts one more node that joins the running cluster (its --join lists every other node);
   * resolves once it answers /readyz.
   */
  async addNode(timeoutMs = 30_000): Promise<NodeInfo> {
    const id = `n${this.nodes.length + 1}`;
    const node: NodeInfo = {
      id,
      peer: `127.0.0.1:${await freePort()}`,
      api: `127.0.0.1:${await freePort()}`,
      s3: `127.0.0.1:${await freePort()}`,
      data: join(this.dir, id),
      proc: undefined,
      log: [],
    };
    this.nodes.push(node);
    this.spawn(node);
    await waitFor(
      async () => {
        if (!node.proc) throw new StartError(`${id} exited while starting`);
        const r = await this.fetch(`${this.scheme}://${node.api}/healthz`).catch(() => undefined);
        return r?.ok === true;
      },
      timeoutMs,
      `${id} up`,
    );
    return node;
  }

  node(id: string): NodeInfo {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  ids(): string[] {
    return this.nodes.map((n) => n.id);
  }

  private spawn(node: NodeInfo): void {
    const join = this.nodes.filter((o) => o.id !== node.id).map((o) => `${o.id}=${o.peer}`);
    const proc = spawnTracked(
      [
        ...this.nodeArgs(node.id),
        MAIN,
        "server",
        "--id",
        node.id,
        "--data",
        node.data,
        "--peer",
        node.peer,
        "--api",
        node.api,
        "--s3",
        node.s3,
        ...(join.length > 0 ? ["--join", join.join(",")] : []),
        ...this.tlsArgs(node.id),
        ...this.args,
      ],
      { ...process.env, ...this.env, ...node.env, KUMO_TOKENS: this.token },
    );
    const keep = (d: Buffer) => {
      node.log.push(d.toString());
      if (node.log.length > 200) node.log.shift();
    };
    proc.stdout?.on("data", keep);
    proc.stderr?.on("data", keep);
    proc.once("exit", (code, signal) => {
      node.log.push(`[harness] ${node.id} exited (${signal ?? `code ${code}`})\n`);
      if (node.proc === proc) node.proc = undefined;
    });
    node.proc = proc;
  }

  /** kill -9 (or another signal, SIGKILL after `graceMs`); resolves when the process is gone. */
  async kill(id: string, signal: NodeJS.Signals = "SIGKILL", graceMs?: number): Promise<void> {
    const n = this.node(id);
    const p = n.proc;
    if (p) await killProcess(p, signal, graceMs);
    n.proc = undefined;
  }

  /** The process id of a running node (e.g. to read its CPU time). */
  pid(id: string): number {
    const pid = this.node(id).proc?.pid;
    if (pid === undefined) throw new Error(`node ${id} is not running`);
    return pid;
  }

  /** kill -9 every node at once. */
  async killAll(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.kill(n.id, signal)));
  }

  /** (Re)starts a node on its data directory and ports; resolves once it is ready. */
  async restart(id: string): Promise<void> {
    const n = this.node(id);
    if (n.proc) await this.kill(id, "SIGTERM");
    this.spawn(n);
    const proc = n.proc;
    // The node's last /readyz answer, for the error: why it is not ready.
    let last = "";
    try {
      await waitFor(
        async () => {
          if (proc?.exitCode !== null || proc.signalCode !== null)
            throw new StartError(`${id} exited while starting`);
          const r = await this.fetch(`${this.scheme}://${n.api}/readyz`).catch(() => undefined);
          if (r && !r.ok) last = await r.text().catch(() => "");
          return r?.ok === true;
        },
        30_000,
        `${id} ready`,
      );
    } catch (e) {
      throw new Error(
        `${(e as Error).message}\n--- last /readyz: ${last}\n--- ${id}\n${n.log.join("")}`,
      );
    }
  }

  /** Restarts every dead node and waits until every shard has a leader again. */
  async heal(timeoutMs = 30_000): Promise<void> {
    await Promise.all(this.nodes.filter((n) => !n.proc).map((n) => this.restart(n.id)));
    await this.waitServing(timeoutMs);
  }

  alive(): NodeInfo[] {
    return this.nodes.filter((n) => n.proc);
  }

  /**
   * Waits until every live node is ready and (with `leaders`) every shard has a leader (as
   * n-first sees it).
   */
  async waitServing(timeoutMs: number, allMustLive = false, leaders = true): Promise<void> {
    try {
      await this.waitServingOnce(timeoutMs, allMustLive, leaders);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${this.logs()}`);
    }
  }

  private async waitServingOnce(
    timeoutMs: number,
    allMustLive: boolean,
    leaders: boolean,
  ): Promise<void> {
    await waitFor(
      async () => {
        const dead = this.nodes.find((n) => !n.proc);
        if (allMustLive && dead) throw new StartError(`${dead.id} exited while starting`);
        for (const n of this.alive()) {
          const r = await this.fetch(`${this.scheme}://${n.api}/readyz`).catch(() => undefined);
          if (!r?.ok) return false;
        }
        if (!leaders) return true;
        // Each node reports leaders of the shards it holds: every shard must have one somewhere.
        const led = new Set<string>();
        const all = new Set<string>();
        for (const n of this.alive()) {
          const st = await this.status(n.id).catch(() => undefined);
          if (!st) return false;
          for (const s of st.shards) {
            all.add(s.id);
            if (s.leader) led.add(s.id);
          }
        }
        return all.size > 0 && [...all].every((id) => led.has(id));
      },
      timeoutMs,
      leaders ? "cluster serving" : "every node ready",
    );
  }

  /** Waits until every shard has a leader, as seen by every node. */
  async waitLeaders(timeoutMs: number): Promise<void> {
    await waitFor(
      async () => {
        for (const n of this.nodes) {
          const st = await this.status(n.id);
          if (!st.shards.every((s) => s.leader)) return false;
        }
        return true;
      },
      timeoutMs,
      "a leader for every shard",
      250,
    );
  }

  /** GET /v1/cluster of node `id`. */
  /** GET /v1/cluster on node `id`; with `keyspace`, only that keyspace's shards. */
  async status(id: string, keyspace?: string): Promise<ClusterStatus> {
    const r = await this.fetch(`${this.scheme}://${this.node(id).api}/v1/cluster`, {
      headers: this.auth(),
      signal: AbortSignal.timeout(10_000),
    });
    if (!r.ok) throw new Error(`GET /v1/cluster on ${id}: ${r.status}`);
    const st = (await r.json()) as ClusterStatus;
    return keyspace ? { ...st, shards: st.shards.filter((s) => s.keyspace === keyspace) } : st;
  }

  /** The counters of every node (GET /v1/cluster), in node order. */
  async stats(): Promise<NodeStats[]> {
    return Promise.all(this.nodes.map(async (n) => (await this.status(n.id)).stats));
  }

  /**
   * `count` keys (`${prefix}${i}`) that the default keyspace places in shard `shardId`
   * (computed with the same shard map the nodes build).
   */
  keysOfShard(shardId: string, count: number, prefix: string): string[] {
    const map = initialShardMap(this.ids(), this.shards, 3);
    const enc = new TextEncoder();
    const out: string[] = [];
    for (let i = 0; out.length < count && i < 100_000; i++) {
      const k = `${prefix}${i}`;
      if (map.locate("default", enc.encode(k))?.id === shardId) out.push(k);
    }
    return out;
  }

  auth(): Record<string, string> {
    return { authorization: `Bearer ${this.token}` };
  }

  url(id: string, path: string): string {
    return `${this.scheme}://${this.node(id).api}${path}`;
  }

  /** An authenticated request to node `id` (headers override the Authorization header). */
  async req(
    id: string,
    method: string,
    path: string,
    opts: { headers?: Record<string, string>; body?: Uint8Array | string; timeoutMs?: number } = {},
  ): Promise<HttpAnswer> {
    return http(
      this.url(id, path),
      {
        method,
        headers: { ...this.auth(), ...(opts.headers ?? {}) },
        ...(opts.body !== undefined ? { body: opts.body } : {}),
      },
      opts.timeoutMs,
      this.fetch,
    );
  }

  async put(
    id: string,
    key: string,
    value: string,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    return this.fetch(this.url(id, `/v1/kv/default/${key}`), {
      method: "PUT",
      headers: { ...this.auth(), ...headers },
      body: value,
    });
  }

  async get(id: string, key: string, query = ""): Promise<Response> {
    return this.fetch(this.url(id, `/v1/kv/default/${key}${query}`), { headers: this.auth() });
  }

  /** SIGTERM every node (graceful: flushes, writes CPU profiles), SIGKILL after `graceMs`. */
  async stop(graceMs?: number): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.kill(n.id, "SIGTERM", graceMs)));
    rmSync(this.dir, { recursive: true, force: true });
    dataDirs.delete(this.dir);
  }

  logs(): string {
    return this.nodes.map((n) => `--- ${n.id}\n${n.log.join("")}`).join("\n");
  }
}

/** Thrown by a `waitFor` condition to stop waiting at once. */
export class StartError extends Error {}

/** Polls `cond` every `everyMs` until it holds; a failing `cond` counts as false. */
export async function waitFor(
  cond: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
  everyMs = 50,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await cond().catch((e: unknown) => {
      if (e instanceof StartError) throw e;
      return false;
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** The documented error body, or undefined if `text` is not one. */
export function errorBody(
  text: string,
): { code: string; message: string; revision?: number } | undefined {
  try {
    const j = JSON.parse(text) as {
      error?: { code?: unknown; message?: unknown; revision?: number };
    };
    if (typeof j.error?.code !== "string" || typeof j.error.message !== "string") return undefined;
    return j.error as { code: string; message: string; revision?: number };
  } catch {
    return undefined;
  }
}
