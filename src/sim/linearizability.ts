/**
 * Linearizability checker for histories of a key/value store whose keys are independent
 * registers (read, write, delete, compare-and-set).
 *
 * Linearizability is compositional (Herlihy & Wing's "locality", which Porcupine calls
 * P-compositionality): a history is linearizable iff its sub-history for every key is. So each
 * key is checked on its own, which keeps the exponential search small.
 *
 * Per key we run the Wing & Gong search with Lowe's improvements, as Porcupine and Knossos do:
 * call/return events go into a doubly linked list sorted by time; the search repeatedly
 * "linearizes" a pending call (one whose call event precedes the first remaining return
 * event) whose effect is legal in the current register state, lifting its two events out of
 * the list; reaching a return event means that op was not linearized before it returned, so
 * the search backtracks. Configurations (set of linearized ops as a bitset, register state)
 * are memoized so each is expanded at most once.
 *
 * Ops with status "info" (timeouts, crashes) may take effect at any time after their call, or
 * never: in effect they return at +Infinity, and the history counts as linearized once every
 * "ok" op is. Each one stays pending forever, so naively every outstanding timeout would be
 * tried (and every subset of them explored) at every step. Instead they are kept out of the
 * event list and only tried right before a pending op that needs the value they produce (see
 * `legalNext` and `InfoIndex`, which argue why no linearization is lost).
 */

export type OpStatus = "ok" | "fail" | "info";

export interface HistoryOp {
  readonly id: number; // unique
  readonly client: number;
  readonly key: string;
  readonly kind: "read" | "write" | "cas" | "delete";
  /** write: the value written; cas: the new value. */
  readonly value?: string;
  /** cas: the expected current value (null = key absent). */
  readonly expect?: string | null;
  /** "ok": completed with `result`; "fail": certainly did not take effect; "info": unknown (timeout, crash) — may or may not have taken effect, at any time after `call`. */
  readonly status: OpStatus;
  /** read: the value read (null = absent). cas: whether it succeeded. write/delete: unused. */
  readonly result?: { readonly value?: string | null; readonly ok?: boolean };
  readonly call: number; // invocation time
  readonly ret: number; // completion time (ignored for "info": treated as +Infinity)
}

export type LinearizabilityResult =
  | { readonly ok: true; readonly keys: number; readonly ops: number }
  | {
      readonly ok: false;
      readonly key: string;
      readonly reason: string;
      readonly ops: readonly HistoryOp[];
    }
  | { readonly ok: "unknown"; readonly key: string; readonly reason: string }; // search budget exhausted

export interface CheckOptions {
  /** Value of every key before the history starts; default null (absent). */
  readonly initial?: string | null;
  /**
   * Search budget: the most distinct configurations memoized for one key before giving up with
   * `ok: "unknown"`. Each costs on the order of 100-200 bytes (more with many info ops).
   */
  readonly maxStatesPerKey?: number;
}

const DEFAULT_MAX_STATES_PER_KEY = 2_000_000;

/** How many ops around the point where the search got stuck are reported on failure. */
const MAX_REPORTED_OPS = 12;

/**
 * Checks that `history` is linearizable, key by key. "fail" ops and "info" reads are dropped
 * first (they carry no information). On success `keys`/`ops` count what was actually checked.
 * Throws on malformed input (duplicate ids, missing values/results, ret < call), since that is a
 * bug in whatever recorded the history rather than a property of the system under test.
 */
export function checkLinearizable(
  history: readonly HistoryOp[],
  opts: CheckOptions = {},
): LinearizabilityResult {
  const initial = opts.initial ?? null;
  const maxStates = opts.maxStatesPerKey ?? DEFAULT_MAX_STATES_PER_KEY;

  const byKey = new Map<string, HistoryOp[]>();
  const seen = new Set<number>();
  for (const op of history) {
    if (seen.has(op.id)) throw invalidOp(op, "duplicate id");
    seen.add(op.id);
    if (op.status === "fail") continue;
    if (op.status === "info" && op.kind === "read") continue;
    validateTimes(op);
    let ops = byKey.get(op.key);
    if (ops === undefined) {
      ops = [];
      byKey.set(op.key, ops);
    }
    ops.push(op);
  }

  // A definite violation on any key beats "unknown" on another, so keep going past unknowns.
  let unknown: LinearizabilityResult | null = null;
  let total = 0;
  for (const [key, ops] of byKey) {
    total += ops.length;
    const result = checkKey(key, ops, initial, maxStates);
    if (result === null) continue;
    if (result.ok === false) return result;
    unknown ??= result;
  }
  return unknown ?? { ok: true, keys: byKey.size, ops: total };
}

// ---------------------------------------------------------------------------------------------
// Register model. Values are interned to small integers per key so that states compare and
// hash cheaply; 0 is "absent" (null).

const ABSENT = 0;
/** Returned by `step` when an op cannot take effect in the given state. */
const ILLEGAL = -1;
/** `require` value meaning the next linearized op is unconstrained. */
const NO_REQUIREMENT = -1;

/** The four behaviours an op can have on a register; delete is a write of ABSENT. */
const READ = 0; // legal iff state === a; state unchanged
const WRITE = 1; // always legal; state := a
const CAS = 2; // legal iff state === a; state := b
const CAS_FAILED = 3; // an ok cas that reported failure: legal iff state !== a; unchanged

interface PreparedOp {
  readonly op: HistoryOp;
  /** Index of this op in the per-key bitset. */
  readonly bit: number;
  readonly info: boolean;
  readonly kind: typeof READ | typeof WRITE | typeof CAS | typeof CAS_FAILED;
  readonly a: number;
  readonly b: number;
}

function step(state: number, p: PreparedOp): number {
  switch (p.kind) {
    case READ:
      return state === p.a ? state : ILLEGAL;
    case WRITE:
      return p.a;
    case CAS:
      return state === p.a ? p.b : ILLEGAL;
    case CAS_FAILED:
      return state !== p.a ? state : ILLEGAL;
  }
}

/**
 * The state after linearizing `p` next, or ILLEGAL. Beyond the register semantics this prunes
 * "info" ops, using the fact that such an op has no return event and so never has to precede
 * anything in real time:
 *
 * - An info op that does not change the state is never needed (dropping it changes nothing).
 * - If info op X moved the state from `require` to `state`, the op right after it must be one
 *   that is illegal in `require`, i.e. one that needed X. Otherwise the next op is either
 *   legal in `require` and leaves it unchanged (a read, a failed cas), so X can be swapped past
 *   it, or it overwrites the state unconditionally (write, delete), so X can be dropped. Every
 *   swap moves an info op later, so repeating this ends in a linearization obeying the rule,
 *   and restricting the search to such linearizations loses nothing.
 */
function legalNext(state: number, require: number, p: PreparedOp): number {
  const next = step(state, p);
  if (next === ILLEGAL) return ILLEGAL;
  if (p.info && next === state) return ILLEGAL;
  if (require !== NO_REQUIREMENT && step(require, p) !== ILLEGAL) return ILLEGAL;
  return next;
}

// ---------------------------------------------------------------------------------------------
// Per-key search.

/** A call or return event of an "ok" op in the time-ordered doubly linked list. */
interface Entry {
  readonly op: PreparedOp;
  readonly isCall: boolean;
  readonly time: number;
  /** For a call entry, its return entry. */
  match: Entry | null;
  prev: Entry | null;
  next: Entry | null;
}

/** One level of the depth-first search. */
interface Frame {
  /** The op linearized to get here (null at the root), undone when the frame is popped. */
  readonly via: PreparedOp | null;
  readonly state: number;
  /** The state before `via` if it was an info op (see `legalNext`), else NO_REQUIREMENT. */
  readonly require: number;
  /** Ops that might be linearized next, tried in order; `next` is the first untried one. */
  readonly candidates: readonly PreparedOp[];
  next: number;
}

/** Where the search got furthest before being stuck, for the failure report. */
interface Stuck {
  /** The first op whose return was reached before it could be linearized. */
  readonly op: PreparedOp;
  /** How many ops had been linearized at that point. */
  readonly depth: number;
  readonly state: number;
  /** Other invoked-but-unlinearized ok ops at that point: none of them could go next. */
  readonly pending: readonly PreparedOp[];
  /** The last few ops linearized before getting stuck. */
  readonly recent: readonly PreparedOp[];
}

function checkKey(
  key: string,
  ops: readonly HistoryOp[],
  initial: string | null,
  maxStates: number,
): LinearizabilityResult | null {
  const values = new Map<string, number>();
  const names: (string | null)[] = [null];
  const intern = (v: string | null): number => {
    if (v === null) return ABSENT;
    let id = values.get(v);
    if (id === undefined) {
      id = names.length;
      values.set(v, id);
      names.push(v);
    }
    return id;
  };
  // Bit order: ok ops by return time, then info ops by call time. The ok ops linearized at any
  // point are then "a prefix plus a few", which keeps cache keys small (see OpSet).
  const prepared = [...ops].sort(bitOrder).map((op, bit) => prepare(op, bit, intern));
  const okOps = prepared.filter((p) => !p.info);
  const infos = new InfoIndex(prepared.filter((p) => p.info));
  const { head, calls } = buildEntries(okOps);
  const linearized = new OpSet(okOps.length, prepared.length - okOps.length);
  // Configurations already explored: a configuration determines the rest of the search.
  const explored = new Set<string>();

  const frame = (via: PreparedOp | null, state: number, require: number): Frame => ({
    via,
    state,
    require,
    candidates: candidatesAt(head, infos, state),
    next: 0,
  });

  if (head.next === null) return null; // only info ops: linearize none of them
  const stack: Frame[] = [frame(null, intern(initial), NO_REQUIREMENT)];
  let stuck: Stuck | null = null;
  for (;;) {
    const top = stack[stack.length - 1];
    if (top === undefined) return failure(key, stuck!, prepared.length, names);
    const p = top.candidates[top.next++];
    if (p === undefined) {
      // Dead end: nothing can go next. Remember the deepest one for the report, then undo.
      if (stuck === null || stack.length - 1 > stuck.depth) stuck = describeStuck(head, stack);
      stack.pop();
      if (top.via !== null) {
        linearized.toggle(top.via);
        if (top.via.info) infos.use(top.via, -1);
        else unlift(calls[top.via.bit]!);
      }
      continue;
    }
    const next = legalNext(top.state, top.require, p);
    if (next === ILLEGAL) continue;
    const require = p.info ? top.state : NO_REQUIREMENT;
    linearized.toggle(p);
    const config = linearized.key(next, require);
    if (explored.has(config)) {
      linearized.toggle(p);
      continue;
    }
    explored.add(config);
    if (explored.size > maxStates) {
      return {
        ok: "unknown",
        key,
        reason:
          `search gave up after ${maxStates} configurations (${prepared.length} ops on the key); ` +
          "raise maxStatesPerKey or reduce concurrency / indeterminate ops",
      };
    }
    if (p.info) infos.use(p, 1);
    else lift(calls[p.bit]!);
    if (head.next === null) return null; // every ok op linearized
    stack.push(frame(p, next, require));
  }
}

function bitOrder(x: HistoryOp, y: HistoryOp): number {
  const xInfo = x.status === "info";
  const yInfo = y.status === "info";
  if (xInfo !== yInfo) return xInfo ? 1 : -1;
  return (xInfo ? 0 : x.ret - y.ret) || x.call - y.call || x.id - y.id;
}

/**
 * The ops worth trying next: the pending ok ops (calls before the first remaining return), then
 * the info ops that have been invoked by then and that one of those could need (`InfoIndex`).
 */
function candidatesAt(head: Entry, infos: InfoIndex, state: number): PreparedOp[] {
  const out: PreparedOp[] = [];
  let e = head.next;
  for (; e?.isCall; e = e.next) out.push(e.op);
  if (e !== null && !infos.empty) infos.addUseful(out, state, e.time);
  return out;
}

/** Info ops with identical effects, in call order; the first `used` have been linearized. */
interface InfoGroup {
  readonly ops: PreparedOp[];
  used: number;
}

/**
 * The info ops of a key. They have no return event, so they are kept out of the event list
 * (where every one of them would be rescanned at every step forever) and looked up by the value
 * they produce instead, since only one that some pending op needs is worth trying.
 *
 * Info ops with the same effect are grouped, and a group's ops are only ever linearized in call
 * order. That loses nothing: if a linearization uses a later-called op of a group where an
 * earlier one is unused or used later, swapping the two is still valid, because an info op is
 * only constrained by its call and the earlier one's call is no later. So a group offers one
 * candidate, `ops[used]`; without this every pending read of "absent" would try each
 * outstanding timed-out delete in turn.
 */
class InfoIndex {
  private readonly groups: InfoGroup[] = [];
  private readonly groupOf = new Map<PreparedOp, InfoGroup>();
  /** Groups by the state they leave behind, and the subset of those that are cas ops. */
  private readonly byValue = new Map<number, InfoGroup[]>();
  private readonly casByValue = new Map<number, InfoGroup[]>();

  constructor(ops: readonly PreparedOp[]) {
    const byEffect = new Map<string, InfoGroup>();
    for (const p of ops) {
      const effect = `${p.kind}:${p.a}:${p.b}`;
      let group = byEffect.get(effect);
      if (group === undefined) {
        group = { ops: [], used: 0 };
        byEffect.set(effect, group);
        this.groups.push(group);
        const produced = p.kind === CAS ? p.b : p.a;
        pushTo(this.byValue, produced, group);
        if (p.kind === CAS) pushTo(this.casByValue, produced, group);
      }
      group.ops.push(p);
      this.groupOf.set(p, group);
    }
  }

  get empty(): boolean {
    return this.groups.length === 0;
  }

  /** Records that info op `p` (its group's next) was linearized (+1) or undone (-1). */
  use(p: PreparedOp, delta: 1 | -1): void {
    this.groupOf.get(p)!.used += delta;
  }

  /**
   * Appends to `out`, which holds the pending ok ops, the info ops invoked by `horizon` that
   * could start a run of info ops leading to a state one of those ok ops needs:
   *
   * - a pending failed cas expecting the current state is happy with any change, so every
   *   group is worth a try;
   * - otherwise a pending read of v, or cas expecting v, needs a run ending in v. A run of
   *   several info ops is a chain of info cas ops, each expecting its predecessor's value, so
   *   walk backwards from the needed values through info cas ops that are available, then
   *   offer the groups producing any of them.
   *
   * Runs that lead nowhere, or loop back to the current state, can always be dropped or
   * shortened, and an ok op that does not need the run can always be moved before it, so
   * some linearization (if any exists) only uses runs found here.
   */
  addUseful(out: PreparedOp[], state: number, horizon: number): void {
    const next = (g: InfoGroup): PreparedOp | undefined => {
      const p = g.ops[g.used];
      return p !== undefined && p.op.call <= horizon ? p : undefined;
    };
    const offer = (groups: readonly InfoGroup[]): void => {
      for (const g of groups) {
        const p = next(g);
        if (p !== undefined) out.push(p);
      }
    };
    if (out.some((z) => z.kind === CAS_FAILED && z.a === state)) {
      offer(this.groups);
      return;
    }
    const needed: number[] = [];
    const need = (v: number): void => {
      if (v !== state && !needed.includes(v)) needed.push(v);
    };
    for (const z of out) if (z.kind === READ || z.kind === CAS) need(z.a);
    for (let i = 0; i < needed.length; i++) {
      for (const g of this.casByValue.get(needed[i]!) ?? []) {
        const z = next(g);
        if (z !== undefined) need(z.a);
      }
    }
    for (const v of needed) offer(this.byValue.get(v) ?? []);
  }
}

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

/**
 * The set of linearized ops of one key, able to produce a compact string key for the cache.
 *
 * Ok ops are numbered by return time and every op returning before the search frontier is
 * linearized, so their bitset is all ones up to word `lo` and all zeros from word `hi`; a key
 * holds only the words in between (plus the info ops' bits). That keeps a cached configuration
 * at O(concurrency) bytes rather than O(ops on the key).
 */
class OpSet {
  private readonly ok: Uint32Array;
  private readonly info: Uint32Array;
  private lo = 0;
  private hi = 0;

  constructor(
    private readonly okCount: number,
    infoCount: number,
  ) {
    this.ok = new Uint32Array(Math.ceil(okCount / 32));
    this.info = new Uint32Array(Math.ceil(infoCount / 32));
  }

  toggle(p: PreparedOp): void {
    if (p.info) {
      const i = p.bit - this.okCount;
      this.info[i >>> 5]! ^= 1 << (i & 31);
      return;
    }
    const ok = this.ok;
    const w = p.bit >>> 5;
    ok[w]! ^= 1 << (p.bit & 31);
    if (w < this.lo) this.lo = w;
    else while (this.lo < ok.length && ok[this.lo] === 0xffffffff) this.lo++;
    if (w >= this.hi) this.hi = w + 1;
    else while (this.hi > this.lo && ok[this.hi - 1] === 0) this.hi--;
  }

  /**
   * A string identifying (this set, state, require), as 16-bit char codes: strings are hashed
   * and compared by the engine and cost far less memory per entry than typed arrays.
   */
  key(state: number, require: number): string {
    const codes: number[] = [];
    const put = (x: number): void => {
      codes.push(x & 0xffff, x >>> 16);
    };
    put(state);
    put(require + 1);
    put(this.lo);
    for (let i = this.lo; i < this.hi; i++) put(this.ok[i]!);
    for (const word of this.info) put(word);
    return String.fromCharCode(...codes);
  }
}

/** Validates `op` (already known to be checked) and encodes its effect on the register. */
function prepare(op: HistoryOp, bit: number, intern: (v: string | null) => number): PreparedOp {
  const info = op.status === "info";
  const base = { op, bit, info, b: 0 };
  switch (op.kind) {
    case "read": {
      const value = op.result?.value;
      if (value === undefined) throw invalidOp(op, "an ok read needs result.value (null = absent)");
      return { ...base, kind: READ, a: intern(value) };
    }
    case "write":
      if (typeof op.value !== "string") throw invalidOp(op, "a write needs a string value");
      return { ...base, kind: WRITE, a: intern(op.value) };
    case "delete":
      return { ...base, kind: WRITE, a: ABSENT };
    case "cas": {
      if (typeof op.value !== "string") throw invalidOp(op, "a cas needs a string value");
      if (op.expect === undefined) throw invalidOp(op, "a cas needs expect (null = absent)");
      const a = intern(op.expect);
      const b = intern(op.value);
      // An info cas either succeeded at some point or had no effect at all; the latter is
      // the same as never linearizing it, so only the successful form needs modelling.
      if (info) return { ...base, kind: CAS, a, b };
      const ok = op.result?.ok;
      if (typeof ok !== "boolean") throw invalidOp(op, "an ok cas needs result.ok");
      return ok ? { ...base, kind: CAS, a, b } : { ...base, kind: CAS_FAILED, a };
    }
    default:
      throw invalidOp(op, `unknown kind ${JSON.stringify((op as HistoryOp).kind)}`);
  }
}

function validateTimes(op: HistoryOp): void {
  if (!Number.isFinite(op.call)) throw invalidOp(op, "call must be a finite number");
  if (op.status === "ok" && !(Number.isFinite(op.ret) && op.ret >= op.call)) {
    throw invalidOp(op, "ret must be a finite number >= call");
  }
}

function invalidOp(op: HistoryOp, why: string): Error {
  return new Error(`checkLinearizable: invalid history op #${op.id}: ${why}`);
}

/** Placeholder op for the list head, which is never examined. */
const SENTINEL: PreparedOp = {
  op: { id: -1, client: -1, key: "", kind: "read", status: "ok", call: 0, ret: 0 },
  bit: -1,
  info: false,
  kind: READ,
  a: ABSENT,
  b: 0,
};

/**
 * Builds the event list of the ok ops behind a sentinel head; `calls[bit]` is each op's call
 * entry. At equal times calls sort before returns: A must precede B only if A.ret < B.call, so
 * touching intervals count as concurrent.
 */
function buildEntries(okOps: readonly PreparedOp[]): { head: Entry; calls: Entry[] } {
  const calls: Entry[] = [];
  const events: Entry[] = [];
  for (const op of okOps) {
    const ret: Entry = { op, isCall: false, time: op.op.ret, match: null, prev: null, next: null };
    const call: Entry = { op, isCall: true, time: op.op.call, match: ret, prev: null, next: null };
    calls[op.bit] = call;
    events.push(call, ret);
  }
  events.sort(
    (x, y) => x.time - y.time || Number(y.isCall) - Number(x.isCall) || x.op.op.id - y.op.op.id,
  );
  const head: Entry = { op: SENTINEL, isCall: false, time: 0, match: null, prev: null, next: null };
  let last = head;
  for (const entry of events) {
    last.next = entry;
    entry.prev = last;
    last = entry;
  }
  return { head, calls };
}

/** Removes a call entry and its return entry from the list. */
function lift(call: Entry): void {
  call.prev!.next = call.next;
  call.next!.prev = call.prev; // a call is always followed by at least its own return
  const ret = call.match!;
  ret.prev!.next = ret.next;
  if (ret.next !== null) ret.next.prev = ret.prev;
}

/** Exactly undoes `lift` (entries keep their own prev/next pointers while lifted). */
function unlift(call: Entry): void {
  const ret = call.match!;
  ret.prev!.next = ret;
  if (ret.next !== null) ret.next.prev = ret;
  call.prev!.next = call;
  call.next!.prev = call;
}

// ---------------------------------------------------------------------------------------------
// Failure reporting.

/** Snapshot of a dead end: the first unlinearized return blocks every pending call. */
function describeStuck(head: Entry, stack: readonly Frame[]): Stuck {
  const pending: PreparedOp[] = [];
  let e = head.next;
  for (; e?.isCall; e = e.next) pending.push(e.op);
  const top = stack[stack.length - 1]!;
  return {
    op: (e ?? head).op,
    depth: stack.length - 1,
    state: top.state,
    pending,
    recent: stack.slice(-3).flatMap((f) => (f.via === null ? [] : [f.via])),
  };
}

function failure(
  key: string,
  stuck: Stuck,
  n: number,
  names: readonly (string | null)[],
): LinearizabilityResult {
  const show = (v: number): string => {
    const name = names[v] ?? null;
    return name === null ? "absent" : JSON.stringify(name);
  };
  const others = stuck.pending.filter((p) => p !== stuck.op);
  const reason =
    `key ${JSON.stringify(key)} is not linearizable: ${describeOp(stuck.op.op)} ` +
    `cannot take effect before it returned. The longest partial linearization covers ` +
    `${stuck.depth} of ${n} ops and leaves the register ${show(stuck.state)}` +
    (stuck.recent.length > 0
      ? `; last linearized: ${stuck.recent.map((p) => describeOp(p.op)).join(", ")}`
      : "") +
    (others.length > 0
      ? `; concurrent ops that could not go next either: ${others
          .slice(0, MAX_REPORTED_OPS)
          .map((p) => describeOp(p.op))
          .join(", ")}`
      : "") +
    ".";
  const involved = new Set<HistoryOp>([stuck.op.op]);
  for (const p of [...stuck.recent].reverse()) involved.add(p.op);
  for (const p of others) involved.add(p.op);
  const ops = [...involved]
    .slice(0, MAX_REPORTED_OPS)
    .sort((x, y) => x.call - y.call || x.id - y.id);
  return { ok: false, key, reason, ops };
}

function describeOp(op: HistoryOp): string {
  const v = (x: string | null | undefined): string => (x == null ? "absent" : JSON.stringify(x));
  let what: string;
  switch (op.kind) {
    case "read":
      what = `read → ${v(op.result?.value)}`;
      break;
    case "write":
      what = `write ${v(op.value)}`;
      break;
    case "delete":
      what = "delete";
      break;
    case "cas":
      what =
        `cas ${v(op.expect)}→${v(op.value)}` +
        (op.status === "ok" ? (op.result?.ok ? " succeeded" : " failed") : "");
      break;
  }
  const when = op.status === "info" ? `[${op.call}, ?] info` : `[${op.call}, ${op.ret}]`;
  return `#${op.id} (client ${op.client}) ${what} ${when}`;
}
