/**
 * The simulator's replicated state machine: a tiny string KV with put, delete and
 * compare-and-set. Commands are JSON so a failing seed's trace is readable.
 */
import type { Entry } from "../raft/index.js";
import type { StateMachine } from "./peer.js";

export type KvCommand =
  | { readonly op: "put"; readonly key: string; readonly value: string; readonly id: number }
  | { readonly op: "del"; readonly key: string; readonly id: number }
  | {
      readonly op: "cas";
      readonly key: string;
      readonly expect: string | null;
      readonly value: string;
      readonly id: number;
    };

export interface KvResult {
  readonly ok: boolean;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeCommand(c: KvCommand): Uint8Array {
  return enc.encode(JSON.stringify(c));
}

export function decodeCommand(data: Uint8Array): KvCommand {
  return JSON.parse(dec.decode(data)) as KvCommand;
}

export class KvMachine implements StateMachine {
  data = new Map<string, string>();
  /** Result of the most recently applied command. */
  lastResult: KvResult = { ok: true };

  apply(e: Entry): void {
    if (e.type !== "normal" || e.data.byteLength === 0) return;
    const c = decodeCommand(e.data);
    switch (c.op) {
      case "put":
        this.data.set(c.key, c.value);
        this.lastResult = { ok: true };
        return;
      case "del":
        this.data.delete(c.key);
        this.lastResult = { ok: true };
        return;
      case "cas": {
        const cur = this.data.get(c.key) ?? null;
        if (cur === c.expect) {
          this.data.set(c.key, c.value);
          this.lastResult = { ok: true };
        } else this.lastResult = { ok: false };
        return;
      }
    }
  }

  get(key: string): string | null {
    return this.data.get(key) ?? null;
  }

  snapshot(): Uint8Array {
    return enc.encode(JSON.stringify([...this.data]));
  }

  restore(data: Uint8Array): void {
    this.data = new Map(JSON.parse(dec.decode(data)) as [string, string][]);
  }
}
