#!/usr/bin/env node
// Runs every compiled test file (dist/**/*.test.js) with node's built-in test runner, so that
// the runner's own summary is the last thing printed. Extra arguments are passed to node --test
// (e.g. `npm test -- --test-name-pattern=lease`).
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";

function find(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = join(dir, d.name);
    if (d.isDirectory()) return find(p);
    return d.name.endsWith(".test.js") ? [p] : [];
  });
}

const files = find("dist/test").sort();
if (files.length === 0) {
  console.error("no test files under dist/test: did the build run?");
  process.exit(1);
}
const r = spawnSync(
  process.execPath,
  ["--test", "--test-reporter=spec", ...process.argv.slice(2), ...files],
  {
    stdio: "inherit",
  },
);
process.exit(r.status ?? 1);
