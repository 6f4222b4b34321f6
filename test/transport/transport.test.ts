/** The one Transport contract (contract.ts), run against both implementations. */
import { GrpcTransport, MemoryNetwork, type MemoryTransport } from "../../src/transport/index.js";
import { transportContract } from "./contract.js";

transportContract<MemoryTransport>("MemoryTransport", () => {
  const network = new MemoryNetwork();
  return {
    create: (id, o) =>
      network.transport(id, { queueBatchesMax: o.queueBatchesMax, address: o.address }),
    addressOf: (t) => t.address(),
  };
});

transportContract<GrpcTransport>("GrpcTransport", () => ({
  create: (id, o) =>
    new GrpcTransport({
      self: id,
      listen: o.address ?? "127.0.0.1:0",
      queueBatchesMax: o.queueBatchesMax,
      // Fast reconnects and a short stop grace keep the suite quick; the logic is the same.
      reconnectDelayMsMin: 20,
      reconnectDelayMsMax: 200,
      stopGraceMs: 300,
      // Several chunks per test snapshot, so that reassembly is exercised.
      snapshotChunkBytes: 256 * 1024,
    }),
  addressOf: (t) => t.address(),
  snapshotsStreamed: (t) => t.stats().snapshotsStreamed,
}));
