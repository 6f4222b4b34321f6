/**
 * Distributed tracing with OpenTelemetry: the SDK setup of one node process, from the standard
 * `OTEL_*` environment variables (docs/operations.md, "Tracing").
 *
 * Off by default. On only when the variables ask for it:
 * - `OTEL_SDK_DISABLED=true` turns it off whatever else is set;
 * - `OTEL_TRACES_EXPORTER=otlp` turns it on (`none` off; nothing else is supported);
 * - otherwise `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` turns it on.
 *
 * When on: spans go to an OTLP/HTTP collector (JSON, `@opentelemetry/exporter-trace-otlp-http`,
 * which reads the `OTEL_EXPORTER_OTLP_*` endpoint, headers and timeout) through a batch
 * processor (`OTEL_BSP_*`); sampling follows `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`
 * (default parentbased_always_on); the resource is `service.name` = `OTEL_SERVICE_NAME` or
 * `kumo`, `service.instance.id` = the node id, plus `OTEL_RESOURCE_ATTRIBUTES`. Trace context
 * crosses processes as W3C `traceparent`/`tracestate`: HTTP headers at the doors, gRPC metadata
 * on peer calls, and `GroupMessage.traces` in Raft batches (src/multiraft/host.ts).
 *
 * The layers below use only `@opentelemetry/api` and check `tracing.on` (src/base/tracing.ts)
 * first, so when off they make no span, context or carrier at all.
 */
import {
  context,
  type DiagLogger,
  DiagLogLevel,
  diag,
  propagation,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import {
  defaultResource,
  detectResources,
  envDetector,
  resourceFromAttributes,
} from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { setTracing } from "../base/index.js";

export interface TracingDecision {
  readonly enabled: boolean;
  /** Which variable decided, for the start-up log line. */
  readonly reason: string;
  /** Something set that this node ignores (e.g. a protocol other than http/json). */
  readonly warning?: string;
}

function truthy(v: string | undefined): boolean {
  return v !== undefined && v.trim().toLowerCase() === "true";
}

/** Whether `env` turns tracing on (see the module comment). */
export function tracingDecision(env: NodeJS.ProcessEnv): TracingDecision {
  if (truthy(env.OTEL_SDK_DISABLED)) return { enabled: false, reason: "OTEL_SDK_DISABLED=true" };
  const protocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL;
  const warning =
    protocol !== undefined && protocol.trim() !== "" && protocol.trim() !== "http/json"
      ? `OTLP protocol ${protocol} is not supported: spans are sent as http/json`
      : undefined;
  const on = (reason: string): TracingDecision =>
    warning === undefined ? { enabled: true, reason } : { enabled: true, reason, warning };
  const exporters = (env.OTEL_TRACES_EXPORTER ?? "")
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== "");
  if (exporters.length > 0) {
    if (exporters.includes("none")) return { enabled: false, reason: "OTEL_TRACES_EXPORTER=none" };
    if (exporters.includes("otlp")) return on("OTEL_TRACES_EXPORTER=otlp");
    return {
      enabled: false,
      reason: `OTEL_TRACES_EXPORTER=${env.OTEL_TRACES_EXPORTER}`,
      warning: `OTEL_TRACES_EXPORTER=${env.OTEL_TRACES_EXPORTER}: only otlp (or none) is supported; tracing stays off`,
    };
  }
  if (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return on("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  if (env.OTEL_EXPORTER_OTLP_ENDPOINT) return on("OTEL_EXPORTER_OTLP_ENDPOINT");
  return { enabled: false, reason: "no OTEL_* variable asks for traces" };
}

export interface Tracing {
  readonly enabled: boolean;
  /** Exports what is buffered. */
  forceFlush(): Promise<void>;
  /** Exports what is buffered, stops tracing and unregisters the SDK (idempotent, never fails). */
  shutdown(): Promise<void>;
}

/** How long stopping waits for the last spans to be exported. */
const SHUTDOWN_WAIT_MS = 3_000;

const OFF: Tracing = {
  enabled: false,
  forceFlush: () => Promise.resolve(),
  shutdown: () => Promise.resolve(),
};

/** Where the SDK reports its own problems (an unreachable collector, say). */
export interface TracingLog {
  warn(o: object, msg: string): void;
  info(o: object, msg: string): void;
}

export interface TracingOptions {
  readonly nodeId: string;
  readonly log: TracingLog;
  readonly version?: string;
  /** The variables to decide from (process.env by default; the SDK reads process.env). */
  readonly env?: NodeJS.ProcessEnv;
  /** Tests: where spans go instead of the OTLP exporter (tracing is then on regardless). */
  readonly spanProcessor?: SpanProcessor;
}

/** The SDK reports export errors as JSON with a stack: the message is enough. */
function brief(message: string): string {
  if (!message.startsWith("{")) return message;
  try {
    const o = JSON.parse(message) as { message?: unknown };
    return typeof o.message === "string" ? o.message : message;
  } catch {
    return message;
  }
}

/** The SDK's own messages, at most one line per minute (a collector that is down says so often). */
function diagLogger(log: TracingLog): DiagLogger {
  let lastMs = Number.NEGATIVE_INFINITY;
  let dropped = 0;
  const warn = (message: string, ...args: unknown[]): void => {
    const now = Date.now();
    if (now - lastMs < 60_000) {
      dropped++;
      return;
    }
    lastMs = now;
    const detail = args.map((a) => (a instanceof Error ? a.message : String(a))).join(" ");
    log.warn(
      { otel: `${brief(message)}${detail ? ` ${detail}` : ""}`, dropped },
      "tracing problem",
    );
    dropped = 0;
  };
  const ignore = (): void => {};
  return { error: warn, warn, info: ignore, debug: ignore, verbose: ignore };
}

/**
 * Starts tracing for this process if the environment asks for it (or a test passes a span
 * processor). Registers the global tracer provider, the async context manager and the W3C
 * propagator; returns a handle whose `shutdown` flushes and undoes all of it. Only one tracing
 * setup can be active in a process: a second one stays off.
 */
export function startTracing(opts: TracingOptions): Tracing {
  const decision = opts.spanProcessor
    ? { enabled: true, reason: "test span processor" }
    : tracingDecision(opts.env ?? process.env);
  if ("warning" in decision && decision.warning) opts.log.warn({}, decision.warning);
  if (!decision.enabled) return OFF;
  // First, so that the exporter's complaints about its configuration are logged too.
  diag.setLogger(diagLogger(opts.log), {
    logLevel: DiagLogLevel.WARN,
    suppressOverrideMessage: true,
  });

  const resource = defaultResource()
    .merge(
      resourceFromAttributes({
        "service.name": "kumo",
        "service.instance.id": opts.nodeId,
        ...(opts.version ? { "service.version": opts.version } : {}),
      }),
    )
    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the defaults above.
    .merge(detectResources({ detectors: [envDetector] }));
  const provider = new BasicTracerProvider({
    resource,
    spanProcessors: [opts.spanProcessor ?? new BatchSpanProcessor(new OTLPTraceExporter())],
  });
  const contextManager = new AsyncLocalStorageContextManager().enable();
  if (!context.setGlobalContextManager(contextManager)) {
    contextManager.disable();
    opts.log.warn({}, "tracing already set up in this process; this one stays off");
    void provider.shutdown();
    return OFF;
  }
  trace.setGlobalTracerProvider(provider);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  setTracing(true);
  opts.log.info({ reason: decision.reason }, "tracing on");

  let stopped: Promise<void> | undefined;
  return {
    enabled: true,
    forceFlush: () => provider.forceFlush(),
    shutdown: () => {
      stopped ??= (async () => {
        setTracing(false);
        try {
          // The last spans may not make it (the collector is down or slow): stopping the node
          // waits for them at most SHUTDOWN_WAIT_MS.
          let timer: NodeJS.Timeout | undefined;
          const late = new Promise<string>((resolve) => {
            timer = setTimeout(
              () => resolve(`not done after ${SHUTDOWN_WAIT_MS} ms`),
              SHUTDOWN_WAIT_MS,
            );
          });
          const failed = await Promise.race([
            provider.shutdown().then(
              () => undefined,
              (err: unknown) => brief(String((err as Error)?.message ?? err)),
            ),
            late,
          ]);
          clearTimeout(timer);
          if (failed !== undefined)
            opts.log.warn({ otel: failed }, "tracing: last spans not exported");
        } finally {
          trace.disable();
          propagation.disable();
          context.disable();
          diag.disable();
        }
      })();
      return stopped;
    },
  };
}
