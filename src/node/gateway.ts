/**
 * The front of the API port, in front of the doors: request ids, request metrics and logs, the
 * probe and metrics endpoints, the admin API, and admission control for the KV door. The doors
 * themselves (kv/, /v1/cluster, /v1/keyspaces) are behind `next`; the request id is in the
 * response's `x-request-id` header from the start, for them to log.
 *
 * Probes, /metrics and admin requests are never rate limited or shed: an orchestrator must see a
 * busy node as alive, a scraper must see why it is busy, and an operator must be able to change
 * limits during a flood. They are cheap and answered before anything else.
 *
 * With tracing on (src/node/tracing.ts), every request but the probes and /metrics is served
 * under a server span (`PUT /v1/kv/{keyspace}/{key}`), a child of the caller's `traceparent`
 * if it sent one; everything the request causes, on this node and others, joins its trace.
 */
import { timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import type { AdminHttpApi } from "../api/admin/limits-http.js";
import { HttpError, sendError, sendJson, statusAtClose } from "../api/kv/http.js";
import type { Limiter } from "../api/limits.js";
import { tracing } from "../base/index.js";
import type { EventLoopMonitor, Readiness } from "./health.js";
import { READY_REASONS_MAX } from "./health.js";
import { type Logger, requestIdOf, traceFields } from "./log.js";
import type { Door, NodeMetrics } from "./metrics.js";

export interface GatewayOptions {
  readonly nodeId: string;
  readonly log: Logger;
  readonly metrics: NodeMetrics;
  readonly limiter: Limiter;
  readonly loop: EventLoopMonitor;
  readonly admin: AdminHttpApi;
  /** Bearer tokens of the KV door: each one is a tenant with its own bucket. */
  readonly tokens: readonly string[];
  /**
   * The rate-limit tenant of a request, from verified credentials only (the node's
   * authenticator, which also knows token records); absent: by index in `tokens`.
   */
  readonly tenantOf?: (req: IncomingMessage) => string | undefined;
  readonly readiness: () => Readiness;
}

export function route(method: string, path: string): { door: Door; op: string } {
  if (path === "/v1/kv" || path.startsWith("/v1/kv/")) {
    const rest = path.slice("/v1/kv/".length);
    if (rest === "" || path === "/v1/kv") return { door: "kv", op: "other" };
    const hasKey = rest.includes("/");
    if (!hasKey) return { door: "kv", op: method === "GET" ? "list" : "other" };
    switch (method) {
      case "PUT":
        return { door: "kv", op: "put" };
      case "GET":
      case "HEAD":
        return { door: "kv", op: "get" };
      case "DELETE":
        return { door: "kv", op: "delete" };
      default:
        return { door: "kv", op: "other" };
    }
  }
  switch (path) {
    case "/healthz":
      return { door: "system", op: "healthz" };
    case "/readyz":
      return { door: "system", op: "readyz" };
    case "/metrics":
      return { door: "system", op: "metrics" };
    case "/v1/cluster":
      return { door: "admin", op: "cluster" };
    case "/v1/admin/limits":
      return { door: "admin", op: "limits" };
  }
  if (path === "/v1/keyspaces" || path.startsWith("/v1/keyspaces/"))
    return { door: "admin", op: "keyspaces" };
  if (path.startsWith("/v1/admin/console/")) return { door: "admin", op: "console" };
  if (path.startsWith("/v1/admin/")) return { door: "admin", op: "other" };
  return { door: "other", op: "other" };
}

/** The route template of a request (no keys or names: they may be private), for span names. */
export function httpRoute(door: Door, op: string, path: string): string | undefined {
  switch (door) {
    case "kv": {
      const rest = path.slice("/v1/kv/".length);
      if (path === "/v1/kv" || rest === "") return "/v1/kv";
      return rest.includes("/") ? "/v1/kv/{keyspace}/{key}" : "/v1/kv/{keyspace}";
    }
    case "admin":
      if (op === "keyspaces") return path === "/v1/keyspaces" ? path : "/v1/keyspaces/{name}";
      if (op === "cluster" || op === "limits") return path;
      return "/v1/admin/{...}";
    default:
      return undefined;
  }
}

export class Gateway {
  private readonly tokenBuffers: readonly Buffer[];
  private readonly startedMs = performance.now();

  constructor(private readonly opts: GatewayOptions) {
    this.tokenBuffers = opts.tokens.map((t) => Buffer.from(t));
  }

  /**
   * The tenant of a request: the index of the configured token it presents (compared in
   * constant time), or undefined without a valid one (the door then answers 401).
   */
  private tenantOf(req: IncomingMessage): string | undefined {
    if (this.opts.tenantOf) return this.opts.tenantOf(req);
    const h = req.headers.authorization;
    if (!h?.startsWith("Bearer ")) return undefined;
    const given = Buffer.from(h.slice(7).trim());
    let found: number | undefined;
    for (const [i, want] of this.tokenBuffers.entries()) {
      if (want.byteLength === given.byteLength && timingSafeEqual(want, given)) found = i;
    }
    return found === undefined ? undefined : `t${found}`;
  }

  serve(req: IncomingMessage, res: ServerResponse, next: () => Promise<void>): void {
    const t0 = performance.now();
    const requestId = requestIdOf(req);
    res.setHeader("x-request-id", requestId);
    const path = (req.url ?? "/").split("?", 1)[0] as string;
    const method = req.method ?? "GET";
    const { door, op } = route(method, path);
    const { metrics, log } = this.opts;
    metrics.requestStarted();
    let release: (() => void) | undefined;
    // Probes and scrapes are not traced: they would bury the requests worth looking at.
    const parent =
      tracing.on && door !== "system" ? propagation.extract(ROOT_CONTEXT, req.headers) : undefined;
    const span = parent && this.requestSpan(parent, method, door, op, path, requestId);
    res.once("close", () => {
      release?.();
      const status = statusAtClose(res);
      const seconds = (performance.now() - t0) / 1000;
      const ms = Math.round(seconds * 10_000) / 10;
      metrics.observeRequest(door, op, status, seconds);
      if (span) {
        span.setAttribute("http.response.status_code", status);
        if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
      }
      if (status >= 500 && status !== 503) {
        log.warn(
          { reqId: requestId, method, path, status, ms, ...traceFields(span) },
          "request failed",
        );
      } else if (log.isLevelEnabled("debug")) {
        log.debug({ reqId: requestId, method, path, status, ms, ...traceFields(span) }, "request");
      }
    });

    if (door === "kv") {
      const tenant = this.tenantOf(req);
      if (tenant !== undefined) {
        const a = this.opts.limiter.admit(tenant);
        if (!a.ok) {
          // The refusal path is the flood's path: answered at once, without an exception.
          metrics.refused(a.reason);
          sendJson(
            res,
            429,
            { error: { code: a.code, message: a.message } },
            { "retry-after": String(a.retryAfterSeconds) },
          );
          return;
        }
        release = a.release;
      }
    }
    const handle = async (): Promise<void> => {
      try {
        if (door === "system") return await this.system(op, req, res);
        if (door === "admin") {
          const url = new URL(req.url ?? "/", "http://kumo");
          if (await this.opts.admin.handle(req, res, url)) return;
        }
        await next();
      } catch (err) {
        if (err instanceof HttpError) return sendError(res, err);
        log.error({ reqId: requestId, err }, "internal error");
        sendError(res, new HttpError(500, "INTERNAL", "internal error; see the node's log"));
      }
    };
    if (parent && span) void context.with(trace.setSpan(parent, span), handle);
    else void handle();
  }

  /** The request's server span (only made while tracing is on). */
  private requestSpan(
    parent: Context,
    method: string,
    door: Door,
    op: string,
    path: string,
    requestId: string,
  ): Span {
    const route = httpRoute(door, op, path);
    return trace.getTracer("kumo.gateway").startSpan(
      route === undefined ? method : `${method} ${route}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "http.request.method": method,
          ...(route === undefined ? {} : { "http.route": route }),
          "kumo.node": this.opts.nodeId,
          "kumo.door": door,
          "kumo.op": op,
          "kumo.request_id": requestId,
        },
      },
      parent,
    );
  }

  private async system(op: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const node = this.opts.nodeId;
    switch (op) {
      case "healthz":
        // Answered from memory: if this answers at all, the event loop turns; the delay says
        // how well. Never 503 for load: restarting a busy node would only make things worse.
        return sendJson(res, 200, {
          status: "ok",
          node,
          eventLoopDelayMsP99: Math.round(this.opts.loop.delayMsP99() * 10) / 10,
          uptimeSeconds: Math.round((performance.now() - this.startedMs) / 1000),
        });
      case "readyz": {
        const r = this.opts.readiness();
        if (r.ready) return sendJson(res, 200, { status: "ready", node });
        const first = r.reasons[0]?.code;
        const status =
          first === "STARTING"
            ? "starting"
            : first === "DRAINING"
              ? "draining"
              : first === "STOPPING"
                ? "stopping"
                : "degraded";
        return sendJson(
          res,
          503,
          {
            status,
            node,
            reasons: r.reasons.slice(0, READY_REASONS_MAX),
            reasonsOmitted: Math.max(0, r.reasons.length - READY_REASONS_MAX),
            unavailableShards: r.unavailableShards,
          },
          { "retry-after": "1" },
        );
      }
      case "metrics": {
        if (req.method !== "GET" && req.method !== "HEAD")
          throw new HttpError(405, "METHOD_NOT_ALLOWED", "GET only", { allow: "GET" });
        const text = await this.opts.metrics.render();
        res.writeHead(200, {
          "content-type": this.opts.metrics.contentType,
          "content-length": Buffer.byteLength(text),
        });
        res.end(req.method === "HEAD" ? undefined : text);
        return;
      }
    }
  }
}
