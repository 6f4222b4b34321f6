import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { ConfigError, envName, OPTIONS, resolveConfig } from "../../src/node/config.js";
import { SHARD_KEY_BYTES_MAX } from "../../src/shard/index.js";

const root = join(fileURLToPath(import.meta.url), "../../../..");

test("flags beat environment beat file beat defaults", () => {
  const dir = mkdtempSync(join(tmpdir(), "kumo-cfg-"));
  const file = join(dir, "n.yaml");
  writeFileSync(
    file,
    "id: from-file\ndata: /d\nvalueBytesMax: 300\nkey-bytes-max: 50\nshards: 4\n",
  );
  const cfg = resolveConfig(
    { config: file, valueBytesMax: "100" },
    { KUMO_KEY_BYTES_MAX: "60", KUMO_ID: "from-env" },
  );
  assert.equal(cfg.valueBytesMax, 100); // flag
  assert.equal(cfg.keyBytesMax, 60); // env over file
  assert.equal(cfg.id, "from-env");
  assert.equal(cfg.shards, 4); // file
  assert.equal(cfg.replicas, 3); // default
});

test("bad configuration is refused with a message naming the option", () => {
  const base = { id: "n1", data: "/d" };
  assert.throws(
    () => resolveConfig({}, {}),
    (e: Error) => e instanceof ConfigError && /--id/.test(e.message),
  );
  assert.throws(() => resolveConfig({ ...base, shards: "zero" }, {}), /shards.*integer/);
  assert.throws(() => resolveConfig({ ...base, shards: "0" }, {}), /between 1 and 4096/);
  assert.throws(() => resolveConfig({ ...base, readMode: "fast" }, {}), /one of quorum, lease/);
  // A limit above what a shard can store would let the API accept keys that cannot be applied.
  assert.throws(
    () => resolveConfig({ ...base, keyBytesMax: String(SHARD_KEY_BYTES_MAX + 1) }, {}),
    /key-bytes-max.*between 1 and/,
  );
  assert.equal(
    resolveConfig({ ...base, keyBytesMax: String(SHARD_KEY_BYTES_MAX) }, {}).keyBytesMax,
    SHARD_KEY_BYTES_MAX,
  );
  assert.throws(() => resolveConfig({ ...base, join: "127.0.0.1:7000" }, {}), /ID=HOST:PORT/);
  assert.throws(() => resolveConfig({ ...base, join: "n1=127.0.0.1:7000" }, {}), /not this node/);
  assert.throws(() => resolveConfig({ ...base, tlsCa: "/ca.pem" }, {}), /all of --tls-ca/);
  const dir = mkdtempSync(join(tmpdir(), "kumo-cfg-"));
  const file = join(dir, "bad.yaml");
  writeFileSync(file, "id: n1\ndata: /d\nvalueBytesMaxx: 1\n");
  assert.throws(() => resolveConfig({ config: file }, {}), /unknown option "valueBytesMaxx"/);
});

test("no option is spelled --no-*: commander would read it as a negation and drop the value", () => {
  for (const o of OPTIONS) assert.ok(!o.flag.startsWith("no-"), `--${o.flag}`);
});

test("join parses ID=HOST:PORT lists", () => {
  const cfg = resolveConfig({ id: "n1", data: "/d", join: "n2=10.0.0.2:7000, n3=host-3:7000" }, {});
  assert.deepEqual(cfg.join, [
    { id: "n2", address: "10.0.0.2:7000" },
    { id: "n3", address: "host-3:7000" },
  ]);
});

test("docs/configuration.md documents every option with its flag and environment variable", () => {
  const doc = readFileSync(join(root, "docs/configuration.md"), "utf8");
  for (const o of OPTIONS) {
    assert.ok(doc.includes(`\`--${o.flag}\``), `--${o.flag} undocumented`);
    assert.ok(doc.includes(`\`${envName(o.flag)}\``), `${envName(o.flag)} undocumented`);
  }
});

test("every default lies within its option's own range", () => {
  for (const o of OPTIONS) {
    if (typeof o.def !== "number") continue;
    if (o.min !== undefined)
      assert.ok(o.def >= o.min, `--${o.flag} default ${o.def} < min ${o.min}`);
    if (o.max !== undefined)
      assert.ok(o.def <= o.max, `--${o.flag} default ${o.def} > max ${o.max}`);
  }
});
