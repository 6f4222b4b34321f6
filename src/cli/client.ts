/**
 * `kumo kv put|get|del|ls` and `kumo status`: thin commands over the public HTTP API. The
 * endpoint and token come from flags, the environment (KUMO_ENDPOINT, KUMO_TOKEN), or a
 * cluster.json written by `kumo dev` (--cluster, KUMO_CLUSTER, default .kumo/cluster.json).
 */
import { existsSync, readFileSync } from "node:fs";
import { parseDurationMs } from "../node/config.js";
import { fetchTrusting } from "../node/tls.js";
import type { ClusterFile } from "./dev.js";
import type { OutputMode } from "./output.js";
import { Progress } from "./progress.js";

export interface ClientOptions {
  endpoint?: string;
  token?: string;
  cluster?: string;
  /** PEM file of a CA to trust for https:// endpoints (besides the system's). */
  ca?: string;
}

export interface Client {
  readonly endpoints: string[];
  readonly token: string;
  /** fetch, trusting the --ca / KUMO_CA / cluster.json CA when there is one. */
  readonly fetch: typeof fetch;
}

/** The CA file to trust: --ca, else KUMO_CA, else the one a `kumo dev --tls` cluster.json names. */
export function resolveCaFile(o: { ca?: string }, fromFile?: ClusterFile): string | undefined {
  return o.ca ?? (process.env.KUMO_CA || undefined) ?? fromFile?.ca;
}

/** The contents of a CA file, or a clear error. */
export function readCaFile(file: string | undefined): Buffer | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file);
  } catch (e) {
    throw new Error(`cannot read the CA file ${file}: ${(e as Error).message}`);
  }
}

export function resolveClient(o: ClientOptions): Client {
  const clusterFile = o.cluster ?? process.env.KUMO_CLUSTER ?? ".kumo/cluster.json";
  let fromFile: ClusterFile | undefined;
  if (existsSync(clusterFile))
    fromFile = JSON.parse(readFileSync(clusterFile, "utf8")) as ClusterFile;
  const endpoint = o.endpoint ?? process.env.KUMO_ENDPOINT;
  // A cluster.json of `kumo dev --tls` names its CA: its nodes serve HTTPS.
  const scheme = fromFile?.ca ? "https" : "http";
  const endpoints = endpoint
    ? [endpoint.startsWith("http") ? endpoint : `${scheme}://${endpoint}`]
    : (fromFile?.nodes.map((n) => `${scheme}://${n.api}`) ?? []);
  const token = o.token ?? process.env.KUMO_TOKEN ?? fromFile?.token;
  if (endpoints.length === 0)
    throw new Error(
      "no endpoint: pass --endpoint, set KUMO_ENDPOINT, or point --cluster at a cluster.json",
    );
  if (!token)
    throw new Error("no token: pass --token, set KUMO_TOKEN, or point --cluster at a cluster.json");
  const ca = readCaFile(resolveCaFile(o, fromFile));
  return { endpoints, token, fetch: fetchTrusting(() => ca) };
}

/** Sends a request to the first endpoint that answers (any node serves any request). */
export async function request(
  c: Client,
  method: string,
  path: string,
  body?: Uint8Array,
  headers: Record<string, string> = {},
): Promise<Response> {
  let last: unknown;
  for (const e of c.endpoints) {
    try {
      return await c.fetch(`${e}${path}`, {
        method,
        headers: { authorization: `Bearer ${c.token}`, ...headers },
        ...(body ? { body } : {}),
      });
    } catch (err) {
      last = err;
    }
  }
  throw new Error(`no node answered: ${(last as Error)?.message ?? last}`);
}

export function keyPath(keyspace: string, key: string): string {
  return `/v1/kv/${encodeURIComponent(keyspace)}/${key.split("/").map(encodeURIComponent).join("/")}`;
}

export async function failOnError(r: Response): Promise<void> {
  if (r.ok) return;
  let msg = `${r.status} ${r.statusText}`;
  try {
    const j = (await r.json()) as { error?: { code: string; message: string } };
    if (j.error) msg = `${j.error.code}: ${j.error.message}`;
  } catch {
    // not JSON
  }
  throw new Error(msg);
}

interface ClusterView {
  nodes: { id: string; replicas?: number }[];
  summary?: { underReplicated: number; movesInProgress: number };
}

/**
 * Waits, with a progress bar and ETA on a terminal, until node `id` holds no replica (drain)
 * and, for a removal, until no shard is under-replicated any more (the replicas it held were
 * re-created elsewhere). Polls GET /v1/cluster twice a second; any node may answer.
 */
export async function waitForMoves(
  c: Client,
  id: string,
  repairs: boolean,
  timeoutMs: number,
  mode: OutputMode,
): Promise<{ movedReplicas: number; seconds: number }> {
  const t0 = performance.now();
  const view = async (): Promise<ClusterView> => {
    const r = await request(c, "GET", "/v1/cluster");
    await failOnError(r);
    return (await r.json()) as ClusterView;
  };
  const remaining = (v: ClusterView) =>
    (v.nodes.find((n) => n.id === id)?.replicas ?? 0) +
    (repairs ? (v.summary?.underReplicated ?? 0) : 0);
  const first = remaining(await view());
  let total = first;
  const progress = new Progress({
    label: `${repairs ? "remove" : "drain"} ${id}`,
    unit: "items",
    total,
    quiet: mode.json,
  });
  for (;;) {
    let left: number;
    try {
      left = remaining(await view());
    } catch {
      left = Number.NaN; // a node restarting: ask again
    }
    if (!Number.isNaN(left)) {
      // Work can appear meanwhile (a split, a failed move retried): the total only grows.
      total = Math.max(total, left);
      progress.update(total - left, total);
      if (left === 0) break;
    }
    if (performance.now() - t0 > timeoutMs) {
      progress.finish("timed out");
      throw new Error(`still ${left} replicas to move after ${Math.round(timeoutMs / 1000)} s`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  progress.finish("done");
  return { movedReplicas: total, seconds: (performance.now() - t0) / 1000 };
}

/** A duration flag ("30m", "90s", "1h"), or a clear error. */
export function parseDuration(raw: string): number {
  const ms = parseDurationMs(raw);
  if (ms === undefined || ms <= 0) throw new Error(`not a duration: ${JSON.stringify(raw)}`);
  return ms;
}
