/**
 * Messages from the network are input, not invariants: a peer with a bug, a corrupted store or
 * bad intent can send anything the codec accepts. `invalidMessage` names what no correct peer
 * ever sends (`RawNode.step` drops such messages and counts them), so that what the core then
 * asserts about its own state cannot be reached from outside. It checks each message on its
 * own; what depends on the receiver's log (a commit beyond it, an unknown index) is handled by
 * the protocol itself. Pure, like the rest of raft/.
 */
import { type Message, NONE, type Snapshot } from "./types.js";

/**
 * The highest term, index or commit a message may carry. Terms grow by one per election and
 * indices by one per entry, so 2^48 is thousands of years of an election (or a million entries
 * a second for nine years); beyond it, counting up from the value (the next election, the next
 * entry) would leave the exact integers, and loops over index ranges would never end.
 */
export const TERM_MAX = 2 ** 48;
export const INDEX_MAX = 2 ** 48;

const safe = (n: number) => Number.isSafeInteger(n) && n >= 0 && n <= INDEX_MAX;

/** etcd's rules: no duplicates; learners are in neither voter set; learnersNext are outgoing voters only. */
function badConfState(c: Snapshot["meta"]["confState"]): string | undefined {
  const lists = [c.voters, c.learners, c.votersOutgoing, c.learnersNext];
  for (const l of lists) {
    if (l.includes(NONE)) return "an empty node id in the snapshot's configuration";
    if (new Set(l).size !== l.length) return "a node listed twice in the snapshot's configuration";
  }
  if (c.voters.length === 0) return "snapshot without voters";
  const voters = new Set([...c.voters, ...c.votersOutgoing]);
  if (c.learners.some((l) => voters.has(l))) return "a learner that is also a voter";
  if (c.learnersNext.some((l) => c.voters.includes(l) || !c.votersOutgoing.includes(l)))
    return "learnersNext must be outgoing voters only";
  return undefined;
}

export function invalidMessage(m: Message): string | undefined {
  if (m.from === NONE) return "no sender";
  if (!safe(m.term) || m.term > TERM_MAX) return "term beyond TERM_MAX";
  switch (m.type) {
    case "app": {
      if (!safe(m.index) || !safe(m.logTerm) || !safe(m.commit)) return "bad index or commit";
      if (m.logTerm > m.term) return "previous entry's term above the message's term";
      if (m.index === 0 && m.logTerm !== 0) return "a term for index 0";
      // Entries follow (index, logTerm) one by one, with terms that never go down and never
      // exceed the sender's term: the shape of every leader's log.
      let last = m.logTerm;
      for (let i = 0; i < m.entries.length; i++) {
        const e = m.entries[i];
        if (!e || e.index !== m.index + 1 + i) return "entries are not contiguous";
        if (!safe(e.term) || e.term < last || e.term > m.term || e.term === 0)
          return "entry terms out of order";
        last = e.term;
      }
      return undefined;
    }
    case "snap": {
      const meta = m.snapshot.meta;
      if (!safe(meta.index) || meta.index === 0) return "snapshot at index 0";
      if (!safe(meta.term) || meta.term === 0 || meta.term > m.term)
        return "snapshot term out of range";
      return badConfState(meta.confState);
    }
    case "appResp":
      return safe(m.index) && safe(m.rejectHint) && safe(m.logTerm) ? undefined : "bad index";
    case "vote":
    case "preVote":
      return safe(m.index) && safe(m.logTerm) ? undefined : "bad index";
    case "heartbeat":
      return safe(m.commit) && safe(m.seq) && Number.isFinite(m.sentTick)
        ? undefined
        : "bad commit";
    case "heartbeatResp":
      return safe(m.seq) && Number.isFinite(m.sentTick) ? undefined : "bad round";
    case "readIndexResp":
      return safe(m.index) ? undefined : "bad index";
    case "prop":
      return Number.isFinite(m.seq) ? undefined : "bad sequence number";
    default:
      return undefined;
  }
}
