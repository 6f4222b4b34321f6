/**
 * Admission control (src/api/limits.ts) with a fake clock and a fake event-loop delay: token
 * buckets per tenant and per node, the concurrency bound, shedding on event-loop delay, the
 * order that keeps one tenant's flood from using up what others need, and live changes.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type Admission,
  checkLimits,
  LIMIT_KEYS,
  Limiter,
  type LimitSettings,
  TokenBucket,
} from "../../src/api/limits.js";
import { limitBounds } from "../../src/node/ops.js";

const UNLIMITED: LimitSettings = {
  tokenRatePerSecond: 0,
  tokenBurstRequests: 0,
  nodeRatePerSecond: 0,
  nodeBurstRequests: 0,
  concurrentRequestsMax: 1000,
  shedEventLoopDelayMs: 0,
};

function limiter(settings: Partial<LimitSettings>) {
  const clock = { nowMs: 0, delayMs: 0 };
  const l = new Limiter({
    settings: { ...UNLIMITED, ...settings },
    nowMs: () => clock.nowMs,
    eventLoopDelayMs: () => clock.delayMs,
  });
  return { l, clock };
}

/** Admits and releases at once (a request answered instantly); returns the refusals' reasons. */
function burst(l: Limiter, tenant: string, n: number): { ok: number; refused: string[] } {
  let ok = 0;
  const refused: string[] = [];
  for (let i = 0; i < n; i++) {
    const a = l.admit(tenant);
    if (a.ok) {
      ok++;
      a.release();
    } else refused.push(a.reason);
  }
  return { ok, refused };
}

test("a token bucket allows its burst at once, then its rate; Retry-After is whole seconds", () => {
  const b = new TokenBucket(10, 5, 0);
  let taken = 0;
  while (b.has(0)) {
    b.take();
    taken++;
  }
  assert.equal(taken, 5);
  assert.equal(b.waitSeconds(), 1);
  assert.equal(b.has(50), false); // half a token
  assert.equal(b.has(100), true); // one token after 100 ms at 10/s
  b.take();
  // A slow rate: the wait rounds up to whole seconds.
  const slow = new TokenBucket(0.25, 1, 0);
  slow.take();
  assert.equal(slow.waitSeconds(), 4);
  // Never more than the burst, however long it waited.
  assert.equal(b.has(1_000_000), true);
  let after = 0;
  while (b.has(1_000_000)) {
    b.take();
    after++;
  }
  assert.equal(after, 5);
});

test("each tenant has its own bucket: one tenant at its limit does not limit another", () => {
  const { l, clock } = limiter({ tokenRatePerSecond: 10, tokenBurstRequests: 10 });
  assert.deepEqual(burst(l, "A", 100), { ok: 10, refused: Array(90).fill("token") });
  assert.equal(burst(l, "B", 10).ok, 10);
  clock.nowMs += 1000;
  assert.equal(burst(l, "A", 100).ok, 10, "refilled at the rate");
  const refusal = l.admit("A") as Extract<Admission, { ok: false }>;
  assert.equal(refusal.code, "RATE_LIMITED");
  assert.ok(refusal.retryAfterSeconds >= 1);
});

test("a tenant over its own limit does not use up the node's bucket (fairness)", () => {
  const { l } = limiter({ tokenRatePerSecond: 10, nodeRatePerSecond: 20, nodeBurstRequests: 20 });
  // A floods: 10 admitted (its burst), 990 refused by its own bucket, none by the node's.
  const a = burst(l, "A", 1000);
  assert.equal(a.ok, 10);
  assert.ok(a.refused.every((r) => r === "token"));
  // The node's bucket still has 10 left for B.
  const b = burst(l, "B", 10);
  assert.equal(b.ok, 10);
  // Then the node's limit applies to everyone.
  assert.deepEqual(burst(l, "C", 1).refused, ["node"]);
});

test("the concurrency bound refuses OVERLOADED while that many requests are in progress", () => {
  const { l } = limiter({ concurrentRequestsMax: 3 });
  const held = [l.admit("A"), l.admit("B"), l.admit("A")];
  assert.ok(held.every((a) => a.ok));
  assert.equal(l.inFlight, 3);
  const r = l.admit("C");
  assert.equal(r.ok, false);
  assert.equal((r as Extract<Admission, { ok: false }>).code, "OVERLOADED");
  assert.equal((r as Extract<Admission, { ok: false }>).reason, "concurrency");
  for (const a of held) if (a.ok) a.release();
  assert.equal(l.inFlight, 0);
  assert.ok(l.admit("C").ok);
  // Releasing twice is a programmer error.
  const a = l.admit("D");
  assert.ok(a.ok);
  a.release();
  assert.throws(() => a.release());
});

test("event-loop delay above the threshold sheds new requests; below it they pass again", () => {
  const { l, clock } = limiter({ shedEventLoopDelayMs: 200 });
  clock.delayMs = 150;
  assert.ok(l.admit("A").ok);
  clock.delayMs = 450;
  const r = l.admit("A");
  assert.equal(r.ok, false);
  assert.equal((r as Extract<Admission, { ok: false }>).reason, "event_loop");
  assert.match((r as Extract<Admission, { ok: false }>).message, /450 ms/);
  clock.delayMs = 10;
  assert.ok(l.admit("A").ok);
  // 0 means never.
  l.update({ shedEventLoopDelayMs: 0 });
  clock.delayMs = 10_000;
  assert.ok(l.admit("A").ok);
});

test("limits change live: buckets keep their tokens, rate 0 lifts the limit", () => {
  const { l, clock } = limiter({ tokenRatePerSecond: 100 });
  assert.equal(burst(l, "A", 1000).ok, 100); // burst 0: one second's worth
  l.update({ tokenRatePerSecond: 5, tokenBurstRequests: 5 });
  assert.equal(burst(l, "A", 10).ok, 0, "the emptied bucket stays empty");
  clock.nowMs += 10_000;
  assert.equal(burst(l, "A", 10).ok, 5, "the new burst caps it");
  assert.equal(l.settings.tokenRatePerSecond, 5);
  l.update({ tokenRatePerSecond: 0 });
  assert.equal(burst(l, "A", 1000).ok, 1000);
  l.update({ nodeRatePerSecond: 1, nodeBurstRequests: 1 });
  assert.equal(burst(l, "A", 3).ok, 1);
});

test("the admin API's limit documents are checked: known keys, integers within the option bounds", () => {
  const bounds = limitBounds();
  assert.deepEqual(Object.keys(bounds).sort(), [...LIMIT_KEYS].sort());
  assert.deepEqual(checkLimits({ tokenRatePerSecond: 50 }, bounds), {
    ok: true,
    changes: { tokenRatePerSecond: 50 },
  });
  assert.deepEqual(checkLimits({}, bounds), { ok: true, changes: {} });
  for (const bad of [
    null,
    [],
    "x",
    { tokenRatePerSecond: -1 },
    { tokenRatePerSecond: 1.5 },
    { tokenRatePerSecond: "5" },
    { concurrentRequestsMax: 0 },
    { tokens: "secret" },
  ]) {
    const r = checkLimits(bad, bounds);
    assert.equal(r.ok, false, JSON.stringify(bad));
  }
});
