/**
 * placement/: the cluster map's vocabulary, the chunk ring and the pure schedulers (no I/O,
 * no clock, no randomness). See docs/placement.md.
 */

export * from "./chunkring.js";
export * from "./keyspaces.js";
export * from "./liveness.js";
export * from "./membership.js";
export * from "./planner.js";
export * from "./ring.js";
export * from "./types.js";
