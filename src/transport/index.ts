/**
 * transport/: how nodes talk to each other (see docs/transport.md). The port is `Transport`;
 * `MemoryTransport` and `GrpcTransport` implement it, `FaultyTransport` wraps either one. This is
 * the only module that imports @grpc/grpc-js.
 */

export {
  batchBytesUpperBound,
  type Decoded,
  decodeBatch,
  decodeMessage,
  encodeBatch,
  encodeMessage,
  messageBytesUpperBound,
} from "./codec.js";
export {
  type FaultStats,
  FaultyTransport,
  type FaultyTransportOptions,
  NetworkFaults,
} from "./faulty.js";
export { GrpcTransport } from "./grpc.js";
export {
  GRPC_DEFAULTS,
  type GrpcTlsOptions,
  type GrpcTransportOptions,
  type GrpcTransportStats,
  type TlsSource,
  type TlsSourceMaterial,
} from "./grpc-options.js";
export { MemoryNetwork, MemoryTransport, type MemoryTransportOptions } from "./memory.js";
export {
  HEALTH_SERVICE,
  LOADER_OPTIONS,
  PEER_SERVICE,
  packageDefinition,
  protoDir,
} from "./protos.js";
export * from "./transport.js";
