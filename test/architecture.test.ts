/**
 * Guards for the architecture: raft/ and placement/ stay pure (no I/O, no clock, no timers,
 * no ambient randomness, no async), and imports flow one way between layers.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const root = join(fileURLToPath(import.meta.url), "../../..");

/** Things a pure, deterministic protocol core must never touch. */
const FORBIDDEN: readonly [RegExp, string][] = [
  [
    /^\s*import\s+(?!type\b)[^;]*from\s+["']node:/m,
    "a node:* runtime import (type-only imports are fine)",
  ],
  [
    /^\s*import\s+(?!type\b)[^;]*from\s+["'](?!\.{1,2}\/)[^"']+["']/m,
    "a third-party runtime import",
  ],
  [/\brequire\s*\(/, "require()"],
  [/\b(setTimeout|setInterval|setImmediate|queueMicrotask)\s*\(/, "a timer"],
  [/\bDate\b/, "the wall clock (Date)"],
  [/\bperformance\s*\./, "the monotonic clock (performance)"],
  [/\bMath\.random\b/, "ambient randomness (Math.random)"],
  [/\bprocess\s*\./, "the process object"],
  [/\b(async|await)\b/, "async code"],
  [/\bPromise\b/, "promises"],
  [/\bcrypto\b/, "crypto (randomness or I/O)"],
];

export function purityViolations(source: string): string[] {
  // Comments may mention the forbidden things (they explain why they are forbidden).
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
  return FORBIDDEN.filter(([re]) => re.test(code)).map(([, what]) => what);
}

function tsFiles(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((d) =>
    d.isDirectory()
      ? tsFiles(join(dir, d.name))
      : d.name.endsWith(".ts")
        ? [join(dir, d.name)]
        : [],
  );
}

/** Pure folders and the fewest files each must have (so a moved folder cannot pass vacuously). */
const PURE: readonly [string, number][] = [
  ["src/raft", 5],
  // The decision logic (ring, planners) and the metadata state machine: the simulator drives
  // them with a virtual clock, and a new placement leader must decide what the old one did.
  ["src/placement", 4],
];

for (const [dir, filesMin] of PURE) {
  test(`${dir} is pure: no I/O, clocks, timers, Math.random or async`, () => {
    const files = tsFiles(dir);
    assert.ok(files.length >= filesMin, `${dir}: ${files.length} files`);
    for (const f of files) {
      assert.deepEqual(purityViolations(readFileSync(join(root, f), "utf8")), [], f);
    }
  });
}

test("the purity guard itself catches each forbidden thing", () => {
  const bad = [
    'import { readFileSync } from "node:fs";',
    'import pino from "pino";',
    "const x = require('fs');",
    "setTimeout(() => 1, 10);",
    "const t = Date.now();",
    "const t = performance.now();",
    "const r = Math.random();",
    "process.exit(1);",
    "async function f() {}",
    "new Promise(() => {});",
  ];
  for (const line of bad) assert.notDeepEqual(purityViolations(line), [], line);
  assert.deepEqual(
    purityViolations('import type { Foo } from "node:fs";\n// Date.now() is banned\n'),
    [],
  );
  assert.deepEqual(purityViolations('import { assert } from "../base/index.js";'), []);
});

test("layers import only the layers below them", () => {
  // raft ← multiraft ← shard ← api ← node ← cli; storage and transport are ports used by them.
  // placement (decisions over the map) sits above raft and shard and below api and node.
  const forbidden: Record<string, readonly string[]> = {
    "src/storage": ["multiraft", "shard", "placement", "api", "node", "cli", "sim", "transport"],
    "src/transport": ["multiraft", "shard", "placement", "api", "node", "cli", "sim", "storage"],
    "src/multiraft": ["shard", "placement", "api", "node", "cli", "sim"],
    "src/shard": ["multiraft", "placement", "api", "node", "cli", "sim", "transport"],
    "src/placement": ["multiraft", "api", "node", "cli", "sim", "transport"],
    "src/blob": ["multiraft", "shard", "api", "node", "cli", "sim"],
    "src/api": ["node", "cli", "sim"],
    "src/node": ["cli", "sim"],
  };
  for (const [dir, banned] of Object.entries(forbidden)) {
    for (const f of tsFiles(dir)) {
      const src = readFileSync(join(root, f), "utf8");
      for (const m of src.matchAll(/from\s+["'](\.\.\/+[^"']+)["']/g)) {
        const layer = /^(?:\.\.\/)+([a-z]+)\//.exec(m[1] as string)?.[1];
        assert.ok(layer === undefined || !banned.includes(layer), `${f} imports ${m[1]}`);
      }
    }
  }
});

test("imports flow one way: raft depends only on base; base on nothing", () => {
  const allowed: Record<string, RegExp> = {
    "src/base": /^\.\/|^node:/,
    "src/raft": /^\.\/|^\.\.\/base\//,
    "src/placement": /^\.\/|^\.\.\/(?:base|raft|shard)\//,
  };
  for (const [dir, ok] of Object.entries(allowed)) {
    for (const f of tsFiles(dir)) {
      const src = readFileSync(join(root, f), "utf8");
      for (const m of src.matchAll(/from\s+["']([^"']+)["']/g)) {
        assert.match(m[1] as string, ok, `${f} imports ${m[1]}`);
      }
    }
  }
});

test("placement uses raft for its types only", () => {
  // The decisions need NodeId and friends, never a running Raft node.
  for (const f of tsFiles("src/placement")) {
    const src = readFileSync(join(root, f), "utf8");
    for (const m of src.matchAll(
      /^\s*(import|export)\s+(type\s+)?[^;]*from\s+["'](\.\.\/raft\/[^"']*)["']/gm,
    )) {
      assert.ok(m[2] !== undefined, `${f}: ${m[1]} from ${m[3]} must be type-only`);
    }
  }
});
