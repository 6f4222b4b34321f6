/**
 * blob/: the content-addressed chunk layer of the object store (see DESIGN.md "blob/").
 * `ChunkStore` keeps verified chunk files on one node's disk; `BlobService` writes chunks to a
 * quorum of their ring owners, reads them from any replica with hash verification, caching
 * and request coalescing, and keeps the replicas whole (resync queue, scrubber, anti-entropy,
 * offload after ring changes, GC). The `blob.*` transport methods are described in wire.ts.
 */
export { CACHE_ENTRY_OVERHEAD_BYTES, ChunkCache } from "./cache.js";
export {
  CHUNK_BYTES_MAX,
  type ChunkDeleteResult,
  type ChunkFilter,
  type ChunkGetResult,
  type ChunkInfo,
  type ChunkIoError,
  type ChunkPutResult,
  ChunkStore,
  type ChunkStoreOptions,
  type ChunkStoreStats,
  HASH_BYTES,
  hashHex,
  isHashHex,
  type PutOptions,
  QUARANTINE_DIR,
  sha256,
} from "./chunks.js";
export {
  type ChunkOptions,
  classDirName,
  classMethodPrefix,
  ReplicationClasses,
  ringCut,
} from "./classes.js";
export {
  RESYNC_DEFAULTS,
  type ResyncEntry,
  ResyncQueue,
  type ResyncQueueOptions,
} from "./resync.js";
export {
  type AntiEntropyReport,
  type BackgroundOptions,
  BLOB_DEFAULTS,
  BlobService,
  type BlobServiceOptions,
  type BlobStats,
  type BlobTransport,
  type GcReport,
  type GetChunkResult,
  type PutChunkResult,
  type ResyncReport,
  type RingView,
  type ScrubReport,
} from "./service.js";
export {
  BLOB_GET,
  BLOB_HAS,
  BLOB_INVENTORY,
  BLOB_METHOD_PREFIX,
  BLOB_PUSH,
  BLOB_PUT,
  type BlobMethods,
  blobMethods,
  HAS_HASHES_MAX,
  INVENTORY_DIGESTS_MAX,
  INVENTORY_PAGE_MAX,
} from "./wire.js";
