/**
 * A synchronous, deterministic network of in-memory Raft replicas for scenario tests, in the
 * style of etcd raft's `network`: messages are queued, delivered by `deliver()` until the
 * network is quiet, and links can be cut, dropped or filtered per message type.
 */
import { Prng } from "../base/index.js";
import {
  type ConfChange,
  MemoryStorage,
  type Message,
  type MessageType,
  type NodeId,
  type ProposeResult,
  type RawNode,
} from "../raft/index.js";
import { MemoryPeer, type PeerOptions, RecordingMachine } from "./peer.js";

export interface HarnessOptions extends Partial<PeerOptions> {
  seed?: number;
}

export class Harness {
  readonly peers = new Map<NodeId, MemoryPeer>();
  /** Messages waiting for `deliver()`. */
  queue: Message[] = [];
  /** Every message ever sent, for assertions. */
  readonly sent: Message[] = [];
  private readonly cut = new Set<string>();
  private readonly dropTypes = new Set<MessageType>();
  private readonly down = new Set<NodeId>();
  private readonly prng: Prng;
  private readonly options: PeerOptions;

  constructor(
    voters: readonly NodeId[],
    options: HarnessOptions = {},
    learners: readonly NodeId[] = [],
  ) {
    this.prng = new Prng(options.seed ?? 1);
    const { seed: _seed, ...rest } = options;
    this.options = {
      electionTimeoutTicks: 10,
      heartbeatIntervalTicks: 1,
      random: this.prng,
      ...rest,
    };
    for (const id of voters) this.peers.set(id, this.makePeer(id, voters, true));
    for (const id of learners) this.peers.set(id, this.makePeer(id, voters, false));
    this.flush();
  }

  private makePeer(id: NodeId, voters: readonly NodeId[], bootstrap: boolean): MemoryPeer {
    const options = { ...this.options, random: this.prng.fork() };
    if (bootstrap) return MemoryPeer.bootstrap(id, voters, new RecordingMachine(), options);
    return new MemoryPeer(id, new MemoryStorage(), new RecordingMachine(), options);
  }

  /** Adds a brand-new, empty replica (not yet in any configuration). */
  addEmptyPeer(id: NodeId): MemoryPeer {
    const p = this.makePeer(id, [], false);
    this.peers.set(id, p);
    return p;
  }

  peer(id: NodeId): MemoryPeer {
    const p = this.peers.get(id);
    if (!p) throw new Error(`no peer ${id}`);
    return p;
  }

  node(id: NodeId): RawNode {
    return this.peer(id).node;
  }

  machine(id: NodeId): RecordingMachine {
    return this.peer(id).machine as RecordingMachine;
  }

  /** Runs every peer's host cycle, queueing the messages they produce. */
  flush(): void {
    for (const [id, p] of this.peers) {
      if (this.down.has(id)) continue;
      for (const m of p.cycle()) this.enqueue(m);
    }
  }

  private enqueue(m: Message): void {
    this.sent.push(m);
    this.queue.push(m);
  }

  /** Optional per-message filter: return false to drop a message. */
  filter: ((m: Message) => boolean) | undefined;

  private blocked(m: Message): boolean {
    if (this.filter && !this.filter(m)) return true;
    return (
      this.cut.has(`${m.from}>${m.to}`) ||
      this.dropTypes.has(m.type) ||
      this.down.has(m.to) ||
      !this.peers.has(m.to)
    );
  }

  /** Delivers queued messages (and everything they cause) until the network is quiet. */
  deliver(maxRounds = 10_000): void {
    this.flush();
    for (let i = 0; i < maxRounds && this.queue.length > 0; i++) {
      const batch = this.queue;
      this.queue = [];
      for (const m of batch) {
        if (this.blocked(m)) continue;
        this.peer(m.to).node.step(m);
      }
      this.flush();
    }
  }

  /** Delivers only the currently queued messages that match `pred`, leaving the rest queued. */
  deliverOnly(pred: (m: Message) => boolean): void {
    const keep: Message[] = [];
    const batch = this.queue;
    this.queue = [];
    for (const m of batch) {
      if (!pred(m)) keep.push(m);
      else if (!this.blocked(m)) this.peer(m.to).node.step(m);
    }
    this.queue.push(...keep);
    this.flush();
  }

  /** Ticks every live peer `n` times, delivering after each tick. */
  tick(n = 1, ids?: readonly NodeId[]): void {
    for (let i = 0; i < n; i++) {
      for (const [id, p] of this.peers) {
        if (this.down.has(id) || (ids && !ids.includes(id))) continue;
        p.node.tick();
      }
      this.deliver();
    }
  }

  campaign(id: NodeId): void {
    this.node(id).campaign();
    this.deliver();
  }

  propose(id: NodeId, value: string): ProposeResult {
    const r = this.node(id).propose(new TextEncoder().encode(value));
    this.deliver();
    return r;
  }

  proposeConfChange(id: NodeId, cc: ConfChange): ProposeResult {
    const r = this.node(id).proposeConfChange(cc);
    this.deliver();
    return r;
  }

  /** Cuts both directions between a and b. */
  cutLink(a: NodeId, b: NodeId): void {
    this.cut.add(`${a}>${b}`);
    this.cut.add(`${b}>${a}`);
  }

  cutOneWay(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}>${to}`);
  }

  /** Cuts every link between `id` and the rest. */
  isolate(id: NodeId): void {
    for (const other of this.peers.keys()) if (other !== id) this.cutLink(id, other);
  }

  /** Splits the cluster into the given groups (links inside a group stay). */
  partition(...groups: NodeId[][]): void {
    for (const g of groups) {
      for (const a of g)
        for (const other of this.peers.keys()) if (!g.includes(other)) this.cutLink(a, other);
    }
  }

  dropType(t: MessageType): void {
    this.dropTypes.add(t);
  }

  heal(): void {
    this.cut.clear();
    this.dropTypes.clear();
  }

  stop(id: NodeId): void {
    this.down.add(id);
  }

  /** Restarts a peer from its durable storage (everything in memory is lost). */
  restart(id: NodeId): void {
    this.down.delete(id);
    this.peer(id).restart(new RecordingMachine());
    this.flush();
  }

  leader(): NodeId | undefined {
    let found: NodeId | undefined;
    let term = -1;
    for (const [id, p] of this.peers) {
      if (this.down.has(id)) continue;
      const st = p.node.status();
      if (st.role === "leader" && st.term > term) {
        found = id;
        term = st.term;
      }
    }
    return found;
  }
}
