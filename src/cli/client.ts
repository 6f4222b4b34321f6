/**
 * `kumo kv put|get|del|ls` and `kumo status`: thin commands over the public HTTP API. The
 * endpoint and token come from flags, the environment (KUMO_ENDPOINT, KUMO_TOKEN), or a
 * cluster.json written by `kumo dev` (--cluster, KUMO_CLUSTER, default .kumo/cluster.json).
 */
import { existsSync, readFileSync } from "node:fs";
import type { ClusterFile } from "./dev.js";

export interface ClientOptions {
  endpoint?: string;
  token?: string;
  cluster?: string;
}

export interface Client {
  readonly endpoints: string[];
  readonly token: string;
}

export function resolveClient(o: ClientOptions): Client {
  const clusterFile = o.cluster ?? process.env.KUMO_CLUSTER ?? ".kumo/cluster.json";
  let fromFile: ClusterFile | undefined;
  if (existsSync(clusterFile))
    fromFile = JSON.parse(readFileSync(clusterFile, "utf8")) as ClusterFile;
  const endpoint = o.endpoint ?? process.env.KUMO_ENDPOINT;
  const endpoints = endpoint
    ? [endpoint.startsWith("http") ? endpoint : `http://${endpoint}`]
    : (fromFile?.nodes.map((n) => `http://${n.api}`) ?? []);
  const token = o.token ?? process.env.KUMO_TOKEN ?? fromFile?.token;
  if (endpoints.length === 0)
    throw new Error(
      "no endpoint: pass --endpoint, set KUMO_ENDPOINT, or point --cluster at a cluster.json",
    );
  if (!token)
    throw new Error("no token: pass --token, set KUMO_TOKEN, or point --cluster at a cluster.json");
  return { endpoints, token };
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
      return await fetch(`${e}${path}`, {
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
