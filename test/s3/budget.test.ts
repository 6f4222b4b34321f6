/**
 * The node-wide budget of chunk bytes in flight (ObjectIndex's backpressure): acquisitions past
 * the bound wait, in arrival order, and a request larger than the whole budget runs alone.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ByteBudget } from "../../src/api/s3/objects.js";

const tick = () => new Promise((r) => setImmediate(r));

test("acquisitions past the budget wait until enough is released, first come first served", async () => {
  const b = new ByteBudget(10);
  const order: string[] = [];
  await b.acquire(6);
  const big = b.acquire(6).then(() => order.push("big"));
  const small = b.acquire(1).then(() => order.push("small"));
  await tick();
  // The small one would fit, but waits behind the first waiter (no starvation of big ones).
  assert.deepEqual(order, []);
  b.release(6);
  await tick();
  await Promise.all([big, small]);
  assert.deepEqual(order, ["big", "small"]);
  b.release(6);
  b.release(1);
  await b.acquire(10); // everything was given back
});

test("a request larger than the whole budget runs alone", async () => {
  const b = new ByteBudget(8);
  await b.acquire(100);
  let second = false;
  const p = b.acquire(1).then(() => {
    second = true;
  });
  await tick();
  assert.equal(second, false);
  b.release(100);
  await p;
  assert.equal(second, true);
});
