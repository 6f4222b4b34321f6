/**
 * A Raft replica hosted in memory: the smallest correct host loop. It persists a Ready to a
 * MemoryStorage, then hands out its messages, then applies committed entries, then advances,
 * exactly in the order the Ready contract requires. Used by the scenario harness and the
 * simulator (which adds disk latency between `beginReady` and `finishReady`).
 */
import { assert } from "../base/index.js";
import {
  bootstrapStorage,
  type Entry,
  MemoryStorage,
  type Message,
  type NodeId,
  type RaftConfig,
  RawNode,
  type ReadState,
  type Ready,
} from "../raft/index.js";

export interface StateMachine {
  apply(e: Entry): void;
  snapshot(): Uint8Array;
  restore(data: Uint8Array): void;
}

/** A state machine that just records applied normal entries (for scenario tests). */
export class RecordingMachine implements StateMachine {
  applied: Entry[] = [];
  apply(e: Entry): void {
    if (e.type === "normal" && e.data.byteLength > 0) this.applied.push(e);
  }
  snapshot(): Uint8Array {
    return new TextEncoder().encode(
      JSON.stringify(
        this.applied.map((e) => [e.term, e.index, Buffer.from(e.data).toString("base64")]),
      ),
    );
  }
  restore(data: Uint8Array): void {
    const rows = JSON.parse(new TextDecoder().decode(data)) as [number, number, string][];
    this.applied = rows.map(([term, index, b64]) => ({
      term,
      index,
      type: "normal",
      data: new Uint8Array(Buffer.from(b64, "base64")),
    }));
  }
  /** The applied payloads as strings. */
  values(): string[] {
    return this.applied.map((e) => new TextDecoder().decode(e.data));
  }
}

export type PeerOptions = Omit<RaftConfig, "id" | "storage" | "applied">;

export class MemoryPeer {
  node: RawNode;
  readonly readStates: ReadState[] = [];
  /** Forwarded proposals the leader refused (Ready.refusedProposals), for the caller to take. */
  readonly refused: Ready["refusedProposals"][number][] = [];
  /** Contexts of forwarded reads the leader refused (Ready.refusedReads). */
  readonly refusedReads: string[] = [];
  private inFlight: Ready | undefined;

  constructor(
    readonly id: NodeId,
    readonly storage: MemoryStorage,
    readonly machine: StateMachine,
    private readonly options: PeerOptions,
    /** Called for each applied entry, after the machine applied it. */
    private readonly onApply?: (e: Entry) => void,
  ) {
    this.node = this.boot();
  }

  /** A fresh member of a new group: bootstrapped with the initial voter list. */
  static bootstrap(
    id: NodeId,
    voters: readonly NodeId[],
    machine: StateMachine,
    options: PeerOptions,
    onApply?: (e: Entry) => void,
  ): MemoryPeer {
    const storage = new MemoryStorage();
    bootstrapStorage(storage, voters);
    return new MemoryPeer(id, storage, machine, options, onApply);
  }

  private boot(): RawNode {
    const snap = this.storage.snapshot();
    if (snap.meta.index > 0) this.machine.restore(snap.data);
    return new RawNode({
      ...this.options,
      id: this.id,
      storage: this.storage,
      applied: snap.meta.index,
    });
  }

  /** Simulates a crash and restart: everything not in storage is lost. */
  restart(machine?: StateMachine): void {
    this.inFlight = undefined;
    if (machine) (this as { machine: StateMachine }).machine = machine;
    this.node = this.boot();
  }

  busy(): boolean {
    return this.inFlight !== undefined;
  }

  /** Takes the next Ready (if any); the caller persists it by calling `finishReady`. */
  beginReady(): Ready | undefined {
    if (this.inFlight || !this.node.hasReady()) return undefined;
    this.inFlight = this.node.ready();
    return this.inFlight;
  }

  /**
   * Persists, applies and advances the in-flight Ready; returns the messages that had to wait
   * for persistence (the caller sent `eagerMessages` when it began the Ready).
   */
  finishReady(): Message[] {
    const rd = this.inFlight;
    assert(rd, "finishReady without beginReady");
    this.inFlight = undefined;
    // 1. Durability first: snapshot, entries, hard state.
    if (rd.snapshot) {
      this.storage.applySnapshot(rd.snapshot);
      this.machine.restore(rd.snapshot.data);
    }
    this.storage.append(rd.entries);
    if (rd.hardState) this.storage.setHardState(rd.hardState);
    // 2. Apply committed entries; 3. advance. Messages are released to the caller to send.
    for (const e of rd.committedEntries) {
      this.machine.apply(e);
      this.onApply?.(e);
    }
    this.readStates.push(...rd.readStates);
    this.refused.push(...rd.refusedProposals);
    this.refusedReads.push(...rd.refusedReads);
    this.node.advance(rd);
    return rd.messages.slice();
  }

  /** One synchronous host cycle: ready → (eager messages) → persist → apply → advance. */
  cycle(): Message[] {
    const out: Message[] = [];
    for (let rd = this.beginReady(); rd; rd = this.beginReady()) {
      out.push(...rd.eagerMessages);
      out.push(...this.finishReady());
    }
    return out;
  }

  /** Takes a snapshot at the applied index and compacts the log, keeping `keep` entries. */
  compact(keep = 0): void {
    const st = this.node.status();
    const applied = st.applied;
    if (applied <= this.storage.snapshot().meta.index) return;
    this.storage.createSnapshot(applied, st.conf, this.machine.snapshot());
    this.storage.compact(Math.max(applied - keep, this.storage.firstIndex() - 1));
  }
}
