/**
 * Checks shared by both engines, so that code tested against MemoryEngine cannot rely on
 * anything LmdbEngine would refuse.
 */
import { assert } from "../base/index.js";
import type { ScanOptions, WriteOp } from "./engine.js";
import { KEY_BYTES_MAX, VALUE_BYTES_MAX } from "./keys.js";

function checkKey(key: Uint8Array, what: string): void {
  assert(
    key instanceof Uint8Array && key.length > 0 && key.length <= KEY_BYTES_MAX,
    () => `${what} must be 1..${KEY_BYTES_MAX} bytes, got ${key?.length}`,
  );
}

/**
 * Asserts that every op is well formed (keys 1..KEY_BYTES_MAX bytes, values at most
 * VALUE_BYTES_MAX) and returns the batch's logical size (keys and values). Checked before
 * anything is applied, so a bad batch is refused whole and never half-applied.
 */
export function checkOps(ops: readonly WriteOp[]): number {
  let bytes = 0;
  for (const o of ops) {
    switch (o.op) {
      case "put":
        checkKey(o.key, "key");
        assert(
          o.value instanceof Uint8Array && o.value.length <= VALUE_BYTES_MAX,
          () => `value must be a Uint8Array of at most ${VALUE_BYTES_MAX} bytes`,
        );
        bytes += o.key.length + o.value.length;
        break;
      case "del":
        checkKey(o.key, "key");
        bytes += o.key.length;
        break;
      case "delRange":
        checkKey(o.start, "delRange start");
        checkKey(o.end, "delRange end");
        bytes += o.start.length + o.end.length;
        break;
      default:
        assert(false, () => `unknown write op ${JSON.stringify((o as { op: unknown }).op)}`);
    }
  }
  return bytes;
}

/** The scan limit as a count (unbounded when absent); asserts it is a non-negative integer. */
export function scanLimit(opts: ScanOptions | undefined): number {
  const limit = opts?.limit ?? Number.POSITIVE_INFINITY;
  assert(
    limit === Number.POSITIVE_INFINITY || (Number.isInteger(limit) && limit >= 0),
    () => `scan limit must be a non-negative integer, got ${limit}`,
  );
  return limit;
}
