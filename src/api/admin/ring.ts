/**
 * Keeps the chunk ring record (src/placement/chunkring.ts) in the metadata group and every
 * node's copy of it current. The metadata leader recomputes it in its placement round; every
 * node re-reads it in its refresh.
 */
import type { MultiRaftHost } from "../../multiraft/index.js";
import { nextRing, RING_RECORD_KEY, type RingRecord } from "../../placement/index.js";
import type { ApplyResult, ShardMachine } from "../../shard/index.js";
import type { KvService } from "../kv/service.js";
import { type KeyspaceAdmin, META_KEYSPACE, META_SHARD } from "./keyspaces.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const KEY = enc.encode(RING_RECORD_KEY);

export class RingKeeper {
  private record: RingRecord | undefined;
  private revision: number | undefined;

  constructor(
    private readonly kv: KvService,
    private readonly admin: KeyspaceAdmin,
    private readonly host: MultiRaftHost<ApplyResult, ShardMachine>,
    /** Replicas of every chunk (fewer while the cluster has fewer nodes). */
    private readonly replicas: number,
    private readonly onChange: (r: RingRecord) => void = () => {},
  ) {}

  current(): RingRecord | undefined {
    return this.record;
  }

  async refresh(): Promise<void> {
    const r = await this.kv.get(META_KEYSPACE, KEY, "linearizable");
    if (!r.ok || !r.item) return;
    const rec = JSON.parse(dec.decode(r.item.value)) as RingRecord;
    this.revision = r.item.revision;
    if (rec.version !== this.record?.version) {
      this.record = rec;
      this.onChange(rec);
    }
  }

  /**
   * Once per placement round: every node re-reads the ring; the metadata leader also writes a
   * new one when the data-holding nodes changed.
   */
  async round(nowMs: number): Promise<void> {
    await this.refresh();
    if (this.host.status(META_SHARD)?.role === "leader") await this.update(nowMs);
  }

  /** Writes a new ring when the data-holding nodes changed (on a freshly read record). */
  private async update(nowMs: number): Promise<void> {
    const members = this.admin.members.map((id) => ({
      id,
      record: this.admin.memberRecord(id),
      state: this.admin.livenessOf(id, nowMs),
    }));
    const next = nextRing(this.record, members, this.replicas);
    if (!next) return;
    const w = await this.kv.put(
      META_KEYSPACE,
      KEY,
      enc.encode(JSON.stringify(next)),
      this.revision === undefined
        ? { kind: "ifAbsent" }
        : { kind: "ifRevision", revision: this.revision },
    );
    if (w.ok) {
      this.record = next;
      this.revision = w.revision;
      this.onChange(next);
    }
  }
}
