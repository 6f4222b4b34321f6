/**
 * The standard gRPC health service (grpc.health.v1.Health, proto/grpc/health/v1/health.proto),
 * so that load balancers, orchestrators and `grpc_health_probe` can ask a node whether it serves.
 * Two service names are known: "" (the whole server) and "kumo.v1.Peer"; both follow
 * `setServing` and start NOT_SERVING: a node reports SERVING only once its host says it is ready.
 */
import {
  type handleServerStreamingCall,
  type handleUnaryCall,
  type ServerWritableStream,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { PEER_SERVICE } from "./protos.js";

export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

interface HealthRequest {
  readonly service?: string;
}

interface HealthResponse {
  readonly status: ServingStatus;
}

interface HealthList {
  readonly statuses: Record<string, HealthResponse>;
}

/** One Watch call. At most one status waits behind a slow reader: only the newest matters. */
interface Watcher {
  readonly service: string;
  readonly call: ServerWritableStream<HealthRequest, HealthResponse>;
  lastSent: ServingStatus | undefined;
  blocked: boolean;
}

const KNOWN_SERVICES: readonly string[] = ["", PEER_SERVICE];

export class HealthServer {
  private serving = false;
  private closed = false;
  private readonly watchers = new Set<Watcher>();

  constructor(private readonly watchersMax: number) {}

  status(service: string): ServingStatus {
    if (!KNOWN_SERVICES.includes(service)) return "SERVICE_UNKNOWN";
    return this.serving ? "SERVING" : "NOT_SERVING";
  }

  setServing(serving: boolean): void {
    if (this.closed || serving === this.serving) return;
    this.serving = serving;
    for (const w of this.watchers) this.push(w);
  }

  /** Reports NOT_SERVING to every watcher and ends their calls (the server is going away). */
  close(): void {
    this.setServing(false);
    this.closed = true;
    for (const w of this.watchers) w.call.end();
    this.watchers.clear();
  }

  implementation(): UntypedServiceImplementation {
    const check: handleUnaryCall<HealthRequest, HealthResponse> = (call, callback) => {
      const service = call.request.service ?? "";
      const s = this.status(service);
      if (s === "SERVICE_UNKNOWN") {
        callback({ code: status.NOT_FOUND, details: `unknown service ${JSON.stringify(service)}` });
      } else {
        callback(null, { status: s });
      }
    };
    const list: handleUnaryCall<unknown, HealthList> = (_call, callback) => {
      const statuses: Record<string, HealthResponse> = {};
      for (const s of KNOWN_SERVICES) statuses[s] = { status: this.status(s) };
      callback(null, { statuses });
    };
    const watch: handleServerStreamingCall<HealthRequest, HealthResponse> = (call) => {
      if (this.closed) {
        call.emit("error", { code: status.UNAVAILABLE, details: "server stopping" });
        return;
      }
      if (this.watchers.size >= this.watchersMax) {
        call.emit("error", { code: status.RESOURCE_EXHAUSTED, details: "too many watchers" });
        return;
      }
      const w: Watcher = {
        service: call.request.service ?? "",
        call,
        lastSent: undefined,
        blocked: false,
      };
      this.watchers.add(w);
      call.on("cancelled", () => this.watchers.delete(w));
      this.push(w);
    };
    return { Check: check, List: list, Watch: watch };
  }

  private push(w: Watcher): void {
    const s = this.status(w.service);
    if (w.blocked || s === w.lastSent) return;
    w.lastSent = s;
    if (!w.call.write({ status: s })) {
      w.blocked = true;
      w.call.once("drain", () => {
        w.blocked = false;
        if (this.watchers.has(w)) this.push(w);
      });
    }
  }
}
