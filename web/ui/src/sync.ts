//! One document's client side of PROTOCOL.md as a sans-IO state machine: it takes local edits
//! and server messages, and queues messages to send (`outbox`) and things for the editor to do
//! (`events`). No socket, no timer, no Monaco: the connection and the editor binding drive it,
//! and `sync.test.ts` drives it against a simulated server.
//!
//! Texts and positions are in code points. Invariants (checked in tests):
//! - `text === apply(apply(confirmed, inflight.op), pending)`;
//! - at most one op in flight; later local edits are composed into `pending`;
//! - an incoming op is transformed against the op in flight, then against `pending` (the
//!   server applied it first, so it wins ties), and the result is applied to the editor.

import type { ClientMsg, ErrorCode, RevOp, ServerMsg } from './protocol';
import {
  apply,
  compose,
  cpLength,
  diff,
  invert,
  isNoop,
  isValidOp,
  type Op,
  OpError,
  type Range,
  transform,
  transformRanges,
} from './ot';

/** Where the document is in its life on the current connection. */
export type Mode =
  /** Sent the first `open`; no text yet (the editor stays read-only). */
  | 'opening'
  /** Reconnected and sent `open` with our revision; waiting for `opened`. */
  | 'resuming'
  /** In sync: ops flow. */
  | 'ready'
  /** Got a snapshot while an op was in flight; resubmitted it and wait for its ack. */
  | 'resubmitting'
  /** Sent `open` without a revision to resync; waiting for the snapshot. */
  | 'reopening';

/** Something the editor binding should do, in order. */
export type SyncEvent =
  /** The first snapshot: show `text`. */
  | { kind: 'reset'; text: string }
  /** Apply `op` (code points) to the editor's current text. `author` is null for the client's
   * own rebases and reverts. */
  | { kind: 'remote'; op: Op; author: string | null }
  /** The set of collaborators or their cursors changed. */
  | { kind: 'peers' }
  /** The document's language (from its extension, told by the server). */
  | { kind: 'lang'; lang: string }
  /** Call `retry()` after `delayMs` (rate limited, or the document is moving). */
  | { kind: 'retry'; delayMs: number }
  /** Something the person should know (a refused edit). */
  | { kind: 'notice'; message: string }
  /** Mode or unacknowledged edits changed (for the status bar). */
  | { kind: 'state' };

/** A collaborator with their cursors, in the local text's code points. */
export interface Peer {
  client: string;
  name: string;
  color: string;
  ranges: Range[];
}

/** The op this client has sent and not yet seen acknowledged. */
interface InFlight {
  /** Its seq (PROTOCOL.md: one more than the last applied). */
  seq: number;
  /** The op as it now applies to `confirmed` (transformed over ops received since). */
  op: Op;
  /** The op exactly as last sent, and the revision it was sent against: resubmitted as is. */
  sentOp: Op;
  sentRev: number;
  /** The server refused it (`stale_rev`, `invalid_op`): rebase it onto the next snapshot and
   * send that, with the same seq. It stays the same logical edit, so a stray earlier copy that
   * the server did apply makes the rebased one a harmless duplicate. */
  rebase: boolean;
}

/** First delay before resubmitting a rate-limited op; doubles per attempt. */
export const RETRY_BASE_MS = 200;
/** Longest delay between resubmissions (a moving document settles within seconds). */
export const RETRY_MAX_MS = 5_000;
/** Most cursor ranges sent (the server keeps 64). */
export const MAX_SENT_RANGES = 64;

export class DocSync {
  /** The local text: what the editor shows. */
  text = '';
  /** The server's text at `rev` as this client knows it. */
  confirmed = '';
  /** The revision `confirmed` is at; -1 before the first snapshot. */
  rev = -1;
  mode: Mode = 'opening';
  inflight: InFlight | null = null;
  /** Local edits made since `inflight` was sent, composed; applies to `confirmed + inflight`. */
  pending: Op | null = null;
  /** Seq of the next new op. */
  nextSeq = 1;
  /** The language the server reported. */
  lang = 'plaintext';
  /** Whether the server refused an edit as read-only. */
  readOnly = false;
  /** Collaborators by client id. */
  readonly peers = new Map<string, Peer>();
  /** Messages to send, in order (drained by the connection). */
  outbox: ClientMsg[] = [];
  /** Things for the editor to do, in order (drained by the binding). */
  events: SyncEvent[] = [];

  private connected = false;
  private clientId: string | null = null;
  private localRanges: Range[] | null = null;
  private cursorDirty = false;
  private retryAttempt = 0;

  constructor(readonly doc: string) {}

  // -------------------------------------------------------------------------------------------
  // Inputs from the connection.

  /** The connection got `welcome` with `clientId`: (re)open the document. */
  onConnected(clientId: string): void {
    if (this.clientId !== null && this.clientId !== clientId && this.inflight) {
      // A new identity cannot resubmit the old one's op: rebase it as a local edit.
      this.pending = this.pending ? compose(this.inflight.op, this.pending) : this.inflight.op;
      this.inflight = null;
      this.nextSeq = 1;
    } else if (this.clientId !== null && this.clientId !== clientId) {
      this.nextSeq = 1;
    }
    this.clientId = clientId;
    this.connected = true;
    if (this.mode === 'ready' || this.mode === 'resuming') {
      this.mode = 'resuming';
      this.send({ type: 'open', doc: this.doc, rev: this.rev });
    } else {
      if (this.mode !== 'opening') this.mode = 'reopening';
      this.send({ type: 'open', doc: this.doc, rev: null });
    }
    this.emit({ kind: 'state' });
  }

  /** The socket closed: keep everything, wait for `onConnected`. */
  onDisconnected(): void {
    this.connected = false;
    if (this.peers.size > 0) {
      this.peers.clear();
      this.emit({ kind: 'peers' });
    }
    this.emit({ kind: 'state' });
  }

  /** A server message for this document. */
  receive(msg: ServerMsg): void {
    switch (msg.type) {
      case 'opened':
        if (typeof msg.lang === 'string' && msg.lang !== this.lang) {
          this.lang = msg.lang;
          this.emit({ kind: 'lang', lang: msg.lang });
        }
        if ('text' in msg) this.onSnapshot(msg.text, msg.rev);
        else this.onOpenedOps(msg.ops, msg.rev);
        break;
      case 'ack':
        this.onAck(msg.seq, msg.rev);
        break;
      case 'op':
        this.onRemoteOp(msg.rev, msg.client, msg.op);
        break;
      case 'cursor':
        this.onCursor(msg.client, msg.name, msg.color, msg.ranges);
        break;
      case 'left':
        if (this.peers.delete(msg.client)) this.emit({ kind: 'peers' });
        break;
      case 'error':
        this.onError(msg.code, msg.message, msg.seq);
        break;
      default:
        break;
    }
    this.emit({ kind: 'state' });
  }

  /** Time to resubmit after a `retry` event. */
  retry(): void {
    if (!this.connected) return;
    if ((this.mode === 'ready' || this.mode === 'resubmitting') && this.inflight) {
      const f = this.inflight;
      this.send({ type: 'op', doc: this.doc, rev: f.sentRev, seq: f.seq, op: f.sentOp });
    } else if (this.mode === 'opening' || this.mode === 'reopening') {
      this.send({ type: 'open', doc: this.doc, rev: null });
    } else if (this.mode === 'resuming') {
      this.send({ type: 'open', doc: this.doc, rev: this.rev });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Inputs from the editor.

  /** The person edited the text: `op` applies to `text`. */
  localEdit(op: Op): void {
    if (this.mode === 'opening') throw new OpError('edit before the document was opened');
    if (isNoop(op)) return;
    this.text = apply(this.text, op);
    this.pending = this.pending ? compose(this.pending, op) : op;
    if (isNoop(this.pending)) this.pending = null;
    this.transformPeers(op);
    this.flush();
    this.emit({ kind: 'state' });
  }

  /** The person's cursors and selections moved (code points in `text`). */
  setSelection(ranges: Range[]): void {
    this.localRanges = ranges.slice(0, MAX_SENT_RANGES);
    this.cursorDirty = true;
    this.maybeSendCursor();
  }

  /** Local edits not yet acknowledged: the op in flight and the composed pending edits. */
  unacknowledged(): number {
    return (this.inflight ? 1 : 0) + (this.pending ? 1 : 0);
  }

  /** Whether ops flow (opened on a live connection). */
  isLive(): boolean {
    return this.connected && this.mode === 'ready';
  }

  /** Messages to send, oldest first; empties the outbox. */
  takeOutbox(): ClientMsg[] {
    const out = this.outbox;
    this.outbox = [];
    return out;
  }

  /** Editor events, oldest first; empties the queue. */
  takeEvents(): SyncEvent[] {
    const out = this.events;
    this.events = [];
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Message handling.

  private onSnapshot(snapshot: string, rev: number): void {
    if (this.mode === 'opening') {
      this.text = snapshot;
      this.confirmed = snapshot;
      this.rev = rev;
      this.mode = 'ready';
      this.emit({ kind: 'reset', text: snapshot });
      this.cursorDirty = this.localRanges !== null;
      this.maybeSendCursor();
      return;
    }
    if (this.inflight && !this.inflight.rebase) {
      // We cannot tell whether the snapshot includes our op: resubmit it exactly as sent (the
      // server dedups by seq), then resync once it is acknowledged.
      const f = this.inflight;
      this.mode = 'resubmitting';
      this.send({ type: 'op', doc: this.doc, rev: f.sentRev, seq: f.seq, op: f.sentOp });
      return;
    }
    // Rebase what the person typed onto the snapshot: the server's changes since `confirmed`
    // as a diff, transformed against the refused op in flight and the pending edits (the
    // server's changes win ties).
    let forEditor = diff(this.confirmed, snapshot);
    if (this.inflight) [this.inflight.op, forEditor] = transform(this.inflight.op, forEditor);
    if (this.pending) [this.pending, forEditor] = transform(this.pending, forEditor);
    if (this.pending && isNoop(this.pending)) this.pending = null;
    this.confirmed = snapshot;
    this.rev = rev;
    this.mode = 'ready';
    this.applyToText(forEditor, null);
    if (this.inflight) {
      this.inflight.rebase = false;
      this.resend();
    }
    this.cursorDirty = this.localRanges !== null;
    this.flush();
    this.maybeSendCursor();
  }

  private onOpenedOps(ops: RevOp[], rev: number): void {
    if (this.mode !== 'resuming' && this.mode !== 'ready') {
      this.resync();
      return;
    }
    for (const entry of ops) {
      if (entry.rev !== this.rev + 1) {
        this.resync();
        return;
      }
      if (entry.client === this.clientId) {
        // Our own op after our last acknowledged revision: the ack of the op in flight.
        if (!this.inflight) {
          this.resync();
          return;
        }
        this.acknowledge(entry.rev);
      } else if (!this.applyRemote(entry.op, entry.client, entry.rev)) {
        return;
      }
    }
    if (this.rev !== rev) {
      this.resync();
      return;
    }
    this.mode = 'ready';
    // Not among the ops: never applied. Resubmit with the same seq, against the new revision.
    if (this.inflight) this.resend();
    this.cursorDirty = this.localRanges !== null;
    this.flush();
    this.maybeSendCursor();
  }

  private onAck(seq: number, rev: number): void {
    const f = this.inflight;
    if (!f || seq !== f.seq) return; // a late duplicate of something already settled
    this.retryAttempt = 0;
    if (this.mode === 'ready' && rev === this.rev + 1) {
      this.acknowledge(rev);
      this.flush();
      this.maybeSendCursor();
      return;
    }
    // Applied, but not where our stream expects it (a duplicate's ack after a snapshot, or a
    // gap): count it into `confirmed` and resync from a snapshot.
    this.confirmed = apply(this.confirmed, f.op);
    this.nextSeq = f.seq + 1;
    this.inflight = null;
    if (this.mode !== 'reopening') this.resync();
  }

  private onRemoteOp(rev: number, client: string, op: Op): void {
    if (this.mode !== 'ready') return; // a snapshot is on its way
    // `[]` is allowed here: the server writes an op that others' edits emptied on an empty
    // document that way (docs/PROTOCOL.md).
    if (rev !== this.rev + 1 || !(Array.isArray(op) && (op.length === 0 || isValidOp(op)))) {
      this.resync();
      return;
    }
    this.applyRemote(op, client, rev);
  }

  private onCursor(client: string, name: string, color: string, ranges: Range[]): void {
    if (this.mode !== 'ready' || client === this.clientId || !Array.isArray(ranges)) return;
    let local = ranges.filter(
      (r) => Array.isArray(r) && r.length === 2 && Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1]),
    );
    // Server positions are at our revision; ours has the op in flight and pending edits on top.
    if (this.inflight) local = transformRanges(local, this.inflight.op);
    if (this.pending) local = transformRanges(local, this.pending);
    this.peers.set(client, { client, name, color, ranges: local });
    this.emit({ kind: 'peers' });
  }

  private onError(code: ErrorCode, message: string, seq: number | undefined): void {
    const mine = seq !== undefined && this.inflight !== null && seq === this.inflight.seq;
    switch (code) {
      case 'invalid_op':
      case 'stale_rev':
        // Nothing was applied: resync from a snapshot and rebase the op onto it.
        if (mine && this.inflight) this.inflight.rebase = true;
        this.resync();
        break;
      case 'rate_limited':
      case 'unavailable':
        if (mine || seq === undefined) {
          this.retryAttempt++;
          const delayMs = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(this.retryAttempt, 10));
          this.emit({ kind: 'retry', delayMs });
        }
        break;
      case 'not_open':
        this.resync();
        break;
      case 'forbidden':
      case 'too_large':
        if (mine) {
          if (code === 'forbidden') this.readOnly = true;
          this.discardLocal();
          this.emit({
            kind: 'notice',
            message: code === 'forbidden' ? 'This document is read-only for you; your edit was undone.' : `Edit refused: ${message}`,
          });
        }
        break;
      default:
        this.emit({ kind: 'notice', message: `Server: ${message}` });
    }
  }

  // -------------------------------------------------------------------------------------------
  // Helpers.

  /** The op in flight became revision `rev`. */
  private acknowledge(rev: number): void {
    const f = this.inflight!;
    this.confirmed = apply(this.confirmed, f.op);
    this.rev = rev;
    this.nextSeq = f.seq + 1;
    this.inflight = null;
  }

  /** Applies another client's op (on `confirmed`) to every state; false if it did not fit. */
  private applyRemote(op: Op, author: string, rev: number): boolean {
    let confirmed: string;
    try {
      confirmed = apply(this.confirmed, op);
    } catch (e) {
      if (!(e instanceof OpError)) throw e;
      this.resync();
      return false;
    }
    let forEditor = op;
    if (this.inflight) [this.inflight.op, forEditor] = transform(this.inflight.op, forEditor);
    if (this.pending) {
      [this.pending, forEditor] = transform(this.pending, forEditor);
      if (isNoop(this.pending)) this.pending = null;
    }
    this.confirmed = confirmed;
    this.rev = rev;
    this.applyToText(forEditor, author);
    return true;
  }

  /** Applies a change that did not come from the editor to `text` and tells the editor. */
  private applyToText(op: Op, author: string | null): void {
    if (isNoop(op)) return;
    this.text = apply(this.text, op);
    this.transformPeers(op);
    this.emit({ kind: 'remote', op, author });
  }

  /** Reverts every unacknowledged local edit (the server refused them). */
  private discardLocal(): void {
    let local: Op = this.inflight ? this.inflight.op : [];
    if (this.pending) local = compose(local, this.pending);
    this.inflight = null;
    this.pending = null;
    this.applyToText(invert(this.confirmed, local), null);
  }

  /** Sends the op in flight again, as it now applies to `confirmed`, with its seq. An op that
   * others' edits reduced to nothing is sent as a plain retain (a valid op that changes
   * nothing), so its seq is settled like any other. */
  private resend(): void {
    const f = this.inflight!;
    let op = f.op;
    if (isNoop(op)) {
      const length = cpLength(this.confirmed);
      if (length === 0) {
        // Nothing to send and nothing it could change: its seq stays unused.
        this.inflight = null;
        return;
      }
      op = [length];
    }
    f.sentOp = op;
    f.sentRev = this.rev;
    this.send({ type: 'op', doc: this.doc, rev: f.sentRev, seq: f.seq, op });
  }

  /** Asks for a fresh snapshot; what was typed is rebased onto it when it comes. */
  private resync(): void {
    this.mode = 'reopening';
    if (this.connected) this.send({ type: 'open', doc: this.doc, rev: null });
  }

  /** Sends the pending edits if nothing is in flight. */
  private flush(): void {
    if (!this.connected || this.mode !== 'ready' || this.inflight || !this.pending || this.readOnly) return;
    const op = this.pending;
    this.pending = null;
    this.inflight = { seq: this.nextSeq, op, sentOp: op, sentRev: this.rev, rebase: false };
    this.send({ type: 'op', doc: this.doc, rev: this.rev, seq: this.nextSeq, op });
  }

  /** Sends our cursor if it changed and no op is unacknowledged (PROTOCOL.md, Presence). */
  private maybeSendCursor(): void {
    if (!this.cursorDirty || !this.localRanges || !this.connected || this.mode !== 'ready') return;
    if (this.inflight || this.pending) return;
    this.cursorDirty = false;
    this.send({ type: 'cursor', doc: this.doc, rev: this.rev, ranges: this.localRanges });
  }

  private transformPeers(op: Op): void {
    if (this.peers.size === 0) return;
    for (const peer of this.peers.values()) peer.ranges = transformRanges(peer.ranges, op);
    this.emit({ kind: 'peers' });
  }

  private send(msg: ClientMsg): void {
    this.outbox.push(msg);
  }

  private emit(event: SyncEvent): void {
    this.events.push(event);
  }
}
