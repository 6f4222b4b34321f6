/**
 * A minimal HTTP client for the chaos workload, on node:http rather than fetch: the history's
 * "fail" status needs to know whether a request could have left the machine, and fetch's
 * (undici's) error wrapping and connection reuse make that hard to see. node:http never
 * retries by itself, so one call is at most one request on the wire.
 */
import { Agent, type IncomingHttpHeaders, request } from "node:http";
import type { HttpOutcome } from "./history.js";

export interface HttpTarget {
  /** HOST:PORT of a node's API. */
  readonly address: string;
  readonly agent: Agent;
}

/** Sockets kept per node: enough for every worker to have one in flight, bounded. */
const SOCKETS_PER_NODE_MAX = 32;

export function target(address: string): HttpTarget {
  return {
    address,
    agent: new Agent({ keepAlive: true, maxSockets: SOCKETS_PER_NODE_MAX, timeout: 30_000 }),
  };
}

export interface Request {
  readonly method: "GET" | "PUT" | "DELETE" | "POST";
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body?: string;
  readonly timeoutMs: number;
}

/** Sends one request; never throws. A timeout is an error with code TIMEOUT. */
export async function send(t: HttpTarget, req: Request): Promise<HttpOutcome> {
  const { body, ...rest } = req;
  const o = await exchange(t, {
    ...rest,
    ...(body !== undefined ? { body: Buffer.from(body) } : {}),
  });
  // A cut answer is what node:http reports as a reset connection.
  if (o.kind === "cut") return { kind: "error", code: "ECONNRESET", message: "aborted" };
  if (o.kind === "error") return { kind: "error", code: o.code, message: o.message };
  const etag = o.headers.etag ?? o.headers["x-kumo-revision"];
  const rev = typeof etag === "string" ? Number(etag.replace(/^W\//, "").replace(/"/g, "")) : NaN;
  return {
    kind: "answer",
    status: o.status,
    body: o.body.toString("utf8"),
    revision: Number.isSafeInteger(rev) ? rev : undefined,
  };
}

/** A request whose body is bytes (the S3 workload); the answer's body and headers come back raw. */
export interface RawRequest {
  readonly method: "GET" | "PUT" | "DELETE" | "POST" | "HEAD";
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body?: Uint8Array;
  readonly timeoutMs: number;
}

export type RawOutcome =
  | {
      readonly kind: "answer";
      readonly status: number;
      readonly headers: IncomingHttpHeaders;
      readonly body: Buffer;
    }
  | {
      readonly kind: "error";
      /** ECONNREFUSED, ECONNRESET, TIMEOUT, ABORTED (the answer was cut short), ... */
      readonly code: string;
      readonly message: string;
      /** The status line, when the answer started before it was cut short. */
      readonly status?: number;
    };

/**
 * Like `send`, for byte bodies and raw answers. One difference that matters for objects: an
 * answer cut short (the server closed the connection mid-body, as the S3 door does when a
 * download fails after its first bytes) is an error (ABORTED), never a short body.
 */
export async function sendRaw(t: HttpTarget, req: RawRequest): Promise<RawOutcome> {
  // (Always with a Content-Length, 0 without a body.)
  const o = await exchange(t, { ...req, body: req.body ?? new Uint8Array(0) });
  if (o.kind === "cut")
    return { kind: "error", code: "ABORTED", message: "answer cut short", status: o.status };
  return o;
}

type Exchanged =
  | Extract<RawOutcome, { kind: "answer" }>
  | {
      readonly kind: "error";
      readonly code: string;
      readonly message: string;
      readonly status?: number;
    }
  /** The answer started (status line) but its body was cut short. */
  | { readonly kind: "cut"; readonly status: number };

/** One request on the wire, its whole answer or what went wrong; never throws. */
function exchange(t: HttpTarget, req: RawRequest): Promise<Exchanged> {
  const [host, port] = splitAddress(t.address);
  return new Promise((resolve) => {
    let done = false;
    const finish = (o: Exchanged): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(o);
    };
    const headers: Record<string, string | number> = { ...req.headers };
    if (req.body !== undefined) headers["content-length"] = req.body.byteLength;
    const r = request(
      { host, port, method: req.method, path: req.path, headers, agent: t.agent },
      (res) => {
        const parts: Buffer[] = [];
        const status = res.statusCode ?? 0;
        res.on("data", (d: Buffer) => parts.push(d));
        res.on("end", () => {
          if (!res.complete) return finish({ kind: "cut", status });
          finish({ kind: "answer", status, headers: res.headers, body: Buffer.concat(parts) });
        });
        res.on("aborted", () => finish({ kind: "cut", status }));
        res.on("close", () => {
          if (!res.complete) finish({ kind: "cut", status });
        });
        res.on("error", (e: NodeJS.ErrnoException) =>
          finish({ kind: "error", code: e.code ?? "ERESPONSE", message: e.message, status }),
        );
      },
    );
    const timer = setTimeout(() => {
      finish({ kind: "error", code: "TIMEOUT", message: `no answer within ${req.timeoutMs} ms` });
      r.destroy();
    }, req.timeoutMs);
    r.on("error", (e: NodeJS.ErrnoException) =>
      finish({ kind: "error", code: e.code ?? "EREQUEST", message: e.message }),
    );
    r.end(req.body);
  });
}

export function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(":");
  return [address.slice(0, i), Number(address.slice(i + 1))];
}
