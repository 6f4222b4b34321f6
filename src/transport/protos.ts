/**
 * Loads the .proto schemas (proto/) at runtime with @grpc/proto-loader. One set of loader options
 * for every schema, because they decide the JavaScript shape of every message: the codec
 * (codec.ts), the server, the clients and the tests must all agree on it.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import { loadSync, type Options, type PackageDefinition } from "@grpc/proto-loader";
import { assert } from "../base/index.js";

/**
 * - `keepCase: false`: fields become camelCase (`log_term` → `logTerm`), like the TypeScript types.
 * - `longs: Number`: uint64 fields are plain numbers; Raft indexes and terms stay below 2^53.
 * - `enums: String`: enum values are their names, so a value unknown to this build stays a
 *   number and the codec rejects it instead of misreading it.
 * - `bytes: Buffer`: what protobufjs produces in Node anyway; the codec copies into Uint8Array.
 * - `defaults`/`arrays`: absent scalars and lists read as their zero value, never undefined
 *   (proto3 does not encode zero values, so "absent" is the common case).
 */
export const LOADER_OPTIONS: Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  bytes: Buffer,
  defaults: true,
  arrays: true,
  oneofs: true,
};

export const PEER_SERVICE = "kumo.v1.Peer";
export const HEALTH_SERVICE = "grpc.health.v1.Health";

/**
 * The proto/ directory. From dist/src/transport/ it is three levels up; from src/transport/ (when
 * run by a TypeScript loader) two. Resolved from this module's URL, never from the working
 * directory, so a node started anywhere finds it.
 */
export function protoDir(): string {
  const candidates = ["../../../proto", "../../proto"].map((p) =>
    fileURLToPath(new URL(p, import.meta.url)),
  );
  const found = candidates.find((d) => existsSync(`${d}/kumo/v1/peer.proto`));
  assert(found !== undefined, () => `proto/ not found; looked in ${candidates.join(", ")}`);
  return found;
}

let cached: PackageDefinition | undefined;

/** Both schemas, parsed once per process (parsing takes tens of milliseconds). */
export function packageDefinition(): PackageDefinition {
  cached ??= loadSync(["kumo/v1/peer.proto", "grpc/health/v1/health.proto"], {
    ...LOADER_OPTIONS,
    includeDirs: [protoDir()],
  });
  return cached;
}

function service(name: string): ServiceDefinition {
  const def = packageDefinition()[name];
  // A service entry is an object of method definitions; message entries have a `format` field.
  assert(def !== undefined && !("format" in def), `${name} is not a service in proto/`);
  return def as unknown as ServiceDefinition;
}

export function peerService(): ServiceDefinition {
  return service(PEER_SERVICE);
}

export function healthService(): ServiceDefinition {
  return service(HEALTH_SERVICE);
}

/** A method of a service definition, typed by its request and response objects. */
export function method<Req, Res>(svc: ServiceDefinition, name: string): MethodDefinition<Req, Res> {
  const m = svc[name];
  assert(m !== undefined, `no method ${name}`);
  return m as MethodDefinition<Req, Res>;
}
