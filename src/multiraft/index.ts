/** multiraft/: many Raft groups on one node, one loop, group commit, batching, quiescence. */
export * from "./host.js";
