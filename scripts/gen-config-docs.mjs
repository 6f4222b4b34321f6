#!/usr/bin/env node
// Prints the option table of docs/configuration.md from the one definition in src/node/config.ts
// (run after `npm run build`). test/node/config.test.ts fails when the document drifts.
import { envName, OPTIONS } from "../dist/src/node/config.js";

const rows = OPTIONS.map((o) => {
  const def =
    o.def === undefined
      ? o.required
        ? "required"
        : "unset"
      : Array.isArray(o.def)
        ? o.def.length
          ? o.def.join(",")
          : "none"
        : String(o.def);
  return `| \`--${o.flag}\` | \`${envName(o.flag)}\` | \`${o.key}\` | ${def} | ${o.help} |`;
});
console.log(
  "| flag | environment | YAML key | default | meaning |\n| --- | --- | --- | --- | --- |\n" +
    rows.join("\n"),
);
