/** shard/: the replicated state machine of a shard (ordered KV with revisions) and the shard map. */
export * from "./command.js";
export * from "./machine.js";
export * from "./map.js";
