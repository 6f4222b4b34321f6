/** Helpers shared by the storage tests: temporary LMDB directories that are always removed. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LmdbEngine, type LmdbEngineOptions } from "../../src/storage/index.js";

export async function tempDir(tag: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `kumo-${tag}-`));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Runs `body` with a fresh LmdbEngine in a temp dir; closes it and removes the dir after. */
export async function withLmdb<T>(
  body: (engine: LmdbEngine, dir: string) => Promise<T>,
  opts: LmdbEngineOptions = {},
): Promise<T> {
  const dir = await tempDir("lmdb");
  const engine = await LmdbEngine.open(dir, opts);
  try {
    return await body(engine, dir);
  } finally {
    await engine.close().catch(() => {});
    await removeDir(dir);
  }
}
