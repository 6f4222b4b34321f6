/** storage/: the node-local storage layer. See docs/storage.md. */

export type { EngineStats, ScanOptions, StorageEngine, WriteOp } from "./engine.js";
export {
  bytesStr,
  compareBytes,
  concat,
  decodeU64,
  fromHex,
  hasPrefix,
  KEY_BYTES_MAX,
  keyAfter,
  prefixEnd,
  strBytes,
  toHex,
  u64,
  VALUE_BYTES_MAX,
  writeU64,
} from "./keys.js";
export { EngineFailedError, LmdbEngine, type LmdbEngineOptions } from "./lmdb.js";
export { MemoryEngine } from "./memory.js";
export {
  CorruptionError,
  decodeEntry,
  encodeEntry,
  entryKey,
  GroupStorage,
  type SnapshotProvider,
  TAIL_BYTES_MAX,
  TAIL_ENTRIES_MAX,
  type TailCacheLimits,
} from "./raftstore.js";
