/**
 * The parts of a graceful shutdown (KumoNode.stop, docs/operations.md "Rolling upgrades"):
 *
 * - `DrainingPeers`: which peers told us they are shutting down. A draining node renews its
 *   announcement every DRAINING_RENEW_MS for DRAINING_LEASE_MS; the leader balancer must not
 *   hand leadership back to it meanwhile. The lease lapses by itself once the node is gone, so
 *   a restarted node is a leadership target again within seconds, with no message of its own.
 * - `handOverLeadership`: hands every group this node leads to another voter (a Raft leadership
 *   transfer), until it leads none, nobody can take over, or the deadline passes.
 * - `drainServer`: closes an HTTP server the polite way (no new connections, idle keep-alive
 *   connections closed, requests in flight finish within a bound).
 *
 * None of this touches Raft's rules: a draining node still votes, and still campaigns when its
 * election timer fires (if the new leader dies, it may be the only one who can lead). It only
 * stops being the target of transfers it did not ask for, and gives away what it leads.
 */
import type { Server } from "node:http";
import type { GroupStatus } from "../multiraft/index.js";
import type { NodeId } from "../raft/index.js";

/** Transport method: "I am shutting down; do not hand me leadership for `forMs`". */
export const NODE_DRAINING = "node.draining";
/** How long one draining announcement holds, in ms. */
export const DRAINING_LEASE_MS = 3_000;
/** How often a draining node renews its announcement, in ms. */
export const DRAINING_RENEW_MS = 1_000;
/** How often the leadership handover looks at its groups, in ms. */
export const HANDOVER_POLL_MS = 25;
/** How often idle connections are closed while requests in flight finish, in ms. */
export const DRAIN_POLL_MS = 50;

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeDraining(forMs: number): Uint8Array {
  return enc.encode(JSON.stringify({ forMs }));
}

/** Peers that announced they are draining, each until its lease lapses. */
export class DrainingPeers {
  private readonly untilMs = new Map<NodeId, number>();

  constructor(private readonly nowMs: () => number = () => performance.now()) {}

  /** A NODE_DRAINING call's body; `forMs` 0 clears. Malformed bodies are ignored. */
  onAnnouncement(from: NodeId, body: Uint8Array): void {
    let forMs = 0;
    try {
      const v = (JSON.parse(dec.decode(body)) as { forMs?: unknown }).forMs;
      if (typeof v === "number" && Number.isFinite(v)) forMs = Math.min(Math.max(v, 0), 60_000);
    } catch {
      return;
    }
    if (forMs === 0) this.untilMs.delete(from);
    else this.untilMs.set(from, this.nowMs() + forMs);
  }

  has(id: NodeId): boolean {
    const until = this.untilMs.get(id);
    if (until === undefined) return false;
    if (this.nowMs() < until) return true;
    this.untilMs.delete(id);
    return false;
  }

  /** The peers draining now (for status). */
  list(): NodeId[] {
    return [...this.untilMs.keys()].filter((id) => this.has(id));
  }
}

/** What the handover needs of the Raft host (a narrow port: tests drive it with a fake). */
export interface LeadershipPort {
  groupIds(): readonly string[];
  status(groupId: string): Pick<GroupStatus, "role" | "voters" | "match"> | undefined;
  transferLeadership(groupId: string, to: NodeId): boolean;
}

export interface HandoverResult {
  /** Groups this node still leads (0: everything was handed over). */
  readonly leading: number;
  /** Groups a transfer was started for. */
  readonly transferred: number;
  /** Why it stopped. */
  readonly outcome: "done" | "no-successor" | "timeout";
}

/**
 * The voter to hand `st`'s group to: reachable, not draining, and the most up to date (highest
 * match index: the transfer finishes soonest), ties broken by id for determinism.
 */
export function successorOf(
  self: NodeId,
  st: Pick<GroupStatus, "voters" | "match">,
  eligible: (id: NodeId) => boolean,
): NodeId | undefined {
  return st.voters
    .filter((v) => v !== self && eligible(v))
    .sort((a, b) => (st.match.get(b) ?? 0) - (st.match.get(a) ?? 0) || (a < b ? -1 : 1))[0];
}

/**
 * Transfers leadership of every group this node leads to a successor, and waits until it leads
 * none, or no group it leads has a successor (every other voter is down or draining: a
 * whole-cluster stop, or a single-replica group), or `deadlineMs` (on `nowMs`'s clock) passes.
 * Leading none, it keeps watching until `holdUntilMs`: leadership can still come back (an
 * election this node won, a transfer a peer started before it heard we are draining) and is
 * handed over again. A group's target stays the same while it remains eligible; a transfer
 * Raft abandoned (after an election timeout) is started again.
 */
export async function handOverLeadership(opts: {
  readonly self: NodeId;
  readonly host: LeadershipPort;
  readonly eligible: (id: NodeId) => boolean;
  readonly deadlineMs: number;
  /** Keep watching (and handing over) until then even while leading none; at most deadlineMs. */
  readonly holdUntilMs?: number;
  readonly nowMs?: () => number;
  readonly pollMs?: number;
}): Promise<HandoverResult> {
  const { self, host, eligible } = opts;
  const nowMs = opts.nowMs ?? (() => performance.now());
  const targets = new Map<string, NodeId>();
  const started = new Set<string>();
  for (;;) {
    const led = host.groupIds().filter((id) => host.status(id)?.role === "leader");
    const now = nowMs();
    if (led.length === 0 && now >= Math.min(opts.holdUntilMs ?? now, opts.deadlineMs))
      return { leading: 0, transferred: started.size, outcome: "done" };
    if (now >= opts.deadlineMs)
      return { leading: led.length, transferred: started.size, outcome: "timeout" };
    let moving = 0;
    for (const id of led) {
      const st = host.status(id);
      if (!st) continue;
      let to = targets.get(id);
      if (to === undefined || !eligible(to) || !st.voters.includes(to)) {
        to = successorOf(self, st, eligible);
        if (to === undefined) {
          targets.delete(id);
          continue;
        }
        targets.set(id, to);
      }
      if (host.transferLeadership(id, to)) {
        moving++;
        started.add(id);
      }
    }
    if (moving === 0 && led.length > 0)
      return { leading: led.length, transferred: started.size, outcome: "no-successor" };
    await new Promise((r) => setTimeout(r, opts.pollMs ?? HANDOVER_POLL_MS));
  }
}

/**
 * Stops `server` from accepting connections, closes its idle keep-alive connections (again
 * every DRAIN_POLL_MS: a connection whose request finishes becomes idle), and resolves once
 * every connection is gone, or cuts the rest after `timeoutMs`. Resolves with whether it had
 * to cut connections.
 */
export function drainServer(server: Server | undefined, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (!server?.listening) return resolve(false);
    let forced = false;
    const poll = setInterval(() => server.closeIdleConnections(), DRAIN_POLL_MS);
    const cut = setTimeout(() => {
      forced = true;
      server.closeAllConnections();
    }, timeoutMs);
    server.close(() => {
      clearInterval(poll);
      clearTimeout(cut);
      resolve(forced);
    });
    server.closeIdleConnections();
  });
}
