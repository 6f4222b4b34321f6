/**
 * A cluster of real `kumo server` processes for chaos runs, started the way
 * test/integration/_cluster.ts does (same flags, token through KUMO_TOKENS, every node given the
 * others in --join), either on 127.0.0.1 with free ports or each in its own network namespace
 * (netns.ts) with its own IP and fixed ports. It can kill -9, pause (SIGSTOP), resume and
 * restart nodes, and it always cleans up: `destroy` is synchronous so that exit and signal
 * handlers can call it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type HttpTarget, send, target } from "./http.js";
import type { NetLab } from "./netns.js";

/** The compiled `kumo` entry point (dist/src/cli/main.js, next to dist/src/chaos/). */
export const KUMO_MAIN = join(fileURLToPath(import.meta.url), "../../cli/main.js");

/** Fixed ports inside a namespace: each node has its own IP, so all can use the same ones. */
const NETNS_PEER_PORT = 7000;
const NETNS_API_PORT = 7001;
const NETNS_S3_PORT = 7002;
/** How long a node may take to answer /readyz after (re)start. */
const READY_TIMEOUT_MS = 30_000;
const POLL_EVERY_MS = 100;

export interface ChaosNode {
  readonly id: string;
  readonly index: number;
  readonly peer: string;
  readonly api: string;
  readonly s3: string;
  readonly data: string;
  readonly logFile: string;
  readonly http: HttpTarget;
  proc: ChildProcess | undefined;
  paused: boolean;
}

export interface ClusterConfig {
  readonly nodes: number;
  readonly shards: number;
  readonly replicas: number;
  readonly readMode: "quorum" | "lease";
  readonly token: string;
  /** The run's folder: data/ and logs/ go under it. */
  readonly dir: string;
  /** Extra `kumo server` flags for every node. */
  readonly serverArgs: readonly string[];
  /** Extra environment for every node (e.g. KUMO_S3_ROOT_KEY for the S3 workload). */
  readonly env?: Readonly<Record<string, string>>;
}

export interface ShardStatus {
  readonly id: string;
  /** The keyspace the shard belongs to ("default", "_meta", "_s3", ...). */
  readonly keyspace?: string;
  readonly replicas: readonly string[];
  readonly leader: string | null;
  /** This node's role in the shard; null when it holds no replica of it. */
  readonly localRole: string | null;
  readonly term: number | null;
  readonly commit: number | null;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
}

export class ChaosCluster {
  readonly nodes: ChaosNode[] = [];
  private destroyed = false;

  private constructor(
    readonly cfg: ClusterConfig,
    readonly lab: NetLab | undefined,
  ) {}

  /** Lays out the nodes (addresses, directories); `start` launches them. */
  static async create(cfg: ClusterConfig, lab: NetLab | undefined): Promise<ChaosCluster> {
    const c = new ChaosCluster(cfg, lab);
    mkdirSync(join(cfg.dir, "logs"), { recursive: true });
    for (let i = 0; i < cfg.nodes; i++) {
      const id = `n${i + 1}`;
      const host = lab ? (lab.ips[i] as string) : "127.0.0.1";
      const port = async (fixed: number) => (lab ? fixed : await freePort());
      const api = `${host}:${await port(NETNS_API_PORT)}`;
      c.nodes.push({
        id,
        index: i,
        peer: `${host}:${await port(NETNS_PEER_PORT)}`,
        api,
        s3: `${host}:${await port(NETNS_S3_PORT)}`,
        data: join(cfg.dir, "data", id),
        logFile: join(cfg.dir, "logs", `${id}.log`),
        http: target(api),
        proc: undefined,
        paused: false,
      });
    }
    return c;
  }

  node(id: string): ChaosNode {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  alive(): ChaosNode[] {
    return this.nodes.filter((n) => n.proc !== undefined);
  }

  /** Starts every node and waits until every shard has a leader. */
  async start(timeoutMs: number): Promise<{ ok: true } | { ok: false; reason: string }> {
    for (const n of this.nodes) this.spawn(n);
    return this.waitServing(timeoutMs, true);
  }

  private spawn(node: ChaosNode): void {
    const join = this.nodes.filter((o) => o.id !== node.id).map((o) => `${o.id}=${o.peer}`);
    const serverArgv = [
      KUMO_MAIN,
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
      "--shards",
      String(this.cfg.shards),
      "--replicas",
      String(this.cfg.replicas),
      "--read-mode",
      this.cfg.readMode,
      ...this.cfg.serverArgs,
    ];
    // `ip netns exec` execs the command in place, so the child's pid is the node's pid and
    // signals (kill -9, SIGSTOP) reach the node itself.
    const argv = this.lab
      ? [...this.lab.exec(node.index), process.execPath, ...serverArgv]
      : [process.execPath, ...serverArgv];
    const log = openSync(node.logFile, "a");
    const proc = spawn(argv[0] as string, argv.slice(1), {
      env: { ...process.env, ...this.cfg.env, KUMO_TOKENS: this.cfg.token },
      stdio: ["ignore", log, log],
    });
    closeSync(log);
    proc.once("exit", () => {
      if (node.proc === proc) {
        node.proc = undefined;
        node.paused = false;
      }
    });
    node.proc = proc;
    node.paused = false;
  }

  /** kill -9; resolves once the process is gone. */
  async kill(id: string): Promise<void> {
    const n = this.node(id);
    const p = n.proc;
    if (!p) return;
    await new Promise<void>((resolve) => {
      if (p.exitCode !== null || p.signalCode !== null) return resolve();
      p.once("exit", () => resolve());
      p.kill("SIGKILL");
    });
    n.proc = undefined;
    n.paused = false;
  }

  pause(id: string): boolean {
    const n = this.node(id);
    if (!n.proc || n.paused) return false;
    n.proc.kill("SIGSTOP");
    n.paused = true;
    return true;
  }

  resume(id: string): boolean {
    const n = this.node(id);
    if (!n.proc || !n.paused) return false;
    n.proc.kill("SIGCONT");
    n.paused = false;
    return true;
  }

  /**
   * Starts a dead node again on its data directory; resolves once its process serves HTTP
   * (/healthz). Not /readyz: readiness may wait for shard leaders, which a node restarted
   * while a majority is still down cannot have; `waitServing` judges the cluster as a whole.
   */
  async restart(id: string): Promise<{ ok: true } | { ok: false; reason: string }> {
    const n = this.node(id);
    if (n.proc) return { ok: true };
    this.spawn(n);
    const until = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < until) {
      if (!n.proc) return { ok: false, reason: `${id} exited while starting (see ${n.logFile})` };
      const r = await send(n.http, {
        method: "GET",
        path: "/healthz",
        headers: {},
        timeoutMs: 2000,
      });
      if (r.kind === "answer" && r.status === 200) return { ok: true };
      await sleep(POLL_EVERY_MS);
    }
    return {
      ok: false,
      reason: `${id} not serving HTTP within ${READY_TIMEOUT_MS} ms (see ${n.logFile})`,
    };
  }

  /** Resumes paused nodes and restarts dead ones (all at once: a majority may be down). */
  async healProcesses(): Promise<string[]> {
    for (const n of this.nodes) if (n.paused) this.resume(n.id);
    const results = await Promise.all(
      this.nodes.filter((n) => !n.proc).map((n) => this.restart(n.id)),
    );
    return results.flatMap((r) => (r.ok ? [] : [r.reason]));
  }

  /**
   * POST /v1/nodes/{id}/drain|activate through any live node that answers (the API token is
   * also the admin token in these clusters).
   */
  async setAdmin(
    id: string,
    action: "drain" | "activate",
  ): Promise<{ ok: true } | { ok: false; reason: string }> {
    let last = "no live node answered";
    for (const n of this.alive()) {
      if (n.paused) continue;
      const r = await send(n.http, {
        method: "POST",
        path: `/v1/nodes/${encodeURIComponent(id)}/${action}`,
        headers: { authorization: `Bearer ${this.cfg.token}` },
        timeoutMs: 5000,
      });
      if (r.kind === "answer" && r.status === 200) return { ok: true };
      last =
        r.kind === "answer"
          ? `${action} ${id}: ${r.status} ${r.body}`
          : `${action} ${id}: ${r.kind}`;
    }
    return { ok: false, reason: last };
  }

  /** GET /v1/cluster of one node, or undefined if it does not answer in time. */
  async status(id: string, timeoutMs = 2000): Promise<ShardStatus[] | undefined> {
    const n = this.node(id);
    const r = await send(n.http, {
      method: "GET",
      path: "/v1/cluster",
      headers: { authorization: `Bearer ${this.cfg.token}` },
      timeoutMs,
    });
    if (r.kind !== "answer" || r.status !== 200) return undefined;
    try {
      return (JSON.parse(r.body) as { shards: ShardStatus[] }).shards;
    } catch {
      return undefined;
    }
  }

  /**
   * Waits until every live node answers and every shard has a leader as seen by each live node
   * holding a replica of it (a node without a replica reports no leader for that shard).
   * With `allMustLive` (at start), a node that exits fails the wait at once.
   */
  async waitServing(
    timeoutMs: number,
    allMustLive = false,
  ): Promise<{ ok: true } | { ok: false; reason: string }> {
    const until = Date.now() + timeoutMs;
    let last = "no node answered";
    while (Date.now() < until) {
      const dead = this.nodes.find((n) => !n.proc);
      if (dead && allMustLive) {
        return { ok: false, reason: `${dead.id} exited while starting (see ${dead.logFile})` };
      }
      let good = this.alive().length > 0;
      const views: ShardStatus[] = [];
      for (const n of this.alive()) {
        const st = await this.status(n.id);
        if (!st) {
          good = false;
          last = `${n.id} does not answer`;
          break;
        }
        views.push(...st);
      }
      if (good) {
        const ids = new Set(views.map((v) => v.id));
        for (const id of ids) {
          const hosted = views.filter((v) => v.id === id && v.localRole !== null);
          if (hosted.length === 0 || !hosted.every((v) => v.leader)) {
            good = false;
            last = `shard ${id} has no leader`;
            break;
          }
        }
      }
      if (good) return { ok: true };
      await sleep(POLL_EVERY_MS * 2);
    }
    return { ok: false, reason: `cluster not serving within ${timeoutMs} ms: ${last}` };
  }

  /** Kills every node (SIGKILL also ends stopped processes) and waits for them. */
  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.kill(n.id)));
    for (const n of this.nodes) n.http.agent.destroy();
  }

  /** Synchronous last-resort cleanup for exit/signal handlers: SIGKILL whatever still runs. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const n of this.nodes) {
      try {
        n.proc?.kill("SIGKILL");
      } catch {
        // already gone
      }
      n.http.agent.destroy();
    }
  }
}
