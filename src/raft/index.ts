/** raft/: the Raft protocol as a pure, deterministic state machine. See docs/raft.md. */

export {
  allMembers,
  applyConfChange,
  decodeConfChange,
  encodeConfChange,
  isJoint,
} from "./confchange.js";
export * from "./quorum.js";
export {
  type ProgressStatus,
  type RaftConfig,
  type RaftStatus,
  RawNode,
  type TestingBugs,
} from "./raft.js";
export {
  bootstrapStorage,
  EMPTY_CONF,
  EMPTY_HARD_STATE,
  entryBytes,
  MemoryStorage,
  type RaftStorage,
} from "./storage.js";
export * from "./types.js";
export { invalidMessage } from "./validate.js";
