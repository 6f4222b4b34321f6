/**
 * The console's only way to the node: fetch with the admin token (kept in sessionStorage, so
 * it is gone when the tab closes). A 401 signs out.
 */

const TOKEN_KEY = "kumo.console.token";

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(t: string | null): void {
  if (t === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, t);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let onUnauthorized: () => void = () => {};
export function whenUnauthorized(f: () => void): void {
  onUnauthorized = f;
}

export const API = "/v1/admin/console";

async function failure(r: Response): Promise<ApiError> {
  let code = `HTTP_${r.status}`;
  let message = r.statusText || `HTTP ${r.status}`;
  try {
    const j = (await r.json()) as { error?: { code?: string; message?: string } };
    if (j.error?.code) code = j.error.code;
    if (j.error?.message) message = j.error.message;
  } catch {
    // not JSON
  }
  return new ApiError(r.status, code, message);
}

export async function request(
  path: string,
  init: RequestInit & { tokenOverride?: string } = {},
): Promise<Response> {
  const t = init.tokenOverride ?? token() ?? "";
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${t}`);
  let r: Response;
  try {
    r = await fetch(path, { ...init, headers, cache: "no-store" });
  } catch (e) {
    throw new ApiError(0, "NETWORK", `the node did not answer (${(e as Error).message})`);
  }
  if (r.status === 401 && init.tokenOverride === undefined) onUnauthorized();
  if (!r.ok) throw await failure(r);
  return r;
}

export async function getJson<T>(path: string, init?: RequestInit): Promise<T> {
  return (await (await request(path, init)).json()) as T;
}

/** A path segment ("/" inside it escaped too). */
export function seg(s: string): string {
  return encodeURIComponent(s);
}

/** Uploads with progress (fetch cannot report upload progress). */
export function upload(
  path: string,
  body: Blob,
  contentType: string,
  onProgress: (sent: number, total: number) => void,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open("PUT", path);
    x.setRequestHeader("authorization", `Bearer ${token() ?? ""}`);
    x.setRequestHeader("content-type", contentType || "application/octet-stream");
    x.upload.onprogress = (e) => onProgress(e.loaded, e.total || body.size);
    x.onerror = () => reject(new ApiError(0, "NETWORK", "the upload failed (network)"));
    x.onload = () => {
      let j: { error?: { code?: string; message?: string } } | undefined;
      try {
        j = JSON.parse(x.responseText);
      } catch {
        j = undefined;
      }
      if (x.status >= 200 && x.status < 300) resolve(j);
      else {
        if (x.status === 401) onUnauthorized();
        reject(
          new ApiError(
            x.status,
            j?.error?.code ?? `HTTP_${x.status}`,
            j?.error?.message ?? `HTTP ${x.status}`,
          ),
        );
      }
    };
    x.send(body);
  });
}

// ------------------------------------------------------------------ shapes

export interface DoorRequests {
  count: number;
  errors: number;
  sumSeconds: number;
  buckets: number[];
}

export type NodeState = "alive" | "suspect" | "dead";

export interface ClusterNode {
  id: string;
  self: boolean;
  state: NodeState;
  admin: "active" | "draining" | "removed";
  zone: string;
  labels: Record<string, string>;
  api: string;
  s3: string;
  peer: string;
  replicas: number;
  leaders: number;
  ringPartitions: number;
  responded: boolean;
  error: string | null;
  version: string | null;
  uptimeSeconds: number | null;
  disk: { sizeBytes: number; freeBytes: number } | null;
  dataBytes: number | null;
  chunks: { count: number; bytes: number } | null;
  rssBytes: number | null;
  time: number | null;
  le: number[] | null;
  requests: Record<string, DoorRequests> | null;
}

export interface Bound {
  hex: string;
  label: string;
  pos: number;
}

export interface ShardView {
  id: string;
  start: Bound;
  end: Bound;
  replicas: string[];
  voters: string[] | null;
  learners: string[];
  leader: string | null;
  term: number | null;
  commit: number | null;
  moving: boolean;
  down: string[];
  health: "ok" | "degraded" | "no-leader";
}

export interface KeyspaceView {
  name: string;
  system: boolean;
  sharding: "hash" | "range";
  replicas: number;
  shards: ShardView[];
}

export interface ClusterView {
  self: string;
  time: number;
  ready: boolean;
  nodes: ClusterNode[];
  keyspaces: KeyspaceView[];
  summary: {
    nodes: number;
    alive: number;
    suspect: number;
    dead: number;
    shards: number;
    leaderless: number;
    degraded: number;
    moves: number;
  };
  ring: {
    version: number;
    partitions: number;
    replicas: number;
    perNode: Record<string, { primary: number; total: number }>;
  } | null;
}

export interface RingView {
  version?: number;
  partitions?: number;
  replicas?: number;
  ring: string[][] | null;
  perNode?: Record<string, { primary: number; total: number }>;
}

export interface Bucket {
  name: string;
  createdMs: number;
  owner: string;
  versioning: string | null;
  publicRead: boolean;
}

export interface ObjectEntry {
  key: string;
  size: number;
  etag: string;
  lastModifiedMs: number;
  contentType: string;
}

export interface ObjectList {
  bucket: string;
  prefix: string;
  objects: ObjectEntry[];
  prefixes: string[];
  next: string | null;
}

export interface KvEntry {
  key: string;
  revision: number;
  size: number;
  preview: string | null;
}

export interface KvList {
  keyspace: string;
  items: KvEntry[];
  next: string | null;
}

export interface KvValue {
  key: string;
  revision: number;
  size: number;
  text: boolean;
  value: string;
}
